use super::*;
use crate::time::DAY_MS;
use ed25519_dalek::{SigningKey, VerifyingKey};

const NOW: UnixMs = UnixMs(1_767_225_600_000);

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn child(parent: &NodeIdentity, code: &str, n: u8) -> NodeIdentity {
    parent
        .certify_child(
            &key(n),
            Vec::new(),
            NOW.minus_ms(DAY_MS),
            NOW.plus_ms(DAY_MS),
            code.parse().unwrap(),
            u64::from(n),
        )
        .unwrap()
}

fn endpoint(identity: &NodeIdentity, anchor: VerifyingKey) -> Endpoint<u32> {
    let config = EndpointConfig {
        identity: identity.clone(),
        trust: TrustStore::new(anchor),
        tuning: Tuning::default(),
        routing: DataRouting::tree(),
        catalog_log_id: 1,
    };
    Endpoint::new(NOW, config, Saved::default()).unwrap().0
}

fn events(ep: &mut Endpoint<u32>) -> Vec<Output<u32>> {
    std::iter::from_fn(|| ep.poll_output()).collect()
}

#[test]
fn admits_a_parent_and_refuses_a_sibling_a_stranger_key_and_an_unconnected_hello() {
    let national = NodeIdentity::national(key(1));
    let anchor = national.key.verifying_key();
    let beijing = child(&national, "11", 2);
    let guangdong = child(&national, "44", 3);
    let mut ep = endpoint(&beijing, anchor);
    events(&mut ep);

    // The parent, on the transport that authenticated its key: admitted.
    ep.handle_connected(NOW, 7, auth_of_key(&national.key.verifying_key()));
    ep.handle_message(NOW, 7, Message::Hello(Hello { chain: vec![] }));
    assert_eq!(ep.region_of(&7), Some(RegionCode::NATIONAL));
    assert_eq!(ep.peer_of(RegionCode::NATIONAL), Some(7));

    // A sibling province: refused for its place, and disconnected.
    ep.handle_connected(NOW, 8, auth_of_key(&guangdong.key.verifying_key()));
    ep.handle_message(NOW, 8, guangdong_hello(&guangdong));
    let out = events(&mut ep);
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerRefused {
            peer: 8,
            error: AdmissionError::NotInLine { .. }
        })
    )));
    assert!(out.contains(&Output::Disconnect { peer: 8 }));
    assert_eq!(ep.region_of(&8), None);

    // National's chain presented over a connection that authenticated another key.
    ep.handle_connected(NOW, 9, auth_of_key(&key(99).verifying_key()));
    ep.handle_message(NOW, 9, Message::Hello(Hello { chain: vec![] }));
    assert!(events(&mut ep).iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerRefused {
            peer: 9,
            error: AdmissionError::WrongPeer { .. }
        })
    )));
    // The real parent's mapping is untouched by the impostor.
    assert_eq!(ep.peer_of(RegionCode::NATIONAL), Some(7));

    // A hello with no connection behind it.
    ep.handle_message(NOW, 10, Message::Hello(Hello { chain: vec![] }));
    assert!(events(&mut ep).iter().any(|o| matches!(
        o,
        Output::Event(Event::PeerRefused {
            peer: 10,
            error: AdmissionError::NotConnected
        })
    )));

    // Frames from a refused peer never reach a machine.
    ep.handle_message(
        NOW,
        8,
        Message::Catalog(crate::catalog_sync::CatalogMsg::Probe { log_id: 1 }),
    );
    assert_eq!(
        events(&mut ep),
        vec![Output::Event(Event::UnadmittedFrame { peer: 8 })]
    );

    // Gone: outputs for its region name no peer.
    ep.handle_disconnected(7);
    assert_eq!(ep.peer_of(RegionCode::NATIONAL), None);
}

fn guangdong_hello(id: &NodeIdentity) -> Message {
    Message::Hello(Hello {
        chain: id.chain.clone(),
    })
}

#[test]
fn a_node_whose_chain_does_not_verify_does_not_start() {
    let national = NodeIdentity::national(key(1));
    let beijing = child(&national, "11", 2);
    let config = EndpointConfig {
        identity: beijing,
        trust: TrustStore::new(key(50).verifying_key()),
        tuning: Tuning::default(),
        routing: DataRouting::tree(),
        catalog_log_id: 1,
    };
    assert!(matches!(
        Endpoint::<u32>::new(NOW, config, Saved::default()),
        Err(EndpointError::OwnChain(_))
    ));
}
