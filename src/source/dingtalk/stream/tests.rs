//! The client against the simulated gateway (attendsync_sim::StreamGateway).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attendsync_sim::{StreamGateway, StreamGatewayConfig};
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::time::timeout;

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn gateway_config() -> StreamGatewayConfig {
    StreamGatewayConfig {
        redeliver_after: Duration::from_millis(150),
        disconnect_grace: Duration::from_millis(300),
        ..StreamGatewayConfig::default()
    }
}

fn settings(gw: &StreamGateway, secret: &str) -> StreamSettings {
    let url = Url::parse(&gw.base_url()).expect("url");
    StreamSettings {
        backoff_base: Duration::from_millis(50),
        backoff_cap: Duration::from_millis(200),
        keepalive: Duration::from_secs(5),
        ..StreamSettings::new(url, gw.config().client_id.clone(), Secret::new(secret))
    }
}

/// What `deliver` saw, and how it answers.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<StreamEvent>>,
    /// This many deliveries fail before they start succeeding.
    failures: AtomicU32,
    /// When set, each delivery waits for a permit (to look at the gateway meanwhile).
    gate: Option<Semaphore>,
}

impl Recorder {
    fn ids(&self) -> Vec<String> {
        let seen = self.seen.lock().expect("lock");
        seen.iter().map(|e| e.event_id.clone()).collect()
    }
}

struct Running {
    recorder: Arc<Recorder>,
    link: watch::Receiver<Link>,
    stop: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.stop.trigger();
        timeout(WAIT, self.task)
            .await
            .expect("stops in time")
            .expect("no panic");
        assert_eq!(*self.link.borrow(), Link::Stopped);
    }
}

fn start(settings: StreamSettings, recorder: Recorder) -> Running {
    let recorder = Arc::new(recorder);
    let (tx, link) = watch::channel(Link::Connecting);
    let stop = Shutdown::new();
    let http = crate::http::client(Duration::from_secs(5)).expect("client");
    let rec = Arc::clone(&recorder);
    let deliver = move |event: StreamEvent| {
        let rec = Arc::clone(&rec);
        async move {
            if let Some(gate) = &rec.gate {
                gate.acquire().await.expect("open").forget();
            }
            rec.seen.lock().expect("lock").push(event);
            let fail = rec
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                Err(SinkError("disk full".into()))
            } else {
                Ok(())
            }
        }
    };
    let task = tokio::spawn(run(settings, http, deliver, tx, stop.clone()));
    Running {
        recorder,
        link,
        stop,
        task,
    }
}

/// Waits (bounded) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

/// Waits (bounded) for a link state; a copy of it, since a borrow of the
/// watch held across an await would block the sender.
async fn link_until(run: &Running, wanted: impl FnMut(&Link) -> bool) -> Option<Link> {
    let mut link = run.link.clone();
    let seen = match timeout(WAIT, link.wait_for(wanted)).await {
        Ok(Ok(state)) => Some(state.clone()),
        _ => None,
    };
    seen
}

async fn connected(run: &Running) {
    let ok = link_until(run, |l| matches!(l, Link::Connected { .. })).await;
    assert!(ok.is_some(), "never connected");
}

#[tokio::test]
async fn events_are_acknowledged_only_after_deliver_returns_ok() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let recorder = Recorder {
        gate: Some(Semaphore::new(0)),
        ..Recorder::default()
    };
    let run = start(settings(&gw, &gw.config().client_secret), recorder);
    connected(&run).await;
    let data = json!({"dataList": [{"userId": "0126", "checkTime": 1_570_791_880_000_i64}]});
    let id = gw.push_event("attendance_check_record", data.clone());
    until("the event is delivered", || gw.deliveries() >= 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(gw.acked().is_empty(), "no ACK while deliver is under way");

    let gate = run.recorder.gate.as_ref().expect("gate");
    gate.add_permits(1);
    until("the event is acknowledged", || {
        gw.acked() == vec![id.clone()]
    })
    .await;
    let seen = run.recorder.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].event_id, id);
    assert_eq!(seen[0].event_type, "attendance_check_record");
    assert_eq!(seen[0].corp_id, gw.config().corp_id);
    assert!(seen[0].born_at_ms.is_some());
    assert_eq!(seen[0].data, data);
    // Redeliveries the gateway made while deliver was held are delivered too.
    gate.add_permits(100);
    assert!(gw.pending().is_empty());
    run.stop().await;
}

#[tokio::test]
async fn a_failed_delivery_is_answered_later_and_delivered_again() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let recorder = Recorder {
        failures: AtomicU32::new(1),
        ..Recorder::default()
    };
    let run = start(settings(&gw, &gw.config().client_secret), recorder);
    connected(&run).await;
    let id = gw.push_event("attend_user_daily_summary_refresh", json!({"userId": "u1"}));
    until("acknowledged after the retry", || !gw.acked().is_empty()).await;
    assert_eq!(gw.latered(), vec![id.clone()], "the failure answered LATER");
    assert_eq!(gw.acked(), vec![id.clone()]);
    assert_eq!(run.recorder.ids(), vec![id.clone(), id]);
    run.stop().await;
}

#[tokio::test]
async fn duplicates_after_an_ack_reach_deliver_and_unusable_events_are_acknowledged() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let run = start(
        settings(&gw, &gw.config().client_secret),
        Recorder::default(),
    );
    connected(&run).await;
    gw.duplicate_next(1);
    let id = gw.push_event("attendance_check_record", json!({"dataList": []}));
    until("the duplicate is acknowledged too", || {
        gw.acked().len() == 2
    })
    .await;
    assert_eq!(
        run.recorder.ids(),
        vec![id.clone(), id],
        "the sink dedupes, not the client"
    );

    let bad = gw.push_raw_event("attendance_check_record", "{not json");
    until("the unusable event is acknowledged", || {
        gw.acked().len() == 3
    })
    .await;
    assert_eq!(gw.acked()[2], bad);
    assert_eq!(run.recorder.ids().len(), 2, "never handed to deliver");
    run.stop().await;
}

#[tokio::test]
async fn pings_are_echoed_and_disconnect_means_a_new_ticket_at_once() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let run = start(
        settings(&gw, &gw.config().client_secret),
        Recorder::default(),
    );
    connected(&run).await;
    until("the gateway sees the connection", || {
        gw.open_connections() == 1
    })
    .await;
    assert_eq!(gw.send_ping(), 1);
    until("the ping is echoed", || gw.pings_answered() == 1).await;

    gw.send_disconnect();
    let id = gw.push_event("attend_user_daily_summary_refresh", json!({"userId": "u2"}));
    until("the event arrives on the new connection", || {
        gw.acked() == vec![id.clone()]
    })
    .await;
    assert_eq!(gw.connections_opened(), 2);
    let tickets = gw.tickets_issued();
    assert_eq!(tickets.len(), 2);
    assert_ne!(tickets[0], tickets[1]);
    // Reconnected before the gateway's own close (300 ms): no backoff, no failure.
    assert!(matches!(*run.link.borrow(), Link::Connected { .. }));
    assert_eq!(gw.ticket_refusals(), 0);
    run.stop().await;
}

#[tokio::test]
async fn an_abrupt_drop_reconnects_and_loses_no_event() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let mut settings = settings(&gw, &gw.config().client_secret);
    settings.backoff_base = Duration::from_millis(300);
    let run = start(settings, Recorder::default());
    connected(&run).await;
    until("the gateway sees the connection", || {
        gw.open_connections() == 1
    })
    .await;
    let first = gw.push_event("attendance_check_record", json!({"n": 1}));
    until("the first event is acknowledged", || gw.acked().len() == 1).await;

    gw.drop_connections();
    let retrying = link_until(&run, |l| matches!(l, Link::Retrying { .. })).await;
    assert!(retrying.is_some(), "the drop is reported");
    let while_down = [
        gw.push_event("attendance_check_record", json!({"n": 2})),
        gw.push_event("attend_bossCheck_change", json!({"n": 3})),
    ];
    assert_eq!(gw.deliveries(), 1, "nobody to deliver to while down");
    until("both are acknowledged after the reconnect", || {
        gw.acked().len() == 3
    })
    .await;
    assert_eq!(gw.acked(), [vec![first], while_down.to_vec()].concat());
    assert_eq!(gw.connections_opened(), 2);
    assert!(gw.pending().is_empty());
    run.stop().await;
}

#[tokio::test]
async fn wrong_credentials_retry_with_an_error_naming_the_endpoint_not_the_secret() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let secret = "wrong-secret-3f9a7c";
    let run = start(settings(&gw, secret), Recorder::default());
    let second = link_until(
        &run,
        |l| matches!(l, Link::Retrying { attempt, .. } if *attempt >= 2),
    )
    .await;
    let Some(Link::Retrying { error, .. }) = second else {
        panic!("no second retry");
    };
    assert!(
        error.contains(&format!("{}/v1.0/gateway/connections/open", gw.base_url())),
        "{error}"
    );
    assert!(error.contains("401"), "{error}");
    assert!(!error.contains(secret), "{error}");
    assert_eq!(gw.connections_opened(), 0);
    assert!(gw.tickets_issued().is_empty());
    run.stop().await;
}

#[tokio::test]
async fn a_frame_over_the_size_cap_drops_the_connection() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let mut settings = settings(&gw, &gw.config().client_secret);
    settings.max_frame = 4 * 1024;
    let run = start(settings, Recorder::default());
    connected(&run).await;
    gw.push_event(
        "attendance_check_record",
        json!({"pad": "x".repeat(8 * 1024)}),
    );
    let dropped = link_until(&run, |l| matches!(l, Link::Retrying { .. })).await;
    let Some(state) = dropped else {
        panic!("the oversized frame did not drop the connection");
    };
    assert!(
        matches!(&state, Link::Retrying { error, .. } if error.contains("size")),
        "{state:?}"
    );
    assert!(run.recorder.ids().is_empty());
    run.stop().await;
}

#[tokio::test]
async fn a_silent_connection_is_taken_as_dropped() {
    let gw = StreamGateway::start(gateway_config())
        .await
        .expect("gateway");
    let mut settings = settings(&gw, &gw.config().client_secret);
    settings.keepalive = Duration::from_millis(100);
    let run = start(settings, Recorder::default());
    connected(&run).await;
    until("the gateway sees the connection", || {
        gw.open_connections() == 1
    })
    .await;
    // Pongs keep a quiet connection alive past two intervals.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(gw.connections_opened(), 1);
    assert!(matches!(*run.link.borrow(), Link::Connected { .. }));

    gw.freeze_connections();
    let silent = link_until(&run, |l| matches!(l, Link::Retrying { .. })).await;
    assert!(
        matches!(&silent, Some(Link::Retrying { error, .. }) if error.contains("silent")),
        "{silent:?}"
    );
    let id = gw.push_event("attendance_check_record", json!({"n": 1}));
    until("delivered on a new connection", || {
        gw.acked() == vec![id.clone()]
    })
    .await;
    assert_eq!(gw.connections_opened(), 2);
    run.stop().await;
}
