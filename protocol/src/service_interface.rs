//! 服务接口 (service interface, Art. 22: 通过共享平台以接口服务等方式共享): a grant whose method
//! is the service interface is delivered as a query endpoint at the provider's node. The
//! requester's department looks up records by the key field the provider named (e.g. 公民身份号码)
//! and gets the matching records of the granted data — never the whole dataset, never through a
//! relay: the requester's node connects to the provider's directly, as for a batch exchange
//! (the grant admits the connection; nodes between the parties see nothing of the data).
//!
//! The provider's node answers only the grant's requester region, only while the service is
//! open (the grant delivered as a service, before the end of its term of use, 使用时限), at a
//! bounded rate per grant ([`CALLS_PER_MINUTE`], a token bucket of [`CALLS_BURST`]), and counts
//! every call — answered or refused — per grant ([`ServiceUsage`], persisted before the answer
//! is sent, so a counted call is never lost). Which records match is the shell's part (its
//! store of the loaded data): the machine asks it ([`ServiceEvent::Asked`]) and sends what it
//! hands back ([`ServiceInterface::answer`]), cut to the answer's bounds.
//!
//! Sans-IO like the other machines; the grant checks sit in the endpoint
//! (`endpoint/service_calls.rs`), which holds the share cases.

use std::collections::{BTreeMap, VecDeque};

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use crate::limits::{check_len, Bounded, LimitError, NAME_BYTES_MAX};
use crate::manifest::Hash;
use crate::time::UnixMs;

/// Keys in one call.
pub const LOOKUP_KEYS_MAX: usize = 100;
/// Bytes of one key.
pub const LOOKUP_KEY_BYTES_MAX: usize = 256;
/// Records in one answer; more matches are reported as `truncated`.
pub const LOOKUP_RECORDS_MAX: usize = 1_000;
/// Bytes of one record line.
pub const LOOKUP_RECORD_BYTES_MAX: usize = 64 * 1024;
/// Bytes of an answer's records and header together (well within a frame).
pub const LOOKUP_ANSWER_BYTES_MAX: usize = 512 * 1024;
/// Calls of this node's departments in flight (sent or waiting for the connection).
pub const CALLS_PENDING_MAX: usize = 256;
/// Calls this node is answering (asked of its store, not yet answered).
pub const CALLS_SERVING_MAX: usize = 256;
/// Of those, from one requester node.
pub const CALLS_SERVING_PER_PEER_MAX: usize = 32;
/// A call not answered by then is answered [`LookupRefusal::TimedOut`] at the requester; the
/// provider gives its store the same time.
pub const CALL_TIMEOUT_MS: u64 = 10_000;
/// Calls per grant per minute at the provider, on average…
pub const CALLS_PER_MINUTE: u64 = 600;
/// …and at once (the bucket's size).
pub const CALLS_BURST: u64 = 60;

/// One call: the grant's request id and the key values to look up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupQuery {
    pub request: Hash,
    pub keys: Vec<String>,
}

impl Bounded for LookupQuery {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len("lookup keys", self.keys.len(), LOOKUP_KEYS_MAX)?;
        for k in &self.keys {
            check_len("lookup key bytes", k.len(), LOOKUP_KEY_BYTES_MAX)?;
        }
        Ok(())
    }
}

/// One matching record: the key it matched and its line as the provider loaded it (a CSV row
/// without its line end, or an NDJSON object).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupRecord {
    pub key: String,
    #[serde(with = "serde_bytes")]
    pub line: Vec<u8>,
}

/// An answer: the records found (in key order, then load order) and the CSV header line
/// (empty for NDJSON). Keys without a record simply have none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupAnswer {
    #[serde(with = "serde_bytes")]
    pub header: Vec<u8>,
    pub records: Vec<LookupRecord>,
    /// More records matched than one answer carries.
    pub truncated: bool,
}

impl LookupAnswer {
    fn bytes(&self) -> usize {
        self.header.len()
            + self
                .records
                .iter()
                .map(|r| r.key.len() + r.line.len())
                .sum::<usize>()
    }

    /// Cuts the answer to its bounds (the shell's store decides what matches; the wire's
    /// limits are the machine's).
    fn bound(mut self) -> LookupAnswer {
        if self.records.len() > LOOKUP_RECORDS_MAX {
            self.records.truncate(LOOKUP_RECORDS_MAX);
            self.truncated = true;
        }
        self.records.retain(|r| {
            r.key.len() <= LOOKUP_KEY_BYTES_MAX && r.line.len() <= LOOKUP_RECORD_BYTES_MAX
        });
        while self.bytes() > LOOKUP_ANSWER_BYTES_MAX && self.records.pop().is_some() {
            self.truncated = true;
        }
        if self.header.len() > LOOKUP_RECORD_BYTES_MAX {
            self.header.clear();
        }
        self
    }
}

impl Bounded for LookupAnswer {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len("lookup records", self.records.len(), LOOKUP_RECORDS_MAX)?;
        check_len(
            "lookup header bytes",
            self.header.len(),
            LOOKUP_RECORD_BYTES_MAX,
        )?;
        for r in &self.records {
            check_len("lookup record key bytes", r.key.len(), LOOKUP_KEY_BYTES_MAX)?;
            check_len("lookup record bytes", r.line.len(), LOOKUP_RECORD_BYTES_MAX)?;
        }
        check_len("lookup answer bytes", self.bytes(), LOOKUP_ANSWER_BYTES_MAX)
    }
}

/// Why a call was not answered with records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LookupRefusal {
    #[error("no grant of a service interface by this request is open at the provider")]
    NotGranted,
    #[error("only the requesting department of the grant may call its service interface")]
    NotTheRequester,
    #[error("the grant's term of use (使用时限) has ended")]
    Expired,
    #[error("the requester's sharing under this grant is suspended (暂停共享权限, Art. 27)")]
    Suspended,
    #[error("the sharing under this grant has ended (terminated or disposed of, Art. 27)")]
    Ended,
    #[error("too many calls of this grant's service interface; try again in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error("too many calls in flight; try again shortly")]
    Busy,
    #[error("the provider's node could not be reached")]
    Unreachable,
    #[error("the call was not answered in time")]
    TimedOut,
    #[error("the provider's node could not answer: {0}")]
    Failed(String),
    #[error(
        "the requesting department's sharing rights (政务数据共享权限) are suspended by the \
         authority of {by} (Art. 27)"
    )]
    RightsSuspended { by: RegionCode },
}

impl Bounded for LookupRefusal {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            LookupRefusal::Failed(why) => {
                check_len("lookup failure bytes", why.len(), NAME_BYTES_MAX)
            }
            _ => Ok(()),
        }
    }
}

/// Messages between the grant's two parties' nodes (directly connected).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMsg {
    /// Requester → provider: look these up (the id is the sender's).
    Lookup { id: u64, query: LookupQuery },
    /// Provider → requester: the answer to call `id`.
    Answer {
        id: u64,
        result: Result<LookupAnswer, LookupRefusal>,
    },
}

impl Bounded for ServiceMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            ServiceMsg::Lookup { query, .. } => query.check_limits(),
            ServiceMsg::Answer { result: Ok(a), .. } => a.check_limits(),
            ServiceMsg::Answer { result: Err(e), .. } => e.check_limits(),
        }
    }
}

/// The provider's count of one grant's calls (每次调用计数).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUsage {
    /// Calls answered with records (or with none found).
    pub calls: u64,
    /// Keys looked up in them.
    pub keys: u64,
    /// Records sent.
    pub records: u64,
    /// Calls refused (rate, term, bounds, store failure).
    pub refused: u64,
    pub last_call_at: Option<UnixMs>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceStorageOp {
    /// Persist a grant's usage; applied before the answer it counts is sent.
    PutUsage { request: Hash, usage: ServiceUsage },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServiceEvent {
    /// Look `keys` up in the data loaded for `request` and hand the answer to
    /// [`ServiceInterface::answer`] with this `id`.
    Asked {
        id: u64,
        request: Hash,
        keys: Vec<String>,
    },
    /// The answer to a call this node made ([`ServiceInterface::call`]).
    Answered {
        id: u64,
        result: Result<LookupAnswer, LookupRefusal>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServiceOutput {
    Send { to: RegionCode, msg: ServiceMsg },
    Storage(ServiceStorageOp),
    Event(ServiceEvent),
}

/// A call of this node's department.
#[derive(Clone, Debug)]
struct Calling {
    provider: RegionCode,
    /// Not sent yet: waiting for the connection to the provider.
    query: Option<LookupQuery>,
    deadline: UnixMs,
}

/// A call this node answers: who asked (a requester node and its id, or this node's own
/// department for a grant between two departments of this node).
#[derive(Clone, Debug)]
struct Serving {
    from: RegionCode,
    their_id: Option<u64>,
    request: Hash,
    keys: u64,
    deadline: UnixMs,
}

/// Calls left of a grant at the provider: a token bucket in thousandths of a call.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli: u64,
    at: UnixMs,
}

/// One node's side of service interfaces: the calls its departments make and the calls it
/// answers as a provider.
#[derive(Debug)]
pub struct ServiceInterface {
    region: RegionCode,
    next_id: u64,
    calling: BTreeMap<u64, Calling>,
    serving: BTreeMap<u64, Serving>,
    per_peer: BTreeMap<RegionCode, usize>,
    buckets: BTreeMap<Hash, Bucket>,
    usage: BTreeMap<Hash, ServiceUsage>,
    out: VecDeque<ServiceOutput>,
}

impl ServiceInterface {
    pub fn new(region: RegionCode) -> ServiceInterface {
        ServiceInterface {
            region,
            next_id: 1,
            calling: BTreeMap::new(),
            serving: BTreeMap::new(),
            per_peer: BTreeMap::new(),
            buckets: BTreeMap::new(),
            usage: BTreeMap::new(),
            out: VecDeque::new(),
        }
    }

    /// Resumes the counts persisted by [`ServiceStorageOp::PutUsage`].
    pub fn restore(&mut self, usage: Vec<(Hash, ServiceUsage)>) {
        self.usage.extend(usage);
    }

    /// A grant's calls counted at this (provider) node.
    pub fn usage(&self, request: &Hash) -> Option<&ServiceUsage> {
        self.usage.get(request)
    }

    /// This node's department calls `provider`'s service interface (the endpoint checked the
    /// grant). `connected`: whether the provider's node is connected now; if not, the call
    /// waits for it until its deadline (the shell dials, [`Self::wants`]). A call to this very
    /// node (both departments here) is answered from its own store. Returns the call's id:
    /// [`ServiceEvent::Answered`] follows with it.
    pub fn call(
        &mut self,
        now: UnixMs,
        provider: RegionCode,
        connected: bool,
        query: LookupQuery,
    ) -> Result<u64, LookupRefusal> {
        if query.check_limits().is_err() {
            return Err(LookupRefusal::Failed(format!(
                "a call looks up 1 to {LOOKUP_KEYS_MAX} keys of at most \
                 {LOOKUP_KEY_BYTES_MAX} bytes each"
            )));
        }
        if self.calling.len() >= CALLS_PENDING_MAX {
            return Err(LookupRefusal::Busy);
        }
        let id = self.take_id();
        let deadline = now.plus_ms(CALL_TIMEOUT_MS);
        if provider == self.region {
            self.calling.insert(
                id,
                Calling {
                    provider,
                    query: None,
                    deadline,
                },
            );
            self.serve(now, provider, None, id, query);
            return Ok(id);
        }
        let query = if connected {
            self.out.push_back(ServiceOutput::Send {
                to: provider,
                msg: ServiceMsg::Lookup { id, query },
            });
            None
        } else {
            Some(query)
        };
        self.calling.insert(
            id,
            Calling {
                provider,
                query,
                deadline,
            },
        );
        Ok(id)
    }

    /// Whether a call of this node waits for a connection to `region` (the shell dials it).
    pub fn wants(&self, region: RegionCode) -> bool {
        self.calling
            .values()
            .any(|c| c.provider == region && c.query.is_some())
    }

    /// `region` is connected (admitted): the calls waiting for it go.
    pub fn handle_connected(&mut self, region: RegionCode) {
        for (id, c) in &mut self.calling {
            if c.provider == region {
                if let Some(query) = c.query.take() {
                    self.out.push_back(ServiceOutput::Send {
                        to: region,
                        msg: ServiceMsg::Lookup { id: *id, query },
                    });
                }
            }
        }
    }

    /// A call from `from`'s node, whose grant the endpoint checked: `checked` is `Err` with
    /// the refusal if it does not hold.
    pub fn handle_lookup(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        id: u64,
        query: LookupQuery,
        checked: Result<(), LookupRefusal>,
    ) {
        if let Err(refusal) = checked {
            self.refuse(now, from, (Some(id), 0), query.request, refusal);
            return;
        }
        self.serve(now, from, Some(id), id, query);
    }

    /// The answer to a call of this node from the provider `from`.
    pub fn handle_answer(
        &mut self,
        from: RegionCode,
        id: u64,
        result: Result<LookupAnswer, LookupRefusal>,
    ) {
        // Only the node the call went to answers it; anything else is dropped.
        if self.calling.get(&id).is_some_and(|c| c.provider == from) {
            self.calling.remove(&id);
            self.out
                .push_back(ServiceOutput::Event(ServiceEvent::Answered { id, result }));
        }
    }

    /// The shell's store answered the lookup `id` it was asked ([`ServiceEvent::Asked`]).
    pub fn answer(&mut self, now: UnixMs, id: u64, result: Result<LookupAnswer, LookupRefusal>) {
        let Some(s) = self.serving.remove(&id) else {
            return; // timed out already
        };
        self.release(s.from);
        let result = result.map(LookupAnswer::bound).map_err(|e| match e {
            LookupRefusal::Failed(why) => {
                LookupRefusal::Failed(crate::limits::cut(why, NAME_BYTES_MAX))
            }
            e => e,
        });
        let usage = self.usage.entry(s.request).or_default();
        match &result {
            Ok(a) => {
                usage.calls += 1;
                usage.keys += s.keys;
                usage.records += a.records.len() as u64;
            }
            Err(_) => usage.refused += 1,
        }
        usage.last_call_at = Some(now);
        let usage = *usage;
        self.out
            .push_back(ServiceOutput::Storage(ServiceStorageOp::PutUsage {
                request: s.request,
                usage,
            }));
        self.reply(s.from, s.their_id, id, result);
    }

    /// Time passed: calls not answered by their deadline are answered `TimedOut`.
    pub fn handle_tick(&mut self, now: UnixMs) {
        let late: Vec<u64> = self
            .calling
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            self.calling.remove(&id);
            self.out
                .push_back(ServiceOutput::Event(ServiceEvent::Answered {
                    id,
                    result: Err(LookupRefusal::TimedOut),
                }));
        }
        let stuck: Vec<u64> = self
            .serving
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in stuck {
            self.answer(
                now,
                id,
                Err(LookupRefusal::Failed(
                    "the provider's store did not answer in time".into(),
                )),
            );
        }
    }

    pub fn poll_timeout(&self) -> Option<UnixMs> {
        let calling = self.calling.values().map(|c| c.deadline);
        let serving = self.serving.values().map(|s| s.deadline);
        calling.chain(serving).min()
    }

    pub fn poll_output(&mut self) -> Option<ServiceOutput> {
        self.out.pop_front()
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Rate and bounds, then ask the store. `local_id`: the id the answer goes back under
    /// (the requester's for a remote call, this node's own call id otherwise).
    fn serve(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        their_id: Option<u64>,
        local_id: u64,
        query: LookupQuery,
    ) {
        let request = query.request;
        let from_peer = self.per_peer.get(&from).copied().unwrap_or(0);
        if self.serving.len() >= CALLS_SERVING_MAX || from_peer >= CALLS_SERVING_PER_PEER_MAX {
            self.refuse(
                now,
                from,
                (their_id, local_id),
                request,
                LookupRefusal::Busy,
            );
            return;
        }
        if let Err(refusal) = self.take_call(now, &request) {
            self.refuse(now, from, (their_id, local_id), request, refusal);
            return;
        }
        *self.per_peer.entry(from).or_default() += 1;
        let id = if their_id.is_some() {
            self.take_id()
        } else {
            local_id
        };
        self.serving.insert(
            id,
            Serving {
                from,
                their_id,
                request,
                keys: query.keys.len() as u64,
                deadline: now.plus_ms(CALL_TIMEOUT_MS),
            },
        );
        self.out
            .push_back(ServiceOutput::Event(ServiceEvent::Asked {
                id,
                request,
                keys: query.keys,
            }));
    }

    /// One call from the grant's bucket, or how long until one is there.
    fn take_call(&mut self, now: UnixMs, request: &Hash) -> Result<(), LookupRefusal> {
        const MILLI: u64 = 1_000;
        let full = CALLS_BURST * MILLI;
        let b = self.buckets.entry(*request).or_insert(Bucket {
            milli: full,
            at: now,
        });
        // CALLS_PER_MINUTE calls per 60,000 ms: CALLS_PER_MINUTE / 60 thousandths of a
        // call per ms.
        let elapsed = now.0.saturating_sub(b.at.0);
        let refill = elapsed.saturating_mul(CALLS_PER_MINUTE) / 60;
        b.milli = full.min(b.milli.saturating_add(refill));
        b.at = b.at.max(now);
        if b.milli >= MILLI {
            b.milli -= MILLI;
            Ok(())
        } else {
            let retry_after_ms = ((MILLI - b.milli) * 60).div_ceil(CALLS_PER_MINUTE);
            Err(LookupRefusal::RateLimited { retry_after_ms })
        }
    }

    /// Refuses a call, counting it against the grant (if this node provides it). The answer
    /// goes to the requester node's call `their_id`, or to this node's own call `local_id`.
    fn refuse(
        &mut self,
        now: UnixMs,
        from: RegionCode,
        (their_id, local_id): (Option<u64>, u64),
        request: Hash,
        refusal: LookupRefusal,
    ) {
        // Only grants this node serves are counted (a refusal for an unknown request id
        // would otherwise let any peer grow the table).
        if refusal != LookupRefusal::NotGranted && refusal != LookupRefusal::NotTheRequester {
            let usage = self.usage.entry(request).or_default();
            usage.refused += 1;
            usage.last_call_at = Some(now);
            let usage = *usage;
            self.out
                .push_back(ServiceOutput::Storage(ServiceStorageOp::PutUsage {
                    request,
                    usage,
                }));
        }
        self.reply(from, their_id, local_id, Err(refusal));
    }

    fn reply(
        &mut self,
        to: RegionCode,
        their_id: Option<u64>,
        local_id: u64,
        result: Result<LookupAnswer, LookupRefusal>,
    ) {
        match their_id {
            Some(id) => self.out.push_back(ServiceOutput::Send {
                to,
                msg: ServiceMsg::Answer { id, result },
            }),
            None => {
                if self.calling.remove(&local_id).is_some() {
                    self.out
                        .push_back(ServiceOutput::Event(ServiceEvent::Answered {
                            id: local_id,
                            result,
                        }));
                }
            }
        }
    }

    fn release(&mut self, from: RegionCode) {
        if let Some(n) = self.per_peer.get_mut(&from) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&from);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn query() -> LookupQuery {
        LookupQuery {
            request: [1; 32],
            keys: vec!["k".into()],
        }
    }

    fn drain(s: &mut ServiceInterface) -> Vec<ServiceOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// The bucket refills at CALLS_PER_MINUTE: after the burst, one call per 100 ms.
    #[test]
    fn the_rate_refills_over_time() {
        let (me, requester) = (code("441900003"), code("110101"));
        let mut s = ServiceInterface::new(me);
        let t0 = UnixMs(1_000_000);
        let asked = |out: &[ServiceOutput]| {
            out.iter()
                .filter(|o| matches!(o, ServiceOutput::Event(ServiceEvent::Asked { .. })))
                .count() as u64
        };
        for n in 0..CALLS_BURST {
            s.handle_lookup(t0, requester, n, query(), Ok(()));
            let out = drain(&mut s);
            assert_eq!(asked(&out), 1);
            // The store answers at once (at most CALLS_SERVING_PER_PEER_MAX wait).
            let id = *s.serving.keys().next().unwrap();
            s.answer(t0, id, Ok(LookupAnswer::default()));
            drain(&mut s);
        }
        s.handle_lookup(t0, requester, 999, query(), Ok(()));
        let out = drain(&mut s);
        assert!(out.iter().any(|o| matches!(
            o,
            ServiceOutput::Send {
                msg: ServiceMsg::Answer {
                    id: 999,
                    result: Err(LookupRefusal::RateLimited {
                        retry_after_ms: 100
                    })
                },
                ..
            }
        )));
        // 99 ms later still none; at 100 ms one call is back.
        s.handle_lookup(t0.plus_ms(99), requester, 1000, query(), Ok(()));
        assert_eq!(asked(&drain(&mut s)), 0);
        s.handle_lookup(t0.plus_ms(100), requester, 1000, query(), Ok(()));
        assert_eq!(asked(&drain(&mut s)), 1);
    }

    /// A call the provider never answers times out at the caller; one the store never
    /// answers is answered `Failed` and counted refused; an answer from another node than
    /// the one called is ignored.
    #[test]
    fn calls_never_hang() {
        let (me, provider, other) = (code("110101"), code("441900003"), code("441900"));
        let mut s = ServiceInterface::new(me);
        let t0 = UnixMs(1_000_000);
        let id = s.call(t0, provider, true, query()).unwrap();
        assert!(matches!(
            drain(&mut s).as_slice(),
            [ServiceOutput::Send { to, msg: ServiceMsg::Lookup { .. } }] if *to == provider
        ));
        s.handle_answer(other, id, Ok(LookupAnswer::default()));
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.poll_timeout(), Some(t0.plus_ms(CALL_TIMEOUT_MS)));
        s.handle_tick(t0.plus_ms(CALL_TIMEOUT_MS));
        assert_eq!(
            drain(&mut s),
            vec![ServiceOutput::Event(ServiceEvent::Answered {
                id,
                result: Err(LookupRefusal::TimedOut)
            })]
        );

        let mut p = ServiceInterface::new(provider);
        p.handle_lookup(t0, me, 7, query(), Ok(()));
        drain(&mut p);
        p.handle_tick(t0.plus_ms(CALL_TIMEOUT_MS));
        let out = drain(&mut p);
        assert!(out.iter().any(|o| matches!(
            o,
            ServiceOutput::Send {
                msg: ServiceMsg::Answer {
                    id: 7,
                    result: Err(LookupRefusal::Failed(_))
                },
                ..
            }
        )));
        assert_eq!(p.usage(&[1; 32]).map(|u| u.refused), Some(1));
        // Oversized keys never leave the caller.
        let big = LookupQuery {
            request: [1; 32],
            keys: vec!["x".repeat(LOOKUP_KEY_BYTES_MAX + 1)],
        };
        assert!(s.call(t0, provider, true, big).is_err());
    }

    /// An answer larger than the wire allows is cut to its bounds and marked truncated.
    #[test]
    fn an_oversized_answer_is_cut() {
        let records = (0..LOOKUP_RECORDS_MAX + 5)
            .map(|i| LookupRecord {
                key: format!("{i}"),
                line: vec![b'x'; 1024],
            })
            .collect();
        let a = LookupAnswer {
            header: b"h".to_vec(),
            records,
            truncated: false,
        }
        .bound();
        assert!(a.truncated);
        assert!(a.check_limits().is_ok());
        assert!(a.records.len() < LOOKUP_RECORDS_MAX);
    }
}
