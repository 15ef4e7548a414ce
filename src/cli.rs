//! Command-line definitions (README "Use it").

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::month::Month;

#[derive(Debug, Parser)]
#[command(
    name = "attendsync",
    version,
    about = "Sync monthly attendance reports from WeCom and DingTalk into Jiandaoyun forms"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The folder that holds jobs/ and mappings/.
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub config_dir: PathBuf,
    /// The SQLite file [default: attendsync.db inside the config dir].
    #[arg(long, global = true, value_name = "PATH", env = "ATTENDSYNC_DB")]
    pub db: Option<PathBuf>,
}

impl Global {
    pub fn db_path(&self) -> PathBuf {
        self.db
            .clone()
            .unwrap_or_else(|| self.config_dir.join("attendsync.db"))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// One-shot sync of new and changed records, for system cron.
    Run {
        /// Jobs to run (file stems in jobs/); all jobs when omitted.
        jobs: Vec<String>,
        /// A month to sync (YYYY-MM); repeatable. Default: the job's default months.
        #[arg(long = "month", value_name = "YYYY-MM")]
        months: Vec<Month>,
        /// Pull and map, print the records as JSON lines, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print a machine-readable JSON summary on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Pull a month again and bring Jiandaoyun in line with it.
    Rerun {
        job: String,
        #[arg(long = "month", value_name = "YYYY-MM")]
        month: Month,
        /// Only this employee (the source's userid); repeat for more. Pulls and
        /// writes only their records, at their calls alone.
        #[arg(long = "employee", value_name = "ID", value_parser = employee_id)]
        employees: Vec<String>,
        /// Rewrite every record, changed or not.
        #[arg(long)]
        force: bool,
        /// Delete records gone from the source (the source answered for their
        /// employee with nothing). Refused when that is more than a fifth of the
        /// month, or everything because the source returned nobody.
        #[arg(long)]
        prune: bool,
        /// Like --prune, without the one-fifth guard.
        #[arg(long)]
        prune_all: bool,
        /// Read the source and the form, write nothing: print the records and
        /// list what would be created, updated and pruned.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Stay up and run every job on its schedule (cron, in the job's timezone).
    Daemon,
    /// Validate every job and mapping file.
    Check {
        /// Also log in to the sources and check the mapping against the form's fields.
        #[arg(long)]
        remote: bool,
    },
    /// Recent runs and per job-month counts.
    Status { job: Option<String> },
    /// Run the shipped examples against built-in simulators (no credentials needed).
    Demo {
        /// Employees in the simulated organisation.
        #[arg(long, default_value_t = 250)]
        employees: usize,
    },
}

/// The most employees one `rerun --employee` takes: a correction of a few
/// people, not a second way to rerun the organisation.
pub const MAX_EMPLOYEES: usize = 1000;

/// An employee id as given on the command line: trimmed, not empty, no
/// control characters, at most 64 bytes (a WeCom userid's limit:
/// docs/vendors/wecom.md "Pulling a month").
pub fn employee_id(text: &str) -> Result<String, String> {
    let id = text.trim();
    if id.is_empty() {
        return Err("an employee id must not be empty".into());
    }
    if id.chars().any(char::is_control) {
        return Err("an employee id must not hold control characters".into());
    }
    if id.len() > 64 {
        return Err(format!(
            "an employee id is at most 64 bytes; this one is {}",
            id.len()
        ));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn employee_ids_are_trimmed_and_checked() {
        assert_eq!(employee_id(" zhangsan ").as_deref(), Ok("zhangsan"));
        assert!(employee_id("  ").is_err());
        assert!(employee_id("a\nb").is_err());
        assert!(employee_id(&"x".repeat(65)).is_err());
        assert_eq!(employee_id("张三").as_deref(), Ok("张三"));
    }
}
