//! The demo's last act (README "Re-pulls on change"): a correction arrives
//! over DingTalk Stream mode from the simulated gateway, goes through the same
//! receivers and Inbox as the daemon's, and that one employee-month is
//! re-pulled and written within seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use tokio::sync::watch;

use crate::app::{self, AppError};
use crate::config::LoadedJob;
use crate::events::inbox::{Inbox, Window};
use crate::events::{CurrentMonth, Delivery, EventsConfig, Link};
use crate::month::Month;
use crate::pipeline::{Mode, Options, Prune, Syncer};
use attendsync_sim::{DingtalkSim, StreamGateway, StreamGatewayConfig};

/// How long the demo waits for the connection and for the event.
const WAIT: Duration = Duration::from_secs(20);

/// Connects the job's events to a simulated Stream gateway, pushes one
/// correction and re-pulls what it marked. Returns the re-pull's exit status.
pub async fn correction(
    syncer: &Syncer,
    job: &LoadedJob,
    sim: &DingtalkSim,
    app_key: &str,
    app_secret: &str,
) -> Result<u8, AppError> {
    let failed = |what: &str| AppError::Io(format!("demo: {what}"));
    let gateway = StreamGateway::start(StreamGatewayConfig {
        client_id: app_key.into(),
        client_secret: app_secret.into(),
        ..StreamGatewayConfig::default()
    })
    .await
    .map_err(|e| failed(&format!("cannot start the Stream gateway simulator: {e}")))?;
    let gateway_url = gateway
        .base_url()
        .parse()
        .map_err(|_| failed("the gateway simulator's address"))?;
    let events = EventsConfig {
        delivery: Delivery::Stream { gateway_url },
        delay: Duration::from_secs(1),
        // The demo synced the month in progress: re-pull it too.
        current_month: CurrentMonth::Live,
        max_age_months: 3,
    };
    let name = job.job.name.clone();
    let timezone = job.job.timezone;
    let inbox = Arc::new(Inbox {
        store: syncer.store.clone(),
        job: name.clone(),
        timezone,
        window: Window::of(&events),
        clock: crate::clock::Clock::real(),
    });
    let (link, mut seen) = watch::channel(Link::Connecting);
    let stop = crate::shutdown::Shutdown::new();
    let parts = crate::source::event_parts(
        &job.job.source,
        &events,
        timezone,
        syncer.http.clone(),
        inbox,
        link,
        stop.clone(),
    );
    let connected =
        tokio::time::timeout(WAIT, seen.wait_for(|l| matches!(l, Link::Connected { .. })));
    if !matches!(connected.await, Ok(Ok(_))) {
        return Err(failed("the Stream connection did not open"));
    }
    crate::outln!(
        "-- events: connected to the DingTalk Stream gateway (simulated); a correction arrives"
    );
    let employee = sim.org().users[0].userid.clone();
    sim.bump_revision(&employee);
    let today = Utc::now().with_timezone(&timezone).date_naive();
    let pushed = Instant::now();
    gateway.push_event(
        "attend_user_daily_summary_refresh",
        json!({"userId": employee, "workDate": today.to_string()}),
    );
    let month = Month::containing(today);
    let marked = wait_for_mark(syncer, &name, month, &employee).await?;
    crate::outln!(
        "Event for {employee} ({today}) received and stored after {} ms; re-pulling that employee-month:",
        marked.as_millis()
    );
    let opts = Options {
        mode: Mode::Rerun {
            force: false,
            prune: Prune::Keep,
        },
        months: vec![month],
        employees: vec![employee],
        dry_run: false,
        now: Utc::now(),
    };
    let report = syncer.run_job(&job.job, job.mapping.clone(), &opts).await;
    crate::out!("{}", app::summary_text(std::slice::from_ref(&report)));
    crate::outln!(
        "From the event to the record in the form: {:.1} s",
        pushed.elapsed().as_secs_f64()
    );
    stop.trigger();
    for task in parts.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    Ok(app::exit_status(&[report]))
}

/// Waits (bounded) until the event's mark is in SQLite; how long it took.
async fn wait_for_mark(
    syncer: &Syncer,
    job: &str,
    month: Month,
    employee: &str,
) -> Result<Duration, AppError> {
    let started = Instant::now();
    while started.elapsed() < WAIT {
        let (store, job_name) = (syncer.store.clone(), job.to_string());
        let due = store
            .call(move |s| s.due_dirty(&job_name, Utc::now(), chrono::Duration::zero()))
            .await?;
        if due
            .get(&month)
            .is_some_and(|e| e.iter().any(|x| x == employee))
        {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(AppError::Io(
        "demo: the correction's event did not arrive".into(),
    ))
}
