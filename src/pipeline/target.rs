//! The form the run writes to: its fields read and checked, pending batches
//! of an earlier run settled, the writer made.

use std::sync::Arc;

use super::{JobError, Options, Syncer};
use crate::config::job::Job;
use crate::http::CallStats;
use crate::mapping::Mapping;
use crate::pipeline::write::{FormFields, Outcome, Writer};
use crate::target::jiandaoyun::Jiandaoyun;

impl Syncer {
    /// The run's writer; none in a dry run of `run` (a rerun reads the form
    /// even then). The form's fields are checked before anything is sent.
    pub(super) async fn open_writer(
        &self,
        job: &Job,
        mapping: &Arc<Mapping>,
        opts: &Options,
        stats: &Arc<CallStats>,
    ) -> Result<Option<Arc<Writer>>, JobError> {
        // A dry run writes nothing, but a rerun reads the form even then.
        if opts.dry_run && !opts.is_rerun() {
            return Ok(None);
        }
        let jdy = Arc::new(Jiandaoyun::new(
            self.http.clone(),
            &job.target,
            stats.clone(),
        ));
        self.recall_pace(job.target.pace_holder()).await;
        let widgets = jdy.widgets().await?;
        crate::target::jiandaoyun::form_check::require_fields(&mapping.fields(), &widgets)
            .map_err(JobError::Setup)?;
        let form = FormFields::from_widgets(mapping, &widgets).map_err(JobError::Setup)?;
        let writer = Writer::new(jdy, self.store.clone(), &job.name, form);
        let settled = if opts.dry_run {
            Outcome::default()
        } else {
            writer.settle_pending().await?
        };
        if settled.created > 0 || !settled.failed.is_empty() {
            tracing::info!(job = %job.name, created = settled.created, failed = settled.failed.len(),
                "settled batches left pending by an earlier run");
        }
        Ok(Some(Arc::new(writer)))
    }
}
