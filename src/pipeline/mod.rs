//! One job end to end, in the order of its stages:
//!
//! - `plan.rs`: which months, where each month's employees come from, and a
//!   metered source's call budget (DingTalk);
//! - `pull.rs`: the task that pulls a month chunk by chunk (`Roster`);
//! - `map.rs`: a chunk through the mapping, on a blocking thread;
//! - `diff.rs`: what a chunk needs written, by the store (`run`) or the form
//!   (`rerun`); `gone.rs`: what the source no longer returns, `--prune`;
//! - `send.rs`: a chunk's writes, several chunks at once;
//! - `report.rs`: the month and job reports.
//!
//! `job.rs` runs a job (lease, months, the run's row), `month.rs` one month;
//! `ctx.rs` holds what they share. Pulling runs in its own task and hands
//! chunks over a bounded channel, so writing one chunk overlaps pulling the
//! next and memory holds a few chunks at most.

mod ctx;
mod diff;
mod gone;
mod job;
mod map;
mod month;
mod options;
mod pace;
mod plan;
mod pull;
mod report;
pub mod rerun;
mod send;
mod target;
pub mod write;

pub use job::{RecordSink, Syncer};
pub use options::{Mode, Options, Prune};
pub use report::{JobReport, MonthReport};

use crate::pipeline::write::WriteError;
use crate::source::SourceError;
use crate::store::StoreError;
use crate::target::FormError;

/// What stops a month or a job.
#[derive(Debug, thiserror::Error)]
enum JobError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Form(#[from] FormError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
}

impl From<WriteError> for JobError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Form(e) => JobError::Form(e),
            WriteError::Store(e) => JobError::Store(e),
        }
    }
}
