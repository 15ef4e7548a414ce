//! A WeCom job's events (README "Re-pulls on change"): `sys_approval_change`
//! callbacks answered on the daemon's listener (`callback.rs`), and the
//! approvals they name looked up for the applicant and the days
//! (`approval.rs`). WeCom pushes no check-ins: those stay with the schedule.

use std::sync::Arc;

use axum::http::Method;
use chrono_tz::Tz;

use super::approval::approval_days;
use super::callback::{handle_get, handle_post, CallbackQuery};
use super::client::WecomClient;
use super::config::WecomSource;
use crate::events::crypto::MsgCrypt;
use crate::events::lookups::{Resolve, ResolveFuture};
use crate::events::{CallbackRequest, CallbackRoute, Day, Link, Sink, Touched};
use crate::http::CallStats;
use crate::source::EventParts;

/// The callback route and the approvals' resolver of a WeCom job.
pub fn event_parts(
    cfg: &WecomSource,
    crypt: MsgCrypt,
    timezone: Tz,
    http: reqwest::Client,
    sink: Arc<dyn Sink>,
    link: tokio::sync::watch::Sender<Link>,
) -> EventParts {
    let _ = link.send(Link::Listening);
    let crypt = Arc::new(crypt);
    let route = CallbackRoute::new(
        "wecom",
        "text/plain; charset=utf-8",
        move |query: CallbackQuery, request: CallbackRequest| {
            let (crypt, sink) = (crypt.clone(), sink.clone());
            async move {
                let (status, text) = if request.method == Method::GET {
                    handle_get(&crypt, &query).await
                } else {
                    handle_post(&crypt, &query, &request.body, sink.as_ref()).await
                };
                (status, text.into_bytes())
            }
        },
    );
    let client = WecomClient::new(http, cfg, Arc::new(CallStats::default()));
    EventParts {
        tasks: Vec::new(),
        route: Some(route),
        resolver: Some(Arc::new(Approvals { client, timezone })),
    }
}

/// Looks approvals up with `getapprovaldetail`.
struct Approvals {
    client: WecomClient,
    timezone: Tz,
}

impl Resolve for Approvals {
    fn resolve<'a>(&'a self, reference: &'a str) -> ResolveFuture<'a> {
        Box::pin(async move {
            let found = approval_days(&self.client, reference, self.timezone)
                .await
                .map_err(|e| e.to_string())?;
            Ok(found.map(|(employee, days)| {
                days.into_iter()
                    .map(|d| Touched {
                        employee: employee.clone(),
                        day: Day::Date(d),
                    })
                    .collect()
            }))
        })
    }
}
