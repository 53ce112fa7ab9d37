//! Decoded frames fed to a node's `Endpoint` (city 1101) as if from each of its connected
//! peers — its province, its county and a township (admitted) and a sibling province
//! (refused) — driven as a shell drives it: control frames through `handle_message`, chunk
//! frames planned, verified with the protocol's bao decoder and handed back as verdicts (and,
//! as a shell that mis-verified would, any verdict on every run), then an hour of timers and
//! every output drained. Hostile but well-formed messages must never panic a node.
#![no_main]

use std::sync::OnceLock;

use backflow_protocol::cert::{NodeIdentity, TrustStore};
use backflow_protocol::endpoint::{auth_of_key, EndpointConfig, RunVerdict, Saved};
use backflow_protocol::manifest::decode_groups;
use backflow_protocol::return_flow::DataRouting;
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::tuning::Tuning;
use backflow_protocol::wire::{decode_frame, Hello, Message};
use backflow_protocol::{Endpoint, RegionCode};
use ed25519_dalek::{SigningKey, VerifyingKey};
use libfuzzer_sys::fuzz_target;

const NOW: UnixMs = UnixMs(1_750_000_000_000);

struct Pki {
    anchor: VerifyingKey,
    me: NodeIdentity,
    peers: Vec<NodeIdentity>,
}

/// The certificates, made once: 0 → 11 → 1101 (this node) → 110101 → 110101001, and 12.
fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let root = NodeIdentity::national(SigningKey::from_bytes(&[1; 32]));
        let child = |parent: &NodeIdentity, code: &str, n: u8| {
            parent
                .certify_child(
                    &SigningKey::from_bytes(&[n; 32]),
                    Vec::new(),
                    NOW.minus_ms(DAY_MS),
                    NOW.plus_ms(365 * DAY_MS),
                    RegionCode::parse(code).unwrap(),
                    u64::from(n),
                )
                .unwrap()
        };
        let province = child(&root, "11", 2);
        let city = child(&province, "1101", 3);
        let county = child(&city, "110101", 4);
        let township = child(&county, "110101001", 5);
        let sibling = child(&root, "12", 6);
        Pki {
            anchor: root.key.verifying_key(),
            me: city,
            peers: vec![province, county, township, sibling],
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode_frame(data) else {
        return;
    };
    let pki = pki();
    let config = EndpointConfig {
        identity: pki.me.clone(),
        trust: TrustStore::new(pki.anchor),
        tuning: Tuning::default(),
        routing: DataRouting::tree(),
        catalog_log_id: 1,
    };
    let (mut ep, _) = Endpoint::<u8>::new(NOW, config, Saved::default()).expect("the node starts");
    // Peers are named by their index; each connects and says hello.
    for (peer, id) in (0u8..).zip(&pki.peers) {
        ep.handle_connected(NOW, peer, auth_of_key(&id.key.verifying_key()));
        let hello = Message::Hello(Hello {
            chain: id.chain.clone(),
        });
        ep.handle_message(NOW, peer, hello);
    }
    for peer in 0..pki.peers.len() as u8 {
        let Some(frame) = ep.handle_message(NOW, peer, message.clone()) else {
            continue;
        };
        let regions = frame.parts.iter().map(|p| p.region);
        if let Some(plan) = ep.plan_chunk_frame(peer, &frame.manifest, regions) {
            let payloads: Vec<_> = frame.parts_with_payload().collect();
            let verdicts: Vec<_> = plan
                .runs
                .iter()
                .map(|run| {
                    let (part, encoded) = payloads[run.index];
                    let groups = part.groups();
                    let verdict = match decode_groups(&run.entry, groups.clone(), encoded) {
                        Ok(_) => RunVerdict::Stored,
                        Err(e) => RunVerdict::rejected(&groups, &e),
                    };
                    (part.region, groups, verdict)
                })
                .collect();
            ep.handle_chunk_verdict(NOW, plan.from, &frame.manifest, &verdicts);
        }
        if let Some(from) = ep.region_of(&peer) {
            let any: Vec<_> = frame
                .parts
                .iter()
                .flat_map(|p| {
                    [
                        (p.region, p.groups(), RunVerdict::Stored),
                        (
                            p.region,
                            p.groups(),
                            RunVerdict::Rejected {
                                group: p.first_group,
                                reason: String::new(),
                            },
                        ),
                    ]
                })
                .collect();
            ep.handle_chunk_verdict(NOW, from, &frame.manifest, &any);
        }
    }
    ep.handle_timeout(NOW.plus_ms(3_600_000));
    while ep.poll_output().is_some() {}
});
