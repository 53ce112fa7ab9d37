//! The offline root (根密钥): the trust anchor certifies the national key with a national
//! certificate, which opens every chain; the national key certifies the provinces. What a
//! store accepts and refuses, national key rotation and revocation by the root, the chain
//! length limit, and peer admission between root-certified nodes.

use backflow_protocol::cert::{
    check_chain_limits, CertError, CertRequest, Certificate, NodeIdentity, Revocation, TrustStore,
};
use backflow_protocol::endpoint::{
    AdmissionError, Endpoint, EndpointConfig, EndpointError, Event, Output, PeerAuth, Saved,
};
use backflow_protocol::limits::CERT_CHAIN_LEN_MAX;
use backflow_protocol::return_flow::DataRouting;
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::tuning::Tuning;
use backflow_protocol::wire::{Hello, Message};
use backflow_protocol::RegionCode;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

const T0: UnixMs = UnixMs(1_750_000_000_000);
const YEAR_MS: u64 = 365 * DAY_MS;

fn key(label: &str) -> SigningKey {
    SigningKey::from_bytes(blake3::hash(label.as_bytes()).as_bytes())
}

fn code(s: &str) -> RegionCode {
    RegionCode::parse(s).unwrap()
}

fn req(subject: &str, subject_key: VerifyingKey, serial: u64) -> CertRequest {
    CertRequest {
        subject: code(subject),
        subject_key,
        peer_id: format!("peer-{subject}-{serial}").into_bytes(),
        not_before: T0.minus_ms(DAY_MS),
        not_after: T0.plus_ms(YEAR_MS),
        serial,
    }
}

fn root() -> SigningKey {
    key("root")
}

/// The national node certified by the root, with `label`'s key.
fn national(label: &str, serial: u64) -> NodeIdentity {
    let k = key(label);
    let cert = Certificate::issue_national(&root(), req("0", k.verifying_key(), serial)).unwrap();
    NodeIdentity::national_certified(k, cert).unwrap()
}

/// `parent` certifies each region of `path` in turn (each the child of the one before).
fn down(parent: &NodeIdentity, path: &[&str]) -> NodeIdentity {
    let mut id = parent.clone();
    for s in path {
        id = id
            .certify_child(
                &key(s),
                format!("peer-{s}").into_bytes(),
                T0.minus_ms(DAY_MS),
                T0.plus_ms(YEAR_MS),
                code(s),
                7,
            )
            .unwrap();
    }
    id
}

const TO_TOWNSHIP: &[&str] = &["11", "1101", "110101", "110101001"];

/// Re-signs a tampered body as `signer` (the library's certificate digest).
fn resign(cert: &mut Certificate, signer: &SigningKey) {
    cert.body.issuer_key = signer.verifying_key();
    let d = backflow_protocol::wire::digest(b"backflow/cert/v1", &cert.body);
    cert.issuer_signature = signer.sign(&d);
}

#[test]
fn a_chain_from_the_root_through_national_to_a_township_verifies() {
    let nat = national("national", 1);
    let town = down(&nat, TO_TOWNSHIP);
    assert_eq!(
        town.chain.len(),
        5,
        "national, province, city, county, township"
    );
    assert_eq!(
        town.chain.len(),
        1 + CERT_CHAIN_LEN_MAX,
        "the national one, 4 below"
    );
    check_chain_limits(&town.chain).unwrap();
    for mut trust in [
        TrustStore::new(root().verifying_key()),
        TrustStore::new_root(root().verifying_key()),
    ] {
        let id = trust.verify_chain(&town.chain, T0).unwrap();
        assert_eq!(id.region, code("110101001"));
        assert_eq!(id.key, key("110101001").verifying_key());
        assert_eq!(id.peer_id, b"peer-110101001");
        // The national node's own chain: its national certificate.
        let id = trust.verify_chain(&nat.chain, T0).unwrap();
        assert_eq!(id.region, RegionCode::NATIONAL);
        assert_eq!(id.key, key("national").verifying_key());
        assert_eq!(id.peer_id, b"peer-0-1");
        // A province's chain is [national, province], not one certificate long.
        let bj = down(&nat, &["11"]);
        assert_eq!(bj.chain.len(), 2);
        assert_eq!(
            trust.verify_chain(&bj.chain, T0).unwrap().region,
            code("11")
        );
        assert!(trust.anchor_is_root());
    }
    // One more certificate than a township needs is over the limit, and five certificates
    // without the national one at the head too.
    let mut long = town.chain.clone();
    long.push(town.chain[4].clone());
    assert!(check_chain_limits(&long).is_err());
    assert!(check_chain_limits(&long[1..]).is_err());
    assert!(matches!(
        TrustStore::new(root().verifying_key()).verify_chain(&long, T0),
        Err(CertError::Limit(_))
    ));
}

#[test]
fn a_national_certificate_anywhere_but_first_is_refused() {
    let nat = national("national", 1);
    let county = down(&nat, &["11", "1101", "110101"]);
    let mut trust = TrustStore::new(root().verifying_key());
    // Between the province and the city.
    let mut chain = county.chain.clone();
    chain.insert(2, nat.chain[0].clone());
    assert_eq!(
        trust.verify_chain(&chain, T0),
        Err(CertError::NationalNotFirst { index: 2 })
    );
    // Twice at the head (the national key "re-certifying" itself).
    let mut chain = county.chain.clone();
    chain.insert(1, nat.chain[0].clone());
    assert_eq!(
        trust.verify_chain(&chain, T0),
        Err(CertError::NationalNotFirst { index: 1 })
    );
    // At the end, issued by the county's key: refused for its place before anything else.
    let mut rogue =
        Certificate::issue_national(&key("110101"), req("0", key("rogue").verifying_key(), 9))
            .unwrap();
    rogue.body.issuer = code("110101");
    resign(&mut rogue, &key("110101"));
    let mut chain = county.chain.clone();
    chain.push(rogue);
    assert_eq!(
        trust.verify_chain(&chain, T0),
        Err(CertError::NationalNotFirst { index: 4 })
    );
}

#[test]
fn a_national_certificate_not_signed_by_the_anchor_is_refused() {
    let mut trust = TrustStore::new_root(root().verifying_key());
    // Issued by another "root".
    let forged = Certificate::issue_national(
        &key("rogue root"),
        req("0", key("national").verifying_key(), 1),
    )
    .unwrap();
    let id = NodeIdentity::national_certified(key("national"), forged).unwrap();
    assert!(matches!(
        trust.verify_chain(&id.chain, T0),
        Err(CertError::IssuerKeyMismatch { .. })
    ));
    assert!(matches!(
        trust.verify_chain(&down(&id, &["11"]).chain, T0),
        Err(CertError::IssuerKeyMismatch { .. })
    ));
    // Naming the root as issuer but signed by another key.
    let mut chain = national("national", 1).chain;
    chain[0].body.serial = 2;
    let d = backflow_protocol::wire::digest(b"backflow/cert/v1", &chain[0].body);
    chain[0].issuer_signature = key("rogue root").sign(&d);
    assert!(matches!(
        trust.verify_chain(&chain, T0),
        Err(CertError::BadSignature { .. })
    ));
    // Signed by the national key itself (self-certified): not the anchor either.
    let mut chain = national("national", 1).chain;
    resign(&mut chain[0], &key("national"));
    assert!(matches!(
        trust.verify_chain(&chain, T0),
        Err(CertError::IssuerKeyMismatch { .. })
    ));
}

#[test]
fn a_province_certified_by_the_root_directly_is_refused() {
    let root = root();
    // `issue_national` certifies nothing but the national key…
    assert_eq!(
        Certificate::issue_national(&root, req("11", key("11").verifying_key(), 1)).unwrap_err(),
        CertError::RootCertifiesOnlyNational {
            subject: code("11")
        }
    );
    // …and a province certificate the root signed anyway is refused by a root store.
    let direct = Certificate::issue(
        RegionCode::NATIONAL,
        &root,
        req("11", key("11").verifying_key(), 1),
    )
    .unwrap();
    let mut below = vec![direct.clone()];
    below.push(
        Certificate::issue(
            code("11"),
            &key("11"),
            req("1101", key("1101").verifying_key(), 1),
        )
        .unwrap(),
    );
    let mut trust = TrustStore::new_root(root.verifying_key());
    for chain in [vec![direct.clone()], below.clone()] {
        assert_eq!(
            trust.verify_chain(&chain, T0),
            Err(CertError::RootCertifiesOnlyNational {
                subject: code("11")
            })
        );
    }
    // A store made with `new` learns that its anchor is a root from the first national
    // certificate it verifies (a node verifies its own chain at start), and refuses from then.
    let mut learning = TrustStore::new(root.verifying_key());
    assert!(!learning.anchor_is_root());
    learning
        .verify_chain(&down(&national("national", 1), &["44"]).chain, T0)
        .unwrap();
    assert!(learning.anchor_is_root());
    assert_eq!(
        learning.verify_chain(&below, T0),
        Err(CertError::RootCertifiesOnlyNational {
            subject: code("11")
        })
    );
    // A chain from before the root (a province issued by the national key, no national
    // certificate at its head) is refused too, once the anchor is known to be a root.
    let old_style = down(&NodeIdentity::national(key("national")), &["11"]);
    assert_eq!(
        learning.verify_chain(&old_style.chain, T0),
        Err(CertError::NationalCertificateMissing {
            subject: code("11")
        })
    );
}

#[test]
fn the_root_is_never_a_node() {
    let root = root();
    // It cannot certify itself as the national key…
    assert_eq!(
        Certificate::issue_national(&root, req("0", root.verifying_key(), 1)).unwrap_err(),
        CertError::RootIsNotANode
    );
    // …and a root store refuses the empty chain (the anchor speaking as the national node)
    // and a hand-made self-certificate.
    let mut trust = TrustStore::new_root(root.verifying_key());
    assert_eq!(trust.verify_chain(&[], T0), Err(CertError::RootIsNotANode));
    let mut own = national("national", 1).chain;
    own[0].body.subject_key = root.verifying_key();
    resign(&mut own[0], &root);
    assert_eq!(trust.verify_chain(&own, T0), Err(CertError::RootIsNotANode));
    // The same holds for a store that has learned its anchor is a root.
    let mut learning = TrustStore::new(root.verifying_key());
    learning
        .verify_chain(&national("national", 1).chain, T0)
        .unwrap();
    assert_eq!(
        learning.verify_chain(&[], T0),
        Err(CertError::RootIsNotANode)
    );
    // `national_certified` checks the certificate is national and for its key.
    let bj = down(&national("national", 1), &["11"]);
    assert!(matches!(
        NodeIdentity::national_certified(key("11"), bj.chain[1].clone()),
        Err(CertError::NotNational { .. })
    ));
    assert!(matches!(
        NodeIdentity::national_certified(key("other"), national("national", 1).chain[0].clone()),
        Err(CertError::OtherKey { .. })
    ));
}

#[test]
fn rotating_the_national_key_is_one_root_signature() {
    let old = national("national/2025", 1);
    let new = national("national/2026", 2);
    let old_town = down(&old, TO_TOWNSHIP);
    let old_bj = down(&old, &["11"]);
    // The new national key certifies a province (re-certified at leisure; here 广东).
    let new_gd = down(&new, &["44", "4419"]);
    let mut trust = TrustStore::new(root().verifying_key());
    for chain in [&old.chain, &new.chain, &old_town.chain, &new_gd.chain] {
        trust.verify_chain(chain, T0).unwrap();
    }
    // Both national keys speak for national until one is revoked or expires.
    assert_eq!(
        trust.verify_chain(&new.chain, T0).unwrap().key,
        new.key.verifying_key()
    );
    // The old national certificate expires: the chains under it with it.
    let expired_old = down(
        &NodeIdentity::national_certified(
            key("national/2025"),
            Certificate::issue_national(
                &root(),
                CertRequest {
                    not_after: T0.plus_ms(DAY_MS),
                    ..req("0", key("national/2025").verifying_key(), 3)
                },
            )
            .unwrap(),
        )
        .unwrap(),
        &["11"],
    );
    assert!(matches!(
        trust.verify_chain(&expired_old.chain, T0.plus_ms(2 * DAY_MS)),
        Err(CertError::Expired { .. })
    ));

    // After a compromise the root revokes the old key: everything under it is refused, the
    // new key's certificates stay valid.
    let forged = Revocation::issue_by_root(&key("national/2025"), old.key.verifying_key(), T0);
    assert!(
        trust.apply_revocation(&forged, T0).is_err(),
        "only the anchor revokes national"
    );
    let forged = Revocation::issue_by_root(&key("rogue root"), new.key.verifying_key(), T0);
    assert!(trust.apply_revocation(&forged, T0).is_err());
    let revocation = Revocation::issue_by_root(&root(), old.key.verifying_key(), T0);
    trust.apply_revocation(&revocation, T0).unwrap();
    for chain in [&old.chain, &old_bj.chain, &old_town.chain] {
        assert_eq!(
            trust.verify_chain(chain, T0),
            Err(CertError::Revoked {
                subject: RegionCode::NATIONAL
            })
        );
    }
    trust.verify_chain(&new.chain, T0).unwrap();
    trust.verify_chain(&new_gd.chain, T0).unwrap();
    // A province re-certified by the new key is back.
    let mut bj = down(&new, &["11"]);
    assert_eq!(bj.chain.len(), 2);
    trust.verify_chain(&bj.chain, T0).unwrap();
    // Its old certificate spliced under the new national certificate is not.
    bj.chain[1] = old_bj.chain[1].clone();
    assert!(matches!(
        trust.verify_chain(&bj.chain, T0),
        Err(CertError::IssuerKeyMismatch { .. })
    ));
}

#[test]
fn a_national_rotation_certificate_revokes_the_old_national_key_where_it_is_seen() {
    let old = national("national/2025", 1);
    let old_bj = down(&old, &["11"]);
    let rotation = Certificate::issue_rotation(
        RegionCode::NATIONAL,
        &root(),
        &old.key,
        req("0", key("national/2026").verifying_key(), 2),
    )
    .unwrap();
    let new = NodeIdentity::national_certified(key("national/2026"), rotation).unwrap();
    let mut trust = TrustStore::new_root(root().verifying_key());
    trust.verify_chain(&old_bj.chain, T0).unwrap();
    trust.verify_chain(&new.chain, T0).unwrap();
    assert!(trust.is_revoked(&old.key.verifying_key()));
    assert!(matches!(
        trust.verify_chain(&old_bj.chain, T0),
        Err(CertError::Revoked { .. })
    ));
    trust.verify_chain(&down(&new, &["11"]).chain, T0).unwrap();
}

#[test]
fn without_a_root_the_national_key_is_the_anchor_and_accepts_root_certified_chains() {
    // A store whose anchor is the national key itself (simnet, protocol tests, a deployment
    // not yet moved to a root): the empty chain is national, provinces are issued by it…
    let legacy = NodeIdentity::national(key("national"));
    let mut trust = TrustStore::new(key("national").verifying_key());
    assert_eq!(
        trust.verify_chain(&[], T0).unwrap().region,
        RegionCode::NATIONAL
    );
    trust
        .verify_chain(&down(&legacy, &["11"]).chain, T0)
        .unwrap();
    // …and a chain that opens with a national certificate for that very key verifies too
    // (the store trusts the key directly), without making the store treat its anchor as a root.
    let nat = national("national", 1);
    trust.verify_chain(&nat.chain, T0).unwrap();
    trust
        .verify_chain(&down(&nat, TO_TOWNSHIP).chain, T0)
        .unwrap();
    assert!(!trust.anchor_is_root());
    trust
        .verify_chain(&down(&legacy, &["11"]).chain, T0)
        .unwrap();
    // Its window still applies.
    assert!(matches!(
        trust.verify_chain(&nat.chain, T0.plus_ms(2 * YEAR_MS)),
        Err(CertError::Expired { .. })
    ));
    // A national certificate for another key is not the anchor's.
    assert!(matches!(
        trust.verify_chain(&national("other", 1).chain, T0),
        Err(CertError::IssuerKeyMismatch { .. })
    ));
}

#[test]
fn rotating_the_root_keeps_every_certificate_below_national() {
    let nat = national("national", 1);
    let town = down(&nat, TO_TOWNSHIP);
    let mut trust = TrustStore::new_root(root().verifying_key());
    trust.verify_chain(&town.chain, T0).unwrap();
    let new_root = key("root/2030");
    let handover = TrustStore::sign_anchor_rotation(&root(), &new_root.verifying_key());
    trust
        .rotate_anchor(new_root.verifying_key(), &handover)
        .unwrap();
    assert!(
        trust.verify_chain(&town.chain, T0).is_err(),
        "the old root is refused"
    );
    // The new root re-issues the national certificate; the chain below is unchanged.
    let mut chain = town.chain.clone();
    chain[0] = Certificate::issue_national(&new_root, req("0", key("national").verifying_key(), 2))
        .unwrap();
    assert_eq!(
        trust.verify_chain(&chain, T0).unwrap().region,
        code("110101001")
    );
}

fn auth(id: &NodeIdentity) -> PeerAuth {
    PeerAuth {
        key: id.key.verifying_key().to_bytes(),
        peer_id: id
            .chain
            .last()
            .map(|c| c.body.peer_id.clone())
            .unwrap_or_default(),
    }
}

fn endpoint(identity: &NodeIdentity, trust: TrustStore) -> Result<Endpoint<u32>, EndpointError> {
    let config = EndpointConfig {
        identity: identity.clone(),
        trust,
        tuning: Tuning::default(),
        routing: DataRouting::tree(),
        catalog_log_id: 1,
    };
    Ok(Endpoint::new(T0, config, Saved::default())?.0)
}

fn refused(ep: &mut Endpoint<u32>, peer: u32) -> Option<AdmissionError> {
    std::iter::from_fn(|| ep.poll_output()).find_map(|o| match o {
        Output::Event(Event::PeerRefused { peer: p, error }) if p == peer => Some(error),
        _ => None,
    })
}

#[test]
fn root_certified_nodes_admit_each_other_and_refuse_the_root_as_a_peer() {
    let anchor = root().verifying_key();
    let nat = national("national", 1);
    let bj = down(&nat, &["11"]);
    // Both start (each verifies its own chain against the root) …
    let mut at_nat = endpoint(&nat, TrustStore::new(anchor)).unwrap();
    let mut at_bj = endpoint(&bj, TrustStore::new(anchor)).unwrap();
    assert!(at_bj.trust().anchor_is_root(), "learned from its own chain");
    // … and admit each other from their hellos.
    at_nat.handle_connected(T0, 1, auth(&bj));
    at_nat.handle_message(T0, 1, at_bj.hello());
    assert_eq!(at_nat.region_of(&1), Some(code("11")));
    at_bj.handle_connected(T0, 2, auth(&nat));
    at_bj.handle_message(T0, 2, at_nat.hello());
    assert_eq!(at_bj.region_of(&2), Some(RegionCode::NATIONAL));
    // The root's key presenting itself as the national node (empty chain) is refused.
    let as_root = NodeIdentity::national(root());
    at_bj.handle_connected(T0, 3, auth(&as_root));
    at_bj.handle_message(T0, 3, Message::Hello(Hello { chain: vec![] }));
    assert_eq!(
        refused(&mut at_bj, 3),
        Some(AdmissionError::Chain(CertError::RootIsNotANode))
    );
    // A node cannot even start with the root as its own key.
    assert!(matches!(
        endpoint(&as_root, TrustStore::new_root(anchor)),
        Err(EndpointError::OwnChain(CertError::RootIsNotANode))
    ));
}
