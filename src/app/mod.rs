//! The commands: what `main` calls. Each returns an exit status or a typed error;
//! only `main` turns errors into messages and exit codes.

mod check;
pub mod demo;
mod demo_events;
mod run;
mod status;

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use crate::cli::Global;
use crate::config::{self, ConfigErrors};
use crate::pipeline::{RecordSink, Syncer};
use crate::store::Store;

pub use crate::outcome::{
    exit_status, summary_text, AppError, EXIT_BUSY, EXIT_CONFIG, EXIT_FAILED, EXIT_OK,
};
pub use check::check;
pub use run::{run_all, sync};
pub use status::{status, status_text};

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub fn open_store(path: &Path) -> Result<Store, AppError> {
    Ok(Store::open(path)?)
}

/// The current time, or `ATTENDSYNC_NOW` (RFC 3339) when set: for tests and for
/// replaying a missed day (see [`crate::clock`]).
pub fn now() -> Result<chrono::DateTime<Utc>, AppError> {
    Ok(clock()?.now())
}

/// The process's clock: real, or `ATTENDSYNC_NOW` advancing in real time.
pub fn clock() -> Result<crate::clock::Clock, AppError> {
    crate::clock::Clock::from_env().map_err(|e| {
        AppError::Config(ConfigErrors(vec![crate::config::ConfigError {
            file: crate::clock::NOW_VAR.into(),
            line: 0,
            column: 0,
            key: String::new(),
            message: e.to_string(),
        }]))
    })
}

/// How a run prints: the summary on stdout unless stdout carries records or JSON.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub dry_run: bool,
}

pub fn stdout_sink() -> RecordSink {
    Arc::new(|record: &serde_json::Value| crate::outln!("{record}"))
}

/// `items` without repeats, in the order each first appears.
pub fn first_of_each<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// The sync engine for a config dir: its database, an HTTP client, stdout for
/// dry-run records.
pub fn syncer(global: &Global) -> Result<Syncer, AppError> {
    syncer_for(global, false)
}

/// [`syncer`]; a dry run without a database yet uses an empty one in memory
/// rather than create the file.
fn syncer_for(global: &Global, dry_run: bool) -> Result<Syncer, AppError> {
    let path = global.db_path();
    let store = if dry_run && !path.exists() {
        Store::open_in_memory()?
    } else {
        open_store(&path)?
    };
    Ok(Syncer {
        store,
        http: crate::http::client(crate::http::REQUEST_TIMEOUT)?,
        dry_run_sink: stdout_sink(),
        shutdown: crate::shutdown::Shutdown::new(),
        progress: crate::progress::for_stderr(),
    })
}

/// `daemon`: every job on its schedule until SIGTERM/SIGINT.
pub async fn daemon(global: &Global) -> Result<u8, AppError> {
    let clock = clock()?;
    let loaded = config::load(&global.config_dir, &[], &env_lookup)?;
    let syncer = syncer(global)?;
    syncer.on_signals();
    let server = crate::server::config::load(&global.config_dir, &env_lookup)?;
    let dir = global.config_dir.clone();
    let reload: crate::daemon::Reload = Box::new(move || config::load(&dir, &[], &env_lookup));
    crate::daemon::run(loaded, reload, Arc::new(syncer), clock, server).await
}
