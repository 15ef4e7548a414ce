use super::*;

pub(super) fn m(text: &str) -> Month {
    text.parse().expect("month")
}

pub(super) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(&dir.path().join("t.db")).expect("open");
    (dir, s)
}

#[test]
fn opens_in_wal_mode_at_the_current_schema_version() {
    let (dir, s) = store();
    assert_eq!(s.schema_version().expect("version"), CURRENT_VERSION);
    let mode: String = s
        .conn()
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    drop(s);
    // Reopening an up-to-date database is a no-op.
    let again = Store::open(&dir.path().join("t.db")).expect("reopen");
    assert_eq!(again.schema_version().expect("version"), CURRENT_VERSION);
}

#[test]
fn migrating_keeps_the_checkpoints_of_an_older_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    {
        // A database as version 2 of attendsync left it.
        let conn = Connection::open(&path).expect("open");
        for sql in &schema::MIGRATIONS[..2] {
            conn.execute_batch(sql).expect("old schema");
        }
        conn.pragma_update(None, "user_version", 2)
            .expect("version");
        conn.execute(
            "INSERT INTO checkpoints VALUES ('j', '2026-10', '[\"a\"]', 'id1', 'h1', 't')",
            [],
        )
        .expect("row");
    }
    let s = Store::open(&path).expect("migrated");
    assert_eq!(s.schema_version().expect("version"), CURRENT_VERSION);
    let cps = s.checkpoints("j", m("2026-10")).expect("cps");
    assert_eq!(cps["[\"a\"]"].data_id.as_deref(), Some("id1"));
    assert_eq!(cps["[\"a\"]"].content_hash, "h1");
}

#[test]
fn refuses_a_newer_schema() {
    let (dir, s) = store();
    s.conn()
        .pragma_update(None, "user_version", CURRENT_VERSION + 1)
        .expect("set");
    drop(s);
    let err = Store::open(&dir.path().join("t.db"))
        .err()
        .expect("refused");
    assert!(err
        .to_string()
        .contains("newer than this attendsync supports"));
}

#[test]
fn only_a_run_of_the_default_months_stands_for_a_scheduled_run() {
    let (_d, s) = store();
    let now = Utc::now();
    let t = |h| now - chrono::Duration::hours(h);
    for (command, at) in [("run", t(48)), ("run --month", t(2)), ("rerun", t(1))] {
        let id = s.start_run("j", command, at).expect("start");
        s.finish_run(id, RunStatus::Ok, None, at).expect("finish");
    }
    let last = s.last_success("j").expect("last").expect("some");
    assert_eq!(ts(last), ts(t(48)));
}

#[test]
fn commit_settles_a_pending_batch_atomically() {
    let (_d, s) = store();
    let now = Utc::now();
    let batch = PendingBatch {
        transaction_id: "tx1".into(),
        job: "j".into(),
        month: m("2026-10"),
        first_sent_at: now,
        in_flight_until: None,
        records: vec![PendingRecord {
            key: "[\"a\"]".into(),
            content_hash: "h".into(),
            key_values: vec![("userid".into(), serde_json::json!("a"))],
            data: crate::target::WriteData::from_value(
                &serde_json::json!({"userid": {"value": "a"}}),
            ),
        }],
    };
    s.save_pending(&batch).expect("save");
    let loaded = s.pending("j").expect("pending");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].records, batch.records);
    let w = Written {
        key: "[\"a\"]".into(),
        data_id: Some("id1".into()),
        content_hash: "h".into(),
    };
    s.commit_written("j", m("2026-10"), &[w], Some("tx1"), now)
        .expect("commit");
    assert!(s.pending("j").expect("pending").is_empty());
    let cps = s.checkpoints("j", m("2026-10")).expect("cps");
    assert_eq!(cps["[\"a\"]"].data_id.as_deref(), Some("id1"));
}

#[test]
fn lease_excludes_a_second_owner_until_it_expires() {
    let (_d, s) = store();
    let t0 = Utc::now();
    let ttl = Duration::from_secs(30);
    let alive = |_: &str| false;
    assert_eq!(s.acquire_lease("j", "a", ttl, t0, &alive).expect("a"), None);
    let held = s.acquire_lease("j", "b", ttl, t0, &alive).expect("b");
    assert_eq!(held.map(|h| h.owner), Some("a".to_string()));
    let later = t0 + chrono::Duration::seconds(31);
    assert_eq!(
        s.acquire_lease("j", "b", ttl, later, &alive).expect("b"),
        None
    );
    // A holder known to be dead is taken over before its lease expires.
    let dead = |o: &str| o == "b";
    assert_eq!(
        s.acquire_lease("j", "c", ttl, later, &dead).expect("c"),
        None
    );
    assert!(!s.renew_lease("j", "a", ttl, later).expect("renew"));
}

#[test]
fn metered_calls_add_up_per_job_and_calendar_month() {
    let (_d, s) = store();
    s.add_metered("j", m("2026-11"), 120).expect("add");
    s.add_metered("j", m("2026-11"), 30).expect("add");
    s.add_metered("j", m("2026-12"), 7).expect("add");
    assert_eq!(s.metered_spent("j", m("2026-11")).expect("spent"), 150);
    assert_eq!(s.metered_spent("j", m("2026-12")).expect("spent"), 7);
    assert_eq!(s.metered_spent("other", m("2026-11")).expect("spent"), 0);
}

#[test]
fn metered_reservations_stop_at_the_cap_and_give_back_what_is_unused() {
    let (_d, s) = store();
    assert_eq!(
        s.reserve_metered("j", m("2026-11"), 20, 50)
            .expect("reserve"),
        20
    );
    assert_eq!(
        s.reserve_metered("j", m("2026-11"), 20, 50)
            .expect("reserve"),
        20
    );
    assert_eq!(
        s.reserve_metered("j", m("2026-11"), 20, 50)
            .expect("reserve"),
        10
    );
    assert_eq!(
        s.reserve_metered("j", m("2026-11"), 20, 50)
            .expect("reserve"),
        0
    );
    s.release_metered("j", m("2026-11"), 7).expect("release");
    assert_eq!(s.metered_spent("j", m("2026-11")).expect("spent"), 43);
    s.release_metered("j", m("2026-11"), 100).expect("release");
    assert_eq!(s.metered_spent("j", m("2026-11")).expect("spent"), 0);
}

#[test]
fn month_rows_show_the_latest_run_per_month() {
    let (_d, s) = store();
    let now = Utc::now();
    let r1 = s.start_run("j", "run", now).expect("run");
    let c1 = MonthCounts {
        pulled: 3,
        created: 3,
        ..Default::default()
    };
    s.save_month(r1, "j", m("2026-10"), &c1, None)
        .expect("month");
    s.finish_run(r1, RunStatus::Ok, None, now).expect("finish");
    let r2 = s.start_run("j", "rerun", now).expect("run");
    let c2 = MonthCounts {
        pulled: 3,
        updated: 1,
        unchanged: 2,
        ..Default::default()
    };
    s.save_month(r2, "j", m("2026-10"), &c2, None)
        .expect("month");
    let rows = s.month_rows(None).expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].counts, c2);
    let runs = s.recent_runs(Some("j"), 10).expect("runs");
    assert_eq!(runs[0].command, "rerun");
    assert_eq!(runs[0].status, "running");
}
