use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

use super::*;
use crate::test_util::client;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

fn fast() -> StreamGatewayConfig {
    StreamGatewayConfig {
        redeliver_after: Duration::from_millis(100),
        disconnect_grace: Duration::from_millis(100),
        ..StreamGatewayConfig::default()
    }
}

async fn open(gw: &StreamGateway, secret: &str, accept: &str) -> reqwest::Response {
    let body = json!({
        "clientId": gw.config().client_id,
        "clientSecret": secret,
        "subscriptions": [{"type": "EVENT", "topic": "*"}],
    });
    timeout(
        WAIT,
        client()
            .post(format!("{}{OPEN_PATH}", gw.base_url()))
            .header("Accept", accept)
            .json(&body)
            .send(),
    )
    .await
    .expect("in time")
    .expect("answer")
}

async fn ticket(gw: &StreamGateway) -> (String, String) {
    let secret = gw.config().client_secret.clone();
    let answer: Value = open(gw, &secret, "application/json")
        .await
        .json()
        .await
        .expect("json");
    let endpoint = answer["endpoint"].as_str().expect("endpoint").to_string();
    let ticket = answer["ticket"].as_str().expect("ticket").to_string();
    (endpoint, ticket)
}

async fn connect(
    endpoint: &str,
    ticket: &str,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let url = format!("{endpoint}?ticket={ticket}");
    timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("in time")
        .map(|(ws, _)| ws)
}

async fn next_frame(ws: &mut Ws) -> Value {
    loop {
        let message = timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("open")
            .expect("no error");
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).expect("JSON frame");
        }
    }
}

async fn answer(ws: &mut Ws, frame: &Value, data: &str) {
    let reply = json!({
        "code": 200,
        "headers": {"contentType": "application/json", "messageId": frame["headers"]["messageId"]},
        "message": "OK",
        "data": data,
    });
    timeout(WAIT, ws.send(Message::Text(reply.to_string().into())))
        .await
        .expect("in time")
        .expect("sent");
}

const SUCCESS: &str = r#"{"status":"SUCCESS","message":"success"}"#;
const LATER: &str = r#"{"status":"LATER","message":"later"}"#;

#[tokio::test]
async fn open_checks_credentials_and_answers_json_only_when_asked() {
    let gw = StreamGateway::start(fast()).await.expect("start");
    let wrong = open(&gw, "not-the-secret", "application/json").await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.expect("json error");
    assert_eq!(body["code"], "InvalidAuthentication");

    let secret = gw.config().client_secret.clone();
    let xml = open(&gw, &secret, "*/*").await;
    assert!(xml
        .text()
        .await
        .expect("text")
        .starts_with("<OpenConnectionResponse>"));

    let (endpoint, first) = ticket(&gw).await;
    let (_, second) = ticket(&gw).await;
    assert_eq!(endpoint, format!("ws://{}/connect", gw.addr));
    assert_ne!(first, second);
    assert_eq!(gw.tickets_issued().len(), 3);
}

#[tokio::test]
async fn a_ticket_opens_one_connection_and_expires() {
    let gw = StreamGateway::start(StreamGatewayConfig {
        ticket_ttl: Duration::from_millis(200),
        ..fast()
    })
    .await
    .expect("start");
    let (endpoint, ticket) = ticket(&gw).await;
    let _ws = connect(&endpoint, &ticket).await.expect("first use");
    assert!(
        connect(&endpoint, &ticket).await.is_err(),
        "used ticket refused"
    );
    assert!(connect(&endpoint, "made-up").await.is_err());

    let (_, late) = super::tests::ticket(&gw).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        connect(&endpoint, &late).await.is_err(),
        "expired ticket refused"
    );
    assert_eq!(gw.ticket_refusals(), 3);
    assert_eq!(gw.connections_opened(), 1);
}

#[tokio::test]
async fn events_wait_for_a_connection_and_come_back_until_acknowledged() {
    let gw = StreamGateway::start(fast()).await.expect("start");
    let id = gw.push_event(
        "attendance_check_record",
        json!({"dataList": [{"userId": "u1"}]}),
    );
    assert_eq!(gw.deliveries(), 0, "nobody connected yet");
    let (endpoint, ticket) = ticket(&gw).await;
    let mut ws = connect(&endpoint, &ticket).await.expect("connect");

    let frame = next_frame(&mut ws).await;
    assert_eq!(frame["type"], "EVENT");
    assert_eq!(frame["headers"]["eventId"], id.as_str());
    assert!(frame["headers"]["eventBornTime"].is_string());
    let data: Value = serde_json::from_str(frame["data"].as_str().expect("data is a string"))
        .expect("JSON inside");
    assert_eq!(data["dataList"][0]["userId"], "u1");

    // Not answered: sent again with the same ids.
    let again = next_frame(&mut ws).await;
    assert_eq!(again["headers"]["messageId"], frame["headers"]["messageId"]);
    answer(&mut ws, &again, LATER).await;
    let third = next_frame(&mut ws).await;
    assert_eq!(third["headers"]["eventId"], id.as_str());
    assert_eq!(gw.latered(), vec![id.clone()]);
    assert_eq!(gw.pending(), vec![id.clone()]);

    gw.duplicate_next(1);
    answer(&mut ws, &third, SUCCESS).await;
    let duplicate = next_frame(&mut ws).await;
    assert_eq!(
        duplicate["headers"]["eventId"],
        id.as_str(),
        "a duplicate after the ACK"
    );
    answer(&mut ws, &duplicate, SUCCESS).await;
    timeout(WAIT, async {
        while gw.acked().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("acks recorded");
    assert!(gw.pending().is_empty());
    // Acknowledged for good: nothing more comes.
    assert!(timeout(Duration::from_millis(300), ws.next())
        .await
        .is_err());
}

#[tokio::test]
async fn ping_wants_its_echo_and_disconnect_closes_the_socket_later() {
    let gw = StreamGateway::start(fast()).await.expect("start");
    let (endpoint, ticket) = ticket(&gw).await;
    let mut ws = connect(&endpoint, &ticket).await.expect("connect");
    timeout(WAIT, async {
        while gw.open_connections() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("registered");

    assert_eq!(gw.send_ping(), 1);
    let ping = next_frame(&mut ws).await;
    assert_eq!(ping["type"], "SYSTEM");
    assert_eq!(ping["headers"]["topic"], "ping");
    answer(&mut ws, &ping, r#"{"opaque":"not the same"}"#).await;
    answer(&mut ws, &ping, ping["data"].as_str().expect("data")).await;
    timeout(WAIT, async {
        while gw.pings_answered() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("echo counted");
    assert_eq!(gw.pings_answered(), 1);

    gw.send_disconnect();
    let disconnect = next_frame(&mut ws).await;
    assert_eq!(disconnect["headers"]["topic"], "disconnect");
    // Events no longer go to a connection told to leave.
    gw.push_event("attend_user_daily_summary_refresh", json!({"userId": "u2"}));
    let closed = timeout(WAIT, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                Some(Ok(Message::Text(_))) => return false,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("closed in time");
    assert!(closed, "closed without another event");
    assert_eq!(gw.deliveries(), 0);
}
