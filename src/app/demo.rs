//! `attendsync demo`: the shipped example jobs, end to end, against the built-in
//! simulators on loopback. No credentials, no internet, works from any folder.

use std::path::{Path, PathBuf};

use chrono::Utc;

use crate::app::{self, AppError};
use crate::config::{self, LoadedJob};
use crate::mapping::{Mapping, ValueType};
use crate::pipeline::{Mode, Options, Syncer};
use crate::source::config::SourceConfig as Source;
use crate::store::Store;
use attendsync_sim::{
    DingtalkSim, DingtalkSimConfig, JdySim, JdySimConfig, Org, WecomSim, WecomSimConfig,
};

/// The shipped examples, built into the binary.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "jobs/wecom_monthly.toml",
        include_str!("../../jobs/wecom_monthly.toml"),
    ),
    (
        "mappings/wecom_monthly.toml",
        include_str!("../../mappings/wecom_monthly.toml"),
    ),
    (
        "jobs/dingtalk_monthly.toml",
        include_str!("../../jobs/dingtalk_monthly.toml"),
    ),
    (
        "mappings/dingtalk_monthly.toml",
        include_str!("../../mappings/dingtalk_monthly.toml"),
    ),
];

const DEMO_CORP: &str = "ww0demo0corp";
const DEMO_SECRET: &str = "demo-checkin-secret";
const DEMO_APP_KEY: &str = "dingdemoappkey";
const DEMO_APP_SECRET: &str = "demo-dingtalk-secret";
const DEMO_API_KEY: &str = "demo-jiandaoyun-key";
/// DingTalk costs one call per employee and month per report kind at 20/s, so its
/// demo organisation is smaller to keep the demo under a minute.
const DINGTALK_DEMO_EMPLOYEES: usize = 60;

fn demo_env(name: &str) -> Option<String> {
    match name {
        "WECOM_CORP_ID" => Some(DEMO_CORP.into()),
        "WECOM_CHECKIN_SECRET" => Some(DEMO_SECRET.into()),
        "DINGTALK_APP_KEY" => Some(DEMO_APP_KEY.into()),
        "DINGTALK_APP_SECRET" => Some(DEMO_APP_SECRET.into()),
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

/// The simulators one job talks to; kept alive while the demo runs.
enum SourceSim {
    Wecom(WecomSim),
    Dingtalk(DingtalkSim),
}

/// A form that fits `mapping`: each mapped field with the widget type its
/// values need, for [`JdySimConfig::widgets`]. Public for the end-to-end tests.
pub fn widgets_of_mapping(mapping: &Mapping) -> Vec<(String, String)> {
    mapping
        .fields()
        .into_iter()
        .map(|f| {
            let kind = match f.value_type {
                ValueType::Number => "number",
                ValueType::Datetime | ValueType::Date => "datetime",
                ValueType::Text | ValueType::Auto => "text",
            };
            (f.name, kind.to_string())
        })
        .collect()
}

/// attendsync's months convert to the simulators' own month type (the
/// simulators do not depend on attendsync), e.g. for
/// [`DingtalkSim::expected_record`] in the tests.
impl From<crate::month::Month> for attendsync_sim::Month {
    fn from(month: crate::month::Month) -> Self {
        attendsync_sim::Month::containing(month.first_day())
    }
}

/// A simulator's address as a job's `base_url`.
fn url_of(text: String) -> Result<crate::http::Url, std::io::Error> {
    text.parse().map_err(std::io::Error::other)
}

async fn start_sims(
    job: &mut LoadedJob,
    employees: usize,
) -> Result<(SourceSim, JdySim), std::io::Error> {
    let jdy = JdySim::start(JdySimConfig {
        api_key: DEMO_API_KEY.into(),
        app_id: job.job.target.app_id.clone(),
        entry_id: job.job.target.entry_id.clone(),
        widgets: widgets_of_mapping(&job.mapping),
        ..JdySimConfig::default()
    })
    .await?;
    job.job.target.base_url = url_of(jdy.base_url())?;
    let source = match &mut job.job.source {
        Source::Wecom(src) => {
            let config = WecomSimConfig {
                corp_id: DEMO_CORP.into(),
                secret: DEMO_SECRET.into(),
                ..WecomSimConfig::default()
            };
            let sim = WecomSim::start(Org::generate(employees, 2026), config).await?;
            src.base_url = url_of(sim.base_url())?;
            SourceSim::Wecom(sim)
        }
        Source::Dingtalk(src) => {
            let config = DingtalkSimConfig {
                app_key: DEMO_APP_KEY.into(),
                app_secret: DEMO_APP_SECRET.into(),
                ..DingtalkSimConfig::default()
            };
            let org = Org::generate(employees.min(DINGTALK_DEMO_EMPLOYEES), 2027);
            let sim = DingtalkSim::start(org, config).await?;
            src.base_url = url_of(sim.base_url())?;
            SourceSim::Dingtalk(sim)
        }
    };
    Ok((source, jdy))
}

fn print_rows(jdy: &JdySim, fields: &[&str]) {
    let records = jdy.records();
    crate::outln!(
        "The form now holds {} records; a few of them:",
        records.len()
    );
    for r in records.iter().take(4) {
        let cells: Vec<String> = fields
            .iter()
            .map(|k| {
                format!(
                    "{k}={}",
                    r.get(*k).map(|v| v.to_string()).unwrap_or_default()
                )
            })
            .collect();
        crate::outln!("  {}", cells.join(" "));
    }
}

pub async fn run(employees: usize) -> Result<u8, AppError> {
    let dir = std::env::temp_dir().join(format!("attendsync-demo-{}", std::process::id()));
    let _scratch = Scratch(dir.clone());
    write_examples(&dir)?;
    let jobs: Vec<LoadedJob> = config::load(&dir, &[], &demo_env)?;
    crate::outln!("attendsync demo: the shipped example jobs against simulated WeCom, DingTalk and Jiandaoyun.");

    let syncer = Syncer {
        store: Store::open(&dir.join("attendsync.db"))?,
        http: crate::http::client(crate::http::REQUEST_TIMEOUT)?,
        dry_run_sink: app::stdout_sink(),
        shutdown: crate::shutdown::Shutdown::new(),
        progress: crate::progress::for_stderr(),
    };
    let opts = Options {
        mode: Mode::Run,
        months: Vec::new(),
        employees: Vec::new(),
        dry_run: false,
        now: Utc::now(),
    };
    let mut status = app::EXIT_OK;
    for mut job in jobs {
        let (source, jdy) = start_sims(&mut job, employees)
            .await
            .map_err(|e| AppError::Io(format!("cannot start a simulator: {e}")))?;
        let (what, fields): (String, &[&str]) = match &source {
            SourceSim::Wecom(sim) => (
                sim.base_url(),
                &[
                    "month",
                    "userid",
                    "name",
                    "work_hours",
                    "late_count",
                    "annual_leave_days",
                ],
            ),
            SourceSim::Dingtalk(sim) => (
                sim.base_url(),
                &[
                    "month",
                    "userid",
                    "name",
                    "attendance_days",
                    "late_count",
                    "annual_leave",
                ],
            ),
        };
        crate::outln!(
            "\n=== job {} ({} simulator at {what}; Jiandaoyun simulator at {}) ===",
            job.job.name,
            job.job.source.kind(),
            jdy.base_url()
        );
        crate::outln!("-- first run: every record is new");
        let first = syncer.run_job(&job.job, job.mapping.clone(), &opts).await;
        crate::out!("{}", app::summary_text(std::slice::from_ref(&first)));
        crate::outln!("-- second run: nothing changed, so nothing is written");
        let writes = jdy.write_calls();
        let second = syncer.run_job(&job.job, job.mapping.clone(), &opts).await;
        crate::out!("{}", app::summary_text(std::slice::from_ref(&second)));
        crate::outln!(
            "Jiandaoyun write calls in the second run: {}",
            jdy.write_calls() - writes
        );
        print_rows(&jdy, fields);
        status = status.max(app::exit_status(&[first, second]));
        if let SourceSim::Dingtalk(sim) = &source {
            let corrected =
                super::demo_events::correction(&syncer, &job, sim, DEMO_APP_KEY, DEMO_APP_SECRET)
                    .await?;
            status = status.max(corrected);
        }
    }
    Ok(status)
}
