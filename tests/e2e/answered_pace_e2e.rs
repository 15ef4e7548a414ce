//! Attacks on the "answered late" pacing rule (`Pacer::answered`,
//! src/http/pace/answer.rs): a call answered slower than its endpoint's
//! fastest answer counts, for the calls a quota after it, as having left
//! that much later.

use std::time::{Duration, Instant};

use attendsync_sim::{DingtalkSimConfig, Org};

use crate::common::dingtalk::{all, fast_retry, start_dingtalk, DingEnv};
use crate::common::RUN_TIMEOUT;

const MONTH: &str = "2026-10";
const NOVEMBER: (&str, &str) = ("ATTENDSYNC_NOW", "2026-11-20T04:00:00Z");
const REPORT: &str = attendsync_sim::dingtalk::GETCOLUMNVAL;
/// The report pace at 10/s, everything else far faster.
const LIMITS: &str = r#"[source.limits]
"topapi/v2/department/listsub" = "200/s"
"topapi/v2/user/list" = "200/s"
"topapi/attendance/getcolumnval" = "10/s"
"topapi/attendance/getleavetimebynames" = "200/s"
"#;

/// The report calls' pace (10/s) is the run's bottleneck. A second in,
/// DingTalk starts answering every call half a second later than before (a
/// busy hour: its own work after it counted the call, not a hold-up on the
/// way). Every report call then came back slower than the fastest answer of
/// the run's first second, so each counted as leaving 490 ms later, and each
/// second's worth of calls was held that much after the one before: 10 calls
/// every 1.5 s. The calls reach DingTalk exactly as far apart as they left,
/// so the pace must stay at 10 a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_answering_slower_for_good_keeps_the_pace() {
    let config = DingtalkSimConfig::default().with_endpoint_rate(1000);
    let sim = start_dingtalk(Org::generate(80, 5), config).await;
    let env = DingEnv::start(sim).await;
    let job = format!("{}\n{LIMITS}\n{}", env.pointed_job(), fast_retry(10));
    env.write("jobs/dingtalk_monthly.toml", &job);

    let mut cmd = env.command(&["run", "--month", MONTH]);
    cmd.env(NOVEMBER.0, NOVEMBER.1);
    let run = async {
        tokio::time::timeout(RUN_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("the run did not finish within {RUN_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("cannot run attendsync: {e}"))
    };
    let slow_down = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let served = env
                .dingtalk
                .call_log()
                .iter()
                .filter(|c| c.endpoint == REPORT)
                .count();
            if served >= 10 {
                break;
            }
            assert!(Instant::now() < deadline, "no report calls within 60 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        env.dingtalk.set_latency(Duration::from_millis(500));
        Instant::now()
    };
    let (output, slowed) = tokio::join!(run, slow_down);
    let text = all(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");

    // The report calls that arrived from two seconds after the change on:
    // how many a second, on DingTalk's clock.
    let after: Vec<Instant> = env
        .dingtalk
        .call_log()
        .iter()
        .filter(|c| c.endpoint == REPORT)
        .map(|c| c.at)
        .filter(|at| *at >= slowed + Duration::from_secs(2))
        .collect();
    assert!(after.len() >= 30, "{} calls after the change", after.len());
    let span = after[after.len() - 1] - after[0];
    let rate = (after.len() - 1) as f64 / span.as_secs_f64();
    eprintln!(
        "{} calls in {span:?} after the change: {rate:.1}/s",
        after.len()
    );
    assert!(
        rate >= 8.5,
        "{rate:.1} report calls a second once DingTalk answered slower, at a 10/s pace"
    );
    assert!(env.dingtalk.quota_violations() == 0, "{text}");
}
