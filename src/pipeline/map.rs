//! Map: a chunk's records through the job's mapping, on a blocking thread
//! (the CPU-heavy part of a sync), keys produced twice in a month refused.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};

use super::ctx::MonthCtx;
use super::{JobError, RecordSink};
use crate::mapping::{FieldFill, Mapping, Row, Vars};
use crate::source::{Pulled, SourceError};
use crate::store::PendingRecord;
use crate::target::RecordFormat;

pub(super) fn small_hash(key: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// A mapped record with its key and hash; the write format is only built for
/// records that are written (most records of a nightly run are unchanged).
pub(super) struct Planned {
    pub(super) row: Row,
    pub(super) key: String,
    pub(super) content_hash: String,
}

impl Planned {
    /// Only records that are written are encoded in the target's format.
    pub(super) fn into_pending(self, format: &dyn RecordFormat) -> PendingRecord {
        PendingRecord {
            key_values: self.row.key_values(),
            data: format.encode(self.row.values()),
            key: self.key,
            content_hash: self.content_hash,
        }
    }
}

/// What mapping one chunk produced.
struct MappedChunk {
    records: Vec<Planned>,
    /// Per employee: what went wrong (without the month, added by the caller).
    errors: Vec<String>,
    pulled: u64,
    /// Employees asked for whom the source has no record this month.
    absent: Vec<String>,
    fill: FieldFill,
}

/// Maps a chunk's records, drops keys already produced this month (`seen`), and
/// prints dry-run records to `dry_run`. Fails only on a source answer that
/// cannot be read at all.
fn map_chunk(
    mapping: &Mapping,
    vars: &Vars,
    pulled: Pulled,
    seen: &mut HashSet<u64>,
    dry_run: Option<&RecordSink>,
) -> Result<MappedChunk, SourceError> {
    let reports = pulled.read_unread()?;
    let mut out = MappedChunk {
        records: Vec::with_capacity(pulled.records.len() + reports.found.len()),
        errors: pulled
            .failed
            .iter()
            .map(|(employee, reason)| format!("employee {employee}: {reason}"))
            .collect(),
        pulled: (pulled.records.len() + reports.found.len()) as u64,
        absent: (pulled.absent.iter().map(String::as_str))
            .chain(reports.absent.iter().copied())
            .map(str::to_owned)
            .collect(),
        fill: FieldFill::default(),
    };
    let bound = mapping.bind(vars);
    let built = pulled
        .records
        .iter()
        .map(|r| (r.employee.as_str(), bound.apply(&r.record)));
    let read = reports
        .found
        .iter()
        .map(|(employee, report)| (*employee, bound.apply(report)));
    for (employee, mapped) in built.chain(read) {
        let row = match mapped {
            Ok(row) => row,
            Err(field_errors) => {
                let text: Vec<String> = field_errors.iter().map(ToString::to_string).collect();
                out.errors
                    .push(format!("employee {employee}: {}", text.join("; ")));
                continue;
            }
        };
        out.fill.observe(&row);
        let record = Planned {
            key: row.key(),
            content_hash: row.content_hash(),
            row,
        };
        if !seen.insert(small_hash(&record.key)) {
            out.errors.push(format!(
                "employee {employee}: key {} was already produced by another record of this month; skipped",
                record.key
            ));
            continue;
        }
        if let Some(sink) = dry_run {
            sink(&record.row.to_json());
        }
        out.records.push(record);
    }
    Ok(out)
}

impl MonthCtx<'_> {
    /// Maps one chunk: counts what was pulled, keeps the failures, prints
    /// dry-run records, and returns the records to diff.
    pub(super) async fn map(&mut self, pulled: Pulled) -> Result<Vec<Planned>, JobError> {
        let (run, month, m) = (self.run, self.month, &mut self.report);
        let state = &mut self.state;
        let opts = run.opts;
        // Mapping and hashing a chunk is the CPU-heavy part of a sync: done on a
        // blocking thread, it never delays a paced request that is due to go out.
        let (mapping, vars, sink) = (
            run.mapping.clone(),
            self.vars.clone(),
            run.syncer.dry_run_sink.clone(),
        );
        let (mut taken, dry_run) = (std::mem::take(&mut state.seen), opts.dry_run);
        let (taken, mapped) = tokio::task::spawn_blocking(move || {
            let mapped = map_chunk(
                &mapping,
                &vars,
                pulled,
                &mut taken,
                dry_run.then_some(&sink),
            );
            (taken, mapped)
        })
        .await
        .map_err(|e| JobError::Setup(format!("mapping a chunk failed: {e}")))?;
        state.seen = taken;
        let mapped = mapped?;
        m.counts.pulled += mapped.pulled;
        state.absent += mapped.absent.len();
        if run.opts.some_employees() {
            // Asked for by name: the user wants to hear of each one missing.
            state.asked_absent.extend(mapped.absent.iter().cloned());
        } else if run.source.absence_proves_gone() {
            state.answered_empty.extend(mapped.absent);
        }
        m.fill.absorb(mapped.fill);
        for message in mapped.errors {
            m.error(format!("{month} {message}"));
        }
        Ok(mapped.records)
    }
}
