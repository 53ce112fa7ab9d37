//! The compliance ledger's heads witnessed up the tree (Art. 29, issue 19), through real
//! endpoints on the simulated network: a county's heads are countersigned by its city, the
//! countersignature comes back and both survive restarts; a rewritten log is refused with an
//! alarm at the city, and heads are taken only from a direct child.

mod common;

use std::collections::HashMap;

use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::endpoint::Event;
use backflow_protocol::ledger::entry::{append_entry, EntryKind, LedgerEntry};
use backflow_protocol::ledger::head::{HeadUpdate, SignedTreeHead, TreeHead};
use backflow_protocol::ledger::merkle::{consistency_proof, root, Hash};
use backflow_protocol::ledger::witness::WitnessError;
use backflow_protocol::ledger::witnessing::LedgerEvent;
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;

/// A node's log as its shell keeps it (the node's RocksDB, here a map).
struct Log {
    nodes: HashMap<(u8, u64), Hash>,
    size: u64,
}

impl Log {
    fn of(region: &str, subjects: &[&str]) -> Log {
        let mut log = Log {
            nodes: HashMap::new(),
            size: 0,
        };
        for s in subjects {
            let entry = LedgerEntry {
                seq: log.size,
                time_ms: 1_767_225_600_000 + log.size,
                region: code(region),
                department: None,
                kind: EntryKind::Note,
                subject: (*s).into(),
                detail: String::new(),
            };
            let (_, nodes) = append_entry(&entry, log.size, &log.nodes).unwrap();
            for n in nodes {
                log.nodes.insert((n.level, n.index), n.hash);
            }
            log.size += 1;
        }
        log
    }

    /// The update a shell sends: its head now, and the proof from the last head its parent
    /// countersigned (`from` entries).
    fn update(&self, id: &NodeIdentity, from: u64, time_ms: u64) -> HeadUpdate {
        let head = TreeHead {
            region: id.region,
            size: self.size,
            root: root(self.size, &self.nodes).unwrap(),
            time_ms,
        };
        HeadUpdate {
            head: SignedTreeHead::sign(head, id),
            consistency: consistency_proof(from, self.size, &self.nodes).unwrap(),
        }
    }
}

fn acts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("act {i}")).collect()
}

fn alarms(net: &Net, at: &str) -> Vec<WitnessError> {
    net.node(code(at))
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ledger(LedgerEvent::Alarm { error, .. }) => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_county_s_heads_are_witnessed_by_its_city_and_a_rewritten_log_raises_an_alarm() {
    let mut net = Net::new(3, Faults::NONE, NetConfig::with(TEST_TUNING));
    let (county, city) = (code("110101"), code("1101"));
    let id = net.fx.id("110101").clone();
    let names = acts(10);
    let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
    let log = Log::of("110101", &subjects);

    let time = net.now.0;
    assert!(net
        .node_mut(county)
        .ep
        .send_ledger_head(log.update(&id, 0, time)));
    net.flush(county);
    net.run(1_000, |n| n.ep(county).ledger_acknowledged().is_some());
    let ack = net
        .ep(county)
        .ledger_acknowledged()
        .cloned()
        .expect("countersigned");
    assert_eq!((ack.witness, ack.head.head.size), (city, 10));
    assert_eq!(net.ep(city).ledger_witnessed(county), Some(&ack));
    // Both sides persisted it: after restarts they still hold it.
    net.restart(city);
    net.restart(county);
    assert_eq!(net.ep(city).ledger_witnessed(county), Some(&ack));
    assert_eq!(net.ep(county).ledger_acknowledged(), Some(&ack));
    net.run(1_000, |n| n.ep(county).peer_of(city).is_some());

    // The county appends: the new head extends the witnessed one.
    let names = acts(16);
    let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
    let grown = Log::of("110101", &subjects);
    let time = net.now.0;
    net.node_mut(county)
        .ep
        .send_ledger_head(grown.update(&id, 10, time));
    net.flush(county);
    net.run(1_000, |n| {
        n.ep(county)
            .ledger_acknowledged()
            .is_some_and(|a| a.head.head.size == 16)
    });
    assert_eq!(
        net.ep(city)
            .ledger_witnessed(county)
            .unwrap()
            .head
            .head
            .size,
        16
    );

    // Someone rewrites entry 4 of the county's log and appends: the city refuses the head,
    // raises an alarm naming the inconsistency, and keeps the last good head.
    let mut names = acts(20);
    names[4] = "act 4, as someone would rather it read".into();
    let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
    let forged = Log::of("110101", &subjects);
    let time = net.now.0;
    net.node_mut(county)
        .ep
        .send_ledger_head(forged.update(&id, 16, time));
    net.flush(county);
    let refused = |n: &Net| {
        n.node(county)
            .events
            .iter()
            .any(|e| matches!(e, Event::Ledger(LedgerEvent::Refused { size: 20, .. })))
    };
    assert!(net.run(1_000, refused), "the county hears it was refused");
    assert!(
        matches!(
            alarms(&net, "1101")[..],
            [WitnessError::Inconsistent { new_size: 20, .. }]
        ),
        "{:?}",
        alarms(&net, "1101")
    );
    assert_eq!(
        net.ep(city)
            .ledger_witnessed(county)
            .unwrap()
            .head
            .head
            .size,
        16
    );
    assert_eq!(
        net.ep(county).ledger_acknowledged().unwrap().head.head.size,
        16
    );

    // The county's head sent past its city, to national (which it is linked to as well), is
    // not witnessed there: only the parent region witnesses.
    let national = code("0");
    let peer = net
        .ep(national)
        .peer_of(county)
        .expect("national admits the county (a skip-level link)");
    let time = net.now.0;
    let msg = backflow_protocol::wire::Message::Ledger(
        backflow_protocol::ledger::witnessing::LedgerMsg::Head(grown.update(&id, 0, time)),
    );
    net.inject(peer, national, msg);
    assert_eq!(net.ep(national).ledger_witnessed(county), None);
    assert!(alarms(&net, "0").is_empty());
}
