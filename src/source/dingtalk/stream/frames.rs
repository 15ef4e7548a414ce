//! Stream frames as the gateway sends them and the replies it expects
//! (docs/vendors/events.md "DingTalk Stream mode"): every header value is a
//! string and `data` is a JSON document inside a string.

use serde_json::{json, Map, Value};

use super::StreamEvent;

/// A frame from the gateway, read.
#[derive(Debug)]
pub(super) enum Inbound {
    /// An EVENT frame; `event` says why it cannot be used when it cannot.
    Event {
        message_id: String,
        event: Result<StreamEvent, String>,
    },
    /// SYSTEM `ping`: answered with the same `messageId` and `data`.
    Ping { message_id: String, data: String },
    /// SYSTEM `disconnect`: the gateway closes this connection soon.
    Disconnect,
    /// Anything else (a robot CALLBACK, another SYSTEM topic): not ours.
    Other { kind: String, topic: String },
}

/// Why a frame could not be read at all (it has no `messageId` to answer).
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    #[error("not a JSON object")]
    NotJson,
    #[error("no `type`")]
    NoType,
    #[error("no `headers.messageId`")]
    NoMessageId,
}

/// A header's value: a string, or (leniently) a number written as one.
fn header(headers: &Map<String, Value>, name: &str) -> Option<String> {
    match headers.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) fn parse(text: &str) -> Result<Inbound, FrameError> {
    let frame: Map<String, Value> = serde_json::from_str(text).map_err(|_| FrameError::NotJson)?;
    let kind = frame
        .get("type")
        .and_then(Value::as_str)
        .ok_or(FrameError::NoType)?;
    let empty = Map::new();
    let headers = frame
        .get("headers")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let topic = header(headers, "topic").unwrap_or_default();
    let data = frame.get("data").and_then(Value::as_str).unwrap_or("");
    match (kind, topic.as_str()) {
        ("SYSTEM", "disconnect") => return Ok(Inbound::Disconnect),
        ("SYSTEM", "ping") | ("EVENT", _) => {}
        _ => {
            return Ok(Inbound::Other {
                kind: kind.to_string(),
                topic,
            })
        }
    }
    let message_id = header(headers, "messageId")
        .filter(|m| !m.is_empty())
        .ok_or(FrameError::NoMessageId)?;
    if kind == "SYSTEM" {
        return Ok(Inbound::Ping {
            message_id,
            data: data.to_string(),
        });
    }
    let event = event(headers, &message_id, data);
    Ok(Inbound::Event { message_id, event })
}

fn event(
    headers: &Map<String, Value>,
    message_id: &str,
    data: &str,
) -> Result<StreamEvent, String> {
    let event_id = header(headers, "eventId")
        .filter(|e| !e.is_empty())
        .ok_or("no `eventId` header")?;
    let data: Value =
        serde_json::from_str(data).map_err(|_| format!("event {event_id}: `data` is not JSON"))?;
    Ok(StreamEvent {
        event_id,
        event_type: header(headers, "eventType").unwrap_or_default(),
        message_id: message_id.to_string(),
        born_at_ms: header(headers, "eventBornTime").and_then(|t| t.parse().ok()),
        corp_id: header(headers, "eventCorpId").unwrap_or_default(),
        data,
    })
}

/// The answer to a frame: code 200, its `messageId`, and `data` (a string).
pub(super) fn reply(message_id: &str, data: &str) -> String {
    json!({
        "code": 200,
        "headers": {"contentType": "application/json", "messageId": message_id},
        "message": "OK",
        "data": data,
    })
    .to_string()
}

/// What an EVENT's reply carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    /// Recorded: the gateway forgets the event.
    Success,
    /// Not recorded: the gateway sends it again later.
    Later,
}

pub(super) fn ack(message_id: &str, status: Status) -> String {
    let data = match status {
        Status::Success => json!({"status": "SUCCESS", "message": "success"}),
        Status::Later => json!({"status": "LATER", "message": "not recorded yet"}),
    };
    reply(message_id, &data.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_vendor_event_frame() {
        let text = r#"{"specVersion":"1.0","type":"EVENT",
            "headers":{"topic":"*","messageId":"213d841d_972_1898bb26334_70a7","contentType":"application/json",
              "time":"1683533823336","eventType":"attendance_check_record","eventId":"c7c7120f2c07419ebdba0318c8",
              "eventCorpId":"ding9f50b15b16741","eventBornTime":"1683533823336","eventUnifiedAppId":"bbb381b6"},
            "data":"{\"dataList\":[{\"userId\":\"0126\",\"checkTime\":1570791880000,\"checkByUser\":true}]}"}"#;
        let Ok(Inbound::Event { message_id, event }) = parse(text) else {
            panic!("an event");
        };
        assert_eq!(message_id, "213d841d_972_1898bb26334_70a7");
        let event = event.expect("usable");
        assert_eq!(event.event_id, "c7c7120f2c07419ebdba0318c8");
        assert_eq!(event.event_type, "attendance_check_record");
        assert_eq!(event.corp_id, "ding9f50b15b16741");
        assert_eq!(event.born_at_ms, Some(1_683_533_823_336));
        assert_eq!(event.data["dataList"][0]["userId"], "0126");
    }

    #[test]
    fn an_event_whose_data_is_not_json_is_unusable_but_answerable() {
        let text = r#"{"type":"EVENT","headers":{"messageId":"m1","eventId":"e1"},"data":"{oops"}"#;
        let Ok(Inbound::Event { message_id, event }) = parse(text) else {
            panic!("an event");
        };
        assert_eq!(message_id, "m1");
        assert!(event.expect_err("unusable").contains("not JSON"));
    }

    #[test]
    fn system_frames_and_garbage() {
        let ping = r#"{"type":"SYSTEM","headers":{"topic":"ping","messageId":"p1"},"data":"{\"opaque\":\"x\"}"}"#;
        assert!(
            matches!(parse(ping), Ok(Inbound::Ping { message_id, data }) if message_id == "p1" && data == r#"{"opaque":"x"}"#)
        );
        let bye =
            r#"{"type":"SYSTEM","headers":{"topic":"disconnect","messageId":"d"},"data":"{}"}"#;
        assert!(matches!(parse(bye), Ok(Inbound::Disconnect)));
        let robot = r#"{"type":"CALLBACK","headers":{"topic":"/v1.0/im/bot/messages/get","messageId":"c"}}"#;
        assert!(matches!(parse(robot), Ok(Inbound::Other { .. })));
        assert!(matches!(parse("[1]"), Err(FrameError::NotJson)));
        assert!(matches!(
            parse(r#"{"type":"EVENT","headers":{}}"#),
            Err(FrameError::NoMessageId)
        ));
    }

    #[test]
    fn acks_carry_the_status_as_a_json_string() {
        let ack: Value = serde_json::from_str(&ack("m1", Status::Later)).expect("json");
        assert_eq!(ack["code"], 200);
        assert_eq!(ack["headers"]["messageId"], "m1");
        let data: Value =
            serde_json::from_str(ack["data"].as_str().expect("string")).expect("json");
        assert_eq!(data["status"], "LATER");
    }
}
