//! End to end: mappings checked against what the WeCom
//! record can hold and against the form, and fields that come out empty in every
//! record reported.

use crate::common;

use attendsync_sim::{JdySimConfig, WecomSimConfig};
use common::{counts, Env};

const MONTH: &str = "2026-10";

/// Line and column (1-based, in characters) of `needle` in `text`.
fn position(text: &str, needle: &str) -> (usize, usize) {
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in the text"));
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_path_is_refused_by_check_and_run_with_the_nearest_path() {
    let env = Env::start(5, WecomSimConfig::default(), JdySimConfig::default()).await;
    env.write_job("", "");
    let right = "from = \"summary_info.regular_work_sec\", default = 0, convert";
    let wrong = "from = \"summary_info.regular_work_secs\", default = 0, convert";
    let mapping = common::shipped_mapping().replacen(right, wrong, 1);
    assert_ne!(mapping, common::shipped_mapping());
    env.write("mappings/wecom_monthly.toml", &mapping);
    // The error points at the unknown step, `regular_work_secs`.
    let (line, column) = position(&mapping, "regular_work_secs");
    let located = format!("wecom_monthly.toml:{line}:{column}: `fields.work_hours.from`");
    let suggestion = "did you mean `summary_info.regular_work_sec`?";

    for args in [
        &["check"][..],
        &["check", "--remote"],
        &["run", "--month", MONTH],
    ] {
        env.run(args)
            .await
            .expect_code(2)
            .expect_contains(&located)
            .expect_contains("path `summary_info.regular_work_secs` is not in the WeCom")
            .expect_contains(suggestion);
    }
    assert!(
        env.wecom.call_log().is_empty(),
        "no request may reach WeCom"
    );
    assert!(
        env.jdy.call_log().is_empty(),
        "no request may reach Jiandaoyun"
    );

    // The shipped mapping, array selectors and all, passes.
    env.write("mappings/wecom_monthly.toml", common::shipped_mapping());
    env.run(&["check"]).await.expect_code(0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_field_the_form_lacks_stops_the_run_before_anything_is_written() {
    let widgets: Vec<(String, String)> = common::shipped_widgets()
        .into_iter()
        .filter(|(name, _)| name != "late_minutes")
        .collect();
    let jdy = JdySimConfig {
        widgets,
        ..JdySimConfig::default()
    };
    let env = Env::start(30, WecomSimConfig::default(), jdy).await;
    env.write_job("", "");
    let message = "mapped field `late_minutes` (from exception_infos[exception=1].duration) is not a field of the form";

    let check = env.run(&["check", "--remote"]).await;
    check.expect_code(2).expect_contains(message);

    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(1)
        .expect_contains(message)
        .expect_contains("the form's fields are: ")
        .expect_contains("nothing was written");
    assert_eq!(env.jdy.records().len(), 0, "the form holds no record");
    assert_eq!(env.jdy.write_calls(), 0, "no write call was made");
    assert_eq!(
        env.wecom.calls("checkin/getcheckin_monthdata"),
        0,
        "nothing was pulled either"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_empty_in_every_record_is_a_warning_in_the_summary() {
    // Exception 6 (device) is documented but the simulator never reports it:
    // without a default the field is empty in every record.
    let field = "device_exceptions";
    let mut widgets = common::shipped_widgets();
    widgets.push((field.to_string(), "number".to_string()));
    let jdy = JdySimConfig {
        widgets,
        ..JdySimConfig::default()
    };
    let env = Env::start(30, WecomSimConfig::default(), jdy).await;
    env.write_job("", "");
    let mapping = format!(
        "{}\n{field} = {{ from = \"exception_infos[exception=6].count\", type = \"number\" }}\n",
        common::shipped_mapping()
    );
    env.write("mappings/wecom_monthly.toml", &mapping);
    let warning = format!(
        "field `{field}` (from exception_infos[exception=6].count) is empty in all 30 records"
    );

    let run = env.run(&["run", "--month", MONTH]).await;
    run.expect_code(0);
    assert_eq!(counts(&run.stdout(), MONTH), (30, 30, 0, 0, 0));
    assert!(
        run.stdout().contains(&format!("  warning: {warning}")),
        "the summary warns:\n{}",
        run.stdout()
    );
    assert!(
        run.stderr().contains("WARN") && run.stderr().contains(&warning),
        "logged at WARN:\n{}",
        run.stderr()
    );
    // Only that field: the shipped fields are filled, or have a default.
    assert_eq!(
        run.stdout().matches("warning:").count(),
        1,
        "{}",
        run.stdout()
    );

    // In --json, with the month.
    let json = env.run(&["run", "--month", MONTH, "--json"]).await;
    json.expect_code(0);
    let report: serde_json::Value = serde_json::from_str(json.stdout().trim())
        .unwrap_or_else(|e| panic!("not JSON: {e}\n{}", json.stdout()));
    let warnings = &report["jobs"][0]["months"][0]["warnings"];
    assert_eq!(warnings.as_array().map(Vec::len), Some(1), "{report}");
    assert!(warnings[0]
        .as_str()
        .is_some_and(|w| w.starts_with(&warning)));
}
