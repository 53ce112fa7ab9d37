//! Return flow driven through the in-memory network of endpoints (`common::net`): delivery,
//! receipts, faults, restart, skip-level fallback, and the region boundary. Every node is an
//! `Endpoint`; a test that plays a peer hands its frame to the endpoint as coming from that
//! peer's connection (`Net::inject`), so admission applies to it too.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use backflow_protocol::attestation::{Attestation, AttestationError, SignedAttestation};
use backflow_protocol::endpoint::{Event as EpEvent, Output, Storage};
use backflow_protocol::manifest::{Hash, ManifestError};
use backflow_protocol::receipt::Receipt;
use backflow_protocol::return_flow::{
    DataRouting, Event, ReturnFlowMsg, RoutingError, StorageOp, WantPart,
};
use backflow_protocol::time::{UnixMs, DAY_MS};
use backflow_protocol::tuning::Tuning;
use backflow_protocol::wire::Message;
use backflow_protocol::RegionCode;
use common::net::{Faults, Net, NetConfig, TEST_TUNING};
use common::*;
use proptest::prelude::*;

const PARTS: &[(&str, usize)] = &[
    ("110101", 1_000),
    ("110101001", 70_000),
    ("110101002", 20_000),
    ("110102001", 5_000),
    ("1201", 300),
    ("11", 0),
];

/// The fixture tree with [`TEST_TUNING`] (window of 3 groups, 2 s retries, 20 s fallback).
fn sim(seed: u64, faults: Faults) -> Net {
    Net::new(seed, faults, NetConfig::with(TEST_TUNING))
}

fn sim_routed(seed: u64, faults: Faults, routing: DataRouting) -> Net {
    let config = NetConfig {
        routing,
        ..NetConfig::with(TEST_TUNING)
    };
    Net::new(seed, faults, config)
}

fn rf(m: ReturnFlowMsg) -> Message {
    Message::ReturnFlow(m)
}

/// Return-flow views of the network, for these tests.
impl Net {
    /// Crash and restart, every persisted transfer and receipt taken back.
    fn restart_ok(&mut self, c: RegionCode) {
        let report = self.restart(c);
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(
            report.receipts_skipped, 0,
            "a persisted receipt was refused"
        );
    }

    /// Node `c` stored exactly `share` (byte-identical) and nothing else, and is complete.
    fn holds_exactly(
        &self,
        c: RegionCode,
        share: &BTreeSet<RegionCode>,
        d: &Dataset,
        hash: Hash,
    ) -> bool {
        let store = self.store(c);
        for ((h, r), p) in &store.data {
            assert!(
                *h != hash || share.contains(r) || p.have.is_empty(),
                "{c} stored groups of {r}, outside its share {share:?}"
            );
        }
        share.iter().all(|r| {
            store.data.get(&(hash, *r)).is_some_and(|p| {
                p.bytes == d.contents[r]
                    && p.have.len() as u64
                        == d.entries.iter().find(|e| e.region == *r).unwrap().groups()
            })
        }) && self.rf(c).is_complete(&hash)
    }
}

fn dibao(fx: &Fixture, version: u64, previous: Option<Hash>) -> Dataset {
    dataset(
        fx,
        "dibao",
        version,
        previous,
        "0",
        "0",
        PARTS,
        T0,
        30 * DAY_MS,
    )
}

/// The announce of national dataset `d` a county sends its township `t`: `t`'s entries and
/// their proof (for tests that play the county).
fn announce_to(d: &Dataset, t: RegionCode) -> Message {
    let tree = backflow_protocol::manifest::RegionTree::build(code("0"), &d.entries).unwrap();
    rf(ReturnFlowMsg::Announce(
        backflow_protocol::return_flow::Announce {
            manifest: Arc::new(d.manifest.clone()),
            entries: d
                .entries
                .iter()
                .filter(|e| e.region == t)
                .copied()
                .collect(),
            proof: tree.proof_for(t, &Default::default()).unwrap(),
        },
    ))
}

fn everyone_done(net: &Net, d: &Dataset, hash: Hash) -> bool {
    net.delivered_everywhere(d, hash)
}

fn manifest_errors(net: &Net, c: RegionCode) -> Vec<ManifestError> {
    net.node(c)
        .rf_events()
        .filter_map(|e| match e {
            Event::ManifestRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

fn receipt_errors(net: &Net, c: RegionCode) -> Vec<backflow_protocol::receipt::ReceiptError> {
    net.node(c)
        .rf_events()
        .filter_map(|e| match e {
            Event::ReceiptRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn delivers_every_partition_to_its_region_and_receipts_reach_the_publisher() {
    let mut net = sim(1, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    let r = net.rf(RegionCode::NATIONAL).completeness(&hash).unwrap();
    assert_eq!(r.regions_expected, PARTS.len() as u32);
    assert_eq!(
        r.records_delivered,
        PARTS.iter().map(|(_, n)| *n as u64 / 10).sum::<u64>()
    );
    assert!(r.missing.is_empty());
    // Per-region completeness is visible at the publisher through the province receipts.
    let receipts = net.rf(RegionCode::NATIONAL).receipts(&hash);
    assert!(receipts.iter().all(|r| r.is_complete()));
    assert!(receipts.iter().any(|r| r.region == code("11")));
}

#[test]
fn a_node_with_nothing_in_its_region_receives_nothing() {
    let mut net = sim(2, Faults::NONE);
    let parts: &[(&str, usize)] = &[("110101001", 3_000)];
    let d = dataset(&net.fx, "narrow", 1, None, "0", "0", parts, T0, DAY_MS);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| s.holds_exactly_its_region(
        code("110101001"),
        &d,
        hash
    ) && s
        .publisher_sees_all(hash, RegionCode::NATIONAL)));
    for c in ["12", "1201", "110102", "110102001", "110101002"] {
        assert!(net.store(code(c)).records.is_empty(), "{c} got a manifest");
    }
}

#[test]
fn sibling_cannot_pull_another_regions_partition() {
    let mut net = sim(3, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    // Township 110101002 (admitted at its county: a descendant) asks for its sibling's data.
    let county = code("110101");
    let outs = net.inject(
        code("110101002"),
        county,
        rf(ReturnFlowMsg::Want {
            manifest: hash,
            parts: vec![WantPart {
                region: code("110101001"),
                groups: std::iter::once(0..2).collect(),
            }],
        }),
    );
    assert!(outs
        .iter()
        .all(|o| !matches!(o, Output::ServeChunks { .. })));
    assert!(outs.iter().any(|o| matches!(
        o,
        Output::Event(EpEvent::ReturnFlow(Event::WantRefused { .. }))
    )));
}

#[test]
fn rollback_and_expired_announces_are_rejected() {
    let mut net = sim(4, Faults::NONE);
    let v1 = dibao(&net.fx, 1, None);
    let h1 = v1.manifest.manifest.hash();
    let v2 = dibao(&net.fx, 2, Some(h1));
    net.publish(&v1);
    assert!(net.run(60_000, |s| everyone_done(s, &v1, h1)));
    let h2 = net.publish(&v2);
    assert!(net.run(60_000, |s| everyone_done(s, &v2, h2)));
    // The old version's data is gone everywhere.
    assert!(net
        .nodes
        .values()
        .all(|n| !n.store.records.contains_key(&h1)));

    // Replay version 1's announce to a township over its county's connection: rollback.
    let t = code("110101001");
    let announce = |d: &Dataset| announce_to(d, t);
    net.inject(code("110101"), t, announce(&v1));
    assert!(manifest_errors(&net, t)
        .iter()
        .any(|e| matches!(e, ManifestError::Rollback { .. })));

    // A fresh node offered an expired manifest refuses it (indefinite freeze).
    let mut fresh = sim(5, Faults::NONE);
    fresh.now = T0.plus_ms(31 * DAY_MS);
    fresh.inject(code("110101"), t, announce(&v1));
    assert!(manifest_errors(&fresh, t)
        .iter()
        .any(|e| matches!(e, ManifestError::Expired { .. })));
    assert!(fresh.store(t).records.is_empty());
}

/// An announce from a peer that is no source, or listing partitions outside the receiver's
/// region, is rejected. A sibling township is not even admitted (its region is not in line
/// with the receiver's), so its announce never reaches the machine; an admitted descendant is
/// no source either, and the machine says so.
#[test]
fn announce_from_a_sibling_or_with_foreign_entries_is_rejected() {
    let mut net = sim(6, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let (t, sibling, county) = (code("110101001"), code("110101002"), code("110101"));
    let tree = backflow_protocol::manifest::RegionTree::build(code("0"), &d.entries).unwrap();
    let of = |r: RegionCode| -> Vec<_> {
        d.entries
            .iter()
            .filter(|e| e.region == r)
            .copied()
            .collect()
    };
    let mk = |entries: Vec<_>, proof_for: RegionCode| {
        rf(ReturnFlowMsg::Announce(
            backflow_protocol::return_flow::Announce {
                manifest: Arc::new(d.manifest.clone()),
                entries,
                proof: tree.proof_for(proof_for, &Default::default()).unwrap(),
            },
        ))
    };
    // The sibling connects and is refused; its announce is dropped before any machine.
    net.connect(sibling, t);
    net.deliver_due();
    assert_eq!(net.ep(t).region_of(&sibling), None);
    let outs = net.inject(sibling, t, mk(of(t), t));
    assert_eq!(
        outs,
        vec![Output::Event(EpEvent::UnadmittedFrame { peer: sibling })]
    );
    // The county (a source) announces the sibling's partition to the township.
    net.inject(county, t, mk(of(sibling), t));
    // The township (admitted at its county, a descendant) announces to the county.
    net.inject(t, county, mk(of(county), county));
    assert!(
        matches!(
            manifest_errors(&net, t)[..],
            [ManifestError::OutsideRegion { .. }]
        ),
        "{:?}",
        manifest_errors(&net, t)
    );
    assert!(
        matches!(
            manifest_errors(&net, county)[..],
            [ManifestError::NotASource { .. }]
        ),
        "{:?}",
        manifest_errors(&net, county)
    );
    assert!(net.store(t).records.is_empty());
    assert!(net.store(county).records.is_empty());
}

#[test]
fn resumes_after_restart_without_refetching() {
    let mut net = sim(7, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    let t = code("110101001");
    // Run until the township has some but not all groups (5 groups, window 3).
    assert!(net.run(60_000, |s| s
        .rf(t)
        .stored_groups(&hash, t)
        .is_some_and(|n| (1..5).contains(&n))));
    let before = net.rf(t).stored_groups(&hash, t).unwrap();
    net.restart_ok(t);
    assert_eq!(net.rf(t).stored_groups(&hash, t), Some(before));
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    // The county also restarts after completion: it keeps serving and reporting.
    net.restart_ok(code("110101"));
    assert!(net.rf(code("110101")).is_complete(&hash));
}

#[test]
fn publisher_keeps_its_per_region_view_across_a_restart() {
    let mut net = sim(11, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
    let national = RegionCode::NATIONAL;
    let before = net.rf(national).receipts(&hash);
    let agg_before = net.rf(national).completeness(&hash).unwrap();
    assert!(!before.is_empty());
    assert_eq!(agg_before.regions_delivered, PARTS.len() as u32);
    // Cut the publisher off so nothing can arrive after the restart: what it shows then
    // comes from its own storage.
    let others: Vec<RegionCode> = net
        .nodes
        .keys()
        .copied()
        .filter(|c| *c != national)
        .collect();
    for c in others {
        net.set_down(c);
    }
    net.restart_ok(national);
    assert_eq!(net.rf(national).receipts(&hash), before);
    let agg = net.rf(national).completeness(&hash).unwrap();
    assert_eq!(agg.regions_delivered, agg_before.regions_delivered);
    assert_eq!(agg.records_delivered, agg_before.records_delivered);
    // A stored receipt that does not fit the transfer is refused when it is restored.
    let mut wrong = before[0].clone();
    wrong.regions_expected += 1;
    wrong.seq += 1;
    net.node_mut(national)
        .store
        .receipts
        .insert((hash, wrong.region), wrong);
    let report = net.restart(national);
    assert_eq!(report.transfers, 1);
    assert_eq!(report.receipts_skipped, 1, "{report:?}");
    assert_eq!(report.receipts, before.len() - 1);
}

#[test]
fn skip_level_fallback_when_the_county_is_down() {
    let mut net = sim(8, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let county = code("110101");
    net.set_down(county);
    let hash = net.publish(&d);
    let towns = [code("110101001"), code("110101002")];
    assert!(net.run(10 * 60_000, |s| towns
        .iter()
        .all(|t| s.holds_exactly_its_region(*t, &d, hash))));
    // The city announced to the townships directly; receipts still reach the publisher,
    // which sees the county's own partition as missing.
    assert!(net.run(10 * 60_000, |s| s
        .rf(RegionCode::NATIONAL)
        .completeness(&hash)
        .is_some_and(|r| r.regions_delivered == PARTS.len() as u32 - 1)));
    let r = net.rf(RegionCode::NATIONAL).completeness(&hash).unwrap();
    assert_eq!(r.missing, vec![county]);
    // The county comes back and catches up.
    net.heal();
    assert!(net.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
}

/// The attestation `region`'s own node signs for its partition of `d`.
fn attestation_for(
    net: &Net,
    d: &Dataset,
    hash: Hash,
    region: RegionCode,
) -> Arc<SignedAttestation> {
    let e = d
        .entries
        .iter()
        .find(|e| e.region == region)
        .expect("a partition of the region");
    Arc::new(SignedAttestation::sign(
        hash,
        e,
        net.now,
        net.fx.id(&region.to_string()),
    ))
}

/// A receipt `region` would sign for `d`, with the partitions in `delivered` delivered and
/// their own attestations forwarded with it (as an honest relay does).
fn receipt_for(
    net: &Net,
    d: &Dataset,
    hash: Hash,
    region: RegionCode,
    seq: u64,
    delivered: &[RegionCode],
) -> backflow_protocol::receipt::SignedReceipt {
    use backflow_protocol::receipt::SignedReceipt;
    let mut under: Vec<_> = d
        .entries
        .iter()
        .filter(|e| region.contains(e.region))
        .collect();
    under.sort_by_key(|e| e.region);
    let mut bits = vec![0u8; under.len().div_ceil(8)];
    let mut r = Receipt {
        region,
        manifest: hash,
        seq,
        at: net.now,
        regions_expected: under.len() as u32,
        regions_delivered: 0,
        records_delivered: 0,
        bytes_delivered: 0,
        missing: Vec::new(),
        delivered: Vec::new(),
    };
    for (i, e) in under.iter().enumerate() {
        if delivered.contains(&e.region) {
            bits[i / 8] |= 1 << (i % 8);
            r.regions_delivered += 1;
            r.records_delivered += e.records;
            r.bytes_delivered += e.bytes;
        } else {
            r.missing.push(e.region);
        }
    }
    r.delivered = bits;
    let mut signed = SignedReceipt::sign(r, net.fx.id(&region.to_string()));
    signed.attestations = delivered
        .iter()
        .map(|c| attestation_for(net, d, hash, *c))
        .collect();
    signed
}

fn attestation_errors(net: &Net, c: RegionCode) -> Vec<AttestationError> {
    net.node(c)
        .rf_events()
        .filter_map(|e| match e {
            Event::AttestationRejected { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// #15 item 5: completeness at the publisher rests on the townships' own signatures. A county
/// that claims its whole subtree delivered — in its signed receipt, with the attestation of a
/// township that received nothing signed by the county itself, and with that township's real
/// attestation for another partition — moves nothing at the city or the publisher; once the
/// township really receives its partition, it counts.
#[test]
fn a_lying_relay_cannot_claim_delivery_for_its_subtree() {
    let mut net = sim(16, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let (county, t1, t2, city) = (
        code("110101"),
        code("110101001"),
        code("110101002"),
        code("1101"),
    );
    net.set_down(t1);
    let hash = net.publish(&d);
    let all = PARTS.len() as u32;
    assert!(net.run(10 * 60_000, |s| s
        .rf(RegionCode::NATIONAL)
        .completeness(&hash)
        .is_some_and(|r| r.regions_delivered == all - 1)));
    // The lie: every bit set, the county's and t2's honest attestations (already known: skipped
    // before any signature check), and one for t1 signed by the county.
    let mut lie = receipt_for(&net, &d, hash, county, u64::MAX - 1, &[county, t1, t2]);
    let e1 = *d.entries.iter().find(|e| e.region == t1).unwrap();
    let forged = Attestation {
        region: t1,
        manifest: hash,
        content_hash: e1.content_hash,
        at: net.now,
    };
    let county_id = net.fx.id("110101");
    lie.attestations[1] = Arc::new(SignedAttestation {
        signature: county_id.sign(&backflow_protocol::wire::digest(
            b"backflow/attestation/v1",
            &forged,
        )),
        attestation: forged.clone(),
        signer: county_id.chain.clone(),
    });
    // t1's real key over another region's partition: refused as well.
    let t2_entry = *d.entries.iter().find(|e| e.region == t2).unwrap();
    let mut wrong = Attestation {
        content_hash: t2_entry.content_hash,
        ..forged
    };
    wrong.region = t1;
    let t1_id = net.fx.id("110101001");
    lie.attestations.push(Arc::new(SignedAttestation {
        signature: t1_id.sign(&backflow_protocol::wire::digest(
            b"backflow/attestation/v1",
            &wrong,
        )),
        attestation: wrong,
        signer: t1_id.chain.clone(),
    }));
    // To its parent, and past it straight to the publisher.
    net.inject(county, city, receipt_msg(lie.clone()));
    net.inject(county, RegionCode::NATIONAL, receipt_msg(lie));
    for at in [city, RegionCode::NATIONAL] {
        let errors = attestation_errors(&net, at);
        assert!(
            matches!(
                errors[..],
                [
                    AttestationError::WrongSigner { .. },
                    AttestationError::WrongPartition { .. }
                ]
            ),
            "{at}: {errors:?}"
        );
        // The receipt itself is a valid signed claim: recorded, and counted for nothing.
        assert!(receipt_errors(&net, at).is_empty());
        assert_eq!(
            net.rf(at)
                .receipts(&hash)
                .iter()
                .filter(|r| r.region == county && r.is_complete())
                .count(),
            1
        );
    }
    assert!(!net.run(60_000, |s| s
        .rf(RegionCode::NATIONAL)
        .completeness(&hash)
        .is_some_and(|r| r.is_complete())));
    let view = net
        .rf(RegionCode::NATIONAL)
        .completeness_of(&hash, t1)
        .unwrap();
    assert_eq!((view.regions_delivered, view.regions_expected), (0, 1));
    let view = net.rf(city).completeness_of(&hash, county).unwrap();
    assert_eq!((view.regions_delivered, view.regions_expected), (2, 3));
    // The township comes up, receives, attests: now it counts.
    net.heal();
    assert!(net.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
}

fn receipt_msg(r: backflow_protocol::receipt::SignedReceipt) -> Message {
    rf(ReturnFlowMsg::Receipt(Arc::new(r)))
}

/// After a fallback a node holds a stale receipt from a child (its own partition only) and
/// fresher ones from the child's children: every partition is counted exactly once, at the
/// node and at the publisher. (Taking the larger of the child's count and its children's sum
/// dropped the child's own partition.)
#[test]
fn receipts_via_a_fallback_count_each_partition_once() {
    let mut net = sim(14, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let (county, t1, t2, city) = (
        code("110101"),
        code("110101001"),
        code("110101002"),
        code("1101"),
    );
    for c in [county, t1, t2] {
        net.set_down(c);
    }
    let hash = net.publish(&d);
    assert!(net.run(10 * 60_000, |s| s
        .rf(RegionCode::NATIONAL)
        .completeness(&hash)
        .is_some_and(|r| r.regions_delivered == 3)
        && s.rf(city).is_complete(&hash)));
    // The county reported early (its own partition only), then went silent; its townships
    // report straight to the city (each over its own, still admitted, connection).
    let stale = receipt_for(&net, &d, hash, county, 1, &[county]);
    let r1 = receipt_for(&net, &d, hash, t1, 1, &[t1]);
    let r2 = receipt_for(&net, &d, hash, t2, 1, &[t2]);
    for (from, r) in [(county, stale), (t1, r1), (t2, r2.clone()), (t2, r2)] {
        net.inject(from, city, receipt_msg(r));
    }
    assert!(receipt_errors(&net, city).is_empty());
    let at_city = net.rf(city).completeness(&hash).unwrap();
    let under_city: Vec<_> = d
        .entries
        .iter()
        .filter(|e| city.contains(e.region))
        .collect();
    assert_eq!(at_city.regions_expected, under_city.len() as u32);
    assert_eq!(
        at_city.regions_delivered, at_city.regions_expected,
        "{at_city:?}"
    );
    assert!(at_city.missing.is_empty());
    assert_eq!(
        at_city.records_delivered,
        under_city.iter().map(|e| e.records).sum::<u64>()
    );
    // Per child, too: the county's subtree is complete although its own receipt says 1 of 3.
    let county_view = net.rf(city).completeness_of(&hash, county).unwrap();
    assert_eq!(
        (county_view.regions_delivered, county_view.regions_expected),
        (3, 3)
    );
    let t1_view = net.rf(city).completeness_of(&hash, t1).unwrap();
    assert_eq!(
        (t1_view.regions_delivered, t1_view.regions_expected),
        (1, 1)
    );
    // The publisher's per-region view is exact too (records and bytes included).
    assert!(net.run(10 * 60_000, |s| s
        .publisher_sees_all(hash, RegionCode::NATIONAL)));
    let at_national = net.rf(RegionCode::NATIONAL).completeness(&hash).unwrap();
    assert_eq!(at_national.regions_delivered, PARTS.len() as u32);
    assert_eq!(
        at_national.records_delivered,
        d.entries.iter().map(|e| e.records).sum::<u64>()
    );
    assert_eq!(
        at_national.bytes_delivered,
        d.entries.iter().map(|e| e.bytes).sum::<u64>()
    );
}

/// A receipt whose bitmap disagrees with its counts, or whose partition count is not the
/// manifest's for its region, is refused.
#[test]
fn receipts_with_inconsistent_bitmaps_are_rejected() {
    use backflow_protocol::receipt::{ReceiptError, SignedReceipt};
    let mut net = sim(15, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    let (county, city) = (code("110101"), code("1101"));
    let good = receipt_for(&net, &d, hash, county, u64::MAX - 1, &[county]);
    // Bits claim two partitions, the count one.
    let mut r = good.receipt.clone();
    r.delivered = vec![0b011];
    let extra_bit = SignedReceipt::sign(r, net.fx.id("110101"));
    // Claims one partition fewer than the manifest has in the county.
    let mut r = good.receipt.clone();
    r.regions_expected = 2;
    r.missing.truncate(1);
    let short = SignedReceipt::sign(r, net.fx.id("110101"));
    let before = net.rf(county).completeness(&hash).unwrap();
    for r in [extra_bit, short] {
        net.inject(county, city, receipt_msg(r));
    }
    let errors = receipt_errors(&net, city);
    assert!(
        matches!(
            errors[..],
            [
                ReceiptError::Inconsistent { .. },
                ReceiptError::Inconsistent { .. }
            ]
        ),
        "{errors:?}"
    );
    assert!(before.is_complete());
    assert!(net.rf(city).completeness(&hash).unwrap().is_complete());
}

#[test]
fn skip_level_fallback_mid_transfer_switches_source() {
    let mut net = sim(9, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    let county = code("110101");
    let t = code("110101001");
    // Let the township start, then take its county down.
    assert!(net.run(60_000, |s| s
        .rf(t)
        .stored_groups(&hash, t)
        .is_some_and(|n| n >= 1)));
    assert!(
        !net.rf(t).is_complete(&hash),
        "the test needs a partial transfer"
    );
    net.set_down(county);
    assert!(net.run(10 * 60_000, |s| s.holds_exactly_its_region(t, &d, hash)));
    assert!(net.node(t).rf_events().any(|e| matches!(
        e,
        Event::SourceChanged { from, to, .. } if *from == county && *to == code("1101")
    )));
}

#[test]
fn a_corrupting_source_is_detected_and_bypassed() {
    let mut net = sim(10, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    let city = code("1101");
    // Once the city holds everything, it starts corrupting what it serves.
    assert!(net.run(60_000, |s| s.rf(city).is_complete(&hash)));
    net.node_mut(city).corrupt = true;
    assert!(net.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
    let rejected = net
        .node(code("110101"))
        .rf_events()
        .filter(|e| matches!(e, Event::ChunkRejected { .. }))
        .count();
    assert!(rejected >= 1);
}

/// #15 item 4: a group the shell finds damaged (it failed verification when served or
/// exported) leaves what the node counts as stored: it is not served, the node's own
/// partition is no longer receipted as delivered, and it is fetched again from the source. At
/// the publisher, which has no source, the event says so.
#[test]
fn damaged_content_is_not_served_nor_receipted_and_is_fetched_again() {
    let mut net = sim(12, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(10 * 60_000, |s| everyone_done(s, &d, hash)));
    let county = code("110101");
    let t = code("110101001");
    let entry_of = |r: RegionCode| *d.entries.iter().find(|e| e.region == r).unwrap();
    let (own, township) = (entry_of(county), entry_of(t));
    assert!(township.groups() >= 3);
    let delivered_before = net
        .rf(county)
        .completeness(&hash)
        .unwrap()
        .regions_delivered;
    // The county's shell drops what did not verify from its index, then says so.
    for (entry, groups) in [(own, 0..1), (township, 1..2)] {
        let stored = net
            .node_mut(county)
            .store
            .data
            .get_mut(&(hash, entry.region));
        stored.unwrap().have.remove(&groups.start);
        let now = net.now;
        net.node_mut(county)
            .ep
            .handle_content_damaged(now, &entry.content_hash, groups);
    }
    net.flush(county);
    let rf = net.rf(county);
    assert!(!rf.is_complete(&hash));
    assert_eq!(rf.stored_groups(&hash, t), Some(township.groups() - 1));
    assert_eq!(rf.stored_groups(&hash, county), Some(own.groups() - 1));
    let damaged: Vec<(RegionCode, bool)> = net
        .node(county)
        .rf_events()
        .filter_map(|e| match e {
            Event::ContentDamaged {
                region, refetch, ..
            } => Some((*region, *refetch)),
            _ => None,
        })
        .collect();
    assert_eq!(damaged, vec![(county, true), (t, true)]);
    // Its own partition no longer counts as delivered (the township's does: that comes from
    // the township's own receipt).
    let summary = net.rf(county).completeness(&hash).unwrap();
    assert_eq!(summary.regions_delivered, delivered_before - 1);
    assert!(summary.missing.contains(&county));
    // A want for the dropped group is not served from the county.
    let want = rf_want(hash, t, 1..2);
    let served = net.inject(t, county, want);
    assert!(
        !served
            .iter()
            .any(|o| matches!(o, Output::ServeChunks { .. })),
        "damaged content was served: {served:?}"
    );
    // Fetched again from the county's source; the network converges as before.
    assert!(net.run(10 * 60_000, |s| everyone_done(s, &d, hash)
        && s.rf(county).completeness(&hash).unwrap().regions_delivered
            == delivered_before));
    assert!(net.store(county).data[&(hash, t)].have.contains(&1));
    // The publisher has no source: the event says the content cannot be fetched again.
    let national = RegionCode::NATIONAL;
    let now = net.now;
    net.node_mut(national)
        .ep
        .handle_content_damaged(now, &township.content_hash, 0..1);
    net.flush(national);
    assert!(net.node(national).rf_events().any(|e| matches!(
        e,
        Event::ContentDamaged { region, refetch: false, .. } if *region == t
    )));
}

fn rf_want(manifest: Hash, region: RegionCode, groups: std::ops::Range<u64>) -> Message {
    rf(ReturnFlowMsg::Want {
        manifest,
        parts: vec![WantPart {
            region,
            groups: vec![groups],
        }],
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Delivery and receipts converge under loss, duplication and reordering, on the strict
    /// tree and with province → county links.
    #[test]
    fn return_flow_converges_under_faults(
        seed in any::<u64>(),
        loss in 0.0f64..0.35,
        duplicate in 0.0f64..0.3,
        delay_ms_max in 1u64..5_000,
        direct in any::<bool>(),
    ) {
        let faults = Faults { loss, duplicate, delay_ms_max };
        if direct {
            // Province → county links: the city holds only its own partition.
            let mut net = sim_routed(seed, faults, province_to_county());
            let d = direct_dataset(&net.fx);
            let hash = net.publish(&d);
            prop_assert!(net.run(6 * 3_600_000, |s| direct_done(s, &d, hash)));
        } else {
            let mut net = sim(seed, faults);
            let d = dibao(&net.fx, 1, None);
            let hash = net.publish(&d);
            prop_assert!(net.run(6 * 3_600_000, |s| everyone_done(s, &d, hash)));
        }
    }
}

/// `n` synthetic townships under province `p` (codes built by arithmetic).
fn townships(p: &str, n: usize) -> Vec<RegionCode> {
    let mut out = Vec::new();
    let province = code(p);
    'outer: for c in 1..100 {
        let city = province.child(c).unwrap();
        for k in 1..100 {
            let county = city.child(k).unwrap();
            for t in 1..=100 {
                out.push(county.child(t).unwrap());
                if out.len() == n {
                    break 'outer;
                }
            }
        }
    }
    out
}

fn synthetic_entries(regions: &[RegionCode]) -> Vec<backflow_protocol::manifest::PartitionEntry> {
    let s = schema();
    regions
        .iter()
        .map(|r| backflow_protocol::manifest::PartitionEntry {
            region: *r,
            content_hash: *blake3::hash(r.to_string().as_bytes()).as_bytes(),
            bytes: 1 << 20,
            records: 1_000,
            schema_hash: s.hash(),
        })
        .collect()
}

/// A network of the national node alone (its children are not up: what it sends them names
/// no connection, and is only logged).
fn national_alone() -> Net {
    let mut net = Net::with_tree(0, Faults::NONE, NetConfig::default(), &["0"]);
    net.log = Some(Vec::new());
    net
}

#[test]
fn a_publisher_may_hold_more_partitions_than_one_announce() {
    use backflow_protocol::manifest::{build_manifest, SignedManifest};
    use backflow_protocol::return_flow::ReturnFlowError;
    use backflow_protocol::wire::ANNOUNCE_ENTRIES_MAX;
    let fx = Fixture::new();
    let n = ANNOUNCE_ENTRIES_MAX / 2 + 100;
    let mut regions = townships("11", n);
    regions.extend(townships("12", n));
    let entries = synthetic_entries(&regions);
    let sign = |entries: &[backflow_protocol::manifest::PartitionEntry], tweak: bool| {
        let mut m = build_manifest(
            "census".into(),
            1,
            origin("0", "国家统计局"),
            RegionCode::NATIONAL,
            T0,
            T0.plus_ms(DAY_MS),
            None,
            schema(),
            entries,
        )
        .unwrap();
        if tweak {
            m.partition_count -= 1;
        }
        SignedManifest::sign(m, fx.id("0")).unwrap()
    };
    let national = RegionCode::NATIONAL;
    let mut net = national_alone();
    let hash = net
        .publish_signed(national, sign(&entries, false), entries.clone())
        .unwrap();
    // Announces go out per province, each within the limit.
    let mut announced = 0;
    for s in net.log.as_ref().unwrap() {
        if let Message::ReturnFlow(ReturnFlowMsg::Announce(a)) = &s.msg {
            assert!(a.entries.len() <= ANNOUNCE_ENTRIES_MAX);
            announced += a.entries.len();
        }
    }
    assert_eq!(announced, entries.len());
    // The record survives storage (the store keeps it encoded): a restart resumes it.
    let report = net.restart(national);
    assert_eq!(
        (report.transfers, report.failed.len()),
        (1, 0),
        "{report:?}"
    );
    assert!(net.rf(national).held().any(|(_, h)| h.hash == hash));
    // A manifest whose counts disagree with its entries is refused.
    let mut net = national_alone();
    assert!(matches!(
        net.publish_signed(national, sign(&entries, true), entries.clone()),
        Err(ReturnFlowError::Manifest(ManifestError::TotalsMismatch))
    ));
    // One province over the announce limit cannot be published as a single subtree.
    let big = synthetic_entries(&townships("11", ANNOUNCE_ENTRIES_MAX + 1));
    assert!(matches!(
        net.publish_signed(national, sign(&big, false), big.clone()),
        Err(ReturnFlowError::Manifest(ManifestError::Limit(_)))
    ));
}

#[test]
fn forged_receipts_are_rejected() {
    use backflow_protocol::receipt::{Receipt, ReceiptError, SignedReceipt};
    let mut net = sim(11, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    let t = code("110101001");
    let county = code("110101");
    let receipt = Receipt {
        region: t,
        manifest: hash,
        seq: u64::MAX,
        at: net.now,
        regions_expected: 1,
        regions_delivered: 0,
        records_delivered: 0,
        bytes_delivered: 0,
        missing: vec![t],
        delivered: vec![0],
    };
    // Signed by the sibling township but claiming to be from `t`.
    let sibling = net.fx.id("110101002");
    let forged = SignedReceipt {
        signature: sibling.sign(&backflow_protocol::wire::digest(
            b"backflow/receipt/v1",
            &receipt,
        )),
        receipt: receipt.clone(),
        signer: sibling.chain.clone(),
        attestations: Vec::new(),
    };
    // Properly signed, then tampered.
    let mut tampered = SignedReceipt::sign(receipt, net.fx.id("110101001"));
    tampered.receipt.records_delivered = 1;
    // Both arrive over the township's own (admitted) connection.
    for r in [forged, tampered] {
        net.inject(t, county, receipt_msg(r));
    }
    let errors = receipt_errors(&net, county);
    assert!(matches!(
        errors[..],
        [ReceiptError::WrongSigner { .. }, ReceiptError::Cert(_)]
    ));
    // The county's view is unchanged: the township delivered.
    assert!(net.rf(county).completeness(&hash).unwrap().is_complete());
}

#[test]
fn a_held_manifest_that_expires_is_reported() {
    let mut net = sim(12, Faults::NONE);
    let d = dataset(&net.fx, "short", 1, None, "0", "0", PARTS, T0, 3_600_000);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    let t = code("110101001");
    assert!(net.run(2 * 3_600_000, |s| s
        .node(t)
        .rf_events()
        .any(|e| matches!(e, Event::TransferExpired { .. }))));
    // Expired data is served no more: the county answers a want with NotAvailable.
    let want = rf(ReturnFlowMsg::Want {
        manifest: hash,
        parts: vec![WantPart {
            region: t,
            groups: std::iter::once(0..1).collect(),
        }],
    });
    let out = net.inject(t, code("110101"), want);
    assert!(
        !out.iter().any(|o| matches!(o, Output::ServeChunks { .. })),
        "{out:?}"
    );
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Send {
            msg: Message::ReturnFlow(ReturnFlowMsg::NotAvailable { .. }),
            ..
        }
    )));
}

#[test]
fn receipts_follow_a_key_rotation_and_the_old_key_is_refused() {
    use backflow_protocol::cert::{CertRequest, Certificate};
    use backflow_protocol::receipt::{ReceiptError, SignedReceipt};
    let mut net = sim(13, Faults::NONE);
    let d = dibao(&net.fx, 1, None);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| everyone_done(s, &d, hash)));
    let (county, city) = (code("110101"), code("1101"));
    let old = net.fx.id("110101").clone();
    let rotation = Certificate::issue_rotation(
        city,
        &key("1101"),
        &key("110101"),
        CertRequest {
            subject: county,
            subject_key: key("110101-v2").verifying_key(),
            peer_id: b"peer-110101".to_vec(),
            not_before: T0,
            not_after: T0.plus_ms(YEAR_MS),
            serial: 2,
        },
    )
    .unwrap();
    let mut new = old.clone();
    new.key = key("110101-v2");
    new.chain.truncate(2);
    new.chain.push(rotation);
    // The county restarts with its rotated key; the city learns the rotation from the
    // county's hello (admitted: its transport now authenticates the new key).
    net.node_mut(county).config.identity = new.clone();
    net.restart_ok(county);
    assert_eq!(net.ep(city).region_of(&county), Some(county));
    let mut receipt = net
        .rf(city)
        .receipts(&hash)
        .into_iter()
        .find(|r| r.region == county)
        .unwrap();
    let before = receipt.seq;
    receipt.seq += 1;
    let old_signed = SignedReceipt::sign(receipt.clone(), &old);
    receipt.seq += 1;
    let new_signed = SignedReceipt::sign(receipt, &new);
    for r in [old_signed, new_signed] {
        net.inject(county, city, receipt_msg(r));
    }
    let rejected = receipt_errors(&net, city);
    assert!(
        matches!(rejected[..], [ReceiptError::Cert(_)]),
        "{rejected:?}"
    );
    let latest = |net: &Net| {
        net.rf(city)
            .receipts(&hash)
            .into_iter()
            .find(|r| r.region == county)
            .unwrap()
    };
    assert_eq!(
        latest(&net).seq,
        before + 2,
        "the new key's receipt was recorded"
    );
    // The county itself now signs with the new key: its own receipts are taken.
    assert!(net.run(60_000, |s| latest(s).seq > before + 2));
    assert_eq!(receipt_errors(&net, city).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Direct links (DataRouting): a province serves its counties itself.

/// A dataset with data at every tier below national, including the city 1101's own partition.
const PARTS_DIRECT: &[(&str, usize)] = &[
    ("11", 2_000),
    ("1101", 3_000),
    ("110101", 1_000),
    ("110101001", 70_000),
    ("110101002", 20_000),
    ("110102001", 5_000),
    ("1201", 300),
];

fn province_to_county() -> DataRouting {
    DataRouting::tree()
        .with_direct(
            backflow_protocol::Level::Province,
            backflow_protocol::Level::County,
        )
        .unwrap()
}

fn direct_dataset(fx: &Fixture) -> Dataset {
    dataset(
        fx,
        "dibao",
        1,
        None,
        "0",
        "0",
        PARTS_DIRECT,
        T0,
        30 * DAY_MS,
    )
}

/// The partitions node `c` stores under province → county links: its subtree, except a city
/// holds only its own partition (its counties are served by the province).
fn direct_share(c: RegionCode, d: &Dataset) -> BTreeSet<RegionCode> {
    d.entries
        .iter()
        .map(|e| e.region)
        .filter(|r| c.contains(*r))
        .filter(|r| c.level() != backflow_protocol::Level::City || *r == c)
        .collect()
}

fn direct_done(net: &Net, d: &Dataset, hash: Hash) -> bool {
    net.nodes
        .keys()
        .filter(|c| **c != RegionCode::NATIONAL)
        .all(|c| net.holds_exactly(*c, &direct_share(*c, d), d, hash))
        && net.publisher_sees_all(hash, RegionCode::NATIONAL)
}

#[test]
fn a_province_serves_its_counties_directly_with_exact_receipts() {
    let mut net = sim_routed(21, Faults::NONE, province_to_county());
    let d = direct_dataset(&net.fx);
    let hash = net.publish(&d);
    assert!(net.run(60_000, |s| direct_done(s, &d, hash)));
    let (province, city) = (code("11"), code("1101"));
    let counties = [code("110101"), code("110102")];
    // The counties were announced to, and served, by the province; the city only got its own.
    for k in counties {
        assert!(net.node(k).rf_events().any(|e| matches!(e,
            Event::ManifestAccepted { from, .. } if *from == province)));
        assert!(net.chunk_bytes.get(&(province, k)).is_some_and(|b| *b > 0));
    }
    assert!(
        net.chunk_bytes.keys().all(|(from, _)| *from != city),
        "the city served chunks: {:?}",
        net.chunk_bytes
    );
    let city_bytes = net.chunk_bytes[&(province, city)];
    assert!(
        (3_000..5_000).contains(&city_bytes),
        "city got {city_bytes} bytes"
    );
    // Receipts followed the path used: the counties reported to the province, not the city.
    let at_province = net.rf(province).receipts(&hash);
    for k in counties {
        assert!(at_province.iter().any(|r| r.region == k && r.is_complete()));
    }
    assert!(net.rf(city).receipts(&hash).is_empty());
    // The city's own view: its partition delivered, its counties' not (they are not its to hold).
    let c = net.rf(city).completeness(&hash).unwrap();
    assert_eq!((c.regions_expected, c.regions_delivered), (5, 1));
    // The publisher counts every partition exactly once.
    let r = net.rf(RegionCode::NATIONAL).completeness(&hash).unwrap();
    assert_eq!(r.regions_expected, PARTS_DIRECT.len() as u32);
    assert_eq!(r.regions_delivered, PARTS_DIRECT.len() as u32);
    assert_eq!(
        r.records_delivered,
        PARTS_DIRECT
            .iter()
            .map(|(_, n)| *n as u64 / 10)
            .sum::<u64>()
    );
    let per_city = net
        .rf(RegionCode::NATIONAL)
        .completeness_of(&hash, city)
        .unwrap();
    assert_eq!(
        (per_city.regions_expected, per_city.regions_delivered),
        (5, 5)
    );
}

#[test]
fn direct_links_keep_skip_level_fallback_and_restart() {
    let mut net = sim_routed(22, Faults::NONE, province_to_county());
    let d = direct_dataset(&net.fx);
    let province = code("11");
    net.set_down(province);
    let hash = net.publish(&d);
    // National announces past the silent province to whom it would have served: its city and
    // its counties, which complete without it.
    let below: Vec<RegionCode> = net
        .nodes
        .keys()
        .copied()
        .filter(|c| province.contains(*c) && *c != province)
        .collect();
    assert!(
        net.run(10 * 60_000, |s| below.iter().all(|c| s.holds_exactly(
            *c,
            &direct_share(*c, &d),
            &d,
            hash
        )))
    );
    assert!(net
        .chunk_bytes
        .get(&(RegionCode::NATIONAL, code("110101")))
        .is_some_and(|b| *b > 0));
    net.heal();
    assert!(net.run(10 * 60_000, |s| direct_done(s, &d, hash)));
    // A county restarts: it resumes from its store and reports to the province again.
    let county = code("110101");
    net.restart_ok(county);
    assert!(net.rf(county).is_complete(&hash));
    assert!(net.run(60_000, |s| direct_done(s, &d, hash)));
}

#[test]
fn direct_links_converge_under_loss_duplication_and_reordering() {
    for seed in 0..6 {
        let faults = Faults {
            loss: 0.2,
            duplicate: 0.2,
            delay_ms_max: 3_000,
        };
        let mut net = sim_routed(100 + seed, faults, province_to_county());
        let d = direct_dataset(&net.fx);
        let hash = net.publish(&d);
        assert!(
            net.run(6 * 3_600_000, |s| direct_done(s, &d, hash)),
            "seed {seed}"
        );
        assert!(net
            .chunk_bytes
            .keys()
            .all(|(from, _)| *from != code("1101")));
    }
}

/// Parsing only: no node is involved.
#[test]
fn routing_parses_and_refuses_nonsense() {
    use backflow_protocol::Level;
    assert_eq!("tree".parse::<DataRouting>(), Ok(DataRouting::tree()));
    let r: DataRouting = "province-county".parse().unwrap();
    assert_eq!(r, province_to_county());
    assert_eq!(r.to_string(), "province-county");
    assert_eq!(r.upstream_level(Level::County), Some(Level::Province));
    assert_eq!(r.upstream_level(Level::City), Some(Level::Province));
    assert_eq!(r.upstream_level(Level::National), None);
    assert_eq!(
        "province-city".parse::<DataRouting>(),
        Err(RoutingError::NotSkipping {
            upper: Level::Province,
            lower: Level::City
        })
    );
    assert_eq!(
        "province-county,national-county".parse::<DataRouting>(),
        Err(RoutingError::Conflict {
            lower: Level::County,
            existing: Level::Province
        })
    );
    assert!(matches!(
        "sideways".parse::<DataRouting>(),
        Err(RoutingError::Syntax(_))
    ));
}

/// Below the linked tiers the routing falls back to the tree: a city publishing to its own
/// region serves its counties itself (their province is no source for a city-scoped manifest).
#[test]
fn direct_links_fall_back_to_the_tree_inside_a_smaller_scope() {
    let mut net = sim_routed(23, Faults::NONE, province_to_county());
    let parts: &[(&str, usize)] = &[
        ("1101", 3_000),
        ("110101", 1_000),
        ("110101001", 7_000),
        ("110102001", 500),
    ];
    let d = dataset(
        &net.fx,
        "city-notice",
        1,
        None,
        "1101",
        "1101",
        parts,
        T0,
        30 * DAY_MS,
    );
    let city = code("1101");
    let hash = net.publish(&d);
    let region: Vec<RegionCode> = net
        .nodes
        .keys()
        .copied()
        .filter(|c| city.contains(*c) && *c != city)
        .collect();
    assert!(net.run(60_000, |s| region
        .iter()
        .all(|c| s.holds_exactly_its_region(*c, &d, hash))
        && s.publisher_sees_all(hash, city)));
    for k in [code("110101"), code("110102")] {
        assert!(net.chunk_bytes.get(&(city, k)).is_some_and(|b| *b > 0));
    }
    assert!(net.chunk_bytes.keys().all(|(from, _)| city.contains(*from)));
}

/// The tuning `ReturnFlowConfig::new` gave these tests before the endpoint (its window was
/// 256 groups, its receipts 2 s apart), which the counts below were written against.
const CONFIG_NEW_TUNING: Tuning = Tuning {
    retry_ms: 5_000,
    source_silence_ms_max: 60_000,
    groups_in_flight_max: 256,
    receipt_interval_ms: 2_000,
    catalog_versions_per_origin_max: 65_536,
    catalog_origin_bytes_max: 64 * 1024 * 1024,
    ledger_retention_days: backflow_protocol::tuning::LEDGER_RETENTION_DAYS_MIN,
};

/// A province publisher (11) and one city (1101) with hundreds of townships below it that
/// are not up: the city's announces to them name no connection.
fn province_and_city(config: NetConfig) -> Net {
    let mut net = Net::with_tree(1, Faults::NONE, config, &["0", "11", "1101"]);
    net.log = Some(Vec::new());
    net
}

fn census(fx: &Fixture, bytes: usize) -> (Dataset, usize) {
    let townships = backflow_topology::Topology::china().townships_under(code("1101"));
    let names: Vec<String> = townships.iter().map(|c| c.to_string()).collect();
    let parts: Vec<(&str, usize)> = names.iter().map(|n| (n.as_str(), bytes)).collect();
    (
        dataset(fx, "census", 1, None, "11", "11", &parts, T0, DAY_MS),
        townships.len(),
    )
}

/// The national shape: hundreds of one-group partitions (北京's 300-odd townships, ~12 KB
/// each). One want names a window of partitions and one frame carries the runs of many, so
/// messages scale with windows, not with partitions; nothing is asked for twice on a lossless
/// link, and every partition arrives.
#[test]
fn many_small_partitions_travel_in_few_wants_and_frames() {
    let mut net = province_and_city(NetConfig::with(CONFIG_NEW_TUNING));
    let (d, n) = census(&net.fx, 12_000);
    assert!(n > 300, "{n}");
    let (p, r) = (code("11"), code("1101"));
    let hash = net.publish(&d);
    assert!(
        net.run(60_000, |s| s.rf(r).is_complete(&hash)),
        "every partition arrived"
    );
    let mut wants = 0usize;
    let mut asked = BTreeMap::<RegionCode, usize>::new();
    for s in net.log.as_ref().unwrap() {
        if s.from == p && matches!(s.msg, Message::ReturnFlow(_)) {
            assert_eq!(s.to, r);
        }
        if s.from != r || !matches!(s.msg, Message::ReturnFlow(_)) {
            continue;
        }
        if s.to != p {
            // Announces to its own children once complete: not part of this exchange.
            assert!(r.contains(s.to));
            continue;
        }
        if let Message::ReturnFlow(ReturnFlowMsg::Want { parts, .. }) = &s.msg {
            wants += 1;
            for x in parts {
                *asked.entry(x.region).or_default() += 1;
            }
        }
    }
    // Every chunk frame went from the publisher to the city.
    assert!(net.chunk_bytes.keys().all(|link| *link == (p, r)));
    let frames = net.frames as usize;
    assert_eq!(asked.len(), n);
    assert!(asked.values().all(|n| *n == 1), "nothing asked twice");
    // One message per partition before (≈ 340 wants and 340 frames); a handful now.
    assert!(wants * 40 <= n, "{wants} wants for {n} partitions");
    assert!(frames * 40 <= n, "{frames} frames for {n} partitions");
}

/// Unanswered wants are not all sent again at once: each timeout halves the window and
/// doubles the wait before the next retry; delivery restores both. The city's wants are held
/// on the wire (lost, as far as it knows) until the test releases one.
#[test]
fn timeouts_shrink_the_window_and_back_off() {
    let (p, r) = (code("11"), code("1101"));
    let mut config = NetConfig::with(CONFIG_NEW_TUNING);
    config.tuning_of.insert(
        r,
        Tuning {
            groups_in_flight_max: 256,
            retry_ms: 1_000,
            source_silence_ms_max: 3_600_000,
            ..CONFIG_NEW_TUNING
        },
    );
    let mut net = province_and_city(config);
    let (d, _) = census(&net.fx, 100);
    net.hold = Some(Box::new(move |from, to, m| {
        from == r && to == p && matches!(m, Message::ReturnFlow(ReturnFlowMsg::Want { .. }))
    }));
    let hash = net.publish(&d);
    // The partitions named by each want held, and when it was sent.
    let wants = |net: &mut Net| -> Vec<(UnixMs, usize)> {
        std::mem::take(&mut net.held)
            .into_iter()
            .map(|h| match h.msg {
                Message::ReturnFlow(ReturnFlowMsg::Want { parts, .. }) => (h.at, parts.len()),
                other => panic!("held {other:?}"),
            })
            .collect()
    };
    // Everything lost for 7.5 s: the whole window in one want, then after 1 s half the
    // window, after 2 s more a quarter, after 4 s more an eighth (the wait doubles up to
    // RETRY_BACKOFF_MAX × 1 s).
    net.run(7_500, |_| false);
    let held = std::mem::take(&mut net.held);
    let sent: Vec<(u64, usize)> = held
        .iter()
        .map(|h| match &h.msg {
            Message::ReturnFlow(ReturnFlowMsg::Want { parts, .. }) => {
                (h.at.since_ms(held[0].at), parts.len())
            }
            other => panic!("held {other:?}"),
        })
        .collect();
    assert_eq!(
        sent,
        [(0, 256), (1_000, 128), (3_000, 64), (7_000, 32)],
        "(ms after the first want, partitions named)"
    );
    // Answered at last — the 64-partition retry arrives late, after the 32 one was sent.
    let retry = held[2].clone();
    net.release(retry);
    assert!(net.run(100, |s| !s.held.is_empty()));
    // The 64 stored (every partition the retry named: one group each).
    let stored = net
        .store(r)
        .data
        .iter()
        .filter(|((h, _), p)| *h == hash && !p.have.is_empty())
        .count();
    assert_eq!(stored, 64);
    // Window 32 + 64 = 96 groups; the last retry's 32 partitions were among the 64 stored, so
    // nothing is in flight and the next want names 96.
    let next = std::mem::take(&mut net.held);
    assert_eq!(
        next.iter()
            .map(|h| match &h.msg {
                Message::ReturnFlow(ReturnFlowMsg::Want { parts, .. }) => parts.len(),
                _ => 0,
            })
            .collect::<Vec<_>>(),
        [96]
    );
    for h in next {
        net.release(h);
    }
    // Let the frames land and the refill go out (held), then lose it.
    net.run(100, |_| false);
    let refill = wants(&mut net);
    assert!(!refill.is_empty());
    let last = refill.iter().map(|(at, _)| *at).max().unwrap();
    // And the base retry interval is back: a loss now is retried after 1 s.
    assert!(net.run(1_000, |s| !s.held.is_empty()));
    let retried = wants(&mut net);
    assert!(
        retried[0].0.since_ms(last) <= 1_000,
        "retried {} ms after the last want",
        retried[0].0.since_ms(last)
    );
}

type Links = BTreeMap<(RegionCode, RegionCode), u64>;

/// Per link, what `now` counts beyond `before`; links that carried nothing left out.
fn since(now: &Links, before: &Links) -> Links {
    now.iter()
        .map(|(link, n)| (*link, n - before.get(link).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The groups of a partition of `d`, and the exact encoded length of all of them in one run.
fn whole(d: &Dataset, region: RegionCode) -> (u64, u64) {
    let e = d.entries.iter().find(|e| e.region == region).unwrap();
    let len = backflow_protocol::manifest::encoded_len(e, &(0..e.groups())).unwrap();
    (e.groups(), len)
}

/// Republishing (issue 15, item 3): version 2 changes one township's content. Storage is
/// content-addressed, so every partition v2 left unchanged is kept when v1 is dropped (its
/// `DropTransfer` comes after v2's `PutTransfer`, at every node) and counts as stored at once
/// (`handle_content_present`): only the changed partition's groups travel, once per hop, and
/// every node completes v2. Nodes away during both versions then get v2 whole: a township
/// from its county, which holds that partition since v1, and a province with its city from
/// the publisher after the publisher's restart.
#[test]
fn a_new_version_moves_only_the_partitions_that_changed() {
    let mut net = sim(21, Faults::NONE);
    net.log = Some(Vec::new());
    let late = [code("110101001"), code("12"), code("1201")];
    for c in late {
        net.set_down(c);
    }
    let present_done = |s: &Net, d: &Dataset, h: Hash| {
        s.nodes
            .keys()
            .filter(|c| **c != RegionCode::NATIONAL && !late.contains(c))
            .all(|c| s.holds_exactly_its_region(*c, d, h))
    };
    let v1 = dibao(&net.fx, 1, None);
    let h1 = net.publish(&v1);
    assert!(net.run(60_000, |s| present_done(s, &v1, h1)));

    // Version 2: the same content, but for one township.
    let changed = code("110101002");
    let mut contents = v1.contents.clone();
    contents.insert(changed, content(changed, 2, 20_000));
    let v2 = dataset_of(
        &net.fx,
        "dibao",
        2,
        Some(h1),
        "0",
        "0",
        contents,
        T0,
        30 * DAY_MS,
    );
    assert_eq!(
        v1.entries
            .iter()
            .zip(&v2.entries)
            .filter(|(a, b)| a != b)
            .count(),
        1
    );
    let (bytes_before, groups_before) = (net.chunk_bytes.clone(), net.chunk_groups.clone());
    let storage_before = net.storage_log.len();
    let h2 = net.publish(&v2);
    assert!(net.run(60_000, |s| present_done(s, &v2, h2)));
    // Only the changed partition travelled, once along each hop of its path (its 2 groups in
    // one run: exactly their encoded bytes).
    let path = [
        (RegionCode::NATIONAL, code("11")),
        (code("11"), code("1101")),
        (code("1101"), code("110101")),
        (code("110101"), changed),
    ];
    let (groups, bytes) = whole(&v2, changed);
    assert_eq!(groups, 2);
    let per_hop = |n: u64| path.iter().map(|l| (*l, n)).collect::<Links>();
    assert_eq!(since(&net.chunk_groups, &groups_before), per_hop(groups));
    assert_eq!(since(&net.chunk_bytes, &bytes_before), per_hop(bytes));
    // At every node v2's record was persisted before v1's was dropped, and v1 is gone.
    let mut dropped = BTreeSet::new();
    for (i, (c, op)) in net.storage_log.iter().enumerate().skip(storage_before) {
        if let Storage::ReturnFlow(StorageOp::DropTransfer { manifest }) = op {
            assert_eq!(*manifest, h1);
            let put_before = net.storage_log[storage_before..i].iter().any(|(n, op)| {
                n == c
                    && matches!(op, Storage::ReturnFlow(StorageOp::PutTransfer(r))
                        if r.manifest.manifest.hash() == h2)
            });
            assert!(put_before, "{c} dropped v1 before persisting v2");
            dropped.insert(*c);
        }
    }
    let present: BTreeSet<RegionCode> = net
        .nodes
        .keys()
        .copied()
        .filter(|c| !late.contains(c) && *c != code("110102") && *c != code("110102001"))
        .collect();
    assert!(dropped.is_superset(&present), "{dropped:?}");
    for (c, n) in &net.nodes {
        assert!(!n.store.records.contains_key(&h1), "{c} kept v1");
        assert!(n.store.data.keys().all(|(h, _)| *h != h1), "{c} kept v1");
    }

    // The publisher restarts; the nodes that were away come back and complete v2.
    net.restart_ok(RegionCode::NATIONAL);
    let groups_before = net.chunk_groups.clone();
    for c in late {
        net.set_up(c);
    }
    assert!(net.run(120_000, |s| everyone_done(s, &v2, h2)));
    let expected: Links = [
        (
            (code("110101"), code("110101001")),
            whole(&v2, code("110101001")).0,
        ),
        (
            (RegionCode::NATIONAL, code("12")),
            whole(&v2, code("1201")).0,
        ),
        ((code("12"), code("1201")), whole(&v2, code("1201")).0),
    ]
    .into_iter()
    .collect();
    assert_eq!(since(&net.chunk_groups, &groups_before), expected);
}

/// A crash between persisting v2's record and dropping v1's (the order the machine emits)
/// leaves both stored; at restart the older record is dropped, whichever comes back first.
#[test]
fn a_record_superseded_just_before_a_crash_is_dropped_at_restart() {
    let mut net = sim(22, Faults::NONE);
    let county = code("110101");
    let v1 = dibao(&net.fx, 1, None);
    let h1 = net.publish(&v1);
    assert!(net.run(60_000, |s| everyone_done(s, &v1, h1)));
    let v1_record = net.store(county).records[&h1].clone();
    let v2 = dibao(&net.fx, 2, Some(h1));
    let h2 = net.publish(&v2);
    assert!(net.run(60_000, |s| everyone_done(s, &v2, h2)));
    net.node_mut(county).store.records.insert(h1, v1_record);
    let saved = net.store(county).saved();
    for newer_first in [true, false] {
        let mut saved = saved.clone();
        saved
            .transfers
            .sort_by_key(|t| t.record.manifest.manifest.version);
        if newer_first {
            saved.transfers.reverse();
        }
        let config = net.node(county).config.clone();
        let (mut ep, report) =
            backflow_protocol::Endpoint::<RegionCode>::new(net.now, config, saved).unwrap();
        assert!(report.failed.is_empty());
        let ops: Vec<StorageOp> = std::iter::from_fn(|| ep.poll_output())
            .filter_map(|o| match o {
                Output::Storage(Storage::ReturnFlow(op)) => Some(op),
                _ => None,
            })
            .collect();
        let put2 = ops.iter().position(
            |op| matches!(op, StorageOp::PutTransfer(r) if r.manifest.manifest.hash() == h2),
        );
        let drop1 = ops
            .iter()
            .position(|op| *op == StorageOp::DropTransfer { manifest: h1 });
        assert!(
            put2.is_some() && drop1 > put2,
            "newer first: {newer_first}: {ops:?}"
        );
        assert!(ep.return_flow().is_complete(&h2));
    }
}

/// A shell that never reports stored content (`handle_content_present`) still gets every
/// transfer: the first tick, due at once, starts it.
#[test]
fn a_shell_that_does_not_report_stored_content_still_completes() {
    let mut net = sim(23, Faults::NONE);
    net.report_present = false;
    let v1 = dibao(&net.fx, 1, None);
    let h1 = net.publish(&v1);
    assert!(net.run(60_000, |s| everyone_done(s, &v1, h1)));
}

/// A dataset is (publisher region, department, name): a province that publishes a dataset of
/// the national dataset's name, even at a higher version, and another national department
/// that does, are other datasets — the national one stays held, complete and served below
/// them. (Keyed by the bare name, the province's version 9 superseded and deleted the national
/// version 1 across its subtree.)
#[test]
fn a_same_named_dataset_of_another_owner_is_another_dataset() {
    let mut net = sim(40, Faults::NONE);
    let national = dibao(&net.fx, 1, None);
    let h_national = net.publish(&national);
    assert!(net.run(60_000, |s| everyone_done(s, &national, h_national)));

    let province_parts: &[(&str, usize)] = &[("110101001", 3_000), ("110102001", 4_000)];
    let province = dataset(
        &net.fx,
        "dibao",
        9,
        None,
        "11",
        "11",
        province_parts,
        T0,
        30 * DAY_MS,
    );
    let h_province = net.publish(&province);
    let below_province = |s: &Net| {
        s.nodes
            .keys()
            .filter(|c| code("11").contains(**c) && **c != code("11"))
            .all(|c| s.holds_exactly_its_region(*c, &province, h_province))
            && s.publisher_sees_all(h_province, code("11"))
    };
    assert!(net.run(60_000, below_province));

    // Another department of national, same name, version 5.
    let schema = schema();
    let entries: Vec<_> = province_parts
        .iter()
        .map(|(r, len)| {
            let c = content(code(r), 77, *len);
            backflow_protocol::manifest::PartitionEntry::for_content(code(r), &c, 1, &schema)
        })
        .collect();
    let m = backflow_protocol::manifest::build_manifest(
        "dibao".into(),
        5,
        origin("0", "人力资源社会保障部"),
        code("0"),
        T0,
        T0.plus_ms(30 * DAY_MS),
        None,
        schema,
        &entries,
    )
    .unwrap();
    let other = Dataset {
        contents: province_parts
            .iter()
            .map(|(r, len)| (code(r), content(code(r), 77, *len)))
            .collect(),
        entries,
        manifest: backflow_protocol::manifest::SignedManifest::sign(m, net.fx.id("0")).unwrap(),
    };
    let h_other = net.publish(&other);
    assert!(net.run(60_000, |s| everyone_done(s, &other, h_other)));

    for t in ["110101001", "110102001"] {
        let t = code(t);
        let rf = net.rf(t);
        let held: Vec<_> = rf.held().map(|(id, h)| (id.clone(), h.version)).collect();
        assert_eq!(held.len(), 3, "{t} holds {held:?}");
        for h in [h_national, h_province, h_other] {
            assert!(rf.is_complete(&h), "{t} lost a dataset: {held:?}");
        }
        assert!(manifest_errors(&net, t).is_empty());
    }
    // The national dataset is still whole everywhere.
    assert!(everyone_done(&net, &national, h_national));
}

/// Versions may run at most `VERSION_STEP_MAX` ahead of the held one, and never above
/// `VERSION_MAX`: one manifest at `u64::MAX` cannot lock out every later version (TUF's
/// fast-forward attack). The owner's next real version still gets through.
#[test]
fn a_version_cannot_jump_to_the_end_of_the_numbers() {
    use backflow_protocol::manifest::{VERSION_MAX, VERSION_STEP_MAX};
    let mut net = sim(41, Faults::NONE);
    let v1 = dibao(&net.fx, 1, None);
    let h1 = net.publish(&v1);
    assert!(net.run(60_000, |s| everyone_done(s, &v1, h1)));

    let t = code("110101001");
    let announce = |d: &Dataset| announce_to(d, t);
    // Signed by the real publisher (a stolen key, or a bug): u64::MAX, then a long jump.
    let max = dibao(&net.fx, u64::MAX, None);
    net.inject(code("110101"), t, announce(&max));
    let far = dibao(&net.fx, 1 + VERSION_STEP_MAX + 1, None);
    net.inject(code("110101"), t, announce(&far));
    let errors = manifest_errors(&net, t);
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ManifestError::VersionTooHigh(v) if *v == u64::MAX)),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| matches!(e, ManifestError::VersionJump { held: 1, .. })),
        "{errors:?}"
    );
    // The publisher refuses to start such a version itself.
    let too_high = dibao(&net.fx, VERSION_MAX + 1, None);
    let now = net.now;
    assert!(net
        .node_mut(code("0"))
        .ep
        .publish(now, too_high.manifest.clone(), too_high.entries.clone())
        .is_err());
    // Still on version 1; the owner's next version (the longest allowed jump) gets through.
    assert!(net.rf(t).is_complete(&h1));
    let next = dibao(&net.fx, 1 + VERSION_STEP_MAX, None);
    let h_next = net.publish(&next);
    assert!(net.run(60_000, |s| everyone_done(s, &next, h_next)));
}

/// A source that trickles (#15 item 5): the county lets one chunk frame in three through to
/// its township — a few groups every few seconds, enough to keep the silence timer from ever
/// firing — and is bypassed like a silent one: the township switches to the city within the
/// silence limit and completes from it. (Every stored group used to count as progress: the
/// trickle would have kept the township on the county for the whole transfer.)
#[test]
fn a_trickling_source_is_bypassed_like_a_silent_one() {
    let mut net = sim(42, Faults::NONE);
    let (county, town) = (code("110101"), code("110101001"));
    let d = dataset(
        &net.fx,
        "big",
        1,
        None,
        "0",
        "0",
        &[("110101001", 4 << 20)],
        T0,
        30 * DAY_MS,
    );
    let mut frames = 0u32;
    net.hold = Some(Box::new(move |from, to, m| {
        if from == county && to == town && matches!(m, Message::Chunk(_)) {
            frames += 1;
            !frames.is_multiple_of(3)
        } else {
            false
        }
    }));
    let hash = net.publish(&d);
    let switched = |net: &Net| {
        net.node(town)
            .rf_events()
            .any(|e| matches!(e, Event::SourceChanged { from, .. } if *from == county))
    };
    // The trickle does arrive (so the silence timer alone would never fire) …
    assert!(net.run(15_000, |s| s
        .store(town)
        .data
        .get(&(hash, town))
        .is_some_and(|p| !p.have.is_empty())));
    // … yet the county is bypassed within the silence limit (20 s here), and the township
    // completes from the city long before the trickle could have delivered 256 groups.
    assert!(net.run(TEST_TUNING.source_silence_ms_max + 10_000, |s| switched(s)));
    assert!(net.run(60_000, |s| s.rf(town).is_complete(&hash)));
}
