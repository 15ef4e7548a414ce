//! Where the sources are registered: the one place outside the vendor folders
//! that names each vendor (with the job file's `[source]` enum itself).

use std::sync::Arc;

use super::{dingtalk, wecom, CallCosts, Source};
use crate::config::job::Source as SourceConfig;
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

    /// A metered source's call costs, known without a call (for plain
    /// `check`); `None` for a source without a call quota.
    pub fn call_costs(&self) -> Option<CallCosts> {
        match self {
            SourceConfig::Wecom(_) => None,
            SourceConfig::Dingtalk(cfg) => Some(dingtalk::call_costs(cfg)),
        }
    }
}
