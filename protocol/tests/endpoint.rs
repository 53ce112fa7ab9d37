//! What the `Endpoint` adds over the bare state machines, end to end through the in-memory
//! network: peer admission (a sibling, a forger holding a stolen chain and a peer certified by
//! a rogue root are refused, and nothing they send reaches a machine, while the legitimate
//! tree completes) and the chunk verdict (a run tampered on the wire is rejected, the
//! mismatching group blamed, and fetched again).

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

use backflow_protocol::catalog_sync::{CatalogEvent, CatalogMsg};
use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::endpoint::{AdmissionError, Event as EpEvent, PeerAuth};
use backflow_protocol::manifest::{ChunkFrame, ChunkPart, Hash};
use backflow_protocol::return_flow::{Event, ReturnFlowMsg, WantPart};
use backflow_protocol::time::DAY_MS;
use backflow_protocol::wire::{Hello, Message};
use backflow_protocol::RegionCode;
use common::net::{auth_of, Faults, Net, NetConfig, Peer, TEST_TUNING};
use common::*;

const PARTS: &[(&str, usize)] = &[
    ("110101", 1_000),
    ("110101001", 70_000),
    ("110101002", 20_000),
    ("110102001", 5_000),
    ("1201", 300),
    ("11", 0),
];

fn dibao(fx: &Fixture) -> Dataset {
    dataset(fx, "dibao", 1, None, "0", "0", PARTS, T0, 30 * DAY_MS)
}

/// An identity for `region` certified along the tree by a root that is not the trust anchor.
fn rogue_identity(region: RegionCode) -> NodeIdentity {
    let mut id = NodeIdentity::national(key("rogue/national"));
    let mut path: Vec<RegionCode> = std::iter::successors(Some(region), |r| r.parent()).collect();
    path.reverse();
    for r in path.into_iter().skip(1) {
        let s = r.to_string();
        id = id
            .certify_child(
                &key(&format!("rogue/{s}")),
                format!("peer-rogue-{s}").into_bytes(),
                T0.minus_ms(DAY_MS),
                T0.plus_ms(YEAR_MS),
                r,
                1,
            )
            .unwrap();
    }
    id
}

fn refusals(net: &Net, at: RegionCode) -> Vec<(Peer, AdmissionError)> {
    net.node(at)
        .events
        .iter()
        .filter_map(|e| match e {
            EpEvent::PeerRefused { peer, error } => Some((*peer, error.clone())),
            _ => None,
        })
        .collect()
}

fn unadmitted_frames(net: &Net, at: RegionCode, from: Peer) -> usize {
    net.node(at)
        .events
        .iter()
        .filter(|e| matches!(e, EpEvent::UnadmittedFrame { peer } if *peer == from))
        .count()
}

/// The regions of `c`'s admitted peers.
fn admitted(net: &Net, c: RegionCode) -> BTreeSet<RegionCode> {
    net.ep(c).admitted().map(|(_, r)| r).collect()
}

/// The nodes of the tree in line with `c` (its ancestors and descendants).
fn in_line(net: &Net, c: RegionCode) -> BTreeSet<RegionCode> {
    net.nodes
        .keys()
        .copied()
        .filter(|r| *r != c && (r.contains(c) || c.contains(*r)))
        .collect()
}

#[test]
fn a_sibling_or_forged_peer_is_refused_and_its_frames_never_reach_a_machine() {
    let mut net = Net::new(31, Faults::NONE, NetConfig::with(TEST_TUNING));
    let d = dibao(&net.fx);
    let (county, t, sibling) = (code("110101"), code("110101001"), code("110101002"));
    let hash = net.publish(&d);

    // A sibling township dials township `t`: a real, certified node, but not in line.
    net.connect(sibling, t);
    // A forger presents `t`'s (public) chain to the county; its transport authenticated its
    // own key, not `t`'s.
    let forger: Peer = code("110103");
    let stolen = Message::Hello(Hello {
        chain: net.fx.id("110101001").chain.clone(),
    });
    let forger_auth = PeerAuth {
        key: key("forger").verifying_key().to_bytes(),
        peer_id: b"peer-110101001".to_vec(),
    };
    net.connect_intruder(forger, forger_auth, &stolen, county);
    // A peer whose chain for `t` comes from a rogue root, over a transport that did
    // authenticate its key.
    let rogue: Peer = code("110104");
    let rogue_id = rogue_identity(t);
    let rogue_hello = Message::Hello(Hello {
        chain: rogue_id.chain.clone(),
    });
    net.connect_intruder(rogue, auth_of(&rogue_id), &rogue_hello, county);

    // What each sends after its hello: frames that would each leave a trace in a machine if
    // they reached one (a refused want, a rejected chunk run, a rejected catalog version).
    let want_for = |region: RegionCode| {
        Message::ReturnFlow(ReturnFlowMsg::Want {
            manifest: hash,
            parts: vec![WantPart {
                region,
                groups: std::iter::once(0..1).collect(),
            }],
        })
    };
    let garbage_run = Message::Chunk(ChunkFrame {
        manifest: hash,
        parts: vec![ChunkPart {
            region: county,
            first_group: 0,
            group_count: 1,
            encoded_len: 1_000,
        }],
        encoded: vec![7; 1_000],
    });
    let rogue_catalog = Message::Catalog(CatalogMsg::Updates {
        log_id: 1,
        first: 1,
        updates: vec![Arc::new(
            backflow_protocol::catalog::SignedCatalogUpdate::sign(
                backflow_protocol::catalog::CatalogUpdate {
                    origin: origin("110101001", "民政办"),
                    seq: 1,
                    issued_at: T0,
                    changes: vec![add("rogue", "民政办")],
                },
                &rogue_id,
            )
            .unwrap(),
        )],
    });
    net.send_as(sibling, t, &want_for(sibling));
    net.send_as(forger, county, &want_for(sibling));
    net.send_as(forger, county, &garbage_run);
    net.send_as(rogue, county, &rogue_catalog);
    net.send_as(rogue, county, &garbage_run);

    // The legitimate tree completes meanwhile.
    assert!(net.run(60_000, |s| s.delivered_everywhere(&d, hash)));

    // Each was refused for what it is, and disconnected.
    assert!(matches!(
        &refusals(&net, t)[..],
        [(p, AdmissionError::NotInLine { .. })] if *p == sibling
    ));
    // (The sibling refuses `t` too: not in line, or, once `t` has closed the connection, not
    // connected.)
    assert!(matches!(&refusals(&net, sibling)[..], [(p, _)] if *p == t));
    let at_county = refusals(&net, county);
    assert!(
        matches!(
            &at_county[..],
            [
                (f, AdmissionError::WrongPeer { region }),
                (r, AdmissionError::Chain(_)),
            ] if *f == forger && *region == t && *r == rogue
        ),
        "{at_county:?}"
    );
    for (at, peer) in [
        (t, sibling),
        (sibling, t),
        (county, forger),
        (county, rogue),
    ] {
        assert_eq!(net.ep(at).region_of(&peer), None);
    }
    // The real township still speaks for its region at the county; every node's admitted
    // peers are exactly the nodes in line with it.
    assert_eq!(net.ep(county).peer_of(t), Some(t));
    for c in net.nodes.keys().copied().collect::<Vec<_>>() {
        assert_eq!(admitted(&net, c), in_line(&net, c), "{c}");
    }

    // Every frame they sent was dropped by the endpoint...
    assert_eq!(unadmitted_frames(&net, t, sibling), 1);
    assert_eq!(unadmitted_frames(&net, county, forger), 2);
    assert_eq!(unadmitted_frames(&net, county, rogue), 2);
    // ...and none reached a machine: no refused want, no rejected run, no rejected version.
    for c in [t, county] {
        let node = net.node(c);
        assert!(
            !node
                .rf_events()
                .any(|e| matches!(e, Event::WantRefused { .. } | Event::ChunkRejected { .. })),
            "{c}: {:?}",
            node.events
        );
        assert!(!node.catalog_events().any(|e| matches!(
            e,
            CatalogEvent::Rejected { .. } | CatalogEvent::Applied { .. }
        )));
        assert!(!node
            .events
            .iter()
            .any(|e| matches!(e, EpEvent::UnexpectedChunkFrame { .. })));
    }
    assert_eq!(net.cs(county).origins_len(), 0);
}

#[test]
fn a_chunk_run_tampered_on_the_wire_is_rejected_blaming_its_group_and_refetched() {
    let mut net = Net::new(32, Faults::NONE, NetConfig::with(TEST_TUNING));
    net.log = Some(Vec::new());
    let d = dibao(&net.fx);
    let (city, county, target) = (code("1101"), code("110101"), code("110101001"));
    // On the city → county link, the first run of 110101001 spanning several groups gets its
    // last byte flipped: content of the run's last group.
    let tampered: Rc<RefCell<Option<Range<u64>>>> = Rc::default();
    let seen = Rc::clone(&tampered);
    net.tamper = Some(Box::new(move |from, to, m| {
        let Message::Chunk(f) = m else {
            return;
        };
        if from != city || to != county || seen.borrow().is_some() {
            return;
        }
        let mut at = 0;
        for p in &f.parts {
            let end = at + p.encoded_len as usize;
            if p.region == target && p.group_count >= 2 {
                f.encoded[end - 1] ^= 0x01;
                *seen.borrow_mut() = Some(p.groups());
                return;
            }
            at = end;
        }
    }));
    let hash: Hash = net.publish(&d);
    assert!(net.run(60_000, |s| s.delivered_everywhere(&d, hash)));

    let groups = tampered.borrow().clone().expect("a run was tampered with");
    let blamed = groups.end - 1;
    assert_ne!(
        blamed, groups.start,
        "the blame must be able to differ from the run's first"
    );
    // Rejected once, at the county, from the city, blaming the group whose content changed.
    let rejected: Vec<(RegionCode, u64, RegionCode)> = net
        .node(county)
        .rf_events()
        .filter_map(|e| match e {
            Event::ChunkRejected {
                region,
                group,
                from,
                ..
            } => Some((*region, *group, *from)),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, [(target, blamed, city)]);
    // Asked for again: the county's wants named the blamed group twice.
    let asked = net
        .log
        .as_ref()
        .unwrap()
        .iter()
        .filter(|s| s.from == county)
        .filter(|s| match &s.msg {
            Message::ReturnFlow(ReturnFlowMsg::Want { parts, .. }) => parts
                .iter()
                .any(|p| p.region == target && p.groups.iter().any(|g| g.contains(&blamed))),
            _ => false,
        })
        .count();
    assert_eq!(asked, 2, "the blamed group was asked for again, once");
    // And the county holds (and the township received) the partition byte for byte: the
    // tampered bytes were never stored.
    assert_eq!(
        net.store(county).data[&(hash, target)].bytes,
        d.contents[&target]
    );
    assert!(net.holds_exactly_its_region(target, &d, hash));
}

/// A connection that never says hello is refused and disconnected after `HELLO_MS_MAX`
/// (#15 item 5): it cannot hold a peer slot and a connection for nothing. The endpoint wakes
/// up for the deadline on its own.
#[test]
fn a_connection_without_a_hello_is_dropped_at_the_deadline() {
    use backflow_protocol::endpoint::{Output, HELLO_MS_MAX};
    let mut net = Net::new(21, Faults::NONE, NetConfig::with(TEST_TUNING));
    let county = code("110101");
    let silent: Peer = code("110101009");
    let now = net.now;
    let auth = auth_of(net.fx.id("110101001"));
    net.node_mut(county).ep.handle_connected(now, silent, auth);
    let deadline = now.plus_ms(HELLO_MS_MAX);
    assert!(net.ep(county).poll_timeout().is_some_and(|t| t <= deadline));
    let early = net.tick(county, deadline.minus_ms(1));
    assert!(!early
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer } if *peer == silent)));
    let out = net.tick(county, deadline);
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Disconnect { peer } if *peer == silent)));
    assert!(net.node(county).events.iter().any(|e| matches!(
        e,
        EpEvent::PeerRefused {
            peer,
            error: AdmissionError::HelloTimeout { .. },
        } if *peer == silent
    )));
    // Admitted peers are untouched.
    assert!(net.ep(county).peer_of(code("110101001")).is_some());
}
