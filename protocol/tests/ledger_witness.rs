//! The compliance ledger's heads witnessed up the tree (Art. 29, issue 19), through real
//! endpoints on the simulated network: a county's heads are countersigned by its city, the
//! countersignature comes back and both survive restarts; a rewritten log is refused with an
//! alarm at the city, and heads are taken only from a direct child. Inspection (查阅): national
//! reads the witnessed county's records through the tree, each proved; a page with an edited
//! entry does not prove itself, nor one whose seal is missing, forged or whose department's
//! certificate is left out; a township, which is not above the county, is refused.

mod common;

use std::collections::HashMap;

use backflow_protocol::cert::NodeIdentity;
use backflow_protocol::department::DepartmentIdentity;
use backflow_protocol::endpoint::Event;
use backflow_protocol::ledger::entry::{append_entry, EntryKind, LedgerEntry};
use backflow_protocol::ledger::head::{HeadUpdate, SignedTreeHead, TreeHead};
use backflow_protocol::ledger::inspection::{
    InspectPage, InspectRefusal, InspectScope, Inspected, InspectionAsked, ProvenEntry,
};
use backflow_protocol::ledger::merkle::{consistency_proof, inclusion_proof, root, Hash};
use backflow_protocol::ledger::seal::{signer_for, EntrySeal, SealProof, SealSigner, SealTree};
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

    /// The log of these leaf bytes.
    fn from_leaves(leaves: &[Vec<u8>]) -> Log {
        let mut log = Log {
            nodes: HashMap::new(),
            size: 0,
        };
        for leaf in leaves {
            let entry = LedgerEntry::decode(leaf).unwrap();
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

/// What node `at` was asked for with [`LedgerEvent::ParentHeadWanted`]: (child, from size).
fn parent_heads_wanted(net: &Net, at: &str) -> Vec<(backflow_protocol::RegionCode, u64)> {
    net.node(code(at))
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ledger(LedgerEvent::ParentHeadWanted { child, from_size }) => {
                Some((*child, *from_size))
            }
            _ => None,
        })
        .collect()
}

/// Heads down (#19): with each of its heads the county asks its city for the city's own; the
/// city's shell answers with its newest head and the proof from what the county holds; the
/// county keeps it (across a restart), and when the city's log is rewritten the county raises
/// the alarm and keeps the city's last good head, signed by the city, as the evidence.
#[test]
fn a_county_checks_its_city_s_own_heads_and_raises_a_rewrite_of_the_city_s_log() {
    let mut net = Net::new(5, Faults::NONE, NetConfig::with(TEST_TUNING));
    let (county, city) = (code("110101"), code("1101"));
    let (county_id, city_id) = (net.fx.id("110101").clone(), net.fx.id("1101").clone());
    let county_log = Log::of("110101", &["a county act"]);
    let names = acts(9);
    let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
    let city_log = Log::of("1101", &subjects);

    // The county's head goes up; the city is asked for its own from size 0 and answers.
    let time = net.now.0;
    assert!(net
        .node_mut(county)
        .ep
        .send_ledger_head(county_log.update(&county_id, 0, time)));
    net.flush(county);
    net.run(1_000, |n| !parent_heads_wanted(n, "1101").is_empty());
    assert_eq!(parent_heads_wanted(&net, "1101"), vec![(county, 0)]);
    // Only to a direct child.
    assert!(!net
        .node_mut(city)
        .ep
        .send_parent_head(code("110101001"), city_log.update(&city_id, 0, time)));
    assert!(net
        .node_mut(city)
        .ep
        .send_parent_head(county, city_log.update(&city_id, 0, time)));
    net.flush(city);
    net.run(1_000, |n| n.ep(county).ledger_parent_head().is_some());
    assert_eq!(net.ep(county).ledger_parent_head().unwrap().head.size, 9);
    net.restart(county);
    assert_eq!(net.ep(county).ledger_parent_head().unwrap().head.size, 9);
    net.run(1_000, |n| n.ep(county).peer_of(city).is_some());

    // The county's next head asks from 9; the city's grown log extends it.
    let time = net.now.0;
    net.node_mut(county)
        .ep
        .send_ledger_head(county_log.update(&county_id, 1, time));
    net.flush(county);
    net.run(1_000, |n| parent_heads_wanted(n, "1101").len() == 2);
    assert_eq!(parent_heads_wanted(&net, "1101")[1], (county, 9));
    let names = acts(14);
    let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
    let grown = Log::of("1101", &subjects);
    net.node_mut(city)
        .ep
        .send_parent_head(county, grown.update(&city_id, 9, time));
    net.flush(city);
    net.run(1_000, |n| {
        n.ep(county)
            .ledger_parent_head()
            .is_some_and(|h| h.head.size == 14)
    });
    assert_eq!(net.ep(county).ledger_parent_head().unwrap().head.size, 14);

    // The city's entry 2 is rewritten: its next head does not extend what the county holds.
    let mut names = acts(15);
    names[2] = "act 2, as the city would rather it read".into();
    let subjects: Vec<&str> = names.iter().map(String::as_str).collect();
    let forged = Log::of("1101", &subjects);
    let time = net.now.0;
    net.node_mut(city)
        .ep
        .send_parent_head(county, forged.update(&city_id, 14, time));
    net.flush(city);
    let alarm = |n: &Net| {
        n.node(county).events.iter().find_map(|e| match e {
            Event::Ledger(LedgerEvent::ParentAlarm { parent, error }) => {
                Some((*parent, error.clone()))
            }
            _ => None,
        })
    };
    net.run(1_000, |n| alarm(n).is_some());
    assert!(
        matches!(
            alarm(&net),
            Some((p, WitnessError::Inconsistent { last_size: 14, new_size: 15, .. })) if p == city
        ),
        "{:?}",
        alarm(&net)
    );
    assert_eq!(net.ep(county).ledger_parent_head().unwrap().head.size, 14);
    // A parent head from a node that is not the parent (national, linked to the county as a
    // skip-level link) is not taken.
    let national_id = net.fx.id("0").clone();
    let peer = net
        .ep(county)
        .peer_of(code("0"))
        .expect("a skip-level link");
    let national_log = Log::of("0", &["a national act"]);
    let msg = backflow_protocol::wire::Message::Ledger(
        backflow_protocol::ledger::witnessing::LedgerMsg::ParentHead(national_log.update(
            &national_id,
            0,
            time,
        )),
    );
    net.inject(peer, county, msg);
    assert_eq!(net.ep(county).ledger_parent_head().unwrap().head.size, 14);
    assert!(
        !net.node(county).events.iter().any(|e| matches!(
            e,
            Event::Ledger(LedgerEvent::ParentAlarm { parent, .. }) if *parent == code("0")
        )),
        "not even checked"
    );
}

/// Seals `leaves` as a node's shell does on its beat: one seal per signer over all of them,
/// the department's for the entries naming it, the node's for the rest.
fn seal_all(leaves: &[Vec<u8>], node: &NodeIdentity, dept: &DepartmentIdentity) -> Vec<SealProof> {
    let size = leaves.len() as u64;
    let entries: Vec<LedgerEntry> = leaves
        .iter()
        .map(|l| LedgerEntry::decode(l).unwrap())
        .collect();
    let mut trees: HashMap<SealSigner, SealTree> = HashMap::new();
    for e in &entries {
        let signer = signer_for(e.department.as_deref(), |d| d == dept.name());
        trees
            .entry(signer.clone())
            .or_insert_with(|| SealTree::new(e.region, signer, 0, size))
            .push(e.seq, &e.leaf_hash().unwrap())
            .unwrap();
    }
    let seals: HashMap<SealSigner, EntrySeal> = trees
        .iter()
        .map(|(signer, tree)| {
            let body = tree.body().unwrap();
            let seal = match signer {
                SealSigner::Node => EntrySeal::sign(body, |d| node.sign(d)),
                SealSigner::Department(_) => EntrySeal::sign(body, |d| dept.sign(d)),
            };
            (signer.clone(), seal)
        })
        .collect();
    entries
        .iter()
        .map(|e| {
            let signer = signer_for(e.department.as_deref(), |d| d == dept.name());
            let (position, path) = trees[&signer].proof_of(e.seq).unwrap();
            SealProof {
                seal: seals[&signer].clone(),
                position,
                path,
            }
        })
        .collect()
}

/// The page a shell answers [`InspectionAsked`] with: `leaves` (the log's, or edited ones)
/// with their proofs in `log`, their seals and the department's certificate.
fn page_of(
    log: &Log,
    asked: &InspectionAsked,
    leaves: &[Vec<u8>],
    seals: &[SealProof],
    dept: &DepartmentIdentity,
) -> InspectPage {
    let size = asked.head.head.head.size;
    let entries = (asked.from..size)
        .take(asked.limit as usize)
        .map(|seq| ProvenEntry {
            leaf: leaves[seq as usize].clone(),
            proof: inclusion_proof(seq, size, &log.nodes).unwrap(),
            seal: Some(seals[seq as usize].clone()),
        })
        .collect();
    let end = asked.from + u64::from(asked.limit);
    InspectPage {
        head: asked.head.clone(),
        entries,
        next: (end < size).then_some(end),
        departments: vec![dept.cert.clone()],
    }
}

fn inspected(net: &Net, at: &str) -> Vec<Inspected> {
    net.node(code(at))
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ledger(LedgerEvent::Inspected(i)) => Some(i.clone()),
            _ => None,
        })
        .collect()
}

fn asked(net: &Net, at: &str) -> Vec<InspectionAsked> {
    net.node(code(at))
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Ledger(LedgerEvent::InspectionAsked(a)) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn national_inspects_a_county_s_witnessed_records_and_an_edited_one_is_caught() {
    let mut net = Net::new(4, Faults::NONE, NetConfig::with(TEST_TUNING));
    let (county, national) = (code("110101"), code("0"));
    let id = net.fx.id("110101").clone();
    let names = acts(6);
    // Entries 2 and 4 are the county's 民政局's own (a use record, say), sealed by its key.
    let leaves: Vec<Vec<u8>> = (0..6u64)
        .map(|seq| {
            LedgerEntry {
                seq,
                time_ms: 1_767_225_600_000 + seq,
                region: county,
                department: (seq % 2 == 0 && seq > 0).then(|| "民政局".to_string()),
                kind: EntryKind::Note,
                subject: names[seq as usize].clone(),
                detail: String::new(),
            }
            .leaf_bytes()
            .unwrap()
        })
        .collect();
    let log = Log::from_leaves(&leaves);
    let dept = DepartmentIdentity::certify(
        &id,
        "民政局",
        ed25519_dalek::SigningKey::from_bytes(&[42; 32]),
        net.now,
    )
    .unwrap();
    let seals = seal_all(&leaves, &id, &dept);

    // Before its city witnessed a head, the county has nothing to prove entries against.
    let now = net.now;
    let q = net
        .node_mut(national)
        .ep
        .inspect_ledger(now, county, InspectScope::All, 0, 10)
        .unwrap();
    net.flush(national);
    net.run(1_000, |n| !inspected(n, "0").is_empty());
    let got = inspected(&net, "0");
    assert_eq!(got[0].id, q);
    assert!(
        got[0].result.as_ref().unwrap_err().contains("witnessed"),
        "{:?}",
        got[0].result
    );

    let time = net.now.0;
    net.node_mut(county)
        .ep
        .send_ledger_head(log.update(&id, 0, time));
    net.flush(county);
    net.run(1_000, |n| n.ep(county).ledger_acknowledged().is_some());

    // National asks; the county's shell answers from its log; national checks every proof
    // and seal. Round 2 edits entry 3; round 3 leaves out the page's last entry and says it is
    // the end; round 4 leaves out 民政局's certificate; round 5 drops entry 3's seal; round 6
    // has the node's key sign 民政局's seal (the operator forging the department's record).
    for round in 1..=6usize {
        let edit = round == 2;
        let now = net.now;
        let q = net
            .node_mut(national)
            .ep
            .inspect_ledger(now, county, InspectScope::All, 1, 4)
            .unwrap();
        net.flush(national);
        net.run(1_000, |n| asked(n, "110101").len() == round);
        let a = asked(&net, "110101").pop().unwrap();
        assert_eq!((a.inspector, a.from, a.limit), (national, 1, 4));
        let mut leaves = leaves.clone();
        if edit {
            let mut e = LedgerEntry::decode(&leaves[3]).unwrap();
            e.subject = "act 3, as someone would rather it read".into();
            leaves[3] = e.leaf_bytes().unwrap();
        }
        let mut page = page_of(&log, &a, &leaves, &seals, &dept);
        match round {
            3 => {
                page.entries.pop();
                page.next = None;
            }
            4 => page.departments.clear(),
            5 => page.entries[2].seal = None,
            6 => {
                let proof = page.entries[1].seal.as_mut().unwrap();
                assert_eq!(
                    proof.seal.body.signer,
                    SealSigner::Department("民政局".into())
                );
                proof.seal = EntrySeal::sign(proof.seal.body.clone(), |d| id.sign(d));
            }
            _ => {}
        }
        net.node_mut(county)
            .ep
            .answer_inspection(a.id, a.inspector, Ok(page));
        net.flush(county);
        net.run(1_000, |n| inspected(n, "0").len() == round + 1);
        let got = inspected(&net, "0").pop().unwrap();
        assert_eq!((got.id, got.target), (q, county));
        match (round, got.result) {
            (1, Ok(records)) => {
                let seqs: Vec<u64> = records.entries.iter().map(|e| e.seq).collect();
                assert_eq!(seqs, [1, 2, 3, 4]);
                assert_eq!(records.entries[2].subject, "act 3");
                assert_eq!(records.head.witness, code("1101"));
            }
            (2, Err(e)) => assert!(
                e.contains("does not prove itself") && e.contains("position 3"),
                "{e}"
            ),
            (3, Err(e)) => assert!(e.contains("entries 4..6 are missing"), "{e}"),
            (4, Err(e)) => assert!(e.contains("certificate the page lacks"), "{e}"),
            (5, Err(e)) => assert!(e.contains("position 3 carries no seal"), "{e}"),
            (6, Err(e)) => assert!(
                e.contains("position 2: its seal") && e.contains("民政局"),
                "{e}"
            ),
            (_, r) => panic!("round {round}: {r:?}"),
        }
    }

    // A township is not above the county: refused where it asks (and the county would too).
    let township = code("110101001");
    let now = net.now;
    let refused = net
        .node_mut(township)
        .ep
        .inspect_ledger(now, county, InspectScope::All, 0, 10)
        .unwrap_err();
    assert!(
        matches!(refused, InspectRefusal::NotAllowed { .. }),
        "{refused:?}"
    );
    // Only a grant's provider reads a grant's records: national provides no such grant.
    let now = net.now;
    let e = net
        .node_mut(national)
        .ep
        .inspect_ledger(now, county, InspectScope::Grant([7; 32]), 0, 10)
        .unwrap_err();
    assert!(matches!(e, InspectRefusal::NotAllowed { .. }), "{e:?}");
}
