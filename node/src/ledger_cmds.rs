//! The event loop's part in the compliance ledger (合规台账, Art. 29): the node's own acts and
//! departments' use records are appended here, by the loop that owns the log, and made durable
//! before the caller hears they are logged (acts of the protocol are logged as they are
//! stored: `persist`, `ledger_acts`); the signed head goes up to the parent to be witnessed,
//! and a child's head that does not extend what this node witnessed is raised as an alarm —
//! logged, and recorded in this node's own ledger, where its authority reads it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use backflow_protocol::department::DepartmentIdentity;
use backflow_protocol::ledger::entry::EntryKind;
use backflow_protocol::ledger::witnessing::LedgerEvent;
use backflow_protocol::time::UnixMs;
use tracing::{debug, error, info, warn};

use crate::clock::now_ms;
use crate::ledger::Record;
use crate::ledger_api::LedgerCmd;
use crate::ledger_seal::SealKeys;
use crate::runtime::Runtime;

/// How long a head the parent has not countersigned waits before it is sent again (a new
/// head goes at once, on the next beat).
const LEDGER_HEAD_RESEND_MS: u64 = 60_000;

impl Runtime {
    pub(crate) fn on_ledger(&mut self, cmd: LedgerCmd, now: UnixMs) {
        match cmd {
            LedgerCmd::Append { records, reply } => {
                let _ = reply.send(self.ledger_append(records));
            }
            LedgerCmd::UseRecord {
                department,
                params,
                reply,
            } => {
                let logged = crate::ledger_api::use_record(&self.ep, now, &department, &params)
                    .and_then(|record| self.ledger_append(vec![record]))
                    .and_then(|seq| {
                        crate::ledger::entries(&self.store, seq, 1)?
                            .pop()
                            .ok_or_else(|| anyhow::anyhow!("ledger entry {seq} not found"))
                    });
                let _ = reply.send(logged);
            }
            LedgerCmd::SignHead { reply } => {
                self.sign_ledger_head();
                let _ = reply.send(self.seal_keys());
            }
            LedgerCmd::Inspect {
                target,
                grant,
                from,
                limit,
                reply,
            } => self.start_inspection(now, target, grant, from, limit, reply),
        }
    }

    /// Signs the ledger's head if it grew (on the beat: signing is ~20 µs, an entry ~2 µs), and
    /// makes it durable at once — the head is what `ledger verify` checks the entries against.
    pub(crate) fn sign_ledger_head(&mut self) {
        self.prune_ledger_if_due();
        self.seal_ledger();
        match self
            .ledger
            .sign_if_grown(&self.store, self.ep.identity(), now_ms().0)
        {
            Ok(None) => {}
            Ok(Some(head)) => {
                self.unsynced = true;
                self.make_durable();
                debug!(size = head.head.size, "ledger head signed");
            }
            // As for any storage failure: stop rather than go on unrecorded.
            Err(e) => panic!("storage failure: {e:#}"),
        }
    }

    /// Seals the entries appended since the last beat, each under the key of the hosted
    /// department it names or the node's ([`crate::ledger_seal`]); the head signed next
    /// makes the seals durable with it.
    fn seal_ledger(&mut self) {
        if self.ledger.sealed_to() == self.ledger.size() {
            return;
        }
        let departments: HashMap<&str, &DepartmentIdentity> = self
            .ep
            .share_service()
            .departments()
            .map(|d| (d.name(), d))
            .collect();
        match crate::ledger_seal::seal(
            &self.store,
            &mut self.ledger,
            self.ep.identity(),
            &departments,
        ) {
            Ok(sealed) => {
                self.unsynced = true;
                debug!(sealed, "ledger entries sealed");
            }
            // Damage (a missing entry) stops sealing, not the node: `ledger verify` names it.
            Err(e) => warn!(error = %format!("{e:#}"), "ledger entries were not sealed"),
        }
    }

    /// The keys this node's seals are checked under: its own and its departments'.
    pub(crate) fn seal_keys(&self) -> SealKeys {
        SealKeys {
            node: self.ep.identity().key.verifying_key(),
            departments: self
                .ep
                .share_service()
                .departments()
                .map(|d| (d.name().to_string(), d.cert.body.key))
                .collect(),
        }
    }

    /// Once a day (and at start), prunes the ledger's entries past their retention period
    /// ([`crate::ledger_prune`]); the pruning's own entry is signed into the head next.
    fn prune_ledger_if_due(&mut self) {
        let day = Duration::from_millis(backflow_protocol::time::DAY_MS);
        if self.ledger_pruned_at.is_some_and(|at| at.elapsed() < day) {
            return;
        }
        self.ledger_pruned_at = Some(Instant::now());
        let now = now_ms().0;
        match crate::ledger_prune::prune(
            &self.store,
            &mut self.ledger,
            now,
            self.ledger_retention_ms,
        ) {
            Ok(None) => {}
            Ok(Some(p)) => {
                self.unsynced = true;
                info!(
                    from = p.from,
                    below = p.below,
                    before_ms = p.before_ms,
                    "ledger entries past their retention period pruned (Art. 29)"
                );
            }
            // Damage (a missing entry) stops pruning, not the node: `ledger verify` names it.
            Err(e) => warn!(error = %format!("{e:#}"), "the ledger was not pruned"),
        }
    }

    /// Appends `records` and makes everything written so far durable; returns the first
    /// record's entry number.
    pub(crate) fn ledger_append(&mut self, records: Vec<Record>) -> Result<u64> {
        let first = self.ledger.size();
        let appended = self.ledger.append(&self.store, self.store.batch(), records);
        self.unsynced = true;
        self.make_durable();
        appended.map(|()| first)
    }

    /// Sends the last signed head to the parent unless the parent countersigned exactly
    /// that head already, or it was sent lately and not answered.
    pub(crate) fn send_ledger_head(&mut self) {
        let Some(head) = self.ledger.signed_head().cloned() else {
            return;
        };
        let this = (head.head.size, head.head.root);
        let acknowledged = self.ep.ledger_acknowledged().map(|a| &a.head.head);
        if acknowledged.is_some_and(|a| (a.size, a.root) == this) {
            // Its own head stands still: the parent's still comes down, once a minute.
            let due = self
                .parent_head_asked
                .is_none_or(|at| at.elapsed() >= Duration::from_millis(LEDGER_HEAD_RESEND_MS));
            if due && self.ep.ask_parent_head() {
                self.parent_head_asked = Some(Instant::now());
            }
            return;
        }
        let resend = Duration::from_millis(LEDGER_HEAD_RESEND_MS);
        if let Some((size, root, at)) = self.ledger_head_sent {
            if (size, root) == this && at.elapsed() < resend {
                return;
            }
        }
        let from = acknowledged.map_or(0, |a| a.size);
        match crate::ledger::head_update(&self.store, head, from) {
            Ok(update) => {
                if self.ep.send_ledger_head(update) {
                    self.ledger_head_sent = Some((this.0, this.1, Instant::now()));
                }
            }
            Err(e) => warn!(error = %format!("{e:#}"), "no ledger head for the parent"),
        }
    }

    pub(crate) fn on_ledger_event(&mut self, e: LedgerEvent) {
        match e {
            LedgerEvent::Witnessed { child, size } => {
                debug!(%child, size, "witnessed a child's ledger head");
            }
            LedgerEvent::Acknowledged { witness, size } => {
                debug!(%witness, size, "the parent witnessed this node's ledger head");
            }
            LedgerEvent::Refused {
                witness,
                size,
                reason,
            } => warn!(
                %witness,
                size,
                %reason,
                "the parent did not witness this node's ledger head"
            ),
            LedgerEvent::ParentHeadWanted { child, from_size } => {
                // Heads down: this node's own newest head, with the proof from what the child
                // holds (a child asking past it is shown the truncation by its own check).
                let Some(head) = self.ledger.signed_head().cloned() else {
                    return;
                };
                match crate::ledger::head_update(&self.store, head, from_size) {
                    Ok(update) => {
                        self.ep.send_parent_head(child, update);
                    }
                    Err(e) => {
                        warn!(%child, error = %format!("{e:#}"), "no ledger head for a child")
                    }
                }
            }
            LedgerEvent::ParentHeadChecked { parent, size } => {
                debug!(%parent, size, "the parent's own ledger head extends the one held");
            }
            LedgerEvent::ParentAlarm { parent, error } => {
                let finding = error.to_string();
                error!(%parent, %finding, "the parent's compliance ledger does not extend its head this node holds");
                self.record_ledger_alarm(parent, "parent ledger alarm (上级台账告警)", finding);
            }
            LedgerEvent::InspectionAsked(asked) => self.answer_inspection(asked),
            LedgerEvent::Inspected(i) => self.inspection_answered(i.id, i.result),
            LedgerEvent::Alarm { child, error } => {
                let finding = error.to_string();
                error!(%child, %finding, "a child's compliance ledger does not extend what was witnessed");
                self.record_ledger_alarm(child, "witness alarm (见证告警)", finding);
            }
        }
    }

    /// Records a finding about `region`'s ledger in this node's own, where its authority
    /// reads it — once per distinct finding (a child or parent keeps sending the same head).
    fn record_ledger_alarm(
        &mut self,
        region: backflow_topology::RegionCode,
        what: &str,
        finding: String,
    ) {
        if self.ledger_alarms.get(&region) == Some(&finding) {
            return;
        }
        self.ledger_alarms.insert(region, finding.clone());
        let record = Record {
            time_ms: now_ms().0,
            department: None,
            kind: EntryKind::Note,
            subject: format!("{what} {region}"),
            detail: finding,
        };
        if let Err(e) = self.ledger_append(vec![record]) {
            panic!("storage failure: {e:#}");
        }
    }
}
