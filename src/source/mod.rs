//! Sources: where attendance records come from. Each produces one JSON record per
//! employee and month (spec §5), in chunks, so memory stays flat.

pub mod wecom;

use serde_json::Value;

/// A source failure that stops the job (or the month, for `Exhausted`).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{vendor} {endpoint}: errcode {code} ({message}) — {hint}")]
    Api {
        vendor: &'static str,
        endpoint: String,
        code: i64,
        message: String,
        hint: &'static str,
    },
    #[error("{vendor} {endpoint}: gave up after {attempts} attempts; last error: {last}")]
    Exhausted {
        vendor: &'static str,
        endpoint: String,
        attempts: u32,
        last: String,
    },
    #[error("{vendor} {endpoint}: unexpected answer: {message}")]
    Protocol {
        vendor: &'static str,
        endpoint: String,
        message: String,
    },
}

impl SourceError {
    /// True when retrying later may help: the month is marked failed, the job goes on.
    pub fn is_transient(&self) -> bool {
        matches!(self, SourceError::Exhausted { .. })
    }
}

/// One employee's record for one month, as the source gave it.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub employee: String,
    pub record: Value,
}

/// What one pull of a chunk of employees produced.
#[derive(Debug, Default)]
pub struct Pulled {
    pub records: Vec<SourceRecord>,
    /// Employees the source rejected, with the reason.
    pub failed: Vec<(String, String)>,
    /// Employees asked for but absent from the answer (left, out of scope, no rule).
    pub absent: Vec<String>,
}
