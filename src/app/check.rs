//! `check` and `check --remote`: every job and mapping validated; with
//! `--remote`, the source logged in to and the mapping compared with the
//! Jiandaoyun form's fields.

use std::path::Path;
use std::sync::Arc;

use chrono::Utc;

use super::{env_lookup, now};
use crate::cli::Global;
use crate::config::{self, LoadedJob};
use crate::outcome::{AppError, EXIT_CONFIG, EXIT_OK};
use crate::source::Source;
use crate::store::Store;

/// `check`: validates every job and mapping; exit 2 on any problem. With
/// `remote`, also logs in to each source and compares the mapping with the
/// Jiandaoyun form's fields.
pub async fn check(global: &Global, remote: bool) -> Result<u8, AppError> {
    let server = crate::server::config::load(&global.config_dir, &env_lookup);
    let (loaded, server) = match (config::load(&global.config_dir, &[], &env_lookup), server) {
        (Ok(loaded), Ok(server)) => {
            print_server(server.as_ref());
            (loaded, server)
        }
        (Err(mut jobs), Err(server)) => {
            jobs.0.extend(server.0);
            return Err(jobs.into());
        }
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(e.into()),
    };
    let mut status = EXIT_OK;
    let http = if remote {
        Some(crate::http::client(crate::http::REQUEST_TIMEOUT)?)
    } else {
        None
    };
    for j in &loaded {
        let job = &j.job;
        crate::outln!(
            "ok: job {} ({} → Jiandaoyun form {}, mapping {} with {} fields)",
            job.name,
            job.source.kind(),
            job.target.entry_id,
            job.mapping,
            j.mapping.fields().len()
        );
        for w in &j.warnings {
            crate::outln!("warning: {w}");
        }
        if let (false, Some(w)) = (remote, fixed_budget_warning(j)) {
            crate::outln!("warning: job {}: {w}", job.name);
        }
        if let Err(problem) = print_events(j, server.as_ref()) {
            status = EXIT_CONFIG;
            crate::outln!("problem: job {}: {problem}", job.name);
        }
        if let Some(http) = &http {
            let problems = check_remote(http, j, &global.db_path()).await;
            if problems.is_empty() {
                crate::outln!(
                    "ok: job {}: source login and form fields check out",
                    job.name
                );
            } else {
                status = EXIT_CONFIG;
                for p in problems {
                    crate::outln!("problem: job {}: {p}", job.name);
                }
            }
        }
    }
    Ok(status)
}

/// What `attendsync.toml` sets up, when it exists.
fn print_server(server: Option<&crate::server::ServerConfig>) {
    let Some(server) = server else { return };
    crate::outln!(
        "ok: {}: the daemon serves the API, /metrics and /healthz on {}",
        crate::server::config::SERVER_FILE,
        server.listen
    );
    if let Some(url) = &server.public_url {
        crate::outln!(
            "ok: {}: vendors call back at {url}",
            crate::server::config::SERVER_FILE
        );
    }
    if !server.listen.ip().is_loopback() {
        crate::outln!(
            "warning: {}: {} is reachable from other machines; put a TLS reverse proxy in front (the token travels in clear over plain HTTP)",
            crate::server::config::SERVER_FILE,
            server.listen
        );
    }
}

/// How the job's `[events]` arrive, and for HTTP deliveries the callback URL
/// to register in the vendor's console. An HTTP delivery without `[server]`
/// has nothing to arrive at: a problem.
fn print_events(j: &LoadedJob, server: Option<&crate::server::ServerConfig>) -> Result<(), String> {
    use crate::events::Delivery;
    let Some(events) = &j.job.events else {
        return Ok(());
    };
    let name = &j.job.name;
    let (vendor, path) = match &events.delivery {
        Delivery::Stream { gateway_url } => {
            crate::outln!(
                "ok: job {name}: events by DingTalk Stream mode (an outbound WebSocket opened through {gateway_url}); no public URL needed"
            );
            return Ok(());
        }
        Delivery::DingtalkPush { .. } => (
            "DingTalk (事件订阅 → HTTP 推送)",
            events.callback_path(name),
        ),
        Delivery::WecomCallback { .. } => {
            ("WeCom (接收事件服务器 → URL)", events.callback_path(name))
        }
    };
    let path = path.unwrap_or_default();
    let Some(server) = server else {
        return Err(format!(
            "[events] are pushed to the daemon's listener at {path}, but {} has no [server]; add one (and a public URL or reverse proxy in front)",
            crate::server::config::SERVER_FILE
        ));
    };
    match &server.public_url {
        Some(url) => crate::outln!(
            "ok: job {name}: register this callback URL in {vendor}: {}{path}",
            url.as_str().trim_end_matches('/')
        ),
        None => crate::outln!(
            "ok: job {name}: register https://<your public address>{path} in {vendor} (set public_url in [server] to see it whole); it reaches the listener on {}",
            server.listen
        ),
    }
    Ok(())
}

/// For plain `check` of a metered source: a budget that cannot pay for one
/// employee-month (the head count needs a call to the source).
fn fixed_budget_warning(j: &LoadedJob) -> Option<String> {
    let costs = j.job.source.call_costs()?;
    crate::budget::fixed_warning(
        costs.monthly_budget,
        u64::from(costs.per_employee),
        costs.fixed,
    )
}

/// For a metered source: what a run of the job's default months would spend,
/// against what is left of this calendar month's budget (Beijing time), and a
/// warning when it does not fit.
async fn expected_calls(source: &dyn Source, j: &LoadedJob, db: &Path) -> Option<String> {
    let costs = source.metering()?.costs();
    let employees = match source.employees().await {
        Ok(e) => e.len(),
        Err(e) => return Some(format!("cannot list employees to plan the calls: {e}")),
    };
    let now = now().ok()?;
    let tz = j.job.timezone;
    let months = crate::month::default_months(now, tz, j.job.previous_month_until_day);
    let period = crate::budget::quota_period(now);
    // `check` never creates or changes the database; without one nothing was
    // spent yet.
    let spent = Store::open_read_only(db)
        .and_then(|s| s.metered_spent(&j.job.name, period))
        .unwrap_or(0);
    let plan = crate::budget::Plan::make(
        &months,
        employees,
        u64::from(costs.per_employee),
        1,
        costs.monthly_budget,
        spent,
        period,
    );
    match plan.fit_warning() {
        Some(w) => Some(format!(
            "{}\nwarning: job {}: {w}",
            plan.describe(),
            j.job.name
        )),
        None => Some(plan.describe()),
    }
}

/// The source's remote check. Its calls to a metered source (DingTalk's
/// column lookup) count against the monthly budget like a run's, and are
/// refused when it is spent: the cap covers every metered call.
async fn metered_check(
    source: &dyn Source,
    j: &LoadedJob,
    db: &Path,
) -> Result<Vec<String>, crate::source::SourceError> {
    let Some(metered) = source.metering() else {
        return source.check_remote().await;
    };
    let store = Store::open(db).map_err(|e| crate::source::SourceError::Config(e.to_string()))?;
    let period = crate::budget::quota_period(now().unwrap_or_else(|_| Utc::now()));
    let ledger = crate::budget::StoreLedger {
        store,
        job: j.job.name.clone(),
        period,
    };
    let meter = Arc::new(crate::budget::Meter::new(
        Arc::new(ledger),
        metered.costs().monthly_budget,
        period,
        1,
    ));
    metered.set_meter(meter.clone());
    let checked = source.check_remote().await;
    if let Err(e) = meter.release_unused().await {
        tracing::warn!(job = %j.job.name, error = %e, "could not give back unused metered calls");
    }
    checked
}

/// What `check --remote` finds wrong with one job, as readable lines.
async fn check_remote(http: &reqwest::Client, j: &LoadedJob, db: &Path) -> Vec<String> {
    let stats = Arc::new(crate::http::CallStats::default());
    let mut problems = Vec::new();
    let source = crate::source::open(&j.job.source, http.clone(), stats.clone());
    match source.login().await {
        Err(e) => problems.push(format!("source login failed: {e}")),
        Ok(()) => match metered_check(source.as_ref(), j, db).await {
            Err(crate::source::SourceError::Budget(e)) => crate::outln!(
                "warning: job {}: the report columns were not checked: {e}",
                j.job.name
            ),
            Err(e) => problems.push(e.to_string()),
            Ok(warnings) => {
                for w in warnings {
                    crate::outln!("warning: job {}: {w}", j.job.name);
                }
                if let Some(plan) = expected_calls(source.as_ref(), j, db).await {
                    crate::outln!("plan: job {}: {plan}", j.job.name);
                }
            }
        },
    }
    problems.extend(
        crate::source::check_events(&j.job.source, j.job.events.as_ref(), http.clone()).await,
    );
    let jdy = crate::target::jiandaoyun::Jiandaoyun::new(http.clone(), &j.job.target, stats);
    match jdy.widgets().await {
        Ok(widgets) => {
            let found = crate::target::jiandaoyun::form_check::problems(
                &j.mapping.fields(),
                j.mapping.key_fields(),
                &widgets,
            );
            if !found.is_empty() {
                problems.extend(found);
                problems.push(format!(
                    "the form's fields are: {}",
                    crate::target::jiandaoyun::form_check::describe_widgets(&widgets)
                ));
            }
        }
        Err(e) => problems.push(format!("cannot read the form's fields: {e}")),
    }
    problems
}
