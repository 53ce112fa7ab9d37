//! Searching the unified catalog through the endpoint (Art. 16): a department of this node
//! asks; the node answers from its own index when its subtree covers the search, else the
//! search goes up the tree ([`crate::catalog_search`]). The shell runs every index search
//! the endpoint asks for ([`crate::catalog_search::SearchEvent::Asked`]).

use super::Endpoint;
use crate::catalog_search::{Asked, SearchQuery, SearchRefusal, SearchResults};
use crate::time::UnixMs;

impl<P: Copy + Ord + std::fmt::Debug> Endpoint<P> {
    /// A department of this node searches the unified catalog: answered here
    /// ([`Asked::Local`]: an `Asked` event follows for the shell's index) or by the nearest
    /// ancestor whose subtree covers it ([`Asked::Sent`]: an `Answered` event follows).
    pub fn search_catalog(
        &mut self,
        now: UnixMs,
        query: SearchQuery,
    ) -> Result<Asked, SearchRefusal> {
        self.search.ask(now, query)
    }

    /// The shell's index answered the search `id` it was asked for.
    pub fn answer_catalog_search(&mut self, id: u64, result: Result<SearchResults, SearchRefusal>) {
        self.search.answer(id, result);
    }
}
