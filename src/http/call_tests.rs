//! The call wrapper against a scripted server on 127.0.0.1:0.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode as Code;
use axum::Router;
use serde_json::Value;

use super::*;
use crate::http::pace::Pacer;
use crate::http::rate::Rate;

/// Answers in order (the last one again once the script is used up); every
/// request's query is kept.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<(u16, String)>>,
    queries: Mutex<Vec<String>>,
}

impl Script {
    fn queries(&self) -> Vec<String> {
        self.queries.lock().unwrap().clone()
    }
}

async fn serve(answers: &[(u16, &str)]) -> (String, Arc<Script>) {
    let script = Arc::new(Script::default());
    *script.answers.lock().unwrap() = answers.iter().map(|(s, b)| (*s, b.to_string())).collect();
    let answer = |State(s): State<Arc<Script>>, RawQuery(q): RawQuery| async move {
        s.queries.lock().unwrap().push(q.unwrap_or_default());
        let mut answers = s.answers.lock().unwrap();
        let (status, body) = if answers.len() > 1 {
            answers.pop_front().unwrap()
        } else {
            answers.front().cloned().unwrap()
        };
        (Code::from_u16(status).unwrap(), body)
    };
    let app = Router::new().fallback(answer).with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/api"), script)
}

/// A vendor with a token from a counter: `t1`, `t2`…
struct Fake {
    http: reqwest::Client,
    pacer: Pacer,
    retry: RetryConfig,
    stats: CallStats,
    tokens: TokenCache,
    fetches: AtomicUsize,
    paced: AtomicUsize,
}

impl Fake {
    fn new(max_attempts: u32) -> Fake {
        Fake {
            http: crate::http::client(Duration::from_secs(5)).unwrap(),
            pacer: Pacer::new(Rate::per_second(1000), &[], &[]),
            retry: RetryConfig {
                max_attempts,
                initial_wait: Duration::from_millis(5),
                max_wait: Duration::from_millis(20),
                throttle_wait: Duration::from_millis(80),
            },
            stats: CallStats::default(),
            tokens: TokenCache::new(),
            fetches: AtomicUsize::new(0),
            paced: AtomicUsize::new(0),
        }
    }
}

impl Vendor for Fake {
    type Error = String;
    const CODE: &'static str = "errcode";

    fn secrets(&self) -> Vec<&str> {
        vec!["s3cr3t-key"]
    }

    fn retry_config(&self) -> &RetryConfig {
        &self.retry
    }

    fn stats(&self) -> Option<&CallStats> {
        Some(&self.stats)
    }

    fn pacer(&self) -> Option<&Pacer> {
        Some(&self.pacer)
    }

    fn pace(&self, endpoint: &str) -> impl Future<Output = ()> + Send {
        self.paced.fetch_add(1, Ordering::SeqCst);
        self.pacer.ready(endpoint)
    }
}

impl Tokens for Fake {
    fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    async fn fetch_token(&self) -> Result<(Secret, Duration), String> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        Ok((Secret::new(format!("tok{n}")), Duration::from_secs(7200)))
    }
}

fn table(code: i64) -> Class {
    match code {
        1 => Class::Transient,
        2 => Class::Throttled,
        3 => Class::Token,
        _ => Class::Fatal("fix it"),
    }
}

fn decode(bytes: &[u8]) -> Decoded<Value> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => match v["errcode"].as_i64().unwrap_or(0) {
            0 => Decoded::Done(v),
            code => Decoded::Code {
                code,
                message: v["errmsg"].as_str().unwrap_or("").to_string(),
            },
        },
        Err(_) if bytes.starts_with(b"BAN") => Decoded::Blocked("banned".into()),
        Err(e) => Decoded::Transient(format!("not JSON: {e}")),
    }
}

fn at(endpoint: &str, resend: Resend) -> Call<'_> {
    Call {
        endpoint,
        cap: 1024,
        table,
        resend,
    }
}

async fn with_token(fake: &Fake, url: &str, resend: Resend) -> Result<Value, Failure<String>> {
    call_with_token(
        fake,
        &at("e", resend),
        |token| {
            let token = token.map(Secret::expose).unwrap_or_default();
            fake.http.get(url).query(&[("access_token", token)])
        },
        |_, bytes: &mut Vec<u8>| decode(bytes),
        no_hook,
    )
    .await
}

#[tokio::test]
async fn a_token_error_refreshes_the_token_once_and_retries() {
    let (url, script) = serve(&[(200, r#"{"errcode":3,"errmsg":"expired"}"#), (200, "{}")]).await;
    let fake = Fake::new(2);
    assert!(with_token(&fake, &url, Resend::Safe).await.is_ok());
    assert_eq!(fake.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(script.queries(), ["access_token=tok1", "access_token=tok2"]);
    // A token the vendor keeps refusing ends as that failure.
    let (url, _) = serve(&[(200, r#"{"errcode":3,"errmsg":"bad s3cr3t-key"}"#)]).await;
    match with_token(&fake, &url, Resend::Safe).await {
        Err(Failure::Api(f)) => {
            assert_eq!((f.code, f.class), (3, Class::Token));
            assert_eq!(f.message, "bad ***");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn transient_answers_are_retried_and_counted_then_give_up() {
    let (url, script) = serve(&[
        (502, ""),
        (200, r#"{"errcode":1,"errmsg":"busy"}"#),
        (200, r#"{"x":1}"#),
    ])
    .await;
    let fake = Fake::new(5);
    let v = with_token(&fake, &url, Resend::Safe).await.expect("done");
    assert_eq!(v["x"], 1);
    assert_eq!(script.queries().len(), 3);
    assert_eq!(fake.stats.snapshot()["e"].calls, 3);
    assert_eq!(fake.paced.load(Ordering::SeqCst), 3);

    let (url, _) = serve(&[(200, "<html>gateway</html>")]).await;
    match with_token(&fake, &url, Resend::Safe).await {
        Err(Failure::Exhausted { attempts: 5, last }) => {
            assert!(last.starts_with("not JSON"), "{last}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_throttling_code_waits_the_throttle_wait_even_for_creates() {
    let (url, _) = serve(&[(200, r#"{"errcode":2,"errmsg":"slow down"}"#), (200, "{}")]).await;
    let fake = Fake::new(3);
    let started = Instant::now();
    assert!(with_token(&fake, &url, Resend::Never).await.is_ok());
    // 80 ms, with up to 25 % jitter either way.
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(fake.stats.snapshot()["e"].throttled, 1);
    // The vendor's pace leaves a wider margin from then on: twice the 5 ms.
    assert_eq!(fake.pacer.margin("e"), Duration::from_millis(10));
}

#[tokio::test]
async fn a_block_is_counted_as_throttled_and_retried() {
    let (url, _) = serve(&[(200, "BAN"), (200, "{}")]).await;
    let fake = Fake::new(3);
    assert!(with_token(&fake, &url, Resend::Safe).await.is_ok());
    assert_eq!(fake.stats.snapshot()["e"].throttled, 1);
    assert_eq!(fake.pacer.margin("e"), Duration::from_millis(10));
}

#[tokio::test]
async fn a_fatal_code_stops_at_once() {
    let (url, script) = serve(&[(200, r#"{"errcode":9,"errmsg":"no"}"#)]).await;
    let fake = Fake::new(5);
    match with_token(&fake, &url, Resend::Safe).await {
        Err(Failure::Api(f)) => assert_eq!(f.class, Class::Fatal("fix it")),
        other => panic!("{other:?}"),
    }
    assert_eq!(script.queries().len(), 1);
}

#[tokio::test]
async fn unclear_failures_of_a_create_are_ambiguous_and_not_resent() {
    let fake = Fake::new(5);
    for (status, body, answered) in [(503, "", false), (429, "", false), (200, "<html>", true)] {
        let (url, script) = serve(&[(status, body)]).await;
        match with_token(&fake, &url, Resend::Never).await {
            Err(Failure::Ambiguous { answered: a, .. }) => assert_eq!(a, answered, "{status}"),
            other => panic!("{status}: {other:?}"),
        }
        assert_eq!(script.queries().len(), 1);
    }
}

#[tokio::test]
async fn the_hook_runs_after_the_pacer_before_each_attempt_and_can_stop_the_send() {
    let (url, script) = serve(&[(500, ""), (200, "{}")]).await;
    let fake = Fake::new(3);
    let hooked = AtomicUsize::new(0);
    let hook = || {
        // The pacer's wait came first.
        assert_eq!(
            fake.paced.load(Ordering::SeqCst),
            hooked.fetch_add(1, Ordering::SeqCst) + 1
        );
        std::future::ready(Ok::<(), String>(()))
    };
    let r = call(
        &fake,
        &at("e", Resend::Safe),
        |_| fake.http.get(&url),
        |_, bytes: &mut Vec<u8>| decode(bytes),
        hook,
    )
    .await;
    assert!(r.is_ok());
    assert_eq!(hooked.load(Ordering::SeqCst), 2);
    assert_eq!(script.queries().len(), 2);

    let refuse = || std::future::ready(Err::<(), String>("not marked".into()));
    let r = call(
        &fake,
        &at("e", Resend::Never),
        |_| fake.http.get(&url),
        |_, bytes: &mut Vec<u8>| decode(bytes),
        refuse,
    )
    .await;
    assert!(matches!(r, Err(Failure::Vendor(e)) if e == "not marked"));
    assert_eq!(script.queries().len(), 2, "nothing sent");
}

#[tokio::test]
async fn an_answer_over_its_cap_is_refused_or_ambiguous() {
    let big = "x".repeat(2048);
    let (url, script) = serve(&[(200, &big)]).await;
    let fake = Fake::new(5);
    match with_token(&fake, &url, Resend::Safe).await {
        Err(Failure::Protocol(m)) => assert!(m.contains("larger than its"), "{m}"),
        other => panic!("{other:?}"),
    }
    match with_token(&fake, &url, Resend::Never).await {
        Err(Failure::Ambiguous { answered: true, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(script.queries().len(), 2);
}

#[tokio::test]
async fn vendor_text_is_redacted_and_escaped() {
    let (url, _) = serve(&[(
        200,
        r#"{"errcode":9,"errmsg":"key s3cr3t-key token tok1\nforged"}"#,
    )])
    .await;
    let fake = Fake::new(5);
    match with_token(&fake, &url, Resend::Safe).await {
        Err(Failure::Api(f)) => assert_eq!(f.message, r"key *** token ***\nforged"),
        other => panic!("{other:?}"),
    }
    // A redirect is not followed, and says which setting to check.
    let (url, _) = serve(&[(302, "")]).await;
    match with_token(&fake, &url, Resend::Safe).await {
        Err(Failure::Protocol(m)) => assert!(m.contains("check `base_url`"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A refusal of the request's form is sent again at once in the same attempt,
/// paced, hooked and counted like any send; a second one in the same attempt
/// is a refusal like any other.
#[tokio::test]
async fn a_resend_goes_out_again_within_the_attempt_once() {
    let (url, script) = serve(&[(200, r#"{"errcode":7,"errmsg":"form"}"#), (200, "{}")]).await;
    let fake = Fake::new(1);
    let hooked = AtomicUsize::new(0);
    let hook = || {
        hooked.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok::<(), String>(()))
    };
    let resend = |_: Code, bytes: &mut Vec<u8>| match decode(bytes) {
        Decoded::Code { code: 7, message } => Decoded::Resend { code: 7, message },
        other => other,
    };
    let r = call(
        &fake,
        &at("e", Resend::Safe),
        |_| fake.http.get(&url),
        resend,
        hook,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(script.queries().len(), 2);
    assert_eq!(hooked.load(Ordering::SeqCst), 2);
    assert_eq!(fake.paced.load(Ordering::SeqCst), 2);
    assert_eq!(fake.stats.snapshot()["e"].calls, 2);

    let (url, script) = serve(&[(200, r#"{"errcode":7,"errmsg":"form"}"#)]).await;
    let r = call(
        &fake,
        &at("e", Resend::Safe),
        |_| fake.http.get(&url),
        resend,
        no_hook,
    )
    .await;
    match r {
        Err(Failure::Api(f)) => assert_eq!((f.code, f.class), (7, Class::Fatal("fix it"))),
        other => panic!("{other:?}"),
    }
    assert_eq!(script.queries().len(), 2);
}

/// A vendor that notes the order of the pacer's wait, the hook and the departure.
struct Ordered {
    http: reqwest::Client,
    retry: RetryConfig,
    steps: Arc<Mutex<Vec<&'static str>>>,
}

impl Vendor for Ordered {
    type Error = String;
    const CODE: &'static str = "errcode";

    fn secrets(&self) -> Vec<&str> {
        Vec::new()
    }

    fn retry_config(&self) -> &RetryConfig {
        &self.retry
    }

    fn stats(&self) -> Option<&CallStats> {
        None
    }

    fn pace(&self, _endpoint: &str) -> impl Future<Output = ()> + Send {
        self.steps.lock().unwrap().push("slot");
        std::future::ready(())
    }

    fn depart(&self, _endpoint: &str) -> impl Future<Output = Option<Instant>> + Send {
        self.steps.lock().unwrap().push("depart");
        std::future::ready(None)
    }
}

#[tokio::test]
async fn a_call_departs_after_its_hook_right_before_the_send() {
    // A slow hook between the slot and the send must not move the time the
    // pacer counts the call as leaving (`Pacer::depart`).
    let (url, script) = serve(&[(200, r#"{"errcode":0}"#)]).await;
    let steps = Arc::new(Mutex::new(Vec::new()));
    let vendor = Ordered {
        http: crate::http::client(Duration::from_secs(5)).unwrap(),
        retry: Fake::new(3).retry,
        steps: steps.clone(),
    };
    let hook = || {
        let steps = steps.clone();
        async move {
            steps.lock().unwrap().push("hook");
            Ok::<(), String>(())
        }
    };
    let r = call(
        &vendor,
        &at("e", Resend::Never),
        |_| vendor.http.get(&url),
        |_, b: &mut Vec<u8>| decode(b),
        hook,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(script.queries().len(), 1);
    assert_eq!(*steps.lock().unwrap(), ["slot", "hook", "depart"]);
}
