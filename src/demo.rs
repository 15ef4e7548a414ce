//! `attendsync demo`: the shipped example job, end to end, against the built-in
//! simulators on loopback. No credentials, no internet, works from any folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;

use crate::app::{self, AppError};
use crate::config::{self, LoadedJob};
use crate::mapping::{Mapping, ValueType, Vars};
use crate::month::Month;
use crate::sim::jiandaoyun::{JdySim, JdySimConfig};
use crate::sim::org::{wecom_month_record, Org};
use crate::sim::wecom::{WecomSim, WecomSimConfig};
use crate::store::Store;
use crate::sync::{Mode, Options, Syncer};

/// The shipped examples, built into the binary.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "jobs/wecom_monthly.toml",
        include_str!("../jobs/wecom_monthly.toml"),
    ),
    (
        "mappings/wecom_monthly.toml",
        include_str!("../mappings/wecom_monthly.toml"),
    ),
];

const DEMO_CORP: &str = "ww0demo0corp";
const DEMO_SECRET: &str = "demo-checkin-secret";
const DEMO_API_KEY: &str = "demo-jiandaoyun-key";

fn demo_env(name: &str) -> Option<String> {
    match name {
        "WECOM_CORP_ID" => Some(DEMO_CORP.into()),
        "WECOM_CHECKIN_SECRET" => Some(DEMO_SECRET.into()),
        "JDY_API_KEY" => Some(DEMO_API_KEY.into()),
        _ => None,
    }
}

/// A scratch folder removed when the demo ends.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_examples(dir: &Path) -> Result<(), AppError> {
    for (rel, text) in EXAMPLES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| AppError::Io(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, text)
            .map_err(|e| AppError::Io(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// The form's fields as the mapping fills them: the type a sample row shows.
fn form_widgets(mapping: &Mapping, org: &Org, month: Month) -> Vec<(String, String)> {
    let sample = org
        .users
        .first()
        .map(|u| wecom_month_record(org, u, month.year(), month.month(), 0))
        .unwrap_or_default();
    let vars = Vars {
        month,
        timezone: chrono_tz::Asia::Shanghai,
        job: "demo".into(),
        source: "wecom".into(),
        synced_at: Utc::now(),
    };
    let row = mapping.apply(&sample, &vars).ok();
    mapping
        .fields()
        .into_iter()
        .map(|f| {
            let kind = match f.value_type {
                ValueType::Number => "number",
                ValueType::Datetime | ValueType::Date => "datetime",
                ValueType::Text => "text",
                ValueType::Auto => {
                    let value = row.as_ref().and_then(|r| {
                        r.fields()
                            .iter()
                            .find(|(n, _)| n == &f.name)
                            .map(|(_, v)| v.clone())
                    });
                    if value.is_some_and(|v| v.is_number()) {
                        "number"
                    } else {
                        "text"
                    }
                }
            };
            (f.name, kind.to_string())
        })
        .collect()
}

pub async fn run(employees: usize) -> Result<u8, AppError> {
    let dir = std::env::temp_dir().join(format!("attendsync-demo-{}", std::process::id()));
    let _scratch = Scratch(dir.clone());
    write_examples(&dir)?;
    let mut jobs: Vec<LoadedJob> = config::load(&dir, &[], &demo_env)?;
    let now = Utc::now();
    println!(
        "attendsync demo: {employees} employees in a simulated WeCom corp, one Jiandaoyun form."
    );

    let org = Org::generate(employees, 2026);
    let sample_month = Month::current(now, chrono_tz::Asia::Shanghai);
    let io = |e: std::io::Error| AppError::Io(format!("cannot start a simulator: {e}"));
    let wecom_cfg = WecomSimConfig {
        corp_id: DEMO_CORP.into(),
        secret: DEMO_SECRET.into(),
        ..WecomSimConfig::default()
    };
    let Some(first) = jobs.first() else {
        return Err(AppError::Io("the built-in examples hold no job".into()));
    };
    let widgets = form_widgets(&first.mapping, &org, sample_month);
    let jdy_cfg = JdySimConfig {
        api_key: DEMO_API_KEY.into(),
        app_id: first.job.target.app_id.clone(),
        entry_id: first.job.target.entry_id.clone(),
        widgets,
        ..JdySimConfig::default()
    };
    let wecom = WecomSim::start(org, wecom_cfg).await.map_err(io)?;
    let jdy = JdySim::start(jdy_cfg).await.map_err(io)?;
    println!("WeCom simulator:      {}", wecom.base_url());
    println!("Jiandaoyun simulator: {}", jdy.base_url());
    for j in &mut jobs {
        if let crate::config::job::Source::Wecom(src) = &mut j.job.source {
            src.base_url = wecom.base_url();
        }
        j.job.target.base_url = jdy.base_url();
    }

    let syncer = Syncer {
        store: Store::open(&dir.join("attendsync.db"))?,
        http: crate::http::client(crate::http::REQUEST_TIMEOUT)?,
        dry_run_sink: app::stdout_sink(),
        settle_wait: Duration::from_millis(200),
        shutdown: crate::shutdown::Shutdown::new(),
        progress: crate::progress::for_stderr(),
    };
    let opts = Options {
        mode: Mode::Run,
        months: Vec::new(),
        dry_run: false,
        now,
    };
    println!("\n== First run: every record is new ==");
    let reports = app::run_all(&syncer, &jobs, &opts).await;
    print!("{}", app::summary_text(&reports));
    let first_status = app::exit_status(&reports);

    println!("\n== Second run: nothing changed, so nothing is written ==");
    let writes_before = jdy.write_calls();
    let again = app::run_all(&syncer, &jobs, &opts).await;
    print!("{}", app::summary_text(&again));
    println!(
        "Jiandaoyun write calls in the second run: {}",
        jdy.write_calls() - writes_before
    );

    let records = jdy.records();
    println!(
        "\n== The form now holds {} records; a few of them ==",
        records.len()
    );
    for r in records.iter().take(5) {
        let pick = |k: &str| r.get(k).map(|v| v.to_string()).unwrap_or_default();
        println!(
            "  {} {} {} work_hours={} late={} annual_leave_days={}",
            pick("month"),
            pick("userid"),
            pick("name"),
            pick("work_hours"),
            pick("late_count"),
            pick("annual_leave_days")
        );
    }
    Ok(first_status.max(app::exit_status(&again)))
}
