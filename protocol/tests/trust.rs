//! Certificate chains: every rejection the issue lists, and key rotation.

mod common;

use backflow_protocol::cert::{CertError, CertRequest, Certificate, TrustStore};
use backflow_protocol::time::DAY_MS;
use common::*;
use ed25519_dalek::Signer;

fn req(subject: &str, label: &str) -> CertRequest {
    CertRequest {
        subject: code(subject),
        subject_key: key(label).verifying_key(),
        peer_id: b"peer".to_vec(),
        not_before: T0.minus_ms(DAY_MS),
        not_after: T0.plus_ms(YEAR_MS),
        serial: 9,
    }
}

#[test]
fn a_valid_chain_verifies_to_the_anchor() {
    let fx = Fixture::new();
    let mut trust = fx.trust();
    let id = trust.verify_chain(&fx.id("110101001").chain, T0).unwrap();
    assert_eq!(id.region, code("110101001"));
    assert_eq!(id.key, key("110101001").verifying_key());
    assert_eq!(id.peer_id, b"peer-110101001");
    // The national node is the anchor itself.
    assert_eq!(trust.verify_chain(&[], T0).unwrap().region, code("0"));
}

#[test]
fn issuer_that_is_not_the_parent_is_rejected() {
    let fx = Fixture::new();
    // The province tries to certify a county directly (skipping the city). `issue` refuses…
    assert!(matches!(
        Certificate::issue(code("11"), &key("11"), req("110101", "rogue")),
        Err(CertError::IssuerNotParent { .. })
    ));
    // …and a hand-forged one (correct signature) is refused by the verifier.
    let mut cert = Certificate::issue(code("1101"), &key("1101"), req("110101", "rogue")).unwrap();
    cert.body.issuer = code("11");
    cert.body.issuer_key = key("11").verifying_key();
    cert.issuer_signature = key("11").sign(&body_digest(&cert));
    let mut chain = fx.id("11").chain.clone();
    chain.push(cert);
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::IssuerNotParent { .. })
    ));
}

/// Re-sign a tampered body the way an issuer would (reusing the library's digest by issuing
/// an identical certificate).
fn body_digest(cert: &Certificate) -> [u8; 32] {
    backflow_protocol::wire::digest(b"backflow/cert/v1", &cert.body)
}

#[test]
fn sibling_region_subject_outside_issuer_is_rejected() {
    let fx = Fixture::new();
    assert!(matches!(
        Certificate::issue(code("1101"), &key("1101"), req("120101", "x")),
        Err(CertError::OutsideIssuerRegion { .. })
    ));
    // Forged: city 1101 signs a cert for county 110201's… sibling branch 120101.
    let mut cert = Certificate::issue(code("1101"), &key("1101"), req("110101", "x")).unwrap();
    cert.body.subject = code("120101");
    cert.issuer_signature = key("1101").sign(&body_digest(&cert));
    let mut chain = fx.id("1101").chain.clone();
    chain.push(cert);
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::OutsideIssuerRegion { .. })
    ));
}

#[test]
fn expired_and_not_yet_valid_certificates_are_rejected() {
    let fx = Fixture::new();
    let chain = &fx.id("110101001").chain;
    assert!(matches!(
        fx.trust().verify_chain(chain, T0.plus_ms(YEAR_MS)),
        Err(CertError::Expired { .. })
    ));
    assert!(matches!(
        fx.trust().verify_chain(chain, T0.minus_ms(2 * DAY_MS)),
        Err(CertError::NotYetValid { .. })
    ));
}

#[test]
fn tampered_certificate_fails_its_signature() {
    let fx = Fixture::new();
    let mut chain = fx.id("110101001").chain.clone();
    chain[3].body.peer_id = b"someone-else".to_vec();
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::BadSignature { .. })
    ));
}

#[test]
fn forged_or_broken_chains_are_rejected() {
    let fx = Fixture::new();
    // A self-made "province" signed by an attacker key, not the anchor.
    let forged = Certificate::issue(code("0"), &key("attacker"), req("11", "attacker-11")).unwrap();
    assert!(matches!(
        fx.trust().verify_chain(&[forged], T0),
        Err(CertError::IssuerKeyMismatch { .. })
    ));
    // A missing link (city certificate dropped).
    let mut chain = fx.id("110101001").chain.clone();
    chain.remove(1);
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::ChainBroken { .. })
    ));
    // A chain spliced from another branch.
    let mut chain = fx.id("1201").chain.clone();
    chain.push(fx.id("110101").chain[2].clone());
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::ChainBroken { .. })
    ));
    // Over-long chains are refused by limit before any crypto.
    let mut chain = fx.id("110101001").chain.clone();
    chain.push(chain[3].clone());
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::Limit(_))
    ));
}

#[test]
fn revoked_keys_are_rejected() {
    let fx = Fixture::new();
    let mut trust = fx.trust();
    trust.revoke(&key("110101").verifying_key()).unwrap();
    // The county itself and everything below it.
    assert!(matches!(
        trust.verify_chain(&fx.id("110101").chain, T0),
        Err(CertError::Revoked { .. })
    ));
    assert!(trust.verify_chain(&fx.id("110101001").chain, T0).is_err());
    assert!(trust.verify_chain(&fx.id("110102001").chain, T0).is_ok());
}

#[test]
fn key_rotation_is_accepted_and_the_old_key_refused_afterwards() {
    let fx = Fixture::new();
    let mut trust = fx.trust();
    let old_chain = fx.id("110101").chain.clone();
    let msg = [7u8; 32];
    let old_sig = key("110101").sign(&msg);
    assert!(trust.verify_signed(&old_chain, T0, &msg, &old_sig).is_ok());

    // The city certifies the new key; the old key co-signs.
    let rotation = Certificate::issue_rotation(
        code("1101"),
        &key("1101"),
        &key("110101"),
        req("110101", "110101-v2"),
    )
    .unwrap();
    let mut new_chain = fx.id("1101").chain.clone();
    new_chain.push(rotation.clone());
    let id = trust.verify_chain(&new_chain, T0).unwrap();
    assert_eq!(id.key, key("110101-v2").verifying_key());
    let new_sig = key("110101-v2").sign(&msg);
    assert!(trust.verify_signed(&new_chain, T0, &msg, &new_sig).is_ok());

    // The old key is refused from now on: as a chain and as a signer.
    assert!(matches!(
        trust.verify_chain(&old_chain, T0),
        Err(CertError::Revoked { .. })
    ));
    assert!(trust.verify_signed(&old_chain, T0, &msg, &old_sig).is_err());
    assert!(trust.verify_chain(&fx.id("110101001").chain, T0).is_err());

    // A rotation the old key did not sign is refused.
    let mut unsigned = rotation.clone();
    unsigned.rotation_signature = None;
    let mut chain = fx.id("1101").chain.clone();
    chain.push(unsigned);
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::BadRotationSignature { .. })
    ));
    // …and so is one signed by a different key than the one it replaces.
    let forged = Certificate::issue_rotation(
        code("1101"),
        &key("1101"),
        &key("thief"),
        CertRequest {
            ..req("110101", "110101-v3")
        },
    )
    .unwrap();
    let mut forged_body = forged.clone();
    forged_body.body.replaces = Some(key("110101").verifying_key());
    forged_body.issuer_signature = key("1101").sign(&body_digest(&forged_body));
    let mut chain = fx.id("1101").chain.clone();
    chain.push(forged_body);
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::BadRotationSignature { .. })
    ));
}

#[test]
fn anchor_rotation_requires_the_old_anchor() {
    let fx = Fixture::new();
    let mut trust = fx.trust();
    let new_root = key("national-v2");
    let bad = TrustStore::sign_anchor_rotation(&key("attacker"), &new_root.verifying_key());
    assert!(trust.rotate_anchor(new_root.verifying_key(), &bad).is_err());
    let good = TrustStore::sign_anchor_rotation(&fx.root_key, &new_root.verifying_key());
    trust
        .rotate_anchor(new_root.verifying_key(), &good)
        .unwrap();
    assert_eq!(trust.anchor(), new_root.verifying_key());
    // Provinces certified by the old anchor are no longer trusted.
    assert!(trust.verify_chain(&fx.id("11").chain, T0).is_err());
}

#[test]
fn level_mismatch_is_rejected() {
    let fx = Fixture::new();
    let mut cert = Certificate::issue(code("1101"), &key("1101"), req("110101", "x")).unwrap();
    cert.body.level = backflow_protocol::Level::Township;
    cert.issuer_signature = key("1101").sign(&body_digest(&cert));
    let mut chain = fx.id("1101").chain.clone();
    chain.push(cert);
    assert!(matches!(
        fx.trust().verify_chain(&chain, T0),
        Err(CertError::LevelMismatch { .. })
    ));
}

#[test]
fn signed_revocations_come_from_an_ancestor() {
    use backflow_protocol::cert::Revocation;
    let fx = Fixture::new();
    let mut trust = fx.trust();
    let county_key = key("110101").verifying_key();
    // A township cannot revoke its county, nor a sibling county.
    assert!(Revocation::issue(fx.id("110101001"), code("110101"), county_key, T0).is_err());
    let mut forged = Revocation::issue(fx.id("1101"), code("110101"), county_key, T0).unwrap();
    forged.issuer_chain = fx.id("110102").chain.clone();
    assert!(trust.apply_revocation(&forged, T0).is_err());
    let mut sibling = Revocation::issue(fx.id("1101"), code("110101"), county_key, T0).unwrap();
    sibling.subject = code("110102");
    assert!(trust.apply_revocation(&sibling, T0).is_err());
    assert!(trust.verify_chain(&fx.id("110101").chain, T0).is_ok());
    // The city (or any ancestor) can.
    let r = Revocation::issue(fx.id("11"), code("110101"), county_key, T0).unwrap();
    trust.apply_revocation(&r, T0).unwrap();
    assert!(matches!(
        trust.verify_chain(&fx.id("110101").chain, T0),
        Err(CertError::Revoked { .. })
    ));
}

/// The grace for a signer certificate that expired after signing is for catalog versions in
/// flight only: relaying nodes accept them within the grace, but the node where a version
/// enters the network (`submit`) requires a currently valid chain, so an expired key cannot
/// start backdated versions there. Manifests get no grace at all: one may not outlive its
/// signer's chain, so an expired publisher key cannot mint a backdated dataset anywhere.
#[test]
fn expired_signers_cannot_inject_backdated_documents() {
    use backflow_protocol::catalog::CatalogError;
    use backflow_protocol::catalog_sync::{CatalogSync, CatalogSyncConfig, CatalogSyncError};
    use backflow_protocol::manifest::{ManifestError, ManifestPolicy};
    use backflow_protocol::return_flow::{ReturnFlow, ReturnFlowConfig, ReturnFlowError};
    use backflow_protocol::RegionCode;
    let mut fx = Fixture::new();
    // The township's and the province's certificates expire one day after T0.
    let short = |fx: &Fixture, s: &str| {
        let c = code(s);
        fx.ids[&c.parent().unwrap_or(RegionCode::NATIONAL)]
            .certify_child(
                &key(s),
                format!("peer-{s}").into_bytes(),
                T0.minus_ms(DAY_MS),
                T0.plus_ms(DAY_MS),
                c,
                2,
            )
            .unwrap()
    };
    let town = short(&fx, "110101001");
    let province = short(&fx, "11");
    fx.ids.insert(code("110101001"), town);
    fx.ids.insert(code("11"), province);
    let later = T0.plus_ms(2 * DAY_MS);

    // Catalog: signed at T0, relayed two days later (within the 30-day grace).
    let u = signed_update(&fx, "110101001", "民政办", 1, vec![add("a", "民政办")]);
    assert!(u.verify(&mut fx.trust(), later).is_ok());
    let mut sync = CatalogSync::new(later, CatalogSyncConfig::new(code("110101001"), 1));
    let err = sync.submit(later, &mut fx.trust(), u.clone()).unwrap_err();
    assert!(
        matches!(
            err,
            CatalogSyncError::Catalog(CatalogError::Cert(CertError::Expired { .. }))
        ),
        "{err:?}"
    );
    // Still fine while the certificate is valid.
    let mut sync = CatalogSync::new(T0, CatalogSyncConfig::new(code("110101001"), 1));
    assert!(sync.submit(T0, &mut fx.trust(), u).is_ok());

    // Manifests: the province's certificate ends one day after T0.
    let parts: &[(&str, usize)] = &[("110101001", 1_000), ("110102001", 500)];
    let policy = ManifestPolicy::default();
    let publish = |at, d: &Dataset| {
        ReturnFlow::new(ReturnFlowConfig::new(fx.id("11").clone())).publish(
            at,
            &mut fx.trust(),
            d.manifest.clone(),
            d.entries.clone(),
        )
    };
    // Valid for 30 days: it would outlive the certificate, refused at publish and on relay.
    let long = dataset(&fx, "dibao", 1, None, "11", "11", parts, T0, 30 * DAY_MS);
    for err in [
        publish(T0, &long).unwrap_err(),
        ReturnFlowError::Manifest(
            long.manifest
                .verify(&mut fx.trust(), T0, &policy)
                .unwrap_err(),
        ),
    ] {
        assert!(
            matches!(
                err,
                ReturnFlowError::Manifest(ManifestError::ValidityTooLong { max_ms, .. })
                    if max_ms == DAY_MS
            ),
            "{err:?}"
        );
    }
    // Within the certificate it is fine, until it expires with it.
    let short_lived = dataset(&fx, "dibao", 1, None, "11", "11", parts, T0, DAY_MS / 2);
    assert!(publish(T0, &short_lived).is_ok());
    assert!(short_lived
        .manifest
        .verify(&mut fx.trust(), T0, &policy)
        .is_ok());
    // After the certificate expired, the old key backdates a new version to just before the
    // expiry: either it outlives the certificate, or it has already expired itself.
    let forged_long = dataset(
        &fx,
        "dibao",
        2,
        None,
        "11",
        "11",
        parts,
        T0.plus_ms(DAY_MS - 1),
        30 * DAY_MS,
    );
    let forged_short = dataset(
        &fx,
        "dibao",
        2,
        None,
        "11",
        "11",
        parts,
        T0.plus_ms(DAY_MS - 1),
        1,
    );
    for d in [&forged_long, &forged_short] {
        assert!(d.manifest.verify(&mut fx.trust(), later, &policy).is_err());
        assert!(publish(later, d).is_err());
    }
    assert!(matches!(
        forged_short
            .manifest
            .verify(&mut fx.trust(), later, &policy),
        Err(ManifestError::Expired { .. })
    ));
}
