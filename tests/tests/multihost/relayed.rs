//! Scenario 11 (issue 17): granted data delivered through a relay. 北京 asks 广东 for data;
//! the two provinces' nodes have no route to each other (a blackhole route in each container,
//! as two provincial data centres whose networks do not meet) and both reach national, their
//! common ancestor. The delivery goes through national's circuit relay, end to end encrypted:
//! national forwards it and holds none of it.

use std::time::Instant;

use crate::net::{Net, Wiring};
use crate::sharing::{
    export_exactly, init_with_next_year, request_grant_deliver, wait_share_state,
};
use crate::suite::{serial, suite};

const REQUESTER: &str = "11"; // 北京市
const PROVIDER: &str = "44"; // 广东省

const NODES: [(&str, &str); 3] = [
    ("national", "0"),
    ("beijing", REQUESTER),
    ("guangdong", PROVIDER),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_provinces_without_a_route_deliver_through_national_relay() {
    let Some(suite) = suite("s11_provinces_without_a_route_deliver_through_national_relay") else {
        return;
    };
    let _serial = serial().await;
    let started = Instant::now();
    let mut net = Net::new(suite, "s11");
    init_with_next_year(&mut net, &NODES);
    for (name, _) in NODES {
        net.start(name, Wiring::default()).await;
    }
    assert!(
        net.can_connect("beijing", "guangdong"),
        "the probe itself works"
    );
    net.cut_between("beijing", "guangdong");
    assert!(
        !net.can_connect("beijing", "guangdong") && !net.can_connect("guangdong", "beijing"),
        "北京 and 广东 still reach each other directly: the cut did not hold"
    );

    let (id, csv, dataset) = request_grant_deliver(&net, "beijing", "guangdong", PROVIDER).await;
    export_exactly(&net, "beijing", PROVIDER, &dataset, &csv).await;

    // It came through national's relay: 广东 held a reservation there, 北京's node connected
    // to 广东's through a circuit, and national relayed that circuit from 北京 to 广东 (the
    // connection itself closes once the delivery is done, so the logs are the record).
    let (beijing, guangdong) = (
        net.node("beijing").peer_id.clone(),
        net.node("guangdong").peer_id.clone(),
    );
    let national = net.node("national").peer_id.clone();
    assert!(
        net.logs("guangdong").await.contains(&format!(
            "reachable through the upstream relay relay={national}"
        )),
        "广东 never held a reservation at national"
    );
    assert!(
        net.logs("beijing")
            .await
            .contains(&format!("connected through a relay relay={national}")),
        "北京 did not connect through national's relay"
    );
    assert!(
        net.logs("national")
            .await
            .contains(&format!("relaying a circuit src={beijing} dst={guangdong}")),
        "national did not relay a circuit from 北京 to 广东"
    );

    // National saw the request and its delivery (their common superior) and holds none of it.
    wait_share_state(&net, "national", &id, "delivered").await;
    assert!(
        net.dataset_status("national", &dataset).is_none(),
        "the relay holds the delivery"
    );
    crate::scenarios::elapsed("s11", started);
}
