//! The form the run writes to: its fields read and checked, pending batches
//! of an earlier run settled, the writer made.

use std::collections::HashMap;
use std::sync::Arc;

use super::{JobError, Options, Syncer};
use crate::config::job::Job;
use crate::http::CallStats;
use crate::jiandaoyun::{Jiandaoyun, Widget};
use crate::mapping::Mapping;
use crate::writer::{FormFields, Outcome, Writer};

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
        let widgets = jdy.widgets().await?;
        crate::form_check::require_fields(&mapping.fields(), &widgets).map_err(JobError::Setup)?;
        let form = FormFields {
            key_fields: key_filter_types(mapping, &widgets).map_err(JobError::Setup)?,
            fields: mapping.fields().into_iter().map(|f| f.name).collect(),
            volatile: mapping.volatile_fields(),
            read_as: read_names(mapping, &widgets),
        };
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

/// The filter type `data/list` needs for a form field of this widget type.
fn filter_type(widget_type: &str) -> &'static str {
    match widget_type {
        "number" => "number",
        "datetime" => "datetime",
        _ => "text",
    }
}

fn key_filter_types(
    mapping: &Mapping,
    widgets: &[Widget],
) -> Result<Vec<(String, &'static str)>, String> {
    mapping
        .key_fields()
        .iter()
        .map(|k| {
            widgets
                .iter()
                .find(|w| &w.name == k || &w.widget_name == k)
                .map(|w| (k.clone(), filter_type(&w.kind)))
                .ok_or_else(|| {
                    let names: Vec<&str> = widgets.iter().map(|w| w.name.as_str()).collect();
                    format!(
                        "key field `{k}` is not a field of the Jiandaoyun form; the form has: {}",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

/// For mapped fields named by a `_widget_…` id whose form field has an alias:
/// the alias, under which records read back carry the field.
fn read_names(mapping: &Mapping, widgets: &[Widget]) -> HashMap<String, String> {
    mapping
        .fields()
        .into_iter()
        .filter_map(|f| {
            let w = widgets.iter().find(|w| w.widget_name == f.name)?;
            (!w.name.is_empty() && w.name != f.name).then(|| (f.name, w.name.clone()))
        })
        .collect()
}
