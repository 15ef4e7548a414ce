//! Write: a chunk's writes (creates, updates, records adopted, extra copies
//! deleted) sent as their own task, several chunks at once, and their outcome
//! added to the month's report. The write protocol itself is `writer/`.

use std::sync::Arc;

use tokio::task::JoinSet;

use super::ctx::MonthCtx;
use super::report::record_outcome;
use super::JobError;
use crate::month::Month;
use crate::pipeline::write::{InForm, Outcome, WriteError, Writer};
use crate::store::{PendingRecord, Store, Written};

/// The chunks being written: each comes back with how many records it was to
/// write, and what its writes achieved.
pub(super) type Writing = JoinSet<(u64, Result<Outcome, WriteError>)>;

/// The writes one chunk needs.
#[derive(Default)]
pub(super) struct ChunkWrites {
    pub(super) creates: Vec<PendingRecord>,
    pub(super) updates: Vec<(Option<String>, PendingRecord)>,
    /// Records a rerun found in the form as the source has them: stored only.
    pub(super) adopt: Vec<Written>,
    /// Ids of extra copies of a key, deleted by `rerun --force`.
    pub(super) extra_copies: Vec<String>,
    /// Whether `creates` must be looked up in the form before they are sent.
    pub(super) in_form: InForm,
}

impl ChunkWrites {
    pub(super) fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.updates.is_empty()
            && self.adopt.is_empty()
            && self.extra_copies.is_empty()
    }

    /// Records whose outcome this chunk decides.
    pub(super) fn records(&self) -> u64 {
        (self.creates.len() + self.updates.len()) as u64
    }

    /// Sends the chunk's writes; runs as its own task so several chunks write at
    /// once. Comes back with how many records it was to write.
    pub(super) async fn send(
        self,
        writer: Arc<Writer>,
        month: Month,
    ) -> (u64, Result<Outcome, WriteError>) {
        let records = self.records();
        let written = async {
            writer.adopt(month, self.adopt).await?;
            let copies_deleted = writer.delete_copies(&self.extra_copies).await?;
            let mut out = writer.create(month, self.creates, self.in_form).await?;
            out.absorb(writer.update(month, self.updates).await?);
            out.copies_deleted += copies_deleted;
            Ok(out)
        };
        (records, written.await)
    }
}

/// The month check of a first sync, started before the pull
/// ([`MonthCtx::start_month_check`]).
pub(super) type EarlyCheck = tokio::task::JoinHandle<Result<InForm, JobError>>;

impl MonthCtx<'_> {
    /// What is known of the month's new keys in the form, asked when a chunk
    /// first has records to create: once a month, so a second run, which
    /// creates nothing, reads nothing. Only a month that
    /// [`Self::start_month_check`] asked about can be `Absent`: any other (the
    /// store knows it, or no key field names the month) is looked up batch by
    /// batch.
    pub(super) async fn creates_in_form(&mut self) -> Result<InForm, JobError> {
        if let Some(known) = self.state.in_form {
            return Ok(known);
        }
        let known = match self.state.early_check.take() {
            Some(check) if !self.state.stored_any => check.await.map_err(|e| {
                JobError::Setup(format!("the check of the form for this month failed: {e}"))
            })??,
            _ => InForm::Unknown,
        };
        self.state.in_form = Some(known);
        Ok(known)
    }

    /// A first sync of the month (the store knows none of its records): asks
    /// the form now, beside the pull, so that the first chunk's creates do not
    /// wait a round trip for the answer. A month the store knows is not asked
    /// at all: its batches are looked up. Neither is a dry run (it creates
    /// nothing), a rerun (its creates are known absent), or a month no key
    /// field names (it cannot be asked about).
    pub(super) async fn start_month_check(&mut self) -> Result<(), JobError> {
        let run = self.run;
        let Some(writer) = run.writer.clone() else {
            return Ok(());
        };
        if run.opts.dry_run || run.opts.is_rerun() {
            return Ok(());
        }
        let month_keys = run.mapping.bind(&self.vars).constant_key_values();
        if month_keys.is_empty() {
            return Ok(());
        }
        let (job, month, store) = (run.job.name.clone(), self.month, run.syncer.store.clone());
        let j = job.clone();
        if store.call(move |s| s.knows_month(&j, month)).await? {
            self.state.stored_any = true;
            return Ok(());
        }
        let check = ask_month_in_form(writer, store, job, month, month_keys);
        self.state.early_check = Some(tokio::spawn(check));
        Ok(())
    }

    /// Waits for one chunk's writes and adds them to the report. A chunk whose
    /// writes failed counts its records as failed, so the month's counts add up.
    pub(super) async fn join_write(&mut self, writing: &mut Writing) -> Result<(), JobError> {
        let m = &mut self.report;
        match writing.join_next().await {
            Some(Ok((_, Ok(out)))) => {
                record_outcome(&self.run.job.name, self.month, out, m);
                Ok(())
            }
            Some(Ok((records, Err(e)))) => {
                m.counts.failed += records;
                Err(e.into())
            }
            Some(Err(e)) => Err(JobError::Setup(format!("a write task failed: {e}"))),
            None => Ok(()),
        }
    }
}

/// Asks the store for an unsettled batch of the month and the form for any
/// record of it (by `month_keys`): `Absent` when neither holds one.
async fn ask_month_in_form(
    writer: Arc<Writer>,
    store: Store,
    job: String,
    month: Month,
    month_keys: Vec<(String, serde_json::Value)>,
) -> Result<InForm, JobError> {
    let j = job.clone();
    let pending = store.call(move |s| s.has_pending(&j, month)).await?;
    if pending || writer.holds_any(&month_keys).await? {
        return Ok(InForm::Unknown);
    }
    tracing::debug!(job = %job, month = %month,
        "the form holds no record of this month: new records are created without a look-up");
    Ok(InForm::Absent)
}
