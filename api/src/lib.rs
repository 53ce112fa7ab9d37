//! `backflow-api` — the node's local HTTP API, for ministry systems and for the CLI.
//!
//! Every request passes the [`gate`]: a `Host` naming the bound address and the node's API
//! token. Publishing takes the data as a streamed request body; path-based publish and export
//! touch only files inside the configured import and export directories ([`confine`]). The
//! routes are generic over [`Backend`], which the node implements over its running handle,
//! so the API and its defences are tested — and fuzzed — without RocksDB or a network.

pub mod backend;
pub mod client;
pub mod confine;
pub mod error;
pub mod gate;
pub mod jobs;
pub mod openapi;
pub mod routes;
pub mod secret_file;
pub mod serve;
pub mod token;

pub use backend::{
    Backend, CatalogListParams, CatalogSearchParams, CorrectionItemParams, DutyChangeParams,
    DutyExtendParams, Export, ExportSummary, ExportWhich, InspectParams, PublishInput,
    PublishParams, ReturnedAnswerParams, ReturnedCorrectionParams, ReviewDecideParams,
    ReviewRequest, ReviewSubmitParams, RevokeParams, RightsAction, RightsParams, ShareActParams,
    ShareFileParams, UseRecordParams,
};
pub use error::ApiError;
pub use openapi::router;
pub use routes::Directories;
pub use token::ApiToken;
