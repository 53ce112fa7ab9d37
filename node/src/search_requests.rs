//! The event loop's catalog work beyond storing it: the log read back when the protocol asks
//! (`ReadLog`), and searches of the unified catalog (Art. 16): a department's
//! own — answered from this node's index when its subtree covers the search, else by the
//! nearest ancestor that does, over the overlay — and those passed up by descendants. The
//! protocol routes them (`backflow_protocol::catalog_search`); every index search runs on the
//! blocking pool and comes back as [`Work::SearchAnswered`].

use tracing::warn;

use crate::clock::now_ms;
use crate::dataplane::Work;
use crate::handle::SearchReply;
use crate::runtime::Runtime;
use backflow_protocol::catalog_search::{Asked, SearchEvent, SearchQuery};

impl Runtime {
    /// Catalog log entries the protocol asked to have read back (to send upstream).
    pub(crate) fn answer_log_read(&mut self, from: u64, count_max: usize) {
        match crate::catalog_store::read_log(&self.store, from, count_max) {
            Ok(updates) => self.ep.handle_catalog_log(now_ms(), from, updates),
            // The protocol asks again and reports it (LogUnreadable).
            Err(e) => warn!(from, error = %format!("{e:#}"), "catalog log unreadable"),
        }
    }

    /// A department of this node searches: the reply comes with the answer (or a refusal).
    pub(crate) fn ask_search(&mut self, query: SearchQuery, reply: SearchReply) {
        match self.ep.search_catalog(now_ms(), query) {
            Ok(Asked::Local(id) | Asked::Sent(id)) => {
                self.searches.insert(id, reply);
            }
            Err(refusal) => {
                let _ = reply.send(Err(refusal));
            }
        }
    }

    pub(crate) fn on_search_event(&mut self, ev: SearchEvent) {
        match ev {
            SearchEvent::Asked { id, query } => {
                let search = self.search.clone();
                let work = self.data.work.clone();
                let me = self.ep.region();
                tokio::task::spawn_blocking(move || {
                    let result = search.search_index(&query, me);
                    let _ = work.blocking_send(Work::SearchAnswered { id, result });
                });
            }
            SearchEvent::Answered { id, result } => {
                if let Some(reply) = self.searches.remove(&id) {
                    let _ = reply.send(result);
                }
            }
        }
    }
}
