//! The pusher against a small receiver, and the failed list's paging.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::post;
use axum::Router;

use super::*;
use crate::org::Org;
use crate::test_util::client;
use crate::DingtalkSimConfig;

const TOKEN: &str = "sim-push-token";
const AES_KEY: &str = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
const OWNER: &str = "dingsimappkey7x3k9q2w";

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Reply {
    /// Fails this many pushes with a 500, then answers the encrypted `success`.
    FailFirst(usize),
    /// The plain text `success`, not encrypted.
    Plain,
    /// The encrypted `success`, but for another owner.
    OtherOwner,
}

struct Receiver {
    reply: Reply,
    crypt: MsgCrypt,
    /// The decrypted messages received, in order.
    got: std::sync::Mutex<Vec<Value>>,
}

fn reply_for(crypt: &MsgCrypt) -> String {
    let (timestamp, nonce) = ("1700000000000", "abcdefgh12345678");
    let encrypt = crypt.encrypt("success");
    json!({"msg_signature": crypt.sign(timestamp, nonce, &encrypt), "encrypt": encrypt,
        "timeStamp": timestamp, "nonce": nonce})
    .to_string()
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let query = query.unwrap_or_default();
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let body: Value = serde_json::from_slice(&body).expect("a JSON body");
    let plain = r
        .crypt
        .open(
            &param("msg_signature"),
            &param("timestamp"),
            &param("nonce"),
            body["encrypt"].as_str().expect("encrypt"),
        )
        .expect("a push the receiver can open");
    let n = {
        let mut got = r.got.lock().unwrap();
        got.push(serde_json::from_str(&plain).expect("JSON"));
        got.len()
    };
    let ok = axum::http::StatusCode::OK;
    match r.reply {
        Reply::FailFirst(k) if n <= k => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "".into()),
        Reply::FailFirst(_) => (ok, reply_for(&r.crypt)),
        Reply::Plain => (ok, "success".into()),
        Reply::OtherOwner => {
            let other = MsgCrypt::new(TOKEN, AES_KEY, "dingsomebodyelse").unwrap();
            (ok, reply_for(&other))
        }
    }
}

async fn receiver(reply: Reply) -> (String, Arc<Receiver>, Arc<crate::ServerGuard>) {
    let r = Arc::new(Receiver {
        reply,
        crypt: MsgCrypt::new(TOKEN, AES_KEY, OWNER).unwrap(),
        got: std::sync::Mutex::new(Vec::new()),
    });
    let router = Router::new()
        .route("/callbacks/dingtalk/job", post(receive))
        .with_state(Arc::clone(&r));
    let (addr, guard) = crate::spawn_server(router).await.unwrap();
    (format!("http://{addr}/callbacks/dingtalk/job"), r, guard)
}

async fn sim() -> DingtalkSim {
    DingtalkSim::start(Org::generate(3, 1), DingtalkSimConfig::default())
        .await
        .unwrap()
}

fn config(url: &str, delays_ms: &[u64]) -> PushConfig {
    PushConfig {
        retry_delays: delays_ms
            .iter()
            .map(|ms| Duration::from_millis(*ms))
            .collect(),
        ..PushConfig::new(url, TOKEN, AES_KEY, OWNER)
    }
}

#[tokio::test]
async fn a_delivered_push_carries_the_event_at_the_top_level() {
    let sim = sim().await;
    let (url, r, _guard) = receiver(Reply::FailFirst(0)).await;
    let pusher = sim.pusher(config(&url, &[10, 10])).unwrap();
    let data = json!({"dataList": [{"userId": "u1", "checkTime": 1570791880000_i64}]});
    assert!(
        pusher
            .push("attendance_check_record", "ev-1", data.clone())
            .await
    );
    assert_eq!((pusher.pushes_sent(), pusher.replies_accepted()), (1, 1));
    assert_eq!(sim.failed_list_len(), 0);
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["EventType"], "attendance_check_record");
    assert_eq!(got[0]["eventId"], "ev-1");
    assert_eq!(got[0]["dataList"], data["dataList"]);
}

#[tokio::test]
async fn retries_after_each_delay_then_lists_the_event_as_failed() {
    let sim = sim().await;
    // Two failures, then success: delivered on the last retry.
    let (url, r, _guard) = receiver(Reply::FailFirst(2)).await;
    let pusher = sim.pusher(config(&url, &[30, 60])).unwrap();
    let started = Instant::now();
    assert!(
        pusher
            .push(
                "attend_user_daily_summary_refresh",
                "ev-2",
                json!({"userId": "u"})
            )
            .await
    );
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert_eq!(r.got.lock().unwrap().len(), 3);
    assert_eq!((pusher.pushes_sent(), pusher.replies_accepted()), (3, 1));
    assert_eq!(sim.failed_list_len(), 0);

    // Three failures: the event goes to the failed list, with its data under its tag.
    let (url, r, _guard) = receiver(Reply::FailFirst(3)).await;
    let pusher = sim.pusher(config(&url, &[30, 60])).unwrap();
    let data = json!({"userId": "u", "workDate": "2026-10-05"});
    assert!(
        !pusher
            .push("attend_user_daily_summary_refresh", "ev-3", data.clone())
            .await
    );
    assert_eq!(r.got.lock().unwrap().len(), 3);
    assert_eq!((pusher.pushes_sent(), pusher.replies_accepted()), (3, 0));
    assert_eq!(pusher.events_failed(), 1);
    assert_eq!(sim.failed_list_len(), 1);
    let page = list_page(&sim).await;
    let item = &page["failed_list"][0];
    assert_eq!(item["call_back_tag"], "attend_user_daily_summary_refresh");
    assert_eq!(item["attend_user_daily_summary_refresh"], data);
    assert!(item["event_time"].as_i64().unwrap() > 1_700_000_000_000);
}

#[tokio::test]
async fn a_reply_other_than_the_encrypted_success_is_a_failure() {
    let sim = sim().await;
    for reply in [Reply::Plain, Reply::OtherOwner] {
        let (url, r, _guard) = receiver(reply).await;
        let pusher = sim.pusher(config(&url, &[1])).unwrap();
        assert!(!pusher.push("x", "ev", json!({})).await);
        assert_eq!(r.got.lock().unwrap().len(), 2);
        assert_eq!(pusher.replies_accepted(), 0);
    }
    // Nobody listening: a failure too.
    let pusher = sim.pusher(config(&closed_url(), &[])).unwrap();
    assert!(!pusher.push("x", "ev", json!({})).await);
    assert_eq!(pusher.pushes_sent(), 1);
    assert_eq!(sim.failed_list_len(), 3);
}

async fn token(sim: &DingtalkSim) -> String {
    let url = format!(
        "{}/gettoken?appkey={}&appsecret={}",
        sim.base_url(),
        sim.config().app_key,
        sim.config().app_secret
    );
    let body: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn list_page(sim: &DingtalkSim) -> Value {
    let url = format!(
        "{}/{FAILED_LIST}?access_token={}",
        sim.base_url(),
        token(sim).await
    );
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn ids(page: &Value) -> Vec<i64> {
    page["failed_list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["t"]["n"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_failed_list_pages_and_each_call_clears_the_previous_page() {
    let sim = sim().await;
    sim.set_failed_page_size(3);
    for n in 0..7 {
        sim.add_failed("t", json!({"n": n}));
    }
    let page = list_page(&sim).await;
    assert_eq!(
        (ids(&page), page["has_more"].clone()),
        (vec![0, 1, 2], json!(true))
    );
    // Reading does not clear: the next call does.
    assert_eq!(sim.failed_list_len(), 7);
    let page = list_page(&sim).await;
    assert_eq!(
        (ids(&page), page["has_more"].clone()),
        (vec![3, 4, 5], json!(true))
    );
    assert_eq!(sim.failed_list_len(), 4);
    // A new failure meanwhile goes to the end.
    sim.add_failed("t", json!({"n": 7}));
    let page = list_page(&sim).await;
    assert_eq!(
        (ids(&page), page["has_more"].clone()),
        (vec![6, 7], json!(false))
    );
    let page = list_page(&sim).await;
    assert_eq!(
        (ids(&page), page["has_more"].clone()),
        (vec![], json!(false))
    );
    assert_eq!(sim.failed_list_len(), 0);
    assert_eq!(sim.failed_list_calls(), 4);
    assert_eq!(sim.calls(FAILED_LIST), 4);

    // A call without a valid token is refused and clears nothing.
    sim.add_failed("t", json!({"n": 8}));
    let url = format!("{}/{FAILED_LIST}?access_token=nope", sim.base_url());
    let body: Value = client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["errcode"], 40014);
    sim.set_failed_wrapped(true);
    sim.add_failed("t", json!({"n": 9}));
    let page = list_page(&sim).await;
    assert_eq!(page["failed_list"][0]["t"]["n"], 8);
    assert_eq!(page["failed_list"][1]["t"]["callbackData"]["n"], 9);
}

/// A loopback URL nobody listens on (a port just bound and released).
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}/none")
}
