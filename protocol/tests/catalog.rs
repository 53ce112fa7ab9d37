//! Catalog entries (Arts. 13–15), validation reporting everything at once, signed versions.

mod common;

use std::sync::Arc;

use backflow_protocol::catalog::{
    Applied, CatalogChange, CatalogError, CatalogUpdate, DataFormat, DepartmentCatalog, LegalBasis,
    LegalBasisKind, ProblemKind, SharingAttribute, SharingMethod, SignedCatalogUpdate,
};
use common::*;

fn kinds(problems: &[backflow_protocol::catalog::CatalogProblem]) -> Vec<ProblemKind> {
    problems.iter().map(|p| p.kind.clone()).collect()
}

#[test]
fn a_complete_entry_is_valid() {
    entry("e1", "公安局").validate().unwrap();
    let mut e = entry("e2", "公安局");
    e.sharing = SharingAttribute::Unconditional;
    e.usage_conditions.clear();
    e.validate().unwrap();
    let mut e = entry("e3", "公安局");
    e.sharing = SharingAttribute::NotShared {
        reason: "涉及国家秘密".into(),
        legal_basis: vec![LegalBasis {
            kind: LegalBasisKind::Law,
            citation: "《中华人民共和国保守国家秘密法》".into(),
        }],
    };
    e.sharing_methods.clear();
    e.usage_conditions.clear();
    e.validate().unwrap();
}

#[test]
fn validation_reports_every_problem_at_once() {
    let mut e = entry("", "公安局");
    e.name = " ".into();
    e.data_items[1].name = e.data_items[0].name.clone();
    e.data_items[0].description.clear();
    e.classification.clear();
    e.format = DataFormat::Other(String::new());
    e.sharing = SharingAttribute::Conditional {
        scope: vec![],
        permitted_uses: vec!["".into()],
    };
    e.sharing_methods = vec![SharingMethod::FileDownload, SharingMethod::FileDownload];
    let problems = e.validate().unwrap_err();
    let k = kinds(&problems);
    for expected in [
        ProblemKind::ConditionalWithoutScope,
        ProblemKind::ConditionalWithoutUses,
        ProblemKind::Duplicate("公民身份号码".into()),
    ] {
        assert!(k.contains(&expected), "missing {expected:?} in {k:?}");
    }
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    for f in [
        "id",
        "name",
        "classification",
        "format",
        "data_items[0].description",
        "sharing_methods",
    ] {
        assert!(fields.contains(&f), "missing field {f} in {fields:?}");
    }
    assert!(problems.len() >= 9, "{problems:#?}");
}

#[test]
fn art15_rules_for_each_sharing_attribute() {
    let mut e = entry("e", "公安局");
    e.sharing = SharingAttribute::NotShared {
        reason: "".into(),
        legal_basis: vec![],
    };
    let k = kinds(&e.validate().unwrap_err());
    assert!(k.contains(&ProblemKind::NotSharedWithoutReason));
    assert!(k.contains(&ProblemKind::NotSharedWithoutLegalBasis));
    assert!(k.contains(&ProblemKind::NotSharedWithMethods));

    let mut e = entry("e", "公安局");
    e.sharing = SharingAttribute::Unconditional;
    e.sharing_methods.clear();
    let k = kinds(&e.validate().unwrap_err());
    assert!(k.contains(&ProblemKind::UnconditionalWithConditions));
    assert!(k.contains(&ProblemKind::NoSharingMethod));
}

#[test]
fn oversized_fields_are_problems_not_panics() {
    let mut e = entry("e", "公安局");
    e.name = "名".repeat(1000);
    e.data_items = (0..600)
        .map(|i| backflow_protocol::catalog::DataItem {
            name: format!("f{i}"),
            data_type: backflow_protocol::catalog::DataType::Text,
            description: "x".into(),
        })
        .collect();
    let k = kinds(&e.validate().unwrap_err());
    assert_eq!(
        k.iter()
            .filter(|k| matches!(k, ProblemKind::TooLong { .. }))
            .count(),
        2
    );
}

#[test]
fn signed_update_must_come_from_its_own_jurisdiction() {
    let fx = Fixture::new();
    let u = signed_update(&fx, "110101", "公安局", 1, vec![add("e1", "公安局")]);
    u.verify(&mut fx.trust(), T0).unwrap();

    // The city signs the county's catalog: wrong signer.
    let update = u.update.clone();
    assert!(matches!(
        SignedCatalogUpdate::sign(update.clone(), fx.id("1101")),
        Err(CatalogError::WrongSigner { .. })
    ));
    let mut forged = u.clone();
    forged.signer = fx.id("110102").chain.clone();
    forged.signature = fx.id("110102").sign(&backflow_protocol::wire::digest(
        b"backflow/catalog-update/v1",
        &update,
    ));
    assert!(matches!(
        forged.verify(&mut fx.trust(), T0),
        Err(CatalogError::WrongSigner { .. })
    ));

    // Tampering breaks the signature.
    let mut tampered = u.clone();
    tampered.update.seq = 2;
    assert!(matches!(
        tampered.verify(&mut fx.trust(), T0),
        Err(CatalogError::Cert(_))
    ));
}

#[test]
fn provider_must_be_the_catalogs_department() {
    let fx = Fixture::new();
    let err = SignedCatalogUpdate::sign(
        CatalogUpdate {
            origin: origin("110101", "公安局"),
            seq: 1,
            issued_at: T0,
            changes: vec![add("e1", "民政局")],
        },
        fx.id("110101"),
    )
    .unwrap_err();
    let CatalogError::Invalid(p) = err else {
        panic!("{err:?}")
    };
    assert!(matches!(p[0].kind, ProblemKind::ProviderMismatch { .. }));
}

#[test]
fn versions_apply_in_order_idempotently_and_atomically() {
    let o = origin("110101", "公安局");
    let mut c = DepartmentCatalog::new(o.clone());
    let v = |seq, changes| CatalogUpdate {
        origin: o.clone(),
        seq,
        issued_at: T0,
        changes,
    };
    let v1 = v(1, vec![add("a", "公安局"), add("b", "公安局")]);
    assert_eq!(c.apply(&v1).unwrap(), Applied::Advanced);
    assert_eq!(c.apply(&v1).unwrap(), Applied::Duplicate);
    assert_eq!(c.entries.len(), 2);

    // Gap: version 3 before 2.
    let mut e = entry("a", "公安局");
    e.name = "renamed".into();
    let v3 = v(3, vec![CatalogChange::Update(Arc::new(e.clone()))]);
    assert_eq!(c.apply(&v3), Err(CatalogError::Gap { current: 1, got: 3 }));

    // All-or-nothing, with every problem reported.
    let bad = v(
        2,
        vec![
            CatalogChange::Update(Arc::new(e.clone())),
            add("b", "公安局"),
            CatalogChange::Withdraw {
                id: "zz".into(),
                reason: "合并".into(),
            },
        ],
    );
    let Err(CatalogError::Invalid(p)) = c.apply(&bad) else {
        panic!()
    };
    assert_eq!(p.len(), 2);
    assert_eq!(c.seq, 1);
    assert_eq!(c.entries["a"].name, entry("a", "公安局").name);

    let v2 = v(
        2,
        vec![
            CatalogChange::Update(Arc::new(e)),
            CatalogChange::Withdraw {
                id: "b".into(),
                reason: "职责调整".into(),
            },
        ],
    );
    assert_eq!(c.apply(&v2).unwrap(), Applied::Advanced);
    assert_eq!(c.seq, 2);
    assert_eq!(c.entries.len(), 1);
    assert_eq!(c.entries["a"].name, "renamed");
}

#[test]
fn a_version_signed_before_its_signer_expired_is_still_relayed_within_grace() {
    use backflow_protocol::catalog::CATALOG_SIGNER_GRACE_MS;
    use backflow_protocol::time::DAY_MS;
    let fx = Fixture::new();
    let expiry = T0.plus_ms(YEAR_MS);
    let signed_at = |at| {
        SignedCatalogUpdate::sign(
            CatalogUpdate {
                origin: origin("110101001", "民政办"),
                seq: 1,
                issued_at: at,
                changes: vec![add("e", "民政办")],
            },
            fx.id("110101001"),
        )
        .unwrap()
    };
    let before = signed_at(expiry.minus_ms(3_600_000));
    before
        .verify(&mut fx.trust(), expiry.plus_ms(DAY_MS))
        .unwrap();
    assert!(before
        .verify(&mut fx.trust(), expiry.plus_ms(CATALOG_SIGNER_GRACE_MS))
        .is_err());
    // Backdating past the signer's validity does not help: signed "after" expiry fails.
    let after = signed_at(expiry.plus_ms(3_600_000));
    assert!(after
        .verify(&mut fx.trust(), expiry.plus_ms(DAY_MS))
        .is_err());
    // A revoked signer is refused regardless of when it signed.
    let mut trust = fx.trust();
    trust.revoke(&key("110101001").verifying_key()).unwrap();
    assert!(before.verify(&mut trust, T0).is_err());
}
