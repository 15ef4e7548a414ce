//! Where the sources are registered: the one place outside the vendor folders
//! that names each vendor (with the job file's `[source]` enum itself).

use std::sync::Arc;

use super::config::SourceConfig;
use super::{dingtalk, wecom, CallCosts, Source};
use crate::http::CallStats;
use crate::mapping::Schema;

/// The source a job's `[source]` table configures. Nothing is sent yet.
pub fn open(cfg: &SourceConfig, http: reqwest::Client, stats: Arc<CallStats>) -> Arc<dyn Source> {
    match cfg {
        SourceConfig::Wecom(cfg) => Arc::new(wecom::Wecom::new(http, cfg, stats)),
        SourceConfig::Dingtalk(cfg) => Arc::new(dingtalk::Dingtalk::new(http, cfg, stats)),
    }
}

impl SourceConfig {
    /// What the source's record can hold, for checking mapping paths
    /// ([`crate::mapping::Mapping::check_paths`]), and its name for messages.
    pub fn record_schema(&self) -> (Schema, &'static str) {
        match self {
            SourceConfig::Wecom(cfg) => cfg.record_schema(),
            SourceConfig::Dingtalk(cfg) => cfg.record_schema(),
        }
    }

    /// The vendor app the job signs in as: jobs that share one hear the same
    /// events (the vendor pushes each once).
    pub fn app_identity(&self) -> String {
        match self {
            SourceConfig::Wecom(cfg) => cfg.app_identity(),
            SourceConfig::Dingtalk(cfg) => cfg.app_identity(),
        }
    }

    /// Which employees the job covers.
    pub fn scope(&self) -> &super::config::Scope {
        match self {
            SourceConfig::Wecom(cfg) => &cfg.scope,
            SourceConfig::Dingtalk(cfg) => &cfg.scope,
        }
    }

    /// A metered source's call costs, known without a call (for plain
    /// `check`); `None` for a source without a call quota.
    pub fn call_costs(&self) -> Option<CallCosts> {
        match self {
            SourceConfig::Wecom(_) => None,
            SourceConfig::Dingtalk(cfg) => Some(dingtalk::call_costs(cfg)),
        }
    }
}

/// What a job's events need running, as its source receives them.
#[derive(Default)]
pub struct EventParts {
    /// Started already: a Stream connection, a failed-push drain.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// A callback the listener answers for the job.
    pub route: Option<crate::events::CallbackRoute>,
    /// How the source looks approvals up.
    pub resolver: Option<Arc<dyn crate::events::lookups::Resolve>>,
}

/// Starts what the job's `[events]` need from its source.
pub fn event_parts(
    source: &SourceConfig,
    events: &crate::events::EventsConfig,
    timezone: chrono_tz::Tz,
    http: reqwest::Client,
    sink: Arc<dyn crate::events::Sink>,
    link: tokio::sync::watch::Sender<crate::events::Link>,
    stop: crate::shutdown::Shutdown,
) -> EventParts {
    use crate::events::Delivery;
    let owner = match source {
        SourceConfig::Wecom(cfg) => cfg.corp_id.as_str(),
        SourceConfig::Dingtalk(cfg) => cfg.app_key.as_str(),
    };
    match (source, &events.delivery, events.crypt(owner)) {
        (SourceConfig::Wecom(cfg), Delivery::WecomCallback { .. }, Some(crypt)) => {
            wecom::receive::event_parts(cfg, crypt, timezone, http, sink, link)
        }
        (SourceConfig::Dingtalk(cfg), Delivery::Stream { gateway_url }, _) => {
            dingtalk::receive::stream_parts(cfg, gateway_url, http, sink, link, stop)
        }
        (SourceConfig::Dingtalk(cfg), Delivery::DingtalkPush { .. }, Some(crypt)) => {
            dingtalk::receive::push_parts(cfg, crypt, http, sink, link, stop)
        }
        // The job reader pairs each delivery with its source.
        _ => {
            let _ = (stop, link);
            EventParts::default()
        }
    }
}

/// What `check --remote` finds wrong with a job's `[events]` at its source:
/// a WeCom app that may not read approvals.
pub async fn check_events(
    source: &SourceConfig,
    events: Option<&crate::events::EventsConfig>,
    http: reqwest::Client,
) -> Vec<String> {
    match (source, events) {
        (SourceConfig::Wecom(cfg), Some(_)) => {
            let client = wecom::Wecom::new(http, cfg, Arc::new(CallStats::default()));
            match client.check_approval_access().await {
                Ok(()) => Vec::new(),
                Err(e) => vec![format!("[events]: {e}")],
            }
        }
        _ => Vec::new(),
    }
}
