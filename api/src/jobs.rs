//! Publish jobs: their progress and results for `GET /api/jobs/{id}`, a bounded table (the
//! oldest finished jobs are forgotten), and the bound on publishes running at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Jobs remembered for progress queries.
pub const JOBS_MAX: usize = 256;
/// Publishes running at once: each holds a partition buffer (up to 256 MiB) and a disk
/// stream; more would only thrash the machine.
pub const PUBLISHES_RUNNING_MAX: usize = 2;

#[derive(Default)]
pub struct Job {
    pub bytes_read: Arc<AtomicU64>,
    /// The input's size when known (a file, or a request with Content-Length).
    pub bytes_total: Option<u64>,
    result: Mutex<Option<Result<serde_json::Value, String>>>,
}

impl Job {
    pub fn finish(&self, result: Result<serde_json::Value, String>) {
        *self.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
    }

    fn is_finished(&self) -> bool {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub fn view(&self) -> JobView {
        let result = self.result.lock().unwrap_or_else(|e| e.into_inner());
        let (state, report, error) = match &*result {
            None => ("running", None, None),
            Some(Ok(r)) => ("done", Some(r.clone()), None),
            Some(Err(e)) => ("failed", None, Some(e.clone())),
        };
        JobView {
            state,
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_total: self.bytes_total,
            report,
            error,
        }
    }
}

/// A publish's progress, and once it ends its report or error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct JobView {
    /// `running`, `done` or `failed`.
    #[schema(value_type = String)]
    pub state: &'static str,
    /// Bytes of the input read so far.
    pub bytes_read: u64,
    /// The input's size, when known (a file, or a request with `Content-Length`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// The publish report, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::openapi::views::PublishReport>)]
    pub report: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub struct Jobs {
    table: Mutex<(u64, BTreeMap<u64, Arc<Job>>)>,
    running: Arc<Semaphore>,
}

impl Default for Jobs {
    fn default() -> Jobs {
        Jobs {
            table: Mutex::new((1, BTreeMap::new())),
            running: Arc::new(Semaphore::new(PUBLISHES_RUNNING_MAX)),
        }
    }
}

impl Jobs {
    /// A new job, if fewer than [`PUBLISHES_RUNNING_MAX`] are running; the permit ends with it.
    pub fn start(
        &self,
        bytes_total: Option<u64>,
    ) -> Result<(u64, Arc<Job>, OwnedSemaphorePermit), ApiError> {
        let permit = Arc::clone(&self.running).try_acquire_owned().map_err(|_| {
            ApiError::busy(format!(
                "{PUBLISHES_RUNNING_MAX} publishes are already running; try again when one ends"
            ))
        })?;
        let job = Arc::new(Job {
            bytes_total,
            ..Job::default()
        });
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let id = table.0;
        table.0 += 1;
        if table.1.len() >= JOBS_MAX {
            // Oldest finished first; running ones are at most PUBLISHES_RUNNING_MAX.
            let finished: Vec<u64> = table
                .1
                .iter()
                .filter(|(_, j)| j.is_finished())
                .map(|(k, _)| *k)
                .take(table.1.len() + 1 - JOBS_MAX)
                .collect();
            for k in finished {
                table.1.remove(&k);
            }
        }
        table.1.insert(id, Arc::clone(&job));
        assert!(table.1.len() <= JOBS_MAX + PUBLISHES_RUNNING_MAX);
        Ok((id, job, permit))
    }

    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        self.table
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .get(&id)
            .cloned()
    }
}
