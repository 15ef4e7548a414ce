//! The SQLite schema and its migrations, versioned with `PRAGMA user_version`.

use rusqlite::Connection;

/// Migration N brings a database from `user_version` N to N+1. Append only: a
/// released migration is never edited.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    job         TEXT NOT NULL,
    command     TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL,
    message     TEXT
);
CREATE INDEX runs_by_job ON runs (job, id);

CREATE TABLE run_months (
    run_id    INTEGER NOT NULL REFERENCES runs (id),
    job       TEXT NOT NULL,
    month     TEXT NOT NULL,
    pulled    INTEGER NOT NULL,
    created   INTEGER NOT NULL,
    updated   INTEGER NOT NULL,
    unchanged INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    missing   INTEGER NOT NULL,
    error     TEXT,
    PRIMARY KEY (run_id, month)
);
CREATE INDEX run_months_by_job ON run_months (job, month, run_id);

CREATE TABLE checkpoints (
    job          TEXT NOT NULL,
    month        TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    data_id      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    written_at   TEXT NOT NULL,
    PRIMARY KEY (job, month, record_key)
);

CREATE TABLE pending_batches (
    transaction_id TEXT PRIMARY KEY,
    job            TEXT NOT NULL,
    month          TEXT NOT NULL,
    first_sent_at  TEXT NOT NULL,
    records        TEXT NOT NULL
);
CREATE INDEX pending_by_job ON pending_batches (job);

CREATE TABLE leases (
    job        TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE metered_calls (
    job    TEXT NOT NULL,
    period TEXT NOT NULL,
    calls  INTEGER NOT NULL,
    PRIMARY KEY (job, period)
);
"#,
    // Checkpoints clustered on their key: one B-tree per write and look-up
    // instead of a table plus an index holding the key a second time.
    r#"
CREATE TABLE checkpoints_by_key (
    job          TEXT NOT NULL,
    month        TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    data_id      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    written_at   TEXT NOT NULL,
    PRIMARY KEY (job, month, record_key)
) WITHOUT ROWID;
INSERT INTO checkpoints_by_key (job, month, record_key, data_id, content_hash, written_at)
    SELECT job, month, record_key, data_id, content_hash, written_at FROM checkpoints;
DROP TABLE checkpoints;
ALTER TABLE checkpoints_by_key RENAME TO checkpoints;
"#,
    // Acknowledged writes in commit order, folded into `checkpoints` in key order
    // (store/checkpoints.rs): appending a batch fills a few pages where its keys
    // would dirty a scattered leaf each.
    r#"
CREATE TABLE written_log (
    seq          INTEGER PRIMARY KEY,
    job          TEXT NOT NULL,
    month        TEXT NOT NULL,
    record_key   TEXT NOT NULL,
    data_id      TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    written_at   TEXT NOT NULL
);
"#,
    // When a pending batch's last send may still commit: set just before each
    // send (NULL: never sent). No read-back decides on a resend before then.
    r#"
ALTER TABLE pending_batches ADD COLUMN in_flight_until TEXT;
"#,
    // Months a job owes: due in a run, not yet synced in full after they closed
    // (`closes_at`: when the month ends in the job's timezone).
    r#"
CREATE TABLE months_owed (
    job       TEXT NOT NULL,
    month     TEXT NOT NULL,
    since     TEXT NOT NULL,
    closes_at TEXT NOT NULL,
    PRIMARY KEY (job, month)
) WITHOUT ROWID;
"#,
    // A job's open failure streak, for one alert per streak (store/alerts.rs):
    // cron runs are separate processes, so it lives here. No row: the job's
    // last counted run succeeded.
    r#"
CREATE TABLE alert_streaks (
    job        TEXT PRIMARY KEY,
    since      TEXT NOT NULL,
    failures   INTEGER NOT NULL,
    alerted_at TEXT
);
"#,
    // Runs asked for through the daemon's API (store/requests.rs), queued
    // behind the job's run in progress; `run_id` once one started. And the
    // row `/healthz` writes to prove the database writable.
    r#"
CREATE TABLE run_requests (
    id           INTEGER PRIMARY KEY,
    job          TEXT NOT NULL,
    request      TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    state        TEXT NOT NULL,
    run_id       INTEGER REFERENCES runs (id)
);
CREATE INDEX run_requests_by_state ON run_requests (job, state, id);
CREATE TABLE health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at TEXT NOT NULL
);
"#,
    // Employee-months a vendor event says changed, waiting for a re-pull
    // (store/dirty.rs), and the event ids seen, so a redelivery marks nothing twice.
    r#"
CREATE TABLE dirty (
    job      TEXT NOT NULL,
    month    TEXT NOT NULL,
    employee TEXT NOT NULL,
    first_at TEXT NOT NULL,
    last_at  TEXT NOT NULL,
    events   INTEGER NOT NULL,
    PRIMARY KEY (job, month, employee)
) WITHOUT ROWID;
CREATE TABLE events_seen (
    job      TEXT NOT NULL,
    event_id TEXT NOT NULL,
    seen_at  TEXT NOT NULL,
    PRIMARY KEY (job, event_id)
) WITHOUT ROWID;
"#,
    // Re-pulls (store/dirty.rs): when one was last tried for a mark, so a
    // failing employee-month is tried at most once per `delay`; approvals
    // whose employee and days are still to be looked up; events received by
    // type; and how each job's event connection stands, for `status`.
    r#"
ALTER TABLE dirty ADD COLUMN tried_at TEXT;
CREATE TABLE event_lookups (
    job       TEXT NOT NULL,
    reference TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    added_at  TEXT NOT NULL,
    tries     INTEGER NOT NULL DEFAULT 0,
    next_at   TEXT NOT NULL,
    PRIMARY KEY (job, reference)
) WITHOUT ROWID;
CREATE TABLE event_counts (
    job      TEXT NOT NULL,
    kind     TEXT NOT NULL,
    received INTEGER NOT NULL,
    last_at  TEXT NOT NULL,
    PRIMARY KEY (job, kind)
) WITHOUT ROWID;
CREATE TABLE event_links (
    job    TEXT PRIMARY KEY,
    state  TEXT NOT NULL,
    detail TEXT NOT NULL,
    at     TEXT NOT NULL
) WITHOUT ROWID;
"#,
    // When each vendor app's recent calls left (store/pace.rs): a run that
    // starts right after another keeps to the quota windows they share.
    r#"
CREATE TABLE pace_departures (
    holder  TEXT NOT NULL,
    lane    TEXT NOT NULL,
    left_at TEXT NOT NULL,
    PRIMARY KEY (holder, lane)
) WITHOUT ROWID;
"#,
];

pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Applies every migration the database has not seen yet, in one transaction. A database newer than this binary is refused.
pub fn migrate(conn: &mut Connection) -> Result<(), super::StoreError> {
    // The version is read inside an IMMEDIATE transaction, so two processes opening
    // a new database at the same instant migrate it once, one after the other.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT_VERSION {
        return Err(super::StoreError::TooNew {
            found: version,
            supported: CURRENT_VERSION,
        });
    }
    for sql in MIGRATIONS.iter().skip(version as usize) {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", CURRENT_VERSION)?;
    tx.commit()?;
    Ok(())
}
