use std::sync::{Arc, Mutex};

use super::super::super::test_util::client;
use super::*;
use crate::Org;
use crate::WecomSimConfig;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;

const TOKEN: &str = "QDG6eK";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "ww5f3c8a1d2b4e6f70";

fn shanghai(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, m, d, h, 0, 0)
        .unwrap()
        .with_timezone(&Utc)
}

async fn sim() -> WecomSim {
    WecomSim::start(Org::generate(5, 1), WecomSimConfig::default())
        .await
        .unwrap()
}

async fn detail(sim: &WecomSim, sp_no: &str) -> Value {
    let c = WecomSimConfig::default();
    let token: Value = client()
        .get(format!("{}/cgi-bin/gettoken", sim.base_url()))
        .query(&[("corpid", &c.corp_id), ("corpsecret", &c.secret)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap();
    let url = format!(
        "{}/cgi-bin/oa/getapprovaldetail?access_token={token}",
        sim.base_url()
    );
    let resp = client()
        .post(url)
        .json(&json!({"sp_no": sp_no}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn getapprovaldetail_answers_a_leave_in_the_documented_shape() {
    let sim = sim().await;
    let user = sim.org().users[0].userid.clone();
    let begin = shanghai(2026, 10, 30, 9);
    let end = shanghai(2026, 11, 2, 18);
    let sp_no = sim.add_approval(&user, ApprovalKind::Leave, begin, end, SpStatus::Approved);
    assert_eq!(sp_no, "202610300001");
    let v = detail(&sim, &sp_no).await;
    assert_eq!(v["errcode"], 0, "{v}");
    let info = &v["info"];
    assert_eq!(info["sp_no"], sp_no.as_str());
    assert_eq!(info["sp_status"], 2);
    assert_eq!(info["applyer"]["userid"], user.as_str());
    let content = &info["apply_data"]["contents"][0];
    assert_eq!(content["control"], "Vacation");
    let attendance = &content["value"]["vacation"]["attendance"];
    let range = &attendance["date_range"];
    assert_eq!(range["new_begin"], begin.timestamp());
    assert_eq!(range["new_end"], end.timestamp());
    assert_eq!(range["new_duration"], end.timestamp() - begin.timestamp());
    let items = attendance["slice_info"]["day_items"].as_array().unwrap();
    let days: Vec<i64> = items
        .iter()
        .map(|i| i["daytime"].as_i64().unwrap())
        .collect();
    let midnights: Vec<i64> = [(10, 30), (10, 31), (11, 1), (11, 2)]
        .iter()
        .map(|&(m, d)| shanghai(2026, m, d, 0).timestamp())
        .collect();
    assert_eq!(days, midnights);
    // The first day from 09:00, the last until 18:00.
    assert_eq!(items[0]["duration"], 15 * 3600);
    assert_eq!(items[1]["duration"], 86_400);
    assert_eq!(items[3]["duration"], 18 * 3600);

    assert!(sim.set_approval_status(&sp_no, SpStatus::RevokedAfterApproval));
    assert_eq!(detail(&sim, &sp_no).await["info"]["sp_status"], 6);

    let trip = sim.add_approval(&user, ApprovalKind::Trip, begin, end, SpStatus::Pending);
    let v = detail(&sim, &trip).await;
    let content = &v["info"]["apply_data"]["contents"][0];
    assert_eq!(content["control"], "Attendance");
    assert_eq!(content["value"]["attendance"]["type"], 3);
}

#[tokio::test]
async fn an_unknown_approval_and_a_forbidden_app_are_refused() {
    let sim = sim().await;
    let v = detail(&sim, "0").await;
    assert_eq!(v["errcode"], 301025, "{v}");
    sim.set_approval_forbidden(true);
    let v = detail(&sim, "0").await;
    assert_eq!(v["errcode"], 301055, "{v}");
    assert!(v["errmsg"]
        .as_str()
        .unwrap()
        .starts_with("no approval auth"));
}

/// What the test receiver saw: decrypted messages.
#[derive(Default)]
struct Seen {
    messages: Mutex<Vec<String>>,
    fail_with: Mutex<Option<StatusCode>>,
}

async fn receiver(seen: Arc<Seen>) -> String {
    async fn check(Query(q): Query<HashMap<String, String>>) -> (StatusCode, String) {
        let crypt = MsgCrypt::new(TOKEN, KEY, CORP).unwrap();
        let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
        match crypt.open(
            &arg("msg_signature"),
            &arg("timestamp"),
            &arg("nonce"),
            &arg("echostr"),
        ) {
            Ok(text) => (StatusCode::OK, text),
            Err(_) => (StatusCode::FORBIDDEN, String::new()),
        }
    }
    async fn event(
        State(seen): State<Arc<Seen>>,
        Query(q): Query<HashMap<String, String>>,
        body: String,
    ) -> StatusCode {
        if let Some(status) = *seen.fail_with.lock().unwrap() {
            return status;
        }
        let crypt = MsgCrypt::new(TOKEN, KEY, CORP).unwrap();
        let start = body.find("<Encrypt><![CDATA[").unwrap() + 18;
        let end = body[start..].find("]]>").unwrap() + start;
        let arg = |k: &str| q.get(k).cloned().unwrap_or_default();
        match crypt.open(
            &arg("msg_signature"),
            &arg("timestamp"),
            &arg("nonce"),
            &body[start..end],
        ) {
            Ok(text) => {
                seen.messages.lock().unwrap().push(text);
                StatusCode::OK
            }
            Err(_) => StatusCode::FORBIDDEN,
        }
    }
    let app = Router::new()
        .route("/callbacks/wecom/job", get(check).post(event))
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/callbacks/wecom/job")
}

#[tokio::test]
async fn the_pusher_checks_the_url_and_posts_signed_encrypted_events() {
    let seen = Arc::new(Seen::default());
    let url = receiver(seen.clone()).await;
    let pusher = ApprovalPusher::new(TOKEN, KEY, CORP, &url).unwrap();
    let (delivery, echoed) = pusher.verify_url().await;
    assert_eq!(delivery.status, Some(200), "{delivery:?}");
    assert!(echoed, "{delivery:?}");

    let delivery = pusher
        .push_approval(
            "202610300001",
            "zhangsan",
            SpStatus::Approved,
            2,
            1_793_000_000,
        )
        .await;
    assert_eq!(delivery.status, Some(200), "{delivery:?}");
    let messages = seen.messages.lock().unwrap().clone();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(
        m.contains("<Event><![CDATA[sys_approval_change]]></Event>"),
        "{m}"
    );
    assert!(m.contains("<SpNo>202610300001</SpNo>"), "{m}");
    assert!(m.contains("<UserId><![CDATA[zhangsan]]></UserId>"), "{m}");
    assert!(m.contains("<StatuChangeEvent>2</StatuChangeEvent>"), "{m}");

    // A receiver with other secrets does not verify: the URL check fails.
    let other = ApprovalPusher::new("other", KEY, CORP, &url).unwrap();
    let (delivery, echoed) = other.verify_url().await;
    assert_eq!((delivery.status, echoed), (Some(403), false));
}

#[tokio::test]
async fn the_pusher_retries_network_failures_only() {
    // Nothing listens on a port just released.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut pusher = ApprovalPusher::new(TOKEN, KEY, CORP, &format!("http://{addr}/cb")).unwrap();
    pusher.retries = 2;
    let delivery = pusher.push_message("<xml/>").await;
    assert_eq!(delivery.status, None);
    assert_eq!(pusher.deliveries().len(), 3, "{:?}", pusher.deliveries());

    // An HTTP answer, even a 500, is not retried.
    let seen = Arc::new(Seen::default());
    *seen.fail_with.lock().unwrap() = Some(StatusCode::INTERNAL_SERVER_ERROR);
    let url = receiver(seen).await;
    let pusher = ApprovalPusher::new(TOKEN, KEY, CORP, &url).unwrap();
    let delivery = pusher.push_message("<xml/>").await;
    assert_eq!(delivery.status, Some(500));
    assert_eq!(pusher.deliveries().len(), 1);
}

#[test]
fn percent_encoding_and_answers() {
    assert_eq!(percent("a+b/c=="), "a%2Bb%2Fc%3D%3D");
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
    assert_eq!(parse_answer(answer), Some((200, "hello".to_owned())));
    assert_eq!(parse_answer(b"garbage"), None);
}
