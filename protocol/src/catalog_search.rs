//! Search of the unified catalog over the overlay (Art. 16: 统一向政府部门通告).
//!
//! Catalogs are published uniformly: a department at any node — a township included — can
//! search the whole country's catalog, yet only national holds all of it (≥ 3 M entries) and
//! every other node only its subtree's. So a search goes where the catalog is: a node whose
//! subtree covers the query (its region filter, or the whole country for none — national)
//! answers from its own index; any other node passes the query up to its nearest connected
//! ancestor, hop by hop, and the answer comes back down the same path. Nothing is replicated
//! to townships.
//!
//! Sans-IO like the other machines: the shell runs the index search when asked
//! ([`SearchEvent::Asked`]) and hands the result back ([`CatalogSearch::answer`]). Every hop
//! keeps what it forwarded (bounded, [`PENDING_MAX`]; a child at most
//! [`PENDING_PER_CHILD_MAX`]) until the answer or the deadline ([`SEARCH_TIMEOUT_MS`]); a
//! search that cannot go on is answered with why ([`SearchRefusal`]), never left hanging.
//! A query carries no signature: it asks for what is published to every department anyway;
//! the peer that sends it is an admitted node of the tree.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use backflow_topology::RegionCode;
use serde::{Deserialize, Serialize};

use crate::limits::{check_len, Bounded, LimitError, NAME_BYTES_MAX};
use crate::time::UnixMs;

/// Bytes of a query's free text.
pub const QUERY_TEXT_BYTES_MAX: usize = 256;
/// Hits in one answer.
pub const HITS_MAX: usize = 100;
/// Hits skipped (paging).
pub const OFFSET_MAX: u32 = 10_000;
/// Searches a node has in flight (its own and those it passes on).
pub const PENDING_MAX: usize = 1_024;
/// Searches one child may have in flight through this node.
pub const PENDING_PER_CHILD_MAX: usize = 64;
/// A search not answered by then is answered [`SearchRefusal::TimedOut`] (at every hop: the
/// asker's deadline is the longest, so a late answer below still reaches it).
pub const SEARCH_TIMEOUT_MS: u64 = 10_000;

/// 共享属性 (Art. 14) as a filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharingFilter {
    Unconditional,
    Conditional,
    NotShared,
}

/// What is searched: words of an entry's name and data items, and filters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    pub text: String,
    pub provider: Option<String>,
    pub sharing: Option<SharingFilter>,
    /// A region's subtree; `None`: the whole country.
    pub region: Option<RegionCode>,
    pub offset: u32,
    pub limit: u32,
}

impl SearchQuery {
    /// The region whose subtree the query covers.
    pub fn scope(&self) -> RegionCode {
        self.region.unwrap_or(RegionCode::NATIONAL)
    }
}

impl Bounded for SearchQuery {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len("search text bytes", self.text.len(), QUERY_TEXT_BYTES_MAX)?;
        if let Some(p) = &self.provider {
            check_len("search provider bytes", p.len(), NAME_BYTES_MAX)?;
        }
        check_len("search hits asked", self.limit as usize, HITS_MAX)?;
        check_len("search offset", self.offset as usize, OFFSET_MAX as usize)
    }
}

/// One matching entry: enough to show it and to look it up where it is held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub region: RegionCode,
    pub department: String,
    pub entry_id: String,
    /// 数据目录名称
    pub name: String,
    pub score: f32,
}

/// An answer: the page of hits and who answered (whose subtree's catalog it searched).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub total: u64,
    pub hits: Vec<SearchHit>,
    pub answered_by: RegionCode,
}

impl Bounded for SearchResults {
    fn check_limits(&self) -> Result<(), LimitError> {
        check_len("search hits", self.hits.len(), HITS_MAX)?;
        for h in &self.hits {
            check_len(
                "search hit department bytes",
                h.department.len(),
                NAME_BYTES_MAX,
            )?;
            check_len("search hit id bytes", h.entry_id.len(), NAME_BYTES_MAX)?;
            check_len("search hit name bytes", h.name.len(), NAME_BYTES_MAX)?;
        }
        // A score is a relevance, finite and ≥ 0; a NaN from a hostile peer would also make
        // the answer unequal to itself and unsortable (found by the `frame` fuzz target).
        let scores_bad = self
            .hits
            .iter()
            .filter(|h| !(h.score.is_finite() && h.score >= 0.0))
            .count();
        check_len(
            "search hit scores that are not a finite number ≥ 0",
            scores_bad,
            0,
        )
    }
}

/// Why a search was not answered with hits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SearchRefusal {
    #[error("no node above is reachable to search the catalog beyond this node's subtree")]
    Unreachable,
    #[error("too many searches in flight; try again shortly")]
    Busy,
    #[error("the search was not answered in time")]
    TimedOut,
    #[error("the catalog index could not answer: {0}")]
    Failed(String),
}

impl Bounded for SearchRefusal {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            SearchRefusal::Failed(why) => {
                check_len("search failure bytes", why.len(), NAME_BYTES_MAX)
            }
            _ => Ok(()),
        }
    }
}

/// Messages between neighbours on the tree.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum SearchMsg {
    /// Child → ancestor: search this (the id is the sender's).
    Query { id: u64, query: SearchQuery },
    /// Back down: the answer to the receiver's query `id`.
    Answer {
        id: u64,
        result: Result<SearchResults, SearchRefusal>,
    },
}

impl Bounded for SearchMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            SearchMsg::Query { query, .. } => query.check_limits(),
            SearchMsg::Answer { result: Ok(r), .. } => r.check_limits(),
            SearchMsg::Answer { result: Err(e), .. } => e.check_limits(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum SearchEvent {
    /// Search this node's own index for `query` (its subtree covers it) and hand the result
    /// to [`CatalogSearch::answer`] with this `id`.
    Asked { id: u64, query: SearchQuery },
    /// The answer to a search this node asked ([`CatalogSearch::ask`]).
    Answered {
        id: u64,
        result: Result<SearchResults, SearchRefusal>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum SearchOutput {
    Send { to: RegionCode, msg: SearchMsg },
    Event(SearchEvent),
}

/// Where a search asked of this node goes next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// This node's subtree covers it: search the own index ([`SearchEvent::Asked`] follows).
    Local(u64),
    /// Passed up: [`SearchEvent::Answered`] follows.
    Sent(u64),
}

#[derive(Clone, Debug)]
struct Pending {
    /// Who waits for the answer: a child and its id, or this node's own asker.
    reply_to: Option<(RegionCode, u64)>,
    deadline: UnixMs,
}

/// One node's side of catalog search.
#[derive(Debug)]
pub struct CatalogSearch {
    region: RegionCode,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    per_child: BTreeMap<RegionCode, usize>,
    /// Ancestors connected now (the shell's admissions).
    reachable: BTreeSet<RegionCode>,
    out: VecDeque<SearchOutput>,
}

impl CatalogSearch {
    pub fn new(region: RegionCode) -> CatalogSearch {
        CatalogSearch {
            region,
            next_id: 1,
            pending: BTreeMap::new(),
            per_child: BTreeMap::new(),
            reachable: BTreeSet::new(),
            out: VecDeque::new(),
        }
    }

    pub fn poll_output(&mut self) -> Option<SearchOutput> {
        self.out.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<UnixMs> {
        self.pending.values().map(|p| p.deadline).min()
    }

    /// Searches in flight here.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// A region connected (`up`) or gone.
    pub fn handle_reachable(&mut self, region: RegionCode, up: bool) {
        if up {
            self.reachable.insert(region);
        } else {
            self.reachable.remove(&region);
        }
    }

    fn covers(&self, query: &SearchQuery) -> bool {
        self.region.contains(query.scope())
    }

    /// The nearest connected ancestor.
    fn upstream(&self) -> Option<RegionCode> {
        self.region
            .ancestors()
            .find(|a| *a != self.region && self.reachable.contains(a))
    }

    /// This node's department searches the unified catalog.
    pub fn ask(&mut self, now: UnixMs, query: SearchQuery) -> Result<Asked, SearchRefusal> {
        if query.check_limits().is_err() {
            return Err(SearchRefusal::Failed("the search exceeds a limit".into()));
        }
        let id = self.admit(now, None)?;
        if self.covers(&query) {
            self.out
                .push_back(SearchOutput::Event(SearchEvent::Asked { id, query }));
            return Ok(Asked::Local(id));
        }
        match self.upstream() {
            Some(up) => {
                self.out.push_back(SearchOutput::Send {
                    to: up,
                    msg: SearchMsg::Query { id, query },
                });
                Ok(Asked::Sent(id))
            }
            None => {
                self.pending.remove(&id);
                Err(SearchRefusal::Unreachable)
            }
        }
    }

    /// Takes a pending slot; `None` for this node's own asker.
    fn admit(
        &mut self,
        now: UnixMs,
        child: Option<(RegionCode, u64)>,
    ) -> Result<u64, SearchRefusal> {
        if self.pending.len() >= PENDING_MAX {
            return Err(SearchRefusal::Busy);
        }
        if let Some((c, _)) = child {
            let n = self.per_child.entry(c).or_default();
            if *n >= PENDING_PER_CHILD_MAX {
                return Err(SearchRefusal::Busy);
            }
            *n += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        // Hops below wait less than their asker, so a refusal from below arrives in time.
        let hops_below = child.map_or(0, |(c, _)| {
            c.level()
                .depth()
                .saturating_sub(self.region.level().depth())
        });
        let wait = SEARCH_TIMEOUT_MS.saturating_sub(u64::from(hops_below) * 500);
        self.pending.insert(
            id,
            Pending {
                reply_to: child,
                deadline: now.plus_ms(wait),
            },
        );
        Ok(id)
    }

    fn release(&mut self, id: u64) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some((c, _)) = p.reply_to {
            if let Some(n) = self.per_child.get_mut(&c) {
                *n -= 1;
                if *n == 0 {
                    self.per_child.remove(&c);
                }
            }
        }
        Some(p)
    }

    /// A message from the admitted region `from`.
    pub fn handle_message(&mut self, now: UnixMs, from: RegionCode, msg: SearchMsg) {
        match msg {
            SearchMsg::Query { id, query } => self.on_query(now, from, id, query),
            SearchMsg::Answer { id, result } => {
                // Only the region it was sent to may answer (an ancestor).
                if !from.contains(self.region) || from == self.region {
                    return;
                }
                self.finish(id, result);
            }
        }
    }

    fn on_query(&mut self, now: UnixMs, from: RegionCode, child_id: u64, query: SearchQuery) {
        // Only descendants search through this node.
        if from == self.region || !self.region.contains(from) {
            return;
        }
        let id = match self.admit(now, Some((from, child_id))) {
            Ok(id) => id,
            Err(refusal) => {
                self.out.push_back(SearchOutput::Send {
                    to: from,
                    msg: SearchMsg::Answer {
                        id: child_id,
                        result: Err(refusal),
                    },
                });
                return;
            }
        };
        if self.covers(&query) {
            self.out
                .push_back(SearchOutput::Event(SearchEvent::Asked { id, query }));
            return;
        }
        match self.upstream() {
            Some(up) => self.out.push_back(SearchOutput::Send {
                to: up,
                msg: SearchMsg::Query { id, query },
            }),
            None => self.finish(id, Err(SearchRefusal::Unreachable)),
        }
    }

    /// The shell's answer to [`SearchEvent::Asked`] `id`. Hits beyond [`HITS_MAX`] are cut.
    pub fn answer(&mut self, id: u64, result: Result<SearchResults, SearchRefusal>) {
        let result = result.map(|mut r| {
            r.hits.truncate(HITS_MAX);
            r
        });
        self.finish(id, result);
    }

    fn finish(&mut self, id: u64, result: Result<SearchResults, SearchRefusal>) {
        let Some(p) = self.release(id) else {
            return; // answered already, or timed out
        };
        match p.reply_to {
            None => self
                .out
                .push_back(SearchOutput::Event(SearchEvent::Answered { id, result })),
            Some((child, child_id)) => self.out.push_back(SearchOutput::Send {
                to: child,
                msg: SearchMsg::Answer {
                    id: child_id,
                    result,
                },
            }),
        }
    }

    /// Time passed: searches past their deadline are answered [`SearchRefusal::TimedOut`].
    pub fn handle_tick(&mut self, now: UnixMs) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.finish(id, Err(SearchRefusal::TimedOut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> RegionCode {
        RegionCode::parse(s).unwrap()
    }

    fn results(by: &str) -> SearchResults {
        SearchResults {
            total: 1,
            hits: Vec::new(),
            answered_by: code(by),
        }
    }

    fn drain(s: &mut CatalogSearch) -> Vec<SearchOutput> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    /// The one output `s` has.
    fn one(s: &mut CatalogSearch) -> SearchOutput {
        let mut out = drain(s);
        assert_eq!(out.len(), 1, "{out:?}");
        out.remove(0)
    }

    /// A peer's answer with a score that is not a finite number ≥ 0 is refused at decoding
    /// (the `frame` fuzz target found that a NaN made an accepted message unequal to itself).
    #[test]
    fn an_answer_with_a_score_that_is_not_a_number_is_refused() {
        use crate::wire::{decode_frame, encode_frame, Message};
        let answer = |score: f32| {
            Message::Search(SearchMsg::Answer {
                id: 1,
                result: Ok(SearchResults {
                    total: 1,
                    hits: vec![SearchHit {
                        region: RegionCode::NATIONAL,
                        department: "公安厅".into(),
                        entry_id: "e1".into(),
                        name: "户籍人口".into(),
                        score,
                    }],
                    answered_by: RegionCode::NATIONAL,
                }),
            })
        };
        let good = answer(1.5);
        assert_eq!(decode_frame(&encode_frame(&good).unwrap()).unwrap(), good);
        for bad in [f32::NAN, f32::INFINITY, -1.0] {
            let msg = answer(bad);
            assert!(msg.check_limits().is_err(), "{bad}");
            // Encoded without the check, as a hostile peer would: decoding refuses it.
            let body = crate::wire::encode_unchecked_for_tests(&msg);
            assert!(decode_frame(&body).is_err(), "{bad}");
        }
    }

    /// A township's country-wide search goes up hop by hop to national and back down.
    #[test]
    fn a_search_goes_up_to_the_node_that_covers_it_and_back() {
        let now = UnixMs(0);
        let (town, county, national) = (code("110101001"), code("110101"), RegionCode::NATIONAL);
        let mut t = CatalogSearch::new(town);
        let mut c = CatalogSearch::new(county);
        let mut n = CatalogSearch::new(national);
        t.handle_reachable(county, true);
        c.handle_reachable(national, true); // skip-level: city and province down
        assert_eq!(
            t.ask(
                now,
                SearchQuery {
                    limit: 10,
                    ..Default::default()
                }
            ),
            Ok(Asked::Sent(1))
        );
        let SearchOutput::Send { to, msg } = one(&mut t) else {
            panic!()
        };
        assert_eq!(to, county);
        c.handle_message(now, town, msg);
        let SearchOutput::Send { to, msg } = one(&mut c) else {
            panic!()
        };
        assert_eq!(to, national);
        n.handle_message(now, county, msg);
        let SearchOutput::Event(SearchEvent::Asked { id, .. }) = one(&mut n) else {
            panic!()
        };
        n.answer(id, Ok(results("0")));
        let SearchOutput::Send { to, msg } = one(&mut n) else {
            panic!()
        };
        assert_eq!(to, county);
        c.handle_message(now, national, msg);
        let SearchOutput::Send { to, msg } = one(&mut c) else {
            panic!()
        };
        assert_eq!(to, town);
        t.handle_message(now, county, msg);
        assert_eq!(
            drain(&mut t),
            [SearchOutput::Event(SearchEvent::Answered {
                id: 1,
                result: Ok(results("0"))
            })]
        );
        assert_eq!(
            (t.pending_len(), c.pending_len(), n.pending_len()),
            (0, 0, 0)
        );
    }

    #[test]
    fn a_search_within_the_subtree_is_answered_locally_and_a_lost_one_times_out() {
        let county = code("110101");
        let mut c = CatalogSearch::new(county);
        let local = SearchQuery {
            region: Some(code("110101001")),
            ..Default::default()
        };
        assert_eq!(c.ask(UnixMs(0), local), Ok(Asked::Local(1)));
        // Nothing above is connected: a country-wide search is refused at once.
        assert_eq!(
            c.ask(UnixMs(0), SearchQuery::default()),
            Err(SearchRefusal::Unreachable)
        );
        c.handle_reachable(code("1101"), true);
        assert_eq!(c.ask(UnixMs(0), SearchQuery::default()), Ok(Asked::Sent(3)));
        drain(&mut c);
        c.handle_tick(UnixMs(SEARCH_TIMEOUT_MS));
        let out = drain(&mut c);
        assert!(out.contains(&SearchOutput::Event(SearchEvent::Answered {
            id: 3,
            result: Err(SearchRefusal::TimedOut)
        })));
    }

    #[test]
    fn a_child_cannot_flood_a_node_and_strangers_are_ignored() {
        let city = code("1101");
        let mut c = CatalogSearch::new(city);
        c.handle_reachable(code("11"), true);
        let child = code("110101");
        for i in 0..PENDING_PER_CHILD_MAX as u64 + 1 {
            c.handle_message(
                UnixMs(0),
                child,
                SearchMsg::Query {
                    id: i,
                    query: SearchQuery::default(),
                },
            );
        }
        let out = drain(&mut c);
        assert_eq!(out.len(), PENDING_PER_CHILD_MAX + 1);
        assert_eq!(
            out.last(),
            Some(&SearchOutput::Send {
                to: child,
                msg: SearchMsg::Answer {
                    id: PENDING_PER_CHILD_MAX as u64,
                    result: Err(SearchRefusal::Busy)
                }
            })
        );
        // Not a descendant: no query through this node; not an ancestor: no answer.
        c.handle_message(
            UnixMs(0),
            code("12"),
            SearchMsg::Query {
                id: 9,
                query: SearchQuery::default(),
            },
        );
        c.handle_message(
            UnixMs(0),
            code("110102"),
            SearchMsg::Answer {
                id: 1,
                result: Err(SearchRefusal::Busy),
            },
        );
        assert!(drain(&mut c).is_empty());
        assert_eq!(c.pending_len(), PENDING_PER_CHILD_MAX);
    }
}
