//! Diff: what a mapped chunk needs written. `run` compares with the store
//! (cheap, nightly); `rerun` with the month as the form holds it.

use super::ctx::MonthCtx;
use super::map::Planned;
use super::report::MonthReport;
use super::send::ChunkWrites;
use super::JobError;
use crate::pipeline::rerun::FormMonth;
use crate::pipeline::write::{InForm, Writer};
use crate::store::PendingRecord;

impl MonthCtx<'_> {
    /// The writes a mapped chunk needs; counts unchanged records (and in a dry
    /// run what would be written, which is then not).
    pub(super) async fn diff(&mut self, records: Vec<Planned>) -> Result<ChunkWrites, JobError> {
        let (run, m) = (self.run, &mut self.report);
        let opts = run.opts;
        let writes = match (&mut self.state.form, &run.writer) {
            (Some(form), Some(writer)) => {
                let records = records
                    .into_iter()
                    .map(|r| r.into_pending(&*self.run.format))
                    .collect();
                repair_chunk(form, writer, records, opts.force(), m).await?
            }
            _ => self.diff_with_store(records).await?,
        };
        let m = &mut self.report;
        m.counts.unchanged += writes.adopt.len() as u64;
        if opts.dry_run {
            m.counts.created += writes.creates.len() as u64;
            m.counts.updated += writes.updates.len() as u64;
            return Ok(ChunkWrites::default());
        }
        Ok(writes)
    }

    /// The writes a chunk needs by the store: new keys created, changed ones
    /// updated, the rest counted unchanged.
    async fn diff_with_store(&mut self, records: Vec<Planned>) -> Result<ChunkWrites, JobError> {
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        let (j, ms) = (self.run.job.name.clone(), self.month);
        let known = self
            .run
            .syncer
            .store
            .call(move |s| s.checkpoints_for(&j, ms, &keys))
            .await?;
        let m = &mut self.report;
        let mut writes = ChunkWrites::default();
        for record in records {
            match known.get(&record.key) {
                None => writes.creates.push(record.into_pending(&*self.run.format)),
                Some(cp) if cp.content_hash == record.content_hash => m.counts.unchanged += 1,
                Some(cp) => writes
                    .updates
                    .push((cp.data_id.clone(), record.into_pending(&*self.run.format))),
            }
        }
        Ok(writes)
    }
}

/// A rerun chunk compared with the form: what to create, update, store, and
/// which extra copies of a key `--force` deletes.
async fn repair_chunk(
    form: &mut FormMonth,
    writer: &Writer,
    records: Vec<PendingRecord>,
    force: bool,
    m: &mut MonthReport,
) -> Result<ChunkWrites, JobError> {
    form.look_up(writer, &records).await?;
    let repairs = form.compare(writer, records, force);
    for key in repairs.duplicates {
        tracing::warn!(job = %m.job, month = %m.month, key = %crate::text::clean(&key.to_string()),
            "the form holds this key more than once; `rerun --force` deletes the extra copies");
        m.duplicates.push(key);
    }
    Ok(ChunkWrites {
        // Just compared with what the form holds: the new keys are not there.
        in_form: InForm::Absent,
        creates: repairs.creates,
        updates: repairs.updates,
        adopt: repairs.unchanged,
        extra_copies: if force {
            repairs.extra_copies
        } else {
            Vec::new()
        },
    })
}
