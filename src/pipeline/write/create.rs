//! The create protocol: reconcile → write ahead → send → reconcile.
//!
//! Why each step is there (docs/ARCHITECTURE.md, "Invariants", has the argument
//! in full):
//! - **A transaction id names a write intent, not content.** A new random id is
//!   made when a batch is first written ahead, and reused only to resend that
//!   same pending batch. An id derived from content would be reused by a later,
//!   new write of the same content (after records were deleted by hand or
//!   pruned), and a Jiandaoyun that honours ids would answer "created" for the
//!   old write and create nothing.
//! - **An answer to a reused id could be a replay**, so it is not trusted: the
//!   batch's keys are read back and only what the form shows is committed.
//! - **A send whose answer never came may still commit**, on a Jiandaoyun that
//!   ignores ids, after the read-back that decides on a resend. So that
//!   read-back waits until the last send is older than the request timeout plus
//!   a margin; the time is stored before each send, so a restarted run waits too.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{InForm, Outcome, Reconciled, WriteError, Writer};
use crate::month::Month;
use crate::store::{PendingBatch, PendingRecord, StoreError, Written};
use crate::target::{BeforeSend, FormError, MAX_BATCH};

/// Send-and-reconcile rounds per batch before its records are left for the next run.
const MAX_ROUNDS: u32 = 5;
/// Jiandaoyun remembers a transaction id for an hour (docs/vendors/jiandaoyun.md
/// "Uniqueness and `transaction_id`"); an id older than this is
/// not reused (a resend under it could create the batch a second time).
const ID_REUSE_WINDOW: Duration = Duration::from_secs(50 * 60);

/// The transaction id a batch is written ahead under, and what is known of it.
#[derive(Debug, Clone)]
pub(super) struct Intent {
    tx: String,
    /// When the id was first written ahead.
    since: DateTime<Utc>,
    /// How many records were written ahead under it.
    size: usize,
    /// Until when a send under it may still commit (`None`: never sent).
    in_flight_until: Option<DateTime<Utc>>,
    /// Jiandaoyun has answered a send under it: a resend would be a replay.
    answered: bool,
}

impl Intent {
    fn fresh(size: usize) -> Intent {
        Intent {
            tx: uuid::Uuid::new_v4().to_string(),
            since: Utc::now(),
            size,
            in_flight_until: None,
            answered: false,
        }
    }

    pub(super) fn of_pending(batch: &PendingBatch) -> Intent {
        Intent {
            tx: batch.transaction_id.clone(),
            since: batch.first_sent_at,
            size: batch.records.len(),
            in_flight_until: batch.in_flight_until,
            answered: false,
        }
    }

    /// Whether `records` (what is still missing of this intent's batch) may be
    /// resent under the same id: the identical batch, within the hour, and not
    /// yet answered.
    fn reusable_for(&self, records: &[PendingRecord], now: DateTime<Utc>) -> bool {
        let age = (now - self.since).to_std().unwrap_or_default();
        records.len() == self.size && !self.answered && age < ID_REUSE_WINDOW
    }

    /// Whether an answer to a send under this id could repeat an earlier one.
    fn may_replay(&self) -> bool {
        self.in_flight_until.is_some()
    }

    /// How long until no send under this id can still commit: at most `window`
    /// (a mark further ahead was made by a clock that has since been set back).
    fn in_flight_for(&self, now: DateTime<Utc>, window: Duration) -> Option<Duration> {
        let until = self.in_flight_until?;
        (until - now)
            .to_std()
            .ok()
            .filter(|d| !d.is_zero())
            .map(|d| d.min(window))
    }
}

/// What a send came to, for the loop.
enum Sent {
    /// Every record is created and committed.
    Done,
    /// Read the keys back (after waiting out the send when it may be in flight).
    Reconcile,
    /// Refused for its content; nothing stored. The halves go back on the queue.
    Split,
}

/// A batch still to settle: its records and the intent they were written ahead under.
pub(super) type Queued = (Vec<PendingRecord>, Option<Intent>);

impl Writer {
    /// Creates records (any number; sent in batches of at most 100). `in_form`
    /// says whether their keys must be looked up in the form before a batch is
    /// first sent ([`InForm`]).
    pub async fn create(
        &self,
        month: Month,
        records: Vec<PendingRecord>,
        in_form: InForm,
    ) -> Result<Outcome, WriteError> {
        let mut out = Outcome::default();
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            queue.push_back((records.by_ref().take(MAX_BATCH).collect(), None));
        }
        while let Some((batch, intent)) = queue.pop_front() {
            self.settle_batch(month, batch, intent, &mut queue, &mut out, in_form)
                .await?;
        }
        Ok(out)
    }

    /// Settles every pending batch of this job left by an earlier, interrupted run.
    pub async fn settle_pending(&self) -> Result<Outcome, WriteError> {
        let job = self.job.clone();
        let pending = self.store.call(move |s| s.pending(&job)).await?;
        let mut out = Outcome::default();
        for batch in pending {
            tracing::info!(job = %self.job, month = %batch.month, transaction_id = %batch.transaction_id,
                records = batch.records.len(), "settling a batch left pending by an earlier run");
            let intent = Intent::of_pending(&batch);
            let mut queue = VecDeque::from([(batch.records, Some(intent))]);
            while let Some((records, intent)) = queue.pop_front() {
                let mut adopted = Outcome::default();
                self.settle_batch(
                    batch.month,
                    records,
                    intent,
                    &mut queue,
                    &mut adopted,
                    InForm::Unknown,
                )
                .await?;
                // Records of our own earlier batch that landed count as created.
                adopted.created += adopted.adopted;
                adopted.adopted = 0;
                out.absorb(adopted);
            }
        }
        Ok(out)
    }

    /// Waits until no send of `intent` can still commit, so that a read-back
    /// that decides on a resend sees whatever it did.
    async fn wait_out(&self, month: Month, intent: &Intent) {
        let window = self.form.in_flight_window();
        let Some(wait) = intent.in_flight_for(Utc::now(), window) else {
            return;
        };
        tracing::info!(job = %self.job, %month, transaction_id = %intent.tx, wait_secs = wait.as_secs_f64().ceil(),
            "a batch sent earlier may still be committing in Jiandaoyun; waiting for it before reading its records back");
        tokio::time::sleep(wait).await;
    }

    /// The reconcile → write-ahead → send loop for one batch. The first
    /// reconcile of a batch never sent is skipped when its keys are known to be
    /// absent from the form: that look-up could find nothing.
    async fn settle_batch(
        &self,
        month: Month,
        mut records: Vec<PendingRecord>,
        mut intent: Option<Intent>,
        queue: &mut VecDeque<Queued>,
        out: &mut Outcome,
        in_form: InForm,
    ) -> Result<(), WriteError> {
        let mut sent = false;
        for round in 0..=MAX_ROUNDS {
            if let Some(intent) = &intent {
                self.wait_out(month, intent).await;
            }
            let never_sent = round == 0 && intent.is_none();
            let r = if never_sent && in_form == InForm::Absent {
                Reconciled::none_found(records)
            } else {
                self.reconcile(records).await?
            };
            out.duplicates.extend(r.duplicates);
            // Stale records are counted by the update that follows.
            let landed = r.found.len() as u64;
            if sent {
                out.created += landed;
            } else {
                out.adopted += landed;
            }
            let done = r.missing.is_empty();
            let settled = intent.as_ref().filter(|_| done).map(|i| i.tx.clone());
            self.commit(month, r.found, settled).await?;
            if !r.stale.is_empty() {
                out.absorb(self.update(month, r.stale).await?);
            }
            if done {
                return Ok(());
            }
            records = r.missing;
            if round == MAX_ROUNDS {
                break;
            }
            let now = Utc::now();
            let mut current = match intent.take() {
                Some(i) if i.reusable_for(&records, now) => i,
                old => {
                    let fresh = Intent::fresh(records.len());
                    self.write_ahead(old.map(|i| i.tx), &fresh, month, &records)
                        .await?;
                    fresh
                }
            };
            sent = true;
            let step = self.send(month, &mut current, &mut records, out).await?;
            match step {
                Sent::Done => return Ok(()),
                Sent::Reconcile => intent = Some(current),
                Sent::Split => {
                    let tail = records.split_off(records.len() / 2);
                    queue.push_front((tail, None));
                    queue.push_front((records, None));
                    return Ok(());
                }
            }
        }
        let reason =
            format!("not confirmed after {MAX_ROUNDS} attempts; left pending for the next run");
        out.failed
            .extend(records.into_iter().map(|r| (r.key, reason.clone())));
        Ok(())
    }

    /// Sends `records` under `intent` and commits them when the answer can be
    /// trusted. A definite refusal drops the pending batch; a refusal of a single
    /// record fails it (and empties `records`).
    async fn send(
        &self,
        month: Month,
        intent: &mut Intent,
        records: &mut Vec<PendingRecord>,
        out: &mut Outcome,
    ) -> Result<Sent, WriteError> {
        let replay = intent.may_replay();
        let answer = self.create_marked(intent, records).await;
        let (job, tx) = (&self.job, &intent.tx);
        match answer {
            Ok(created) if created.success_count as usize == records.len() && !replay => {
                out.created += records.len() as u64;
                let written = std::mem::take(records)
                    .into_iter()
                    .map(|r| Written {
                        key: r.key,
                        data_id: None,
                        content_hash: r.content_hash,
                    })
                    .collect();
                self.commit(month, written, Some(intent.tx.clone())).await?;
                Ok(Sent::Done)
            }
            Ok(created) => {
                // The request is over: nothing of it is still in flight.
                intent.answered = true;
                intent.in_flight_until = None;
                if replay {
                    tracing::info!(%job, %month, transaction_id = %tx, created = created.success_count,
                        "a resent batch was acknowledged; reading it back, since the answer may repeat an earlier one");
                } else {
                    tracing::warn!(%job, %month, transaction_id = %tx, created = created.success_count,
                        sent = records.len(), "batch partly created; reconciling by key");
                }
                Ok(Sent::Reconcile)
            }
            Err(FormError::Ambiguous {
                reason, answered, ..
            }) => {
                if answered {
                    // Over, but maybe stored: a replay check without a wait.
                    intent.in_flight_until = Some(Utc::now());
                }
                tracing::warn!(%job, %month, transaction_id = %tx, %reason,
                    "batch outcome unknown; reconciling by key");
                Ok(Sent::Reconcile)
            }
            Err(FormError::Exhausted { last, .. }) => {
                tracing::warn!(%job, %month, transaction_id = %tx, %last,
                    "batch not confirmed; reconciling by key");
                Ok(Sent::Reconcile)
            }
            Err(FormError::IdSpent { .. }) => {
                // The id was used before: read back, and resend under a new one.
                intent.answered = true;
                Ok(Sent::Reconcile)
            }
            Err(e @ FormError::Rejected { .. }) => {
                // A definite refusal: nothing of this batch was stored.
                self.drop_pending(Some(intent.tx.clone())).await?;
                if records.len() > 1 {
                    return Ok(Sent::Split);
                }
                let reason = e.to_string();
                out.failed.extend(
                    std::mem::take(records)
                        .into_iter()
                        .map(|r| (r.key, reason.clone())),
                );
                Ok(Sent::Done)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// One create call for `records` under `intent`'s transaction id. Before
    /// every attempt the batch is marked in flight until the form's in-flight
    /// window has passed; the last mark made is kept in `intent`.
    async fn create_marked(
        &self,
        intent: &mut Intent,
        records: &[PendingRecord],
    ) -> Result<crate::target::Created, FormError> {
        let window = chrono::Duration::from_std(self.form.in_flight_window())
            .unwrap_or(chrono::Duration::MAX);
        let tx = intent.tx.clone();
        let mark = || {
            let (store, tx) = (self.store.clone(), tx.clone());
            async move {
                let until = Utc::now() + window;
                store
                    .call(move |s| s.mark_in_flight(&tx, until))
                    .await
                    .map(|()| until)
                    .map_err(|e| e.to_string())
            }
        };
        let last_mark = std::sync::Mutex::new(None);
        let before_send: &BeforeSend<'_> = &|| {
            let (mark, last_mark) = (mark(), &last_mark);
            Box::pin(async move {
                let until = mark.await?;
                if let Ok(mut m) = last_mark.lock() {
                    *m = Some(until);
                }
                Ok(())
            })
        };
        let data: Vec<&crate::target::WriteData> = records.iter().map(|r| &r.data).collect();
        let answer = self.form.create_batch(&tx, &data, before_send).await;
        if let Some(until) = last_mark.lock().ok().and_then(|m| *m) {
            intent.in_flight_until = Some(until);
        }
        answer
    }

    /// Saves `records` as the pending batch of `intent` (replacing `old`) before
    /// anything of it is sent.
    async fn write_ahead(
        &self,
        old: Option<String>,
        intent: &Intent,
        month: Month,
        records: &[PendingRecord],
    ) -> Result<(), StoreError> {
        let encoded =
            serde_json::to_string(records).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (job, tx, since) = (self.job.clone(), intent.tx.clone(), intent.since);
        self.store
            .call(move |s| {
                s.save_pending_encoded(&tx, &job, month, since, &encoded)?;
                match old {
                    Some(old) if old != tx => s.drop_pending(&old),
                    _ => Ok(()),
                }
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::WriteData;

    fn records(n: usize) -> Vec<PendingRecord> {
        (0..n)
            .map(|i| PendingRecord {
                key: format!("[\"u{i}\"]"),
                content_hash: "h".into(),
                key_values: vec![("userid".into(), serde_json::json!(format!("u{i}")))],
                data: WriteData::from_value(
                    &serde_json::json!({"userid": {"value": format!("u{i}")}}),
                ),
            })
            .collect()
    }

    #[test]
    fn every_write_intent_gets_its_own_id() {
        let (a, b) = (Intent::fresh(3), Intent::fresh(3));
        assert_ne!(a.tx, b.tx, "the same content written twice is two intents");
        assert!(!a.may_replay(), "a fresh id cannot be answered by a replay");
    }

    #[test]
    fn an_id_is_reused_only_for_the_same_unanswered_batch_within_the_window() {
        let now = Utc::now();
        let mut sent = Intent::fresh(3);
        sent.in_flight_until = Some(now);
        assert!(sent.reusable_for(&records(3), now));
        assert!(
            sent.may_replay(),
            "an answer to a resend may repeat the first"
        );
        assert!(
            !sent.reusable_for(&records(2), now),
            "a smaller set is a new intent"
        );
        let late = now + chrono::Duration::minutes(51);
        assert!(
            !sent.reusable_for(&records(3), late),
            "Jiandaoyun forgets ids after an hour"
        );
        sent.answered = true;
        assert!(
            !sent.reusable_for(&records(3), now),
            "an answered id is spent"
        );
    }

    #[test]
    fn a_send_is_waited_out_until_it_cannot_commit_any_more() {
        let now = Utc::now();
        let mut intent = Intent::fresh(1);
        let window = Duration::from_secs(65);
        assert_eq!(
            intent.in_flight_for(now, window),
            None,
            "never sent: no wait"
        );
        intent.in_flight_until = Some(now + chrono::Duration::seconds(65));
        let wait = intent.in_flight_for(now, window).unwrap_or_default();
        assert_eq!(wait, Duration::from_secs(65));
        let later = now + chrono::Duration::seconds(66);
        assert_eq!(intent.in_flight_for(later, window), None);
        // A mark two hours ahead (the clock was set back since): one window at most.
        intent.in_flight_until = Some(now + chrono::Duration::hours(2));
        assert_eq!(intent.in_flight_for(now, window), Some(window));
    }

    #[test]
    fn a_pending_batch_keeps_its_id_and_in_flight_time() {
        let now = Utc::now();
        let batch = PendingBatch {
            transaction_id: "t-1".into(),
            job: "j".into(),
            month: Month::new(2026, 10).expect("month"),
            first_sent_at: now,
            in_flight_until: Some(now),
            records: records(2),
        };
        let intent = Intent::of_pending(&batch);
        assert_eq!(intent.tx, "t-1");
        assert!(intent.may_replay());
        assert!(intent.reusable_for(&batch.records, now));
    }
}
