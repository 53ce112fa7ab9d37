//! Revocations in force on the network: issued at an ancestor, spread along the revoked
//! region's line, persisted, and applied to peers already connected — a revoked peer is
//! dropped at once and cannot come back; a peer whose certificate expires is dropped when it
//! does.

mod common;

use backflow_protocol::cert::{CertError, Revocation};
use backflow_protocol::endpoint::{AdmissionError, Event, RevokeError};
use backflow_protocol::revocation_gossip::RevocationMsg;
use backflow_protocol::wire::Message;
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;

fn net() -> Net {
    Net::new(7, Faults::NONE, NetConfig::with(TEST_TUNING))
}

fn knows(net: &Net, c: &str, key: &ed25519_dalek::VerifyingKey) -> bool {
    net.ep(code(c)).trust().is_revoked(key)
}

fn admits(net: &Net, c: &str, peer: &str) -> bool {
    net.ep(code(c)).peer_of(code(peer)).is_some()
}

fn refused_as_revoked(net: &Net, c: &str, peer: &str) -> bool {
    net.node(code(c)).events.iter().any(|e| {
        matches!(e, Event::PeerRefused {
            peer: p,
            error: AdmissionError::Chain(CertError::Revoked { .. }),
        } if *p == code(peer))
    })
}

#[test]
fn a_revoked_county_is_dropped_by_its_whole_line_and_cannot_rejoin() {
    let mut net = net();
    let county = code("110101");
    let key = net.fx.id("110101").key.verifying_key();
    assert!(admits(&net, "1101", "110101") && admits(&net, "0", "110101"));

    // The city revokes the key of the county connected to it now (no key given).
    let now = net.now;
    let r = net
        .node_mut(code("1101"))
        .ep
        .revoke(now, county, None)
        .unwrap();
    assert_eq!(r.key, key);
    net.flush(code("1101"));
    net.run(1_000, |_| false);

    // Every node in the county's line knows and has dropped it (and its townships, whose
    // certificates the revoked key issued); nodes outside its line never heard of it.
    for c in ["0", "11", "1101"] {
        assert!(knows(&net, c, &key), "{c} did not hear of the revocation");
        for peer in ["110101", "110101001", "110101002"] {
            assert!(!admits(&net, c, peer), "{c} still admits {peer}");
        }
        assert!(refused_as_revoked(&net, c, "110101"), "{c}");
    }
    for c in ["12", "1201", "110102", "110102001"] {
        assert!(!knows(&net, c, &key), "{c} is not in the county's line");
    }
    // The honest rest of the line stays connected.
    assert!(admits(&net, "1101", "110102") && admits(&net, "110102", "110102001"));
    assert!(admits(&net, "0", "11"));

    // It cannot rejoin: a new connection is refused at the handshake.
    net.connect(code("1101"), county);
    net.run(1_000, |_| false);
    assert!(!admits(&net, "1101", "110101"));

    // The revocation is persisted: after a restart the city still refuses it, and a node that
    // restarts hears of it again from its peers at the handshake.
    assert_eq!(net.store(code("1101")).revocations.len(), 1);
    net.restart(code("1101"));
    assert!(knows(&net, "1101", &key));
    net.connect(code("1101"), county);
    net.run(1_000, |_| false);
    assert!(!admits(&net, "1101", "110101"));
}

#[test]
fn a_node_that_missed_a_revocation_hears_of_it_when_it_reconnects() {
    let mut net = net();
    let key = net.fx.id("110101").key.verifying_key();
    // National is cut off while the city revokes the county.
    net.set_down(code("0"));
    let now = net.now;
    net.node_mut(code("1101"))
        .ep
        .revoke(now, code("110101"), Some(key))
        .unwrap();
    net.flush(code("1101"));
    net.run(1_000, |_| false);
    assert!(!knows(&net, "0", &key));
    assert!(knows(&net, "11", &key));
    // Back on the network: the handshakes bring it every revocation of its line.
    net.set_up(code("0"));
    net.run(1_000, |_| false);
    assert!(knows(&net, "0", &key));
    assert!(!admits(&net, "0", "110101"));
}

#[test]
fn a_forged_or_foreign_revocation_is_rejected_and_not_passed_on() {
    let mut net = net();
    let key = net.fx.id("110101").key.verifying_key();
    let now = net.now;
    // A sibling county cannot revoke its neighbour.
    assert!(matches!(
        Revocation::issue(net.fx.id("110102"), code("110101"), key, now),
        Err(CertError::OutsideIssuerRegion { .. })
    ));
    // A revocation whose signature does not verify, relayed by the province.
    let mut forged = Revocation::issue(net.fx.id("1101"), code("110101"), key, now).unwrap();
    forged.at = forged.at.plus_ms(1);
    net.inject(
        code("11"),
        code("1101"),
        Message::Revocations(RevocationMsg {
            revocations: vec![forged],
        }),
    );
    net.run(1_000, |_| false);
    assert!(net.node(code("1101")).events.iter().any(|e| matches!(
        e,
        Event::RevocationRejected { from, .. } if *from == code("11")
    )));
    for c in ["0", "11", "1101", "110101001"] {
        assert!(!knows(&net, c, &key), "{c}");
    }
    assert!(admits(&net, "1101", "110101"));
    // Without a key and no such peer connected, nothing is revoked.
    let now = net.now;
    assert!(matches!(
        net.node_mut(code("1101"))
            .ep
            .revoke(now, code("110199"), None),
        Err(RevokeError::NoKnownKey { .. })
    ));
}

#[test]
fn a_peer_is_dropped_when_its_certificate_expires() {
    let mut net = net();
    // Every fixture certificate expires a year after T0; the endpoint wakes up for it.
    let expiry = T0.plus_ms(YEAR_MS);
    let city = code("1101");
    assert!(net.ep(city).poll_timeout().is_some_and(|t| t <= expiry));
    let before = net.tick(city, expiry.minus_ms(1));
    assert!(admits(&net, "1101", "110101"), "{before:?}");
    net.tick(city, expiry);
    assert!(!admits(&net, "1101", "110101"));
    assert!(net.node(city).events.iter().any(|e| matches!(
        e,
        Event::PeerRefused {
            error: AdmissionError::Chain(CertError::Expired { .. }),
            ..
        }
    )));
}
