//! Catalog-sync messages: what one [`super::CatalogSync`] sends another, and their limits.
//! [`crate::wire::Message`] carries them; the machine makes and handles them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::SignedCatalogUpdate;
use crate::limits::{check_len, Bounded, LimitError, UPDATES_PER_BATCH_MAX};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CatalogMsg {
    /// Child → parent: what is your watermark for my log `log_id`?
    Probe { log_id: u64 },
    /// Child → parent: log entries `first, first + 1, …`.
    Updates {
        log_id: u64,
        first: u64,
        updates: Vec<Arc<SignedCatalogUpdate>>,
    },
    /// Parent → child: entries `1..=watermark` of log `log_id` are applied.
    Ack { log_id: u64, watermark: u64 },
}

impl Bounded for CatalogMsg {
    fn check_limits(&self) -> Result<(), LimitError> {
        match self {
            CatalogMsg::Updates { updates, .. } => {
                check_len("updates per batch", updates.len(), UPDATES_PER_BATCH_MAX)?;
                updates.iter().try_for_each(|u| u.check_limits())
            }
            CatalogMsg::Probe { .. } | CatalogMsg::Ack { .. } => Ok(()),
        }
    }
}
