//! Full-text index of the unified government data catalog (政务数据目录, Arts. 13–16 of the
//! 政务数据共享条例).
//!
//! The national node holds one catalog of the whole country (every jurisdiction's departments,
//! ≥ 3 million entries), and Art. 16 has it made known to government departments in a unified
//! way (统一向政府部门通告): a requester must be able to *find* an entry before filing a share
//! request for it (Arts. 20–22). This crate is that search: by name (Chinese text, segmented
//! with jieba), data item names, provider department (提供单位), sharing attribute (共享属性,
//! Art. 14) and region (a region's whole subtree).
//!
//! The entries themselves live in the node's RocksDB (the source of truth). This index is
//! *derived*: [`CatalogIndex::apply`] is fed the catalog log in order, [`CatalogIndex::commit`]
//! records in tantivy's commit payload the log index it has durably indexed through
//! ([`CatalogIndex::applied_through`]), and after a crash the caller replays the log from the
//! next index. A corrupt or incompatible index is reported as an error naming its directory;
//! the caller deletes the directory and rebuilds from the log.
//!
//! # Query semantics
//! Free text is segmented with jieba and every word must match (AND) somewhere in the entry's
//! text (its name, data item names and descriptions, classification); matches are ranked by
//! BM25, a word in the entry's name counting extra. AND is what users of a catalog search
//! expect: "公安局 行政许可" means the public security bureau's administrative licences, not
//! every licence in the country plus every record of every public security bureau.
//! Segmentation depends on context, so a query word may be split differently inside an entry's
//! name (query 社会保障, name 人力资源和社会保障局 → 社会 / 保障局): a query word also matches
//! where all the smaller dictionary words that make it up do (社会 and 保障; see [`QueryWord`]).
//! The text is never handed to tantivy's `QueryParser`: `name:* OR 1=1` is the words `name`,
//! `or` and `1`, not syntax. Filters
//! (provider, sharing attribute, region subtree) are exact term matches that do not affect the
//! score. Every query input is bounded ([`QUERY_TEXT_BYTES_MAX`], [`QUERY_TERMS_MAX`],
//! [`HITS_MAX`], [`OFFSET_MAX`]) and rejected with [`IndexError::Limit`] before any work.

use std::collections::{BTreeSet, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use backflow_protocol::catalog::{
    CatalogChange, CatalogEntry, CatalogOrigin, CatalogUpdate, SharingAttribute,
    SignedCatalogUpdate,
};
/// 共享属性 (Art. 14) as a filter: the protocol's, which carries it across the overlay.
pub use backflow_protocol::catalog_search::SharingFilter;
use backflow_protocol::limits::NAME_BYTES_MAX;
use backflow_topology::RegionCode;
use tantivy::collector::{Count, TopDocs};
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED,
};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, TextAnalyzer, TokenStream};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use tantivy_jieba::JiebaTokenizer;

/// Most hits one search returns (`CatalogQuery::limit`).
pub const HITS_MAX: usize = 100;
/// Deepest page one search may start at (`CatalogQuery::offset`): deep paging costs a top-k
/// heap of `offset + limit`; a requester narrows the query instead.
pub const OFFSET_MAX: usize = 10_000;
/// Longest free text accepted, in UTF-8 bytes (about 85 Chinese characters).
pub const QUERY_TEXT_BYTES_MAX: usize = 256;
/// Most distinct terms the free text may turn into: its words plus the parts they may also be
/// matched by ([`QueryWord`]). "公安局行政许可信息" is 5 (公安局, 行政许可, 信息, 行政, 许可).
pub const QUERY_TERMS_MAX: usize = 32;
/// Longest provider filter accepted: a department name, as the catalog bounds it.
pub const PROVIDER_BYTES_MAX: usize = NAME_BYTES_MAX;
/// Indexing memory budget, shared by the writer's threads; a segment is flushed when it fills.
pub const WRITER_HEAP_BYTES: usize = 64 * 1024 * 1024;
/// Indexing threads (the node has other work; two keep the budget's per-thread arena ≥ 32 MiB).
pub const WRITER_THREADS: usize = 2;
/// Words longer than this (in bytes) are not indexed: no catalog word is, and a pasted blob
/// must not bloat the term dictionary.
pub const TOKEN_BYTES_MAX: usize = 64;

/// Adds tracked between commits to skip needless deletes (8 bytes each, ~32 MiB at most with
/// the set's overhead); see [`CatalogIndex::apply_update`].
const PENDING_ADDS_TRACKED_MAX: usize = 1 << 20;

/// Analyzer used when indexing text: jieba's *search* mode, which emits each word and also its
/// dictionary sub-words (公安局 → 公安, 公安局), so a query for a part of a compound matches.
const ANALYZER_INDEX: &str = "backflow_zh_index";

/// Weight of a query word's BM25 score in the entry's name, added to its score in the whole
/// text (where the name is included too).
const BOOST_NAME: f32 = 2.0;

/// Prefix of the commit payload; the rest is the decimal log index.
const PAYLOAD_PREFIX: &str = "backflow-catalog-index/v1 applied_through=";

/// The indexed term of an entry's 共享属性 (Art. 14): what a [`SharingFilter`] matches.
fn sharing_term(attribute: &SharingAttribute) -> &'static str {
    filter_term(match attribute {
        SharingAttribute::Unconditional => SharingFilter::Unconditional,
        SharingAttribute::Conditional { .. } => SharingFilter::Conditional,
        SharingAttribute::NotShared { .. } => SharingFilter::NotShared,
    })
}

fn filter_term(filter: SharingFilter) -> &'static str {
    match filter {
        SharingFilter::Unconditional => "unconditional",
        SharingFilter::Conditional => "conditional",
        SharingFilter::NotShared => "not_shared",
    }
}

/// One word of query text. It matches an entry that has `word`, or, when `parts` is not
/// empty, every one of `parts`: the smaller dictionary words that make it up, which is how an
/// entry whose text segmented differently may hold it (社会保障 in 人力资源和社会保障局, indexed
/// as 社会 / 保障 / 保障局).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryWord {
    pub word: String,
    pub parts: Vec<String>,
}

/// A search of the catalog. Every field is untrusted input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogQuery {
    /// Free text (Chinese or not), matched word by word (AND) against the entry's name
    /// (数据目录名称), data item names (数据项) and descriptions, classification. Empty: no text
    /// condition.
    pub text: String,
    /// Only entries of this provider (提供单位), exactly.
    pub provider: Option<String>,
    /// Only entries with this sharing attribute (共享属性).
    pub sharing: Option<SharingFilter>,
    /// Only entries of this region or any region below it (a county: the county's own
    /// departments and all its townships').
    pub region: Option<RegionCode>,
    /// Hits to skip (paging), at most [`OFFSET_MAX`].
    pub offset: usize,
    /// Hits to return, at most [`HITS_MAX`]; 0 counts only.
    pub limit: usize,
}

/// One page of results.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchResults {
    /// Entries matching in all (exact, not estimated).
    pub total: u64,
    /// The page `offset .. offset + limit`, best first (ties in index order).
    pub hits: Vec<Hit>,
}

/// One matching entry: enough to show it and to fetch it from the catalog store.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The catalog's jurisdiction.
    pub region: RegionCode,
    /// The catalog's department (部门).
    pub department: String,
    /// The entry's id within the department's catalog.
    pub entry_id: String,
    /// 数据目录名称
    pub name: String,
    /// BM25 relevance (0 when the query has no text).
    pub score: f32,
}

/// Which query bound was exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryLimit {
    /// [`HITS_MAX`]
    Hits,
    /// [`OFFSET_MAX`]
    Offset,
    /// [`QUERY_TEXT_BYTES_MAX`]
    TextBytes,
    /// [`QUERY_TERMS_MAX`]
    Terms,
    /// [`PROVIDER_BYTES_MAX`]
    ProviderBytes,
}

impl std::fmt::Display for QueryLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryLimit::Hits => "HITS_MAX (hits per page)",
            QueryLimit::Offset => "OFFSET_MAX (page offset)",
            QueryLimit::TextBytes => "QUERY_TEXT_BYTES_MAX (query text bytes)",
            QueryLimit::Terms => "QUERY_TERMS_MAX (distinct terms in the query text)",
            QueryLimit::ProviderBytes => "PROVIDER_BYTES_MAX (provider filter bytes)",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The query exceeds a bound; nothing was searched.
    #[error("query exceeds {limit}: {got} > {max}")]
    Limit {
        limit: QueryLimit,
        got: usize,
        max: usize,
    },
    /// The index in `dir` cannot be opened or read: delete the directory and rebuild it from
    /// the catalog log.
    #[error("catalog index in {} is unreadable (delete it and rebuild from the catalog log): {source}", dir.display())]
    Unreadable {
        dir: PathBuf,
        source: tantivy::TantivyError,
    },
    /// The index in `dir` was written with another schema or payload format (another version
    /// of this crate): delete the directory and rebuild it from the catalog log.
    #[error("catalog index in {} is incompatible with this version (delete it and rebuild from the catalog log): {reason}", dir.display())]
    Incompatible { dir: PathBuf, reason: String },
    /// Another `CatalogIndex` (in this or another process) has the index in `dir` open for
    /// writing. Not a reason to delete it.
    #[error("catalog index in {} is already open for writing elsewhere: {source}", dir.display())]
    Locked {
        dir: PathBuf,
        source: tantivy::TantivyError,
    },
    /// Log indexes are 1-based.
    #[error("catalog log index 0 is not a log entry (indexes are 1-based)")]
    ZeroLogIndex,
    /// A stored document lacks a field this version writes (damaged index).
    #[error("catalog index document lacks its {0} field (delete the index and rebuild)")]
    Damaged(&'static str),
    #[error("creating catalog index directory {}: {source}", dir.display())]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Any other tantivy failure (I/O while writing or searching). After a failed `apply` or
    /// `commit`, drop the index, reopen it and replay the log from `applied_through() + 1`.
    #[error("catalog index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
}

/// The schema's fields. Stored fields are only what a [`Hit`] returns.
#[derive(Clone, Copy)]
struct Fields {
    /// Injective `(region, department, entry id)` key, raw; replaced/deleted by term.
    key: Field,
    /// 数据目录名称: jieba-segmented (ranking: a word in the name counts extra), stored.
    name: Field,
    /// All the entry's searchable text, jieba-segmented: the name, each data item's (数据项)
    /// name and description, and the classification (数据分类, which names the department).
    /// Words are *matched* here alone: every query word is then one term's postings, and an
    /// AND of words is an intersection that skips through them, where matching each word in
    /// several fields would make each a union that must be walked in full (measured: the
    /// slowest searches at 3 M entries took 2-3 times as long).
    text: Field,
    /// 提供单位, raw.
    provider: Field,
    /// The catalog's department, stored only.
    department: Field,
    /// The catalog's region code digits, stored only.
    region: Field,
    /// The region and each of its ancestors (national `0` included), raw: the subtree filter.
    region_path: Field,
    /// 共享属性 ([`SharingFilter::term`]), raw.
    sharing: Field,
    /// The entry id, stored only.
    entry_id: Field,
}

impl Fields {
    fn schema() -> (Schema, Fields) {
        let mut b = Schema::builder();
        // Raw terms for filters and the key: no positions, no frequencies, no field norms.
        let raw = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        );
        // Segmented text: frequencies and field norms for BM25, no positions (no phrase
        // queries: a Chinese phrase is matched as its words).
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(ANALYZER_INDEX)
                .set_index_option(IndexRecordOption::WithFreqs),
        );
        let fields = Fields {
            key: b.add_text_field("key", raw.clone()),
            name: b.add_text_field("name", text.clone() | STORED),
            text: b.add_text_field("text", text),
            provider: b.add_text_field("provider", raw.clone()),
            department: b.add_text_field("department", STORED),
            region: b.add_u64_field("region", STORED),
            region_path: b.add_text_field("region_path", raw.clone()),
            sharing: b.add_text_field("sharing", raw),
            entry_id: b.add_text_field("entry_id", STORED),
        };
        (b.build(), fields)
    }
}

/// The `(region, department, entry id)` key. Department and id are free text that may contain
/// any separator, so the department's byte length is spelled out: the key is injective.
fn entry_key(region: RegionCode, department: &str, entry_id: &str) -> String {
    format!("{region}|{}|{department}|{entry_id}", department.len())
}

/// A hash of a key, to remember it cheaply (collisions only cost a needless delete).
fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The derived full-text index of the catalog. One writer per directory (tantivy locks it).
pub struct CatalogIndex {
    /// `None` in memory.
    dir: Option<PathBuf>,
    fields: Fields,
    writer: IndexWriter<TantivyDocument>,
    reader: IndexReader,
    /// Query-text analyzer: jieba's default mode (the coarsest segmentation), so a query word is
    /// as specific as the user wrote it; see [`CatalogIndex::query_words`]. Cloned per search
    /// (a token stream needs `&mut`; the clone shares jieba's global dictionary).
    query_analyzer: TextAnalyzer,
    /// The index-time analyzer, to split a query word into its parts ([`QueryWord`]).
    index_analyzer: TextAnalyzer,
    /// Durable (committed) through this log index.
    applied_through: u64,
    /// Applied (buffered) through this log index; ≥ `applied_through`.
    pending_through: u64,
    /// Hashes of the keys added since the last commit, at most [`PENDING_ADDS_TRACKED_MAX`]
    /// (past that every Add deletes first); see [`Self::apply_update`].
    pending_adds: HashSet<u64>,
}

impl CatalogIndex {
    /// Opens the index in `dir`, or creates an empty one there (creating `dir` too).
    ///
    /// A corrupt or unreadable index is [`IndexError::Unreadable`] and one from an
    /// incompatible version [`IndexError::Incompatible`], both naming `dir`: the caller deletes
    /// it and rebuilds from the catalog log. Another `CatalogIndex` open on the same directory
    /// (in this or another process) holds its writer lock: that is [`IndexError::Locked`].
    pub fn open(dir: &Path) -> Result<CatalogIndex, IndexError> {
        let unreadable = |source| IndexError::Unreadable {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|source| IndexError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
        let directory =
            MmapDirectory::open(dir).map_err(|e| unreadable(tantivy::TantivyError::from(e)))?;
        let (schema, fields) = Fields::schema();
        let exists =
            Index::exists(&directory).map_err(|e| unreadable(tantivy::TantivyError::from(e)))?;
        let index = if exists {
            let index = Index::open(directory).map_err(unreadable)?;
            if index.schema() != schema {
                return Err(IndexError::Incompatible {
                    dir: dir.to_path_buf(),
                    reason: "its schema differs from this version's".into(),
                });
            }
            index
        } else {
            Index::create(directory, schema, Default::default()).map_err(unreadable)?
        };
        Self::with_index(Some(dir.to_path_buf()), index, fields)
    }

    /// An empty index in memory (tests, simulation).
    pub fn in_memory() -> Result<CatalogIndex, IndexError> {
        let (schema, fields) = Fields::schema();
        Self::with_index(None, Index::create_in_ram(schema), fields)
    }

    fn with_index(
        dir: Option<PathBuf>,
        index: Index,
        fields: Fields,
    ) -> Result<CatalogIndex, IndexError> {
        let wrap = |source: tantivy::TantivyError| match &dir {
            Some(dir) => IndexError::Unreadable {
                dir: dir.clone(),
                source,
            },
            None => IndexError::Tantivy(source),
        };
        // Tokenizers are not persisted with the index: register them on every open.
        let index_analyzer = analyzer(true);
        index
            .tokenizers()
            .register(ANALYZER_INDEX, index_analyzer.clone());
        let query_analyzer = analyzer(false);
        let metas = index.load_metas().map_err(wrap)?;
        let applied_through = match metas.payload.as_deref() {
            None => 0,
            Some(payload) => payload
                .strip_prefix(PAYLOAD_PREFIX)
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| IndexError::Incompatible {
                    dir: dir.clone().unwrap_or_default(),
                    reason: format!("commit payload {payload:?} is not this version's"),
                })?,
        };
        let writer = index
            .writer_with_num_threads(WRITER_THREADS, WRITER_HEAP_BYTES)
            .map_err(|source| match (&dir, source) {
                (Some(dir), source @ tantivy::TantivyError::LockFailure(..)) => {
                    IndexError::Locked {
                        dir: dir.clone(),
                        source,
                    }
                }
                (_, source) => wrap(source),
            })?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(wrap)?;
        Ok(CatalogIndex {
            dir,
            fields,
            writer,
            reader,
            query_analyzer,
            index_analyzer,
            applied_through,
            pending_through: applied_through,
            pending_adds: HashSet::new(),
        })
    }

    /// The directory, if on disk.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The catalog log index (1-based) through which updates are durably indexed, from the
    /// last commit's payload; 0 for a new index. Replay the log from the next index.
    pub fn applied_through(&self) -> u64 {
        self.applied_through
    }

    /// The log index through which updates are applied (buffered or committed): replay
    /// continues after it.
    pub fn pending_through(&self) -> u64 {
        self.pending_through
    }

    /// Applies catalog version `update`, log entry `log_index`: each Add / Update puts the entry
    /// (replacing the document with the same (region, department, entry id)), each Withdraw
    /// deletes it. Buffered until [`Self::commit`].
    ///
    /// Log entries at or below the highest already applied are skipped: replaying the log
    /// after a crash may start early without rolling entries back to an older version. The
    /// update is not verified here; the catalog log holds only verified versions
    /// ([`SignedCatalogUpdate::verify`]).
    pub fn apply(
        &mut self,
        log_index: u64,
        update: &SignedCatalogUpdate,
    ) -> Result<(), IndexError> {
        self.apply_update(log_index, &update.update)
    }

    /// [`Self::apply`] for the unsigned content (the signature plays no part in the index).
    pub fn apply_update(
        &mut self,
        log_index: u64,
        update: &CatalogUpdate,
    ) -> Result<(), IndexError> {
        if log_index == 0 {
            return Err(IndexError::ZeroLogIndex);
        }
        if log_index <= self.pending_through {
            return Ok(());
        }
        let CatalogOrigin { region, department } = &update.origin;
        let searcher = self.reader.searcher();
        for change in &update.changes {
            let key = entry_key(*region, department, change.entry_id());
            let term = Term::from_field_text(self.fields.key, &key);
            // Deletes apply to documents added before them, so an Update's new document,
            // added next, survives. An Add's key is new unless the log is odd; tantivy keeps
            // every delete queued until the segments have all caught up with it, which at a
            // full rebuild (3 M adds) cost ~500 MiB and a third of the time (measured), so an
            // Add deletes only if the key may already be there: committed (a term lookup), or
            // added since the last commit (a set of key hashes: a collision merely deletes
            // for nothing).
            let is_add = matches!(change, CatalogChange::Add(_));
            let hash = key_hash(&key);
            let maybe_present = !is_add
                || self.pending_adds.contains(&hash)
                || self.pending_adds.len() >= PENDING_ADDS_TRACKED_MAX
                || searcher.doc_freq(&term)? > 0;
            if maybe_present {
                self.writer.delete_term(term);
            }
            if is_add && self.pending_adds.len() < PENDING_ADDS_TRACKED_MAX {
                self.pending_adds.insert(hash);
            }
            match change {
                CatalogChange::Add(entry) | CatalogChange::Update(entry) => {
                    let doc = self.document(&key, *region, department, entry);
                    self.writer.add_document(doc)?;
                }
                CatalogChange::Withdraw { .. } => {}
            }
        }
        self.pending_through = log_index;
        Ok(())
    }

    fn document(
        &self,
        key: &str,
        region: RegionCode,
        department: &str,
        entry: &CatalogEntry,
    ) -> TantivyDocument {
        let f = &self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.key, key);
        doc.add_text(f.name, &entry.name);
        doc.add_text(f.text, &entry.name);
        for item in &entry.data_items {
            doc.add_text(f.text, &item.name);
            doc.add_text(f.text, &item.description);
        }
        doc.add_text(f.text, &entry.classification);
        doc.add_text(f.provider, &entry.provider);
        doc.add_text(f.department, department);
        doc.add_u64(f.region, region.digits());
        for code in region.path() {
            doc.add_text(f.region_path, code.to_string());
        }
        doc.add_text(f.sharing, sharing_term(&entry.sharing));
        doc.add_text(f.entry_id, &entry.id);
        doc
    }

    /// Makes everything applied so far durable and visible to search, recording the log
    /// index applied through in the commit payload. A no-op when nothing was applied.
    pub fn commit(&mut self) -> Result<(), IndexError> {
        if self.pending_through == self.applied_through {
            return Ok(());
        }
        let mut prepared = self.writer.prepare_commit()?;
        prepared.set_payload(&format!("{PAYLOAD_PREFIX}{}", self.pending_through));
        prepared.commit()?;
        self.applied_through = self.pending_through;
        self.pending_adds.clear();
        self.reader.reload()?;
        Ok(())
    }

    /// Waits for background segment merges to finish and closes the index (a graceful
    /// shutdown; dropping it instead is safe but may abandon a merge in progress).
    /// Uncommitted updates are discarded.
    pub fn close(self) -> Result<(), IndexError> {
        self.writer.wait_merging_threads()?;
        Ok(())
    }

    /// Segments visible to search (diagnostics: each one is searched in turn).
    pub fn segment_count(&self) -> usize {
        self.reader.searcher().segment_readers().len()
    }

    /// Documents visible to search (as of the last commit).
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Searches the committed index. Limits are checked before anything else.
    pub fn search(&self, query: &CatalogQuery) -> Result<SearchResults, IndexError> {
        check(QueryLimit::Hits, query.limit, HITS_MAX)?;
        check(QueryLimit::Offset, query.offset, OFFSET_MAX)?;
        check(
            QueryLimit::TextBytes,
            query.text.len(),
            QUERY_TEXT_BYTES_MAX,
        )?;
        if let Some(provider) = &query.provider {
            check(
                QueryLimit::ProviderBytes,
                provider.len(),
                PROVIDER_BYTES_MAX,
            )?;
        }
        let tantivy_query = self.build_query(query)?;
        let searcher = self.reader.searcher();
        // One pass scores and counts every match (measured: counting in a second, unscored
        // pass, so the top-k pass can skip, is slower here).
        let (total, top) = if query.limit == 0 {
            (tantivy_query.count(&searcher)?, Vec::new())
        } else {
            let top = TopDocs::with_limit(query.limit)
                .and_offset(query.offset)
                .order_by_score();
            searcher.search(&*tantivy_query, &(Count, top))?
        };
        let f = &self.fields;
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field, name: &'static str| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or(IndexError::Damaged(name))
            };
            let digits = doc
                .get_first(f.region)
                .and_then(|v| v.as_u64())
                .ok_or(IndexError::Damaged("region"))?;
            let region = RegionCode::parse(&digits.to_string())
                .map_err(|_| IndexError::Damaged("region"))?;
            hits.push(Hit {
                region,
                department: text(f.department, "department")?,
                entry_id: text(f.entry_id, "entry_id")?,
                name: text(f.name, "name")?,
                score,
            });
        }
        Ok(SearchResults {
            total: total as u64,
            hits,
        })
    }

    /// The distinct words of query text, in order, as the query analyzer segments it (jieba
    /// default mode, lower-cased), each with its parts. Tokens without a letter or digit
    /// (punctuation, spaces, operators such as `:` `*` `=`) are dropped: they carry no meaning
    /// in a catalog name. (A closure rather than a tantivy `TokenFilter` does this: tantivy's
    /// only stock one, `AlphaNumOnlyFilter`, keeps ASCII only and would drop every Chinese word.)
    pub fn query_words(&self, text: &str) -> Result<Vec<QueryWord>, IndexError> {
        check(QueryLimit::TextBytes, text.len(), QUERY_TEXT_BYTES_MAX)?;
        let mut analyzer = self.query_analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut terms = BTreeSet::new();
        let mut words = Vec::new();
        while let Some(token) = stream.next() {
            let word = &token.text;
            if !word.chars().any(char::is_alphanumeric) || terms.contains(word) {
                continue;
            }
            let parts = self.parts(word);
            terms.insert(word.clone());
            terms.extend(parts.iter().cloned());
            check(QueryLimit::Terms, terms.len(), QUERY_TERMS_MAX)?;
            words.push(QueryWord {
                word: word.clone(),
                parts,
            });
        }
        Ok(words)
    }

    /// The smaller words that `word` is made of, covering it left to right without overlap,
    /// longest first; empty unless the cover is complete. jieba's search mode gives every
    /// dictionary sub-word with its offsets, but not a cover (社会保障 → 社会, 保障, 社会保障;
    /// 公安局 → 公安, 公安局, where 局 alone is not a word): choosing one is the few lines below.
    fn parts(&self, word: &str) -> Vec<String> {
        let mut analyzer = self.index_analyzer.clone();
        let mut stream = analyzer.token_stream(word);
        let mut spans = Vec::new();
        while let Some(t) = stream.next() {
            if t.offset_to - t.offset_from < word.len() {
                spans.push((t.offset_from, t.offset_to, t.text.clone()));
            }
        }
        let mut parts = Vec::new();
        let mut at = 0;
        while at < word.len() {
            let next = spans
                .iter()
                .filter(|(from, _, _)| *from == at)
                .max_by_key(|(_, to, _)| *to);
            match next {
                Some((_, to, text)) => {
                    parts.push(text.clone());
                    at = *to;
                }
                None => return Vec::new(),
            }
        }
        parts
    }

    fn term(field: Field, text: &str) -> Box<dyn Query> {
        Box::new(TermQuery::new(
            Term::from_field_text(field, text),
            IndexRecordOption::WithFreqs,
        ))
    }

    fn build_query(&self, query: &CatalogQuery) -> Result<Box<dyn Query>, IndexError> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let text = query.text.trim();
        if !text.is_empty() {
            let words = self.query_words(text)?;
            if words.is_empty() {
                // Text with no word in it (only punctuation) can match nothing.
                return Ok(Box::new(tantivy::query::EmptyQuery));
            }
            for QueryWord { word, parts } in &words {
                let whole = Self::term(f.text, word);
                let clause = if parts.is_empty() {
                    whole
                } else {
                    let all_parts = parts
                        .iter()
                        .map(|p| (Occur::Must, Self::term(f.text, p)))
                        .collect();
                    Box::new(BooleanQuery::new(vec![
                        (Occur::Should, whole),
                        (Occur::Should, Box::new(BooleanQuery::new(all_parts))),
                    ]))
                };
                clauses.push((Occur::Must, clause));
                // Optional (there are Must clauses): only adds to the score.
                let in_name = BoostQuery::new(Self::term(f.name, word), BOOST_NAME);
                clauses.push((Occur::Should, Box::new(in_name)));
            }
        }
        let mut filter = |field: Field, value: &str| {
            let term = TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            );
            let q: Box<dyn Query> = Box::new(ConstScoreQuery::new(Box::new(term), 0.0));
            clauses.push((Occur::Must, q));
        };
        if let Some(provider) = &query.provider {
            filter(f.provider, provider);
        }
        if let Some(sharing) = query.sharing {
            filter(f.sharing, filter_term(sharing));
        }
        // Every entry is in the national subtree: no filter to intersect with.
        if let Some(region) = query.region.filter(|r| *r != RegionCode::NATIONAL) {
            filter(f.region_path, &region.to_string());
        }
        if clauses.is_empty() {
            return Ok(Box::new(AllQuery));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
    }
}

/// jieba (search mode for indexing, default mode for queries), long tokens dropped, lower-cased.
fn analyzer(search_mode: bool) -> TextAnalyzer {
    TextAnalyzer::builder(JiebaTokenizer::with_search_mode(search_mode))
        .filter(RemoveLongFilter::limit(TOKEN_BYTES_MAX))
        .filter(LowerCaser)
        .build()
}

fn check(limit: QueryLimit, got: usize, max: usize) -> Result<(), IndexError> {
    if got > max {
        Err(IndexError::Limit { limit, got, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
