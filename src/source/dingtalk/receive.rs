//! A DingTalk job's events (README "Re-pulls on change"): over Stream mode
//! (`stream/`, an outbound WebSocket) or HTTP push to the daemon's listener
//! (`push.rs`, with the failed-push list drained at start and every few
//! minutes, `failed.rs`); either way read by `events.rs`, and the approvals
//! they name looked up (`approval.rs`).

use std::sync::Arc;
use std::time::Duration;

use super::config::{DingtalkSource, DINGTALK_BASE_URL};
use super::events::change;
use super::failed::{drain, DrainError};
use super::push::{handle, PushQuery};
use super::stream::{StreamEvent, StreamSettings};
use super::DingtalkClient;
use crate::events::config::STREAM_GATEWAY_URL;
use crate::events::crypto::MsgCrypt;
use crate::events::lookups::{Resolve, ResolveFuture};
use crate::events::{CallbackRequest, CallbackRoute, Change, Link, Sink};
use crate::http::{CallStats, Url};
use crate::shutdown::Shutdown;
use crate::source::EventParts;

/// How often the failed-push list is drained (DingTalk lists a push 3–5
/// minutes after its last retry).
pub const DRAIN_EVERY: Duration = Duration::from_secs(300);

/// Where the new-style API (`v1.0/...`) is: DingTalk's own host, or with a
/// `base_url` of its own (a proxy, a simulator) that address.
fn api_base(cfg: &DingtalkSource) -> Url {
    if cfg.base_url.as_str().trim_end_matches('/') == DINGTALK_BASE_URL {
        crate::settings::default_url(STREAM_GATEWAY_URL)
    } else {
        cfg.base_url.clone()
    }
}

/// HTTP push: the callback route, the failed-list drain, the approvals.
pub fn push_parts(
    cfg: &DingtalkSource,
    crypt: MsgCrypt,
    http: reqwest::Client,
    sink: Arc<dyn Sink>,
    link: tokio::sync::watch::Sender<Link>,
    stop: Shutdown,
) -> EventParts {
    let _ = link.send(Link::Listening);
    let crypt = Arc::new(crypt);
    let route_sink = sink.clone();
    let route = CallbackRoute::new(
        "dingtalk",
        "application/json",
        move |query: PushQuery, request: CallbackRequest| {
            let (crypt, sink) = (crypt.clone(), route_sink.clone());
            async move {
                let (status, body) = handle(&crypt, sink.as_ref(), &query, &request.body).await;
                (status, body.to_string().into_bytes())
            }
        },
    );
    let client = Arc::new(DingtalkClient::new(
        http,
        cfg,
        Arc::new(CallStats::default()),
    ));
    let drainer = tokio::spawn(drain_loop(client.clone(), sink, stop));
    EventParts {
        tasks: vec![drainer],
        route: Some(route),
        resolver: Some(Arc::new(Approvals {
            client,
            api_base: api_base(cfg),
        })),
    }
}

/// Stream mode: the connection, the approvals. The approvals are looked up
/// on the gateway's host (the new-style API).
pub fn stream_parts(
    cfg: &DingtalkSource,
    gateway_url: &Url,
    http: reqwest::Client,
    sink: Arc<dyn Sink>,
    link: tokio::sync::watch::Sender<Link>,
    stop: Shutdown,
) -> EventParts {
    let settings = StreamSettings::new(
        gateway_url.clone(),
        cfg.app_key.clone(),
        cfg.app_secret.clone(),
    );
    let deliver = move |event: StreamEvent| {
        let sink = sink.clone();
        async move {
            let change = change(&event.event_type, &event.event_id, &event.data);
            sink.record(change).await.map(|_| ())
        }
    };
    let connection = tokio::spawn(super::stream::run(
        settings,
        http.clone(),
        deliver,
        link,
        stop,
    ));
    let client = Arc::new(DingtalkClient::new(
        http,
        cfg,
        Arc::new(CallStats::default()),
    ));
    EventParts {
        tasks: vec![connection],
        route: None,
        resolver: Some(Arc::new(Approvals {
            client,
            api_base: gateway_url.clone(),
        })),
    }
}

/// Drains the failed-push list now and every [`DRAIN_EVERY`] until `stop`.
/// What a failed sink left is carried to the next drain: the list will not
/// give it again.
async fn drain_loop(client: Arc<DingtalkClient>, sink: Arc<dyn Sink>, stop: Shutdown) {
    let mut carried: Vec<Change> = Vec::new();
    loop {
        match drain(&client, sink.as_ref(), &mut carried).await {
            Ok(d) if d.items > 0 => {
                tracing::info!(job = %sink.label(), events = d.items, pages = d.pages, "drained DingTalk's failed pushes")
            }
            Ok(_) => {}
            Err(DrainError::Source { error, .. }) => {
                tracing::warn!(job = %sink.label(), %error, "could not read DingTalk's failed pushes; trying again later")
            }
            Err(DrainError::Sink { error, .. }) => {
                tracing::error!(job = %sink.label(), %error, held = carried.len(), "could not record DingTalk's failed pushes; holding them for the next drain")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(DRAIN_EVERY) => {}
            () = stop.wait() => return,
        }
    }
}

/// Looks approvals up with `v1.0/workflow/processInstances`.
pub(super) struct Approvals {
    pub(super) client: Arc<DingtalkClient>,
    pub(super) api_base: Url,
}

impl Resolve for Approvals {
    fn resolve<'a>(&'a self, reference: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            super::approval::lookup(&self.client, &self.api_base, reference)
                .await
                .map_err(|e| e.to_string())
        })
    }
}
