//! Progress of a run: bars on a terminal (indicatif), plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

use crate::store::MonthCounts;

/// Told about each month as its chunks are pulled and written.
pub trait Progress: Send + Sync {
    fn month_started(&self, job: &str, month: &str, employees: u64);
    /// `employees`: how many are known so far (grows while the organisation is listed).
    fn chunk_done(&self, job: &str, month: &str, counts: &MonthCounts, employees: u64);
    fn month_done(&self, job: &str, month: &str);
}

/// Log lines (`tracing`), for cron logs and pipes.
pub struct LogProgress;

impl Progress for LogProgress {
    fn month_started(&self, job: &str, month: &str, employees: u64) {
        tracing::info!(%job, %month, employees, "pulling");
    }

    fn chunk_done(&self, job: &str, month: &str, c: &MonthCounts, employees: u64) {
        tracing::info!(%job, %month, pulled = c.pulled, of = employees, created = c.created,
            updated = c.updated, unchanged = c.unchanged, failed = c.failed, "progress");
    }

    fn month_done(&self, _job: &str, _month: &str) {}
}

/// One bar per month being synced.
#[derive(Default)]
pub struct BarProgress {
    bar: Mutex<Option<ProgressBar>>,
}

impl Progress for BarProgress {
    fn month_started(&self, job: &str, month: &str, employees: u64) {
        let bar = ProgressBar::new(employees);
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} employees · {msg} · {elapsed}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{job} {month}"));
        *self.bar.lock().unwrap_or_else(|e| e.into_inner()) = Some(bar);
    }

    fn chunk_done(&self, _job: &str, _month: &str, c: &MonthCounts, employees: u64) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // While the organisation is still being listed, the total grows.
            bar.set_length(employees.max(c.pulled));
            bar.set_position(c.pulled);
            bar.set_message(format!(
                "{} created, {} updated, {} unchanged, {} failed",
                c.created, c.updated, c.unchanged, c.failed
            ));
        }
    }

    fn month_done(&self, _job: &str, _month: &str) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_and_clear();
        }
    }
}

/// Bars when stderr is a terminal, log lines otherwise.
pub fn for_stderr() -> std::sync::Arc<dyn Progress> {
    if std::io::stderr().is_terminal() {
        std::sync::Arc::new(BarProgress::default())
    } else {
        std::sync::Arc::new(LogProgress)
    }
}
