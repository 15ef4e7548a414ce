//! After a complete month: the records the source no longer returned, those of
//! them known to be gone, and with `rerun --prune` their deletion (within the
//! guard).

use std::collections::HashSet;

use super::ctx::MonthCtx;
use super::map::small_hash;
use super::{JobError, Prune};
use crate::mapping::Mapping;
use crate::pipeline::rerun::{confirmed_gone, names_one_of, prune_refusal, FormMonth};
use crate::pipeline::write::canonical_key;
use crate::store::StoreError;

impl MonthCtx<'_> {
    /// Lists records gone from the source, and with `rerun --prune` deletes
    /// those known to be gone (within the guard), every copy of each.
    pub(super) async fn handle_missing(&mut self) -> Result<(), JobError> {
        let (run, month) = (self.run, self.month);
        let (job, opts) = (run.job, run.opts);
        let state = std::mem::take(&mut self.state);
        let produced = state.seen.len();
        let positions = employee_positions(run.mapping);
        let mut stored = self.find_missing(state.seen).await?;
        if opts.some_employees() {
            // Only the employees asked for can be missing.
            let asked: HashSet<String> = opts.employees.iter().cloned().collect();
            stored.retain(|(key, _)| names_one_of(key, &positions, &asked));
        }
        let mut month_keys = produced + stored.len();
        // Key → the ids of the records holding it (`None`: look it up).
        let missing: Vec<(String, Vec<Option<String>>)> =
            match state.form.filter(FormMonth::is_whole) {
                Some(form) => {
                    month_keys = month_keys.max(form.total());
                    let left = form.left_over();
                    self.forget_stale(stored, &left).await?;
                    left.into_iter()
                        .map(|l| (l.key, l.data_ids.into_iter().map(Some).collect()))
                        .collect()
                }
                None => stored.into_iter().map(|(k, id)| (k, vec![id])).collect(),
            };
        let gone: Vec<&(String, Vec<Option<String>>)> = missing
            .iter()
            .filter(|(key, _)| confirmed_gone(key, &positions, &state.answered_empty))
            .collect();
        let m = &mut self.report;
        m.counts.missing = missing.len() as u64;
        m.missing_keys = missing.iter().map(|(k, _)| k.clone()).collect();
        m.gone_keys = gone.iter().map(|(k, _)| k.clone()).collect();
        let prune = opts.prune();
        if prune == Prune::Keep || gone.is_empty() {
            return Ok(());
        }
        if prune == Prune::Guarded {
            if let Some(refusal) = prune_refusal(gone.len(), month_keys, m.counts.pulled) {
                tracing::error!(job = %job.name, %month, "{refusal}");
                m.month_error = Some(refusal);
                return Ok(());
            }
        }
        if let (Some(writer), false) = (&run.writer, opts.dry_run) {
            let records = gone
                .iter()
                .flat_map(|(key, ids)| ids.iter().map(move |id| (key.clone(), id.clone())))
                .collect();
            m.pruned = writer.delete(month, records).await?;
            tracing::info!(job = %job.name, %month, deleted = m.pruned, "pruned records gone from the source");
        }
        Ok(())
    }

    /// Forgets stored keys the form no longer holds and the source did not
    /// produce: deleted by hand, they are gone from the form already.
    async fn forget_stale(
        &self,
        stored: Vec<(String, Option<String>)>,
        left: &[crate::pipeline::rerun::LeftOver],
    ) -> Result<(), StoreError> {
        let in_form: HashSet<String> = left.iter().map(|l| canonical_key(&l.key)).collect();
        let stale: Vec<String> = stored
            .into_iter()
            .map(|(key, _)| key)
            .filter(|k| !in_form.contains(&canonical_key(k)))
            .collect();
        if stale.is_empty() || self.run.opts.dry_run {
            return Ok(());
        }
        let (j, ms) = (self.run.job.name.clone(), self.month);
        self.run
            .syncer
            .store
            .call(move |s| s.delete_checkpoints(&j, ms, &stale))
            .await
    }

    /// Records (key, form id: `None` when not known) the store holds for the
    /// month that the source no longer returned.
    async fn find_missing(
        &self,
        seen_hashes: HashSet<u64>,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let (j, ms) = (self.run.job.name.clone(), self.month);
        self.run
            .syncer
            .store
            .call(move |s| {
                let mut out = Vec::new();
                s.for_each_key(&j, ms, |key, data_id| {
                    if !seen_hashes.contains(&small_hash(key)) {
                        out.push((key.to_string(), data_id.map(str::to_string)));
                    }
                })?;
                Ok(out)
            })
            .await
    }
}

/// Where the key fields read from the source record sit in a key.
fn employee_positions(mapping: &Mapping) -> Vec<usize> {
    let employee = mapping.employee_key_fields();
    mapping
        .key_fields()
        .iter()
        .enumerate()
        .filter(|(_, k)| employee.contains(k))
        .map(|(i, _)| i)
        .collect()
}
