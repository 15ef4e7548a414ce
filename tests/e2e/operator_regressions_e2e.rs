//! Breaking the mapping checks and operator fixes: each test is a finding.

use crate::common;

use attendsync_sim::{JdySimConfig, WecomSimConfig};
use common::Env;

fn widgets(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// Stdout of a `--json` command, parsed; panics unless it is one JSON document.
fn json_stdout(run: &common::Run) -> serde_json::Value {
    serde_json::from_str(run.stdout().trim()).unwrap_or_else(|e| {
        panic!(
            "--json prints one JSON document on stdout: {e}\n--- stdout:\n{}\n--- stderr:\n{}",
            run.stdout(),
            run.stderr()
        )
    })
}

/// README: "Left side: the Jiandaoyun field alias (or its `_widget_…` id)".
/// Jiandaoyun answers `data/list` with fields keyed by alias (docs/vendors/jiandaoyun.md "Fields and values"),
/// so a mapping that names an aliased key field by its widget id never finds
/// its records again: a lost database or a `rerun` creates every record twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_field_named_by_widget_id_on_an_aliased_form_never_duplicates() {
    let jdy = JdySimConfig {
        widgets: widgets(&[
            ("userid", "text"),
            ("month", "text"),
            ("work_hours", "number"),
        ]),
        ..JdySimConfig::default()
    };
    let env = Env::start(5, WecomSimConfig::default(), jdy).await;
    let id = env
        .jdy
        .widget_names()
        .into_iter()
        .find(|(alias, _)| alias == "userid")
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no userid widget"));
    assert!(id.starts_with("_widget_"), "{id}");
    env.write(
        "mappings/wecom_monthly.toml",
        &format!(
            "key = [\"{id}\", \"month\"]\n[fields]\n{id} = {{ from = \"base_info.acctid\", type = \"text\" }}\nmonth = {{ from = \"$month\", type = \"text\" }}\nwork_hours = {{ from = \"summary_info.regular_work_sec\", default = 0, convert = \"seconds_to_hours\", round = 2, type = \"number\" }}\n"
        ),
    );
    env.write_job("", "");
    env.run(&["check", "--remote"]).await.expect_code(0);
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    assert_eq!(env.jdy.records().len(), 5);
    // The repair command, as the README recommends after hand edits.
    let rerun = env
        .run(&["rerun", "wecom_monthly", "--month", "2026-10"])
        .await;
    assert_eq!(
        env.jdy.records().len(),
        5,
        "rerun duplicated every record{}",
        rerun.all()
    );
    rerun.expect_code(0);
    // A lost database: "Before creating, look" must find them.
    std::fs::remove_file(env.db()).unwrap_or_else(|e| panic!("{e}"));
    let again = env.run(&["run", "--month", "2026-10"]).await;
    assert_eq!(
        env.jdy.records().len(),
        5,
        "a run after losing the database duplicated every record{}",
        again.all()
    );
}

/// `attendsync run --dry-run | head -1` (or `status | head -1`): the reader
/// goes away; the tool must stop quietly, not panic with "failed printing to
/// stdout".
/// README: "With `--json`, stdout carries one JSON document". A run that
/// skips its job because another process holds the lease (exit 3) is such a
/// run.
/// `--json` with a month clap cannot parse: still a bad-usage error a caller
/// parsing stdout must see ("`--json` errors are JSON on stdout").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_answers_a_bad_month_on_stdout() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    let run = env.run(&["run", "--month", "2026-13", "--json"]).await;
    run.expect_code(2);
    let answer = json_stdout(&run);
    assert_eq!(answer["exit_code"], 2, "{answer}");
}

/// An unreachable Jiandaoyun: the run fails (exit 1) and says so in JSON.
/// `RUST_LOG=warn` and a wrong secret: the job fails at login, and the log
/// must say so at ERROR (log-based alerting watches ERROR lines).
#[cfg(unix)]
/// umask 000 (a container, a careless cron): the database and its -wal/-shm
/// are still 0600, checked while the run holds them open.
#[cfg(unix)]
/// `status` while a sync writes the same database: read-only, no error, and
/// the run shows as running.
/// The same root cause for a non-key field: named by its widget id on a form
/// that has an alias, it reads back as missing, so every `rerun` "repairs" every
/// record and never reports the month as in line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_named_by_widget_id_is_not_rewritten_by_every_rerun() {
    let jdy = JdySimConfig {
        widgets: widgets(&[
            ("userid", "text"),
            ("month", "text"),
            ("work_hours", "number"),
        ]),
        ..JdySimConfig::default()
    };
    let env = Env::start(5, WecomSimConfig::default(), jdy).await;
    let id = env
        .jdy
        .widget_names()
        .into_iter()
        .find(|(alias, _)| alias == "work_hours")
        .map(|(_, id)| id)
        .unwrap_or_else(|| panic!("no work_hours widget"));
    env.write(
        "mappings/wecom_monthly.toml",
        &format!(
            "key = [\"userid\", \"month\"]\n[fields]\nuserid = {{ from = \"base_info.acctid\", type = \"text\" }}\nmonth = {{ from = \"$month\", type = \"text\" }}\n{id} = {{ from = \"summary_info.regular_work_sec\", default = 0, convert = \"seconds_to_hours\", round = 2, type = \"number\" }}\n"
        ),
    );
    env.write_job("", "");
    env.run(&["run", "--month", "2026-10"]).await.expect_code(0);
    env.run(&["rerun", "wecom_monthly", "--month", "2026-10"])
        .await
        .expect_code(0);
    let updates = env.jdy.calls("data/update");
    let again = env
        .run(&["rerun", "wecom_monthly", "--month", "2026-10"])
        .await;
    again.expect_code(0);
    assert_eq!(
        common::counts(&again.stdout(), "2026-10"),
        (5, 0, 0, 5, 0),
        "a rerun of an unchanged month{}",
        again.all()
    );
    assert_eq!(env.jdy.calls("data/update"), updates, "{}", again.all());
}

/// `rerun` sends too: a mapped field missing from the form must stop it
/// before anything is written, as it stops `run`.
/// A path to a whole object (`base_info.rule_info`) is a path the record
/// holds, but no form field takes an object: `check` and `check --remote`
/// pass it, and then every record of the run fails at Jiandaoyun (17017,
/// after bisecting each batch). `check` should refuse it at file:line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_to_a_whole_object_is_refused_by_check() {
    let jdy = JdySimConfig {
        widgets: widgets(&[("userid", "text"), ("month", "text"), ("rule", "text")]),
        ..JdySimConfig::default()
    };
    let env = Env::start(5, WecomSimConfig::default(), jdy).await;
    env.write(
        "mappings/wecom_monthly.toml",
        "key = [\"userid\", \"month\"]\n[fields]\nuserid = { from = \"base_info.acctid\", type = \"text\" }\nmonth = { from = \"$month\", type = \"text\" }\nrule = \"base_info.rule_info\"\n",
    );
    env.write_job("", "");
    env.run(&["check"])
        .await
        .expect_code(2)
        .expect_contains("wecom_monthly.toml:5:")
        .expect_contains("base_info.rule_info");
}

/// A key that names the month by `$month_start` (a datetime field) instead of
/// `$month`: run, rerun and a lost database must not duplicate.
/// A form without aliases: fields are `_widget_…` ids only, and so is the mapping.
/// `userids = [""]` selects nobody real, like `userids = []`, which `check`
/// refuses; an empty userid is sent to WeCom as is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_refuses_an_empty_userid() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("userids = [\"\"]", "");
    env.run(&["check"])
        .await
        .expect_code(2)
        .expect_contains("`source.userids`");
}
