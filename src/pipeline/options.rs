//! What a run is asked to do: `run` or `rerun` (with `--force`, `--prune`), which
//! months, a dry run or not, and the time it stands for.

use chrono::{DateTime, Utc};

use crate::month::Month;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Write what is new or changed.
    Run,
    /// Bring a month in line with the source, compared with what the form
    /// holds; `force` rewrites every record (and deletes extra copies of a key),
    /// `prune` deletes records gone from the source, and `prune_all` lets it
    /// delete more than a fifth of the month.
    Rerun { force: bool, prune: Prune },
}

/// What `rerun` does with records gone from the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prune {
    /// List them (the default).
    Keep,
    /// `--prune`: delete them, unless that is more than a fifth of the month
    /// or the source returned nobody.
    Guarded,
    /// `--prune-all`: delete them whatever their number.
    All,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Explicit months; empty means the job's default months (README "Which months").
    pub months: Vec<Month>,
    /// Only these employees (source userids); empty means everyone. A month
    /// pulled for some employees is never settled as synced in full.
    pub employees: Vec<String>,
    pub dry_run: bool,
    pub now: DateTime<Utc>,
}

impl Options {
    pub(super) fn command(&self) -> &'static str {
        match self.mode {
            // Only a run of the default months stands for a scheduled one
            // (the daemon's catch-up looks for the last of those).
            Mode::Run if self.months.is_empty() && self.employees.is_empty() => "run",
            _ if !self.employees.is_empty() => "rerun --employee",
            Mode::Run => "run --month",
            Mode::Rerun { force: true, .. } => "rerun --force",
            Mode::Rerun {
                prune: Prune::Guarded,
                ..
            } => "rerun --prune",
            Mode::Rerun {
                prune: Prune::All, ..
            } => "rerun --prune-all",
            Mode::Rerun { .. } => "rerun",
        }
    }

    /// Whether only some employees are pulled (`--employee`).
    pub(super) fn some_employees(&self) -> bool {
        !self.employees.is_empty()
    }

    pub(super) fn is_rerun(&self) -> bool {
        matches!(self.mode, Mode::Rerun { .. })
    }

    pub(super) fn force(&self) -> bool {
        matches!(self.mode, Mode::Rerun { force: true, .. })
    }

    pub(super) fn prune(&self) -> Prune {
        match self.mode {
            Mode::Rerun { prune, .. } => prune,
            Mode::Run => Prune::Keep,
        }
    }
}
