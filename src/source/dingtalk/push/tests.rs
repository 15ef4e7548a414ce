//! The official vectors, every way a push can be wrong (refused, nothing
//! recorded), and pushes from the simulator through a receiver mounting
//! [`handle`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::events::Day;
use crate::source::dingtalk::events::memory::MemorySink;
use crate::source::dingtalk::events::{BOSS_CHECK, CHECK_RECORD, DAILY_SUMMARY};
use attendsync_sim::dingtalk::{is_success, DingtalkSim, DingtalkSimConfig, PushConfig};
use attendsync_sim::Org;

const TOKEN: &str = "push-token";
const AES_KEY: &str = "Yue0EfdN5900c1ce5cf6A152c63DDe1808a60c5ecd7";
const APP_KEY: &str = "dingpushappkey000001";

fn crypt() -> MsgCrypt {
    MsgCrypt::new(TOKEN, AES_KEY, APP_KEY).expect("key")
}

fn query(signature: &str, timestamp: &str, nonce: &str) -> PushQuery {
    PushQuery {
        msg_signature: Some(signature.into()),
        timestamp: Some(timestamp.into()),
        nonce: Some(nonce.into()),
        ..PushQuery::default()
    }
}

/// A push of `message` as DingTalk sends it now: the query and the body.
fn push_of(crypt: &MsgCrypt, message: &str) -> (PushQuery, Vec<u8>) {
    let timestamp = Utc::now().timestamp_millis().to_string();
    let encrypt = crypt.encrypt(message);
    signed(crypt, &timestamp, &encrypt)
}

fn signed(crypt: &MsgCrypt, timestamp: &str, encrypt: &str) -> (PushQuery, Vec<u8>) {
    let nonce = "n0nce123";
    let q = query(&crypt.sign(timestamp, nonce, encrypt), timestamp, nonce);
    (q, json!({ "encrypt": encrypt }).to_string().into_bytes())
}

const EVENT: &str = r#"{"EventType":"attend_user_daily_summary_refresh","eventId":"ev-9","userId":"u1","workDate":"2026-10-05"}"#;

#[test]
fn vector_d_opens_to_the_check_url_event() {
    let c = MsgCrypt::new("mryue", AES_KEY, "ding6ccabc44d2c8d38b").expect("key");
    let body = json!({"encrypt": "0vJiX6vliEpwG3U45CtXqi+m8PXbQRARJ8p8BbDuD1EMTDf0jKpQ79QS93qEk7XHpP6u+oTTrd15NRPvNvmBKyDCYxxOK+HZeKju4yhELOFchzNukR+t8SB/qk4ROMu3"});
    let body = body.to_string().into_bytes();
    let sent = DateTime::from_timestamp_millis(1_608_001_896_814).expect("time");
    // DingTalk's other spellings of the query.
    let q = PushQuery {
        signature: Some("03044561471240d4a14bb09372dfcfd4fd0e40cb".into()),
        time_stamp: Some("1608001896814".into()),
        nonce: Some("WL4PK6yA".into()),
        ..PushQuery::default()
    };
    assert_eq!(open_at(&c, &q, &body, sent), Ok(Pushed::CheckUrl));
    // Two hours later the same push is stale.
    let later = sent + chrono::Duration::hours(2);
    assert_eq!(open_at(&c, &q, &body, later), Err(PushError::Stale));
}

#[test]
fn the_success_reply_opens_to_success() {
    let c = crypt();
    let now = Utc::now();
    let reply = success_reply(&c, now);
    let field = |k: &str| reply[k].as_str().expect(k).to_owned();
    assert_eq!(field("timeStamp"), now.timestamp_millis().to_string());
    assert_eq!(field("nonce").len(), 16);
    let plain = c
        .open(
            &field("msg_signature"),
            &field("timeStamp"),
            &field("nonce"),
            &field("encrypt"),
        )
        .expect("opens");
    assert_eq!(plain, "success");
    assert!(is_success(&c, reply.to_string().as_bytes()));
    // A new nonce each time.
    assert_ne!(success_reply(&c, now)["nonce"], reply["nonce"]);
}

#[test]
fn an_event_opens_to_its_change() {
    let c = crypt();
    let (q, body) = push_of(&c, EVENT);
    let Ok(Pushed::Event(change)) = open(&c, &q, &body) else {
        panic!("not an event");
    };
    assert_eq!(change.event_id, "ev-9");
    assert_eq!(change.kind, DAILY_SUMMARY);
    assert_eq!(change.touched.len(), 1);
    assert_eq!(change.touched[0].employee, "u1");
    // Without an event id: a hash of the message, the same for the same text.
    let message = r#"{"EventType":"attend_user_daily_summary_refresh","userId":"u1"}"#;
    let id = |c: &MsgCrypt| {
        let (q, body) = push_of(c, message);
        match open(c, &q, &body) {
            Ok(Pushed::Event(change)) => change.event_id,
            other => panic!("{other:?}"),
        }
    };
    let first = id(&c);
    assert!(first.starts_with("sha256:") && first.len() > 60, "{first}");
    assert_eq!(id(&c), first);
}

/// A refused push: what it is, query, body, status, a word of the error.
type Refused = (&'static str, PushQuery, Vec<u8>, StatusCode, &'static str);

/// Every way a push can be wrong.
fn refused(c: &MsgCrypt) -> Vec<Refused> {
    let now_ms = Utc::now().timestamp_millis();
    let mut cases: Vec<Refused> = Vec::new();

    let (mut q, body) = push_of(c, EVENT);
    q.msg_signature = Some("0".repeat(40));
    cases.push((
        "bad signature",
        q,
        body,
        StatusCode::UNAUTHORIZED,
        "signature",
    ));

    let other = MsgCrypt::new(TOKEN, AES_KEY, "dingsomeoneelse").expect("key");
    let (q, body) = push_of(&other, EVENT);
    cases.push(("wrong owner", q, body, StatusCode::FORBIDDEN, "owner"));

    // CBC: flipping a bit of the next-to-last block flips the same bit of the
    // last plaintext byte, the padding length.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(c.encrypt(EVENT)).expect("base64");
    let at = raw.len() - 17;
    raw[at] ^= 0x40;
    let (q, body) = signed(c, &now_ms.to_string(), &b64.encode(&raw));
    cases.push(("bad padding", q, body, StatusCode::BAD_REQUEST, "padding"));

    let encrypt = c.encrypt(EVENT);
    let (q, body) = signed(c, &now_ms.to_string(), &encrypt[..encrypt.len() - 4]);
    cases.push((
        "truncated ciphertext",
        q,
        body,
        StatusCode::BAD_REQUEST,
        "whole AES blocks",
    ));

    let (q, mut body) = push_of(c, EVENT);
    body.truncate(body.len() - 3);
    cases.push((
        "truncated body",
        q,
        body,
        StatusCode::BAD_REQUEST,
        "JSON object with",
    ));

    let big = format!(r#"{{"EventType":"x","pad":"{}"}}"#, "a".repeat(MAX_BODY));
    let (q, body) = push_of(c, &big);
    cases.push((
        "oversized body",
        q,
        body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "over",
    ));

    let stale = (now_ms - 2 * 3600 * 1000).to_string();
    let (q, body) = signed(c, &stale, &c.encrypt(EVENT));
    cases.push((
        "stale timestamp",
        q,
        body,
        StatusCode::BAD_REQUEST,
        "within an hour",
    ));

    let (mut q, body) = push_of(c, EVENT);
    q.nonce = None;
    cases.push(("no nonce", q, body, StatusCode::BAD_REQUEST, "missing"));

    let (q, body) = push_of(c, "success");
    cases.push((
        "not a JSON message",
        q,
        body,
        StatusCode::BAD_REQUEST,
        "decrypted message",
    ));

    cases
}

/// Every refused push: its status, and nothing recorded.
#[tokio::test]
async fn refused_pushes_record_nothing() {
    let c = crypt();
    let sink = MemorySink::new();
    let cases = refused(&c);
    for (what, q, body, status, why) in cases {
        let (got, reply) = handle(&c, &sink, &q, &body).await;
        assert_eq!(got, status, "{what}: {reply}");
        let error = reply["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{what}: {error}");
        assert!(!is_success(&c, reply.to_string().as_bytes()), "{what}");
        let text = reply.to_string();
        assert!(
            !text.contains(TOKEN) && !text.contains(AES_KEY),
            "{what}: {text}"
        );
    }
    assert!(sink.changes().is_empty());

    // The same push, well formed, is recorded and answered with success.
    let (q, body) = push_of(&c, EVENT);
    let (status, reply) = handle(&c, &sink, &q, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_success(&c, reply.to_string().as_bytes()));
    assert_eq!(sink.changes().len(), 1);
}

#[tokio::test]
async fn a_sink_failure_is_not_a_success() {
    let c = crypt();
    let sink = MemorySink::failing_after(0);
    let (q, body) = push_of(&c, EVENT);
    let (status, reply) = handle(&c, &sink, &q, &body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!is_success(&c, reply.to_string().as_bytes()));
    assert!(sink.changes().is_empty());
    // The URL check records nothing, so it succeeds whatever the sink says.
    let (q, body) = push_of(&c, r#"{"EventType":"check_url"}"#);
    let (status, reply) = handle(&c, &sink, &q, &body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(is_success(&c, reply.to_string().as_bytes()));
}

struct Receiver {
    crypt: MsgCrypt,
    sink: MemorySink,
}

async fn receive(
    State(r): State<Arc<Receiver>>,
    Query(q): Query<PushQuery>,
    body: Bytes,
) -> (StatusCode, Json<Value>) {
    let (status, reply) = handle(&r.crypt, &r.sink, &q, &body).await;
    (status, Json(reply))
}

/// One event the property test pushes: its kind and data.
fn event() -> impl Strategy<Value = (String, Value)> {
    let user = "[a-zA-Z0-9_-]{1,16}";
    let ms = 1_600_000_000_000_i64..1_900_000_000_000;
    let date =
        (2020i32..2030, 1u32..13, 1u32..29).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    prop_oneof![
        prop::collection::vec((user, ms, any::<bool>()), 0..4).prop_map(|punches| {
            let list: Vec<Value> = punches
                .into_iter()
                .map(|(u, t, as_text)| {
                    let t = if as_text {
                        json!(t.to_string())
                    } else {
                        json!(t)
                    };
                    json!({"userId": u, "checkTime": t})
                })
                .collect();
            (CHECK_RECORD.to_owned(), json!({ "dataList": list }))
        }),
        (user, date.clone()).prop_map(|(u, d)| (
            DAILY_SUMMARY.to_owned(),
            json!({"userId": u, "workDate": d})
        )),
        (user, date).prop_map(|(u, d)| (
            BOSS_CHECK.to_owned(),
            json!({"userId": u, "workDate": format!("{d} 00:00:00")})
        )),
        // Kinds that say nothing about attendance (never `check_url`).
        ("x_[a-z_]{1,20}", "\\PC{0,40}").prop_map(|(k, v)| (k, json!({"note": v}))),
    ]
}

/// Pushes from the simulator, through HTTP and [`handle`], come out as the
/// change the event says, each recorded before `success` was answered.
#[test]
fn pushes_from_the_simulator_round_trip() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let receiver = Arc::new(Receiver {
        crypt: crypt(),
        sink: MemorySink::new(),
    });
    let (sim, pusher, _server) = rt.block_on(async {
        let sim = DingtalkSim::start(Org::generate(2, 1), DingtalkSimConfig::default())
            .await
            .expect("sim");
        let router = Router::new()
            .route("/callbacks/dingtalk/job", post(receive))
            .with_state(Arc::clone(&receiver));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        let url = format!("http://{addr}/callbacks/dingtalk/job");
        let config = PushConfig {
            retry_delays: Vec::new(),
            ..PushConfig::new(&url, TOKEN, AES_KEY, APP_KEY)
        };
        let pusher = sim.pusher(config).expect("pusher");
        (sim, pusher, server)
    });
    let mut runner = prop::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let count = std::cell::Cell::new(0);
    runner
        .run(&event(), |(kind, data)| {
            let n = count.get() + 1;
            count.set(n);
            let id = format!("ev-{n}");
            let delivered = rt.block_on(pusher.push(&kind, &id, data.clone()));
            prop_assert!(delivered);
            let changes = receiver.sink.changes();
            prop_assert_eq!(changes.len(), n);
            let got = changes.last().expect("a change");
            prop_assert_eq!(got, &events::change(&kind, &id, &data));
            if kind == CHECK_RECORD {
                let punches = data["dataList"].as_array().map_or(0, Vec::len);
                prop_assert_eq!(got.touched.len(), punches);
                prop_assert!(got.touched.iter().all(|t| matches!(t.day, Day::At(_))));
            }
            Ok(())
        })
        .expect("round trip");
    assert_eq!(pusher.replies_accepted(), count.get());
    assert_eq!(sim.failed_list_len(), 0);
}
