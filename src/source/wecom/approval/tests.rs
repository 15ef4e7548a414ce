use std::sync::{Arc, Mutex};
use std::time::Duration;

use attendsync_sim::{ApprovalKind, ApprovalPusher, Org, SpStatus, WecomSim, WecomSimConfig};
use axum::extract::{Query, State};
use axum::routing::post;
use axum::Router;
use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::events::crypto::MsgCrypt;
use crate::events::{Change, Recorded, Sink, SinkFuture};
use crate::http::retry::RetryConfig;
use crate::http::CallStats;
use crate::secret::Secret;
use crate::source::config::Scope;
use crate::source::wecom::callback::{handle_post, CallbackQuery};
use crate::source::wecom::config::WecomSource;

const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;
const TOKEN: &str = "callback-token";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

fn at(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<Utc> {
    SHANGHAI
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .single()
        .expect("time")
        .with_timezone(&Utc)
}

/// A `getapprovaldetail` answer with one control.
fn answer(sp_status: i64, content: Value) -> Value {
    json!({"errcode": 0, "errmsg": "ok", "info": {
        "sp_no": "202610300001", "sp_status": sp_status,
        "applyer": {"userid": "lisi", "partyid": "1"},
        "apply_data": {"contents": [{"control": "Text", "value": {"text": "x"}}, content]},
    }})
}

fn leave(begin: i64, end: i64, day_items: &[i64]) -> Value {
    let items: Vec<Value> = day_items
        .iter()
        .map(|d| json!({"daytime": d, "duration": 86_400}))
        .collect();
    json!({"control": "Vacation", "value": {"vacation": {"attendance": {
        "date_range": {"type": "hour", "new_begin": begin, "new_end": end.to_string(), "new_duration": end - begin},
        "slice_info": {"day_items": items},
    }}}})
}

#[test]
fn only_statuses_that_change_attendance_touch_days() {
    let content = leave(
        at(2026, 10, 12, 9).timestamp(),
        at(2026, 10, 12, 18).timestamp(),
        &[],
    );
    let touching: Vec<i64> = (0..12)
        .filter(|s| read_detail(&answer(*s, content.clone()), SHANGHAI).is_some())
        .collect();
    // Approved, revoked after approval, deleted; never pending (1), rejected
    // (3) or withdrawn before a decision (4).
    assert_eq!(touching, [2, 6, 7]);
    let (who, days) = read_detail(&answer(2, content), SHANGHAI).expect("approved");
    assert_eq!((who.as_str(), days), ("lisi", vec![date(2026, 10, 12)]));
}

#[test]
fn days_are_taken_in_the_jobs_timezone_from_the_range_and_the_day_items() {
    // 00:30 on 1 Nov in Shanghai is still 31 Oct in UTC.
    let begin = at(2026, 11, 1, 0).timestamp() + 1800;
    let end = at(2026, 11, 1, 12).timestamp();
    let content = leave(begin, end, &[]);
    assert_eq!(
        read_detail(&answer(2, content.clone()), SHANGHAI)
            .expect("days")
            .1,
        [date(2026, 11, 1)]
    );
    assert_eq!(
        read_detail(&answer(2, content), chrono_tz::UTC)
            .expect("days")
            .1,
        [date(2026, 10, 31), date(2026, 11, 1)]
    );
    // Listed days beyond the range are kept; a range of years is not believed.
    let far = at(2031, 1, 1, 9).timestamp();
    let extra = at(2026, 12, 24, 0).timestamp();
    let content = leave(begin, far, &[extra]);
    let days = read_detail(&answer(2, content), SHANGHAI).expect("days").1;
    assert_eq!(
        days,
        [date(2026, 11, 1), date(2026, 12, 24), date(2031, 1, 1)]
    );
}

#[test]
fn a_punch_correction_and_other_attendance_controls_name_their_days() {
    let correction = json!({"control": "PunchCorrection", "value": {"punch_correction": {
        "state": "迟到", "time": at(2026, 9, 30, 9).timestamp(), "daymonthyear": at(2026, 9, 30, 0).timestamp()}}});
    let days = read_detail(&answer(2, correction), SHANGHAI)
        .expect("days")
        .1;
    assert_eq!(days, [date(2026, 9, 30)]);
    let trip = json!({"control": "Attendance", "value": {"attendance": {"type": 3, "date_range": {
        "new_begin": at(2026, 9, 29, 8).timestamp(), "new_end": at(2026, 10, 1, 20).timestamp()}}}});
    let days = read_detail(&answer(6, trip), SHANGHAI).expect("days").1;
    assert_eq!(
        days,
        [date(2026, 9, 29), date(2026, 9, 30), date(2026, 10, 1)]
    );
    // No attendance control, or no applicant: nothing to re-pull.
    assert!(read_detail(&answer(2, json!({"control": "Text"})), SHANGHAI).is_none());
    let mut nobody = answer(2, leave(1, 2, &[]));
    nobody["info"]["applyer"]["userid"] = json!("");
    assert!(read_detail(&nobody, SHANGHAI).is_none());
}

fn client_of(sim: &WecomSim, config: &WecomSimConfig) -> WecomClient {
    let cfg = WecomSource {
        corp_id: config.corp_id.clone(),
        secret: Secret::new(&config.secret),
        base_url: sim.base_url().parse().expect("url"),
        scope: Scope::default(),
        limits: Vec::new(),
        retry: RetryConfig::WECOM,
    };
    let http = crate::http::client(Duration::from_secs(5)).expect("client");
    WecomClient::new(http, &cfg, Arc::new(CallStats::default()))
}

/// A sink that keeps what it is given.
#[derive(Default)]
struct Memory(Mutex<Vec<Change>>);

impl Sink for Memory {
    fn record(&self, change: Change) -> SinkFuture<'_> {
        self.0.lock().expect("lock").push(change);
        Box::pin(async { Ok(Recorded::New) })
    }
}

struct Receiver {
    crypt: MsgCrypt,
    sink: Memory,
}

/// attendsync's POST handler on a loopback listener, as the daemon mounts it.
async fn receiver(corp_id: &str) -> (Arc<Receiver>, String) {
    let state = Arc::new(Receiver {
        crypt: MsgCrypt::new(TOKEN, KEY, corp_id).expect("key"),
        sink: Memory::default(),
    });
    async fn event(
        State(r): State<Arc<Receiver>>,
        Query(q): Query<CallbackQuery>,
        body: axum::body::Bytes,
    ) -> (axum::http::StatusCode, String) {
        handle_post(&r.crypt, &q, &body, &r.sink).await
    }
    let app = Router::new()
        .route("/callbacks/wecom/job", post(event))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (state, format!("http://{addr}/callbacks/wecom/job"))
}

#[tokio::test]
async fn a_pushed_leave_across_a_month_end_resolves_to_its_applicant_and_days_in_both_months() {
    let config = WecomSimConfig::default();
    let sim = WecomSim::start(Org::generate(5, 1), config.clone())
        .await
        .expect("simulator");
    let user = sim.org().users[2].userid.clone();
    let begin = at(2026, 10, 30, 9);
    let end = at(2026, 11, 2, 18);
    let sp_no = sim.add_approval(&user, ApprovalKind::Leave, begin, end, SpStatus::Approved);
    let rejected = sim.add_approval(&user, ApprovalKind::Leave, begin, end, SpStatus::Rejected);
    let pending = sim.add_approval(&user, ApprovalKind::Trip, begin, end, SpStatus::Pending);

    let (receiver, url) = receiver(&config.corp_id).await;
    let pusher = ApprovalPusher::new(TOKEN, KEY, &config.corp_id, &url).expect("pusher");
    let delivery = pusher
        .push_approval(&sp_no, &user, SpStatus::Approved, 2, 1_793_000_000)
        .await;
    assert_eq!((delivery.status, delivery.body.as_str()), (Some(200), ""));
    let recorded = receiver.sink.0.lock().expect("lock").clone();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].lookups, std::slice::from_ref(&sp_no));

    let client = client_of(&sim, &config);
    let (who, days) = approval_days(&client, &recorded[0].lookups[0], SHANGHAI)
        .await
        .expect("looked up")
        .expect("touches days");
    assert_eq!(who, user);
    assert_eq!(
        days,
        [
            date(2026, 10, 30),
            date(2026, 10, 31),
            date(2026, 11, 1),
            date(2026, 11, 2)
        ]
    );
    for sp_no in [rejected, pending] {
        let found = approval_days(&client, &sp_no, SHANGHAI)
            .await
            .expect("looked up");
        assert_eq!(found, None, "{sp_no}");
    }
    // Revoked after approval: the same days again.
    assert!(sim.set_approval_status(&sp_no, SpStatus::RevokedAfterApproval));
    let again = approval_days(&client, &sp_no, SHANGHAI)
        .await
        .expect("looked up");
    assert_eq!(again.map(|(_, d)| d.len()), Some(4));
    assert_eq!(sim.quota_violations(), 0);
}

#[tokio::test]
async fn an_app_not_allowed_to_read_approvals_is_told_what_to_switch_on() {
    let config = WecomSimConfig::default();
    let sim = WecomSim::start(Org::generate(3, 1), config.clone())
        .await
        .expect("simulator");
    let client = client_of(&sim, &config);
    check_approval_access(&client).await.expect("allowed");

    sim.set_approval_forbidden(true);
    let err = check_approval_access(&client).await.expect_err("forbidden");
    assert!(
        matches!(err, ApprovalError::NotAllowed { code: 301055 }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("应用管理 → 审批 → API")
            && text.contains("可调用接口的应用")
            && text.contains("审批状态变化")
            && text.contains("301055"),
        "{text}"
    );
    let err = approval_days(&client, "202610300001", SHANGHAI)
        .await
        .expect_err("forbidden");
    assert!(matches!(err, ApprovalError::NotAllowed { .. }), "{err}");
    // The permission check is one call, not retried.
    assert_eq!(sim.calls(APPROVAL_DETAIL), 3);
}
