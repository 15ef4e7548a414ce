use std::sync::Mutex;

use base64::Engine;

use super::*;
use crate::events::{Recorded, SinkError, SinkFuture};

const TOKEN: &str = "QDG6eK";
const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
const CORP: &str = "wx5823bf96d3bd56c7";

fn crypt() -> MsgCrypt {
    MsgCrypt::new(TOKEN, KEY, CORP).expect("key")
}

/// An in-memory sink: what was recorded, or a failure on demand.
#[derive(Default)]
struct Memory {
    changes: Mutex<Vec<Change>>,
    failing: bool,
}

impl Sink for Memory {
    fn record(&self, change: Change) -> SinkFuture<'_> {
        Box::pin(async move {
            if self.failing {
                return Err(SinkError("disk full".into()));
            }
            self.changes.lock().expect("lock").push(change);
            Ok(Recorded::New)
        })
    }
}

impl Memory {
    fn recorded(&self) -> Vec<Change> {
        self.changes.lock().expect("lock").clone()
    }
}

/// A query signed over `encrypt` with the callback's token, stamped now.
fn signed(crypt: &MsgCrypt, encrypt: &str) -> CallbackQuery {
    signed_at(crypt, encrypt, chrono::Utc::now().timestamp())
}

fn signed_at(crypt: &MsgCrypt, encrypt: &str, timestamp: i64) -> CallbackQuery {
    let timestamp = timestamp.to_string();
    CallbackQuery {
        msg_signature: crypt.sign(&timestamp, "263014780", encrypt),
        timestamp,
        nonce: "263014780".into(),
        echostr: None,
    }
}

#[tokio::test]
async fn an_event_stamped_more_than_an_hour_away_is_refused_and_records_nothing() {
    let sink = Memory::default();
    let encrypt = crypt().encrypt(APPROVAL);
    let now = chrono::Utc::now().timestamp();
    for stamp in [now - 3_700, now + 3_700, 1_409_659_589] {
        let query = signed_at(&crypt(), &encrypt, stamp);
        let (status, _) = handle_post(&crypt(), &query, envelope(&encrypt).as_bytes(), &sink).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{stamp}");
    }
    let query = signed_at(&crypt(), &encrypt, now - 600);
    let (status, _) = handle_post(&crypt(), &query, envelope(&encrypt).as_bytes(), &sink).await;
    assert_eq!(status, StatusCode::OK, "ten minutes old: a retry");
    assert_eq!(sink.recorded().len(), 1);
}

/// The outer XML WeCom posts around an encrypted message.
fn envelope(encrypt: &str) -> String {
    format!(
        "<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><AgentID><![CDATA[3010040]]></AgentID>\
         <Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    )
}

const APPROVAL: &str = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\
    <FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1571732272</CreateTime>\
    <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[sys_approval_change]]></Event>\
    <AgentID>3010040</AgentID><ApprovalInfo><SpNo>201910220001</SpNo>\
    <SpName><![CDATA[请假]]></SpName><SpStatus>2</SpStatus>\
    <Applyer><UserId><![CDATA[WangXiaoMing]]></UserId><Party><![CDATA[1]]></Party></Applyer>\
    <StatuChangeEvent>2</StatuChangeEvent></ApprovalInfo></xml>";

async fn post(crypt: &MsgCrypt, message: &str, sink: &Memory) -> (StatusCode, String) {
    let encrypt = crypt.encrypt(message);
    let query = signed(crypt, &encrypt);
    handle_post(&self::crypt(), &query, envelope(&encrypt).as_bytes(), sink).await
}

#[tokio::test]
async fn the_official_url_check_vector_is_answered_with_its_plaintext_only() {
    let query = CallbackQuery {
        msg_signature: "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3".into(),
        timestamp: "1409659589".into(),
        nonce: "263014780".into(),
        echostr: Some(
            "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="
                .into(),
        ),
    };
    assert_eq!(
        verify_url(&crypt(), &query).expect("verified"),
        "1616140317555161061"
    );
    let (status, body) = handle_get(&crypt(), &query).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "1616140317555161061")
    );

    // A `+` that came through a form decoder as a space still verifies.
    let spaced = CallbackQuery {
        echostr: query.echostr.as_ref().map(|e| e.replace('+', " ")),
        ..query.clone()
    };
    assert!(verify_url(&crypt(), &spaced).is_ok());

    let tampered = CallbackQuery {
        msg_signature: "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd4".into(),
        ..query.clone()
    };
    let (status, body) = handle_get(&crypt(), &tampered).await;
    assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, ""));

    let other_corp = MsgCrypt::new(TOKEN, KEY, "wwsomeoneelse").expect("key");
    let err = verify_url(&other_corp, &query).expect_err("another corp's");
    assert!(
        matches!(err, CallbackError::Crypto(CryptoError::WrongOwner)),
        "{err}"
    );
    assert_eq!(err.status(), StatusCode::FORBIDDEN);

    let missing = CallbackQuery {
        echostr: None,
        ..query
    };
    assert!(matches!(
        verify_url(&crypt(), &missing),
        Err(CallbackError::Missing("echostr"))
    ));
}

#[tokio::test]
async fn an_approval_event_is_recorded_with_its_lookup_before_the_empty_200() {
    let sink = Memory::default();
    let (status, body) = post(&crypt(), APPROVAL, &sink).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    assert_eq!(
        sink.recorded(),
        [Change {
            event_id: "201910220001/2/1571732272".into(),
            kind: "sys_approval_change".into(),
            touched: Vec::new(),
            lookups: vec!["201910220001".into()],
        }]
    );
    // The same event again has the same id (the sink drops the duplicate).
    post(&crypt(), APPROVAL, &sink).await;
    let ids: Vec<String> = sink.recorded().into_iter().map(|c| c.event_id).collect();
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn other_events_are_recorded_touching_nothing() {
    let sink = Memory::default();
    let message = "<xml><ToUserName>x</ToUserName><CreateTime>1</CreateTime>\
        <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event>\
        <ChangeType>update_user</ChangeType><UserID>a&amp;b</UserID></xml>";
    let (status, _) = post(&crypt(), message, &sink).await;
    assert_eq!(status, StatusCode::OK);
    let recorded = sink.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].kind, "change_contact");
    assert!(recorded[0].touched.is_empty() && recorded[0].lookups.is_empty());
    // A plain message (no Event) is counted under its MsgType.
    post(
        &crypt(),
        "<xml><MsgType>text</MsgType><Content>hi</Content></xml>",
        &sink,
    )
    .await;
    assert_eq!(sink.recorded()[1].kind, "text");
}

#[tokio::test]
async fn a_sink_that_fails_gets_a_503_so_the_event_is_not_acknowledged() {
    let sink = Memory {
        failing: true,
        ..Memory::default()
    };
    let (status, _) = post(&crypt(), APPROVAL, &sink).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Each refused request gets a 4xx and records nothing.
async fn refused(query: &CallbackQuery, body: &[u8], want: StatusCode) {
    let sink = Memory::default();
    let (status, answer) = handle_post(&crypt(), query, body, &sink).await;
    assert_eq!(status, want, "{}", String::from_utf8_lossy(body));
    assert!(answer.is_empty());
    assert!(sink.recorded().is_empty());
}

#[tokio::test]
async fn bad_signature_wrong_corp_and_bad_padding_are_refused() {
    let c = crypt();
    let encrypt = c.encrypt(APPROVAL);
    // Signed with another token.
    let other = MsgCrypt::new("other", KEY, CORP).expect("key");
    refused(
        &signed(&other, &encrypt),
        envelope(&encrypt).as_bytes(),
        StatusCode::FORBIDDEN,
    )
    .await;
    // Encrypted for another corp.
    let elsewhere = MsgCrypt::new(TOKEN, KEY, "wwsomeoneelse").expect("key");
    let encrypt = elsewhere.encrypt(APPROVAL);
    refused(
        &signed(&c, &encrypt),
        envelope(&encrypt).as_bytes(),
        StatusCode::FORBIDDEN,
    )
    .await;
    // The last padding byte changed (CBC: flip the block before it), signed.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(c.encrypt(APPROVAL)).expect("base64");
    let at = raw.len() - 17;
    raw[at] ^= 0x01;
    let encrypt = b64.encode(&raw);
    assert_eq!(
        open_event(&c, &signed(&c, &encrypt), envelope(&encrypt).as_bytes()).expect_err("padding"),
        CallbackError::Crypto(CryptoError::BadPadding),
    );
    refused(
        &signed(&c, &encrypt),
        envelope(&encrypt).as_bytes(),
        StatusCode::BAD_REQUEST,
    )
    .await;
    // No signature at all.
    let encrypt = c.encrypt(APPROVAL);
    refused(
        &CallbackQuery::default(),
        envelope(&encrypt).as_bytes(),
        StatusCode::BAD_REQUEST,
    )
    .await;
}

impl PartialEq for CallbackError {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

#[tokio::test]
async fn truncated_oversized_and_malformed_bodies_are_refused_without_panic() {
    let c = crypt();
    let encrypt = c.encrypt(APPROVAL);
    let query = signed(&c, &encrypt);
    let whole = envelope(&encrypt);
    for cut in [0, 1, 10, whole.len() / 2, whole.len() - 7, whole.len() - 1] {
        refused(&query, &whole.as_bytes()[..cut], StatusCode::BAD_REQUEST).await;
    }
    let mut huge = whole.clone().into_bytes();
    huge.resize(MAX_BODY + 1, b' ');
    refused(&query, &huge, StatusCode::PAYLOAD_TOO_LARGE).await;
    for body in [
        &b"\xff\xfe<xml>"[..],
        b"<xml><Encrypt></Encrypt></xml>",
        b"<xml></xml>",
        b"<a></b>",
        b"<xml><Encrypt>x</Encrypt></xml><xml/>",
        b"<xml><Encrypt>&bogus;</Encrypt></xml>",
    ] {
        refused(&query, body, StatusCode::BAD_REQUEST).await;
    }
    // The signature is over the Encrypt text: a ciphertext that is not one is
    // refused after it verifies.
    let query = signed(&c, "bm90IGJsb2Nrcw==");
    refused(
        &query,
        envelope("bm90IGJsb2Nrcw==").as_bytes(),
        StatusCode::BAD_REQUEST,
    )
    .await;
}

#[tokio::test]
async fn xml_with_a_doctype_is_refused_outside_and_inside() {
    let c = crypt();
    let encrypt = c.encrypt(APPROVAL);
    let query = signed(&c, &encrypt);
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE xml [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>\
         <xml><ToUserName>&e;</ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    );
    refused(&query, xxe.as_bytes(), StatusCode::BAD_REQUEST).await;
    let laughs = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]>\
        <xml><MsgType>&lol2;</MsgType></xml>";
    let sink = Memory::default();
    let (status, _) = post(&c, laughs, &sink).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(sink.recorded().is_empty());
    // An approval event without its number is refused too.
    let (status, _) = post(
        &c,
        &APPROVAL.replace("<SpNo>201910220001</SpNo>", ""),
        &sink,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(sink.recorded().is_empty());
}

#[test]
fn fields_are_read_by_path_with_entities_and_cdata() {
    let fields = read_fields(
        "<?xml version=\"1.0\"?><!-- hi --><xml><A>x &lt;&#65;&#x42;</A><B><C><![CDATA[<y>]]></C></B><A>second</A></xml>",
    )
    .expect("read");
    assert_eq!(fields["A"], "x <AB");
    assert_eq!(fields["B/C"], "<y>");
    let deep = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
    assert!(read_fields(&deep).is_err());
}
