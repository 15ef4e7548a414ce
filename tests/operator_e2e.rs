//! Issue 5 acceptance for operators: `check --remote`, `--json`, `status`.

mod common;

use attendsync::sim::{JdySimConfig, WecomSimConfig};
use common::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_reports_a_mapped_field_missing_from_the_form() {
    let widgets: Vec<(String, String)> = common::shipped_widgets()
        .into_iter()
        .filter(|(name, _)| name != "late_count")
        .map(|(name, kind)| {
            if name == "groupid" {
                (name, "text".to_string())
            } else {
                (name, kind)
            }
        })
        .collect();
    let jdy = JdySimConfig {
        widgets,
        ..JdySimConfig::default()
    };
    let env = Env::start(3, WecomSimConfig::default(), jdy).await;
    env.write_job("", "");
    env.run(&["check"]).await.expect_code(0);
    let run = env.run(&["check", "--remote"]).await;
    run.expect_code(2)
        .expect_contains(
            "`late_count` (from exception_infos[exception=1].count) is not a field of the form",
        )
        .expect_contains("`groupid` sends a number value")
        .expect_contains("the form's fields are: userid")
        .expect_lacks(common::SECRET)
        .expect_lacks(common::API_KEY);
    assert_eq!(
        env.wecom.calls("gettoken"),
        1,
        "the source login was checked"
    );
    assert_eq!(env.jdy.write_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_remote_passes_on_a_matching_form_and_json_summary_parses() {
    let env = Env::start(3, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    env.run(&["check", "--remote"])
        .await
        .expect_code(0)
        .expect_contains("check out");
    let run = env.run(&["run", "--month", "2026-10", "--json"]).await;
    run.expect_code(0);
    let summary: serde_json::Value = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("--json prints one JSON document: {e}\n{}", run.stdout()));
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["jobs"][0]["job"], "wecom_monthly");
    assert_eq!(summary["jobs"][0]["months"][0]["month"], "2026-10");
    assert_eq!(summary["jobs"][0]["months"][0]["created"], 3);
    let status = env.run(&["status"]).await;
    status
        .expect_code(0)
        .expect_contains("Recent runs")
        .expect_contains("By job and month");
}
