//! `run` and `rerun`: the jobs run one after the other, the summary printed,
//! then each job's alert.

use super::{env_lookup, first_of_each, now, syncer_for, Output};
use crate::cli::Global;
use crate::config::{self, LoadedJob};
use crate::month::Month;
use crate::outcome::{ended_at, exit_status, summary_text, AppError};
use crate::pipeline::{JobReport, Mode, Options, Syncer};

/// `run` and `rerun` (of `employees` alone when there are any).
pub async fn sync(
    global: &Global,
    jobs: &[String],
    months: Vec<Month>,
    employees: Vec<String>,
    mode: Mode,
    output: Output,
) -> Result<u8, AppError> {
    // `run wc wc` or a repeated `--month` names a job or month once more, not a
    // second run of it.
    let jobs = first_of_each(jobs.to_vec());
    let months = first_of_each(months);
    let employees = first_of_each(employees);
    if employees.len() > crate::cli::MAX_EMPLOYEES {
        return Err(AppError::TooManyEmployees {
            given: employees.len(),
            max: crate::cli::MAX_EMPLOYEES,
        });
    }
    let loaded = config::load_for_runs(&global.config_dir, &jobs, &env_lookup)?;
    let syncer = syncer_for(global, output.dry_run)?;
    syncer.on_signals();
    crate::shutdown::ignore_hangups();
    let opts = Options {
        mode,
        months,
        employees,
        dry_run: output.dry_run,
        now: now()?,
    };
    let started = std::time::Instant::now();
    let reports = run_all(&syncer, &loaded, &opts).await;
    print_reports(&reports, output);
    // The clock of the run (`ATTENDSYNC_NOW` plus the time it took): the
    // alerts' time and their failure-streak arithmetic follow it.
    let ended = ended_at(opts.now, started);
    for (j, report) in loaded.iter().zip(&reports) {
        // Each job alerts on its own result, once per failure streak; a
        // failed alert is logged and never changes the exit status.
        let status = exit_status(std::slice::from_ref(report));
        crate::notify::after_run(&syncer.http, &syncer.store, &j.job, report, status, ended).await;
    }
    Ok(exit_status(&reports))
}

pub async fn run_all(syncer: &Syncer, jobs: &[LoadedJob], opts: &Options) -> Vec<JobReport> {
    let mut reports = Vec::new();
    for j in jobs {
        reports.push(syncer.run_job(&j.job, j.mapping.clone(), opts).await);
    }
    reports
}

fn print_reports(reports: &[JobReport], output: Output) {
    let text = summary_text(reports);
    if output.json {
        let json = serde_json::json!({ "jobs": reports, "exit_code": exit_status(reports) });
        crate::outln!("{json}");
        eprint!("{text}");
    } else if output.dry_run {
        eprint!("{text}");
    } else {
        crate::out!("{text}");
    }
}
