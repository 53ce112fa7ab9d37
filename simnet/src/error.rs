//! simnet's errors, typed: callers match on variants, never on message text. Each one's
//! `Display` is the single line the CLI prints after `simnet: error: `.

use backflow_protocol::calendar::CalendarError;
use backflow_protocol::cert::CertError;
use backflow_protocol::endpoint::EndpointError;
use backflow_protocol::manifest::ManifestError;
use backflow_protocol::return_flow::{ReturnFlowError, RoutingError};
use backflow_protocol::tuning::TuningError;
use backflow_topology::{CodeError, RegionCode, TopologyError};

/// Why a simulation cannot be set up or run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    // ---- Inputs. ----
    #[error("unknown topology {0:?}: expected `china` or `synthetic:P,C,K,T` (fan-out per tier, e.g. synthetic:4,5,6,8)")]
    UnknownTopology(String),
    #[error("topology {spec:?}: expected 4 fan-outs (provinces, cities, counties, townships), got {got}")]
    FanoutCount { spec: String, got: usize },
    #[error("topology {spec:?}: {part:?} is not a fan-out count")]
    FanoutNotACount { spec: String, part: String },
    #[error("topology {spec:?}: fan-out {part:?} must be at least 1 and MIN <= MAX")]
    FanoutRange { spec: String, part: String },
    /// Checked before building: the simulator keeps every node in memory.
    #[error("synthetic topology could have {nodes} nodes; the limit is {max}")]
    TooManyNodes { nodes: u64, max: u64 },
    #[error("synthetic topology: {0}")]
    Synthetic(#[source] TopologyError),
    #[error("unknown routing {0:?}: expected strict, skip-level or direct")]
    UnknownRouting(String),
    #[error("unknown spread {0:?}: expected villages or even")]
    UnknownSpread(String),
    #[error("fault {text:?}: {problem}")]
    Fault {
        text: String,
        #[source]
        problem: FaultError,
    },

    // ---- A run that cannot start. ----
    #[error("{nodes} nodes is over the protocol node limit of {max} (memory); use --node model for larger what-ifs")]
    ProtocolNodes { nodes: usize, max: usize },
    #[error("publisher {0} is not a region of this topology")]
    PublisherOutside(RegionCode),
    #[error("fault names region {0}, not in this topology")]
    FaultOutside(RegionCode),
    #[error("a dataset of more than 0 bytes needs at least 1 record (--records)")]
    NoRecords,
    #[error("random faults need a fault window of more than 0 s")]
    NoFaultWindow,
    /// Strict routing waits for a parent only as long as the protocol lets a node wait.
    #[error("strict routing waits for a silent parent at most {max_s} s (the protocol's bound on source_silence_ms_max); a fault of {lasts_s} s is longer")]
    StrictFaultTooLong { lasts_s: u64, max_s: u64 },
    /// The run's tuning is one the node's config would refuse.
    #[error("{0}")]
    Tuning(#[source] TuningError),

    // ---- Building the protocol nodes' world (keys, certificates, manifests). ----
    #[error("region {0} has no parent in the topology")]
    Orphan(RegionCode),
    #[error("certifying {region}: {error}")]
    Certify {
        region: RegionCode,
        #[source]
        error: CertError,
    },
    #[error("building the manifest for {scope}: {error}")]
    BuildManifest {
        scope: RegionCode,
        #[source]
        error: ManifestError,
    },
    #[error("signing the manifest for {scope}: {error}")]
    SignManifest {
        scope: RegionCode,
        #[source]
        error: ManifestError,
    },
    #[error("the protocol refuses to publish this dataset for {scope}: {error}")]
    PublishRefused {
        scope: RegionCode,
        #[source]
        error: ReturnFlowError,
    },
    #[error("data-plane routing: {0}")]
    Routing(#[source] RoutingError),
    #[error("node {region} cannot start: {error}")]
    NodeStart {
        region: RegionCode,
        #[source]
        error: EndpointError,
    },

    // ---- The sharing scenario. ----
    #[error("{option}: {problem}")]
    ShareSpec {
        option: &'static str,
        problem: String,
    },
    #[error("calendar: {0}")]
    Calendar(#[source] CalendarError),
    #[error("the sharing scenario's network: {0}")]
    ShareTopology(#[source] TopologyError),
    #[error("the catalog scenario: {0}")]
    CatalogScale(&'static str),

    // ---- The embedded village table. ----
    #[error("village table: {0}")]
    VillageTable(#[source] VillageTableError),
}

/// What is wrong with a `--fault` spec.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FaultError {
    #[error("expected KIND:CODE:START_S:END_S (kind down, crash or partition)")]
    Format,
    #[error(transparent)]
    Region(#[from] TopologyError),
    #[error("{0:?} is not a number of seconds")]
    NotSeconds(String),
    #[error("{0} s is out of range")]
    OutOfRange(String),
    #[error("end must be after start")]
    EndNotAfterStart,
    #[error("cannot partition the whole country from itself")]
    WholeCountry,
    #[error("unknown kind {0:?} (down, crash or partition)")]
    UnknownKind(String),
}

/// What is wrong with the per-township village table.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VillageTableError {
    /// Not gzip, or not UTF-8 (the I/O error's text: `std::io::Error` is not `Clone`).
    #[error("{0}")]
    Unreadable(String),
    #[error("line {line}: no comma")]
    NoComma { line: usize },
    #[error("line {line}: {error}")]
    Code {
        line: usize,
        #[source]
        error: CodeError,
    },
    #[error("line {line}: bad count")]
    BadCount { line: usize },
    #[error("not sorted by code")]
    NotSorted,
}
