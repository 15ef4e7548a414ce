//! Unit tests of the write protocol against an in-memory form
//! (`target::memory`) with scripted faults: one test per branch.

use super::*;
use serde_json::json;

#[test]
fn key_text_compares_whole_numbers_alike_and_escapes_text() {
    assert_eq!(key_text(&[json!("张\"三"), json!(1)]), r#"["张\"三",1]"#);
    assert_eq!(
        key_text(&[json!("a"), json!(1.0)]),
        key_text(&[json!("a"), json!(1)])
    );
    assert_eq!(key_text(&[json!(1.5), json!(null)]), "[1.5,null]");
    assert_eq!(key_text(&[]), "[]");
}

use crate::store::Checkpoint;
use crate::target::jiandaoyun::wire::Encoder;
use crate::target::memory::{Answer, Kill, MemoryForm};

const JOB: &str = "j";
fn month() -> Month {
    Month::new(2026, 10).expect("month")
}

fn record(uid: &str, hours: i64) -> PendingRecord {
    let names = ["userid".to_string(), "hours".to_string()];
    PendingRecord {
        key: key_text(&[json!(uid)]),
        content_hash: format!("h{hours}"),
        key_values: vec![("userid".into(), json!(uid))],
        data: Encoder::new(&names).encode(&[json!(uid), json!(hours)]),
    }
}

fn records(n: usize) -> Vec<PendingRecord> {
    (0..n).map(|i| record(&format!("u{i}"), 8)).collect()
}

fn writer(form: &Arc<MemoryForm>, store: &Store) -> Writer {
    let fields = FormFields {
        key_fields: vec![("userid".into(), FieldKind::Text)],
        fields: vec!["userid".into(), "hours".into()],
        volatile: Vec::new(),
        read_as: HashMap::new(),
    };
    Writer::new(form.clone(), store.clone(), JOB, fields)
}

fn setup() -> (Arc<MemoryForm>, Store) {
    let store = Store::open_in_memory().expect("an in-memory store");
    (MemoryForm::new(), store)
}

async fn pending(store: &Store) -> usize {
    let batches = store.call(|s| s.pending(JOB)).await.expect("pending");
    batches.len()
}

async fn stored(store: &Store) -> HashMap<String, Checkpoint> {
    store
        .call(|s| s.checkpoints(JOB, month()))
        .await
        .expect("checkpoints")
}

/// Every one of the `n` records is in the form exactly once.
fn once_each(form: &MemoryForm, n: usize) {
    for i in 0..n {
        let uid = json!(format!("u{i}"));
        assert_eq!(form.count("userid", &uid), 1, "{uid} in {:?}", form.rows());
    }
    assert_eq!(form.rows().len(), n);
}

#[tokio::test]
async fn an_acknowledged_batch_is_committed_without_a_read_back() {
    let (form, store) = setup();
    let out = writer(&form, &store)
        .create(month(), records(3), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!((out.created, out.adopted), (3, 0));
    assert_eq!(form.creates().len(), 1);
    once_each(&form, 3);
    assert_eq!(pending(&store).await, 0);
    let cps = stored(&store).await;
    assert_eq!(cps.len(), 3);
    // The ids of an acknowledged batch are not read back.
    assert!(cps.values().all(|cp| cp.data_id.is_none()), "{cps:?}");
}

#[tokio::test]
async fn a_short_count_is_read_back_and_the_rest_sent_under_a_new_id() {
    let (form, store) = setup();
    form.script(&[Answer::Short(2)]);
    let out = writer(&form, &store)
        .create(month(), records(3), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(out.created, 3);
    let creates = form.creates();
    assert_eq!(creates.len(), 2);
    assert_ne!(creates[0], creates[1], "an answered id is spent");
    once_each(&form, 3);
    assert_eq!(pending(&store).await, 0);
    let cps = stored(&store).await;
    let read_back = cps.values().filter(|cp| cp.data_id.is_some()).count();
    assert_eq!((cps.len(), read_back), (3, 2));
}

#[tokio::test]
async fn a_commit_answered_by_a_502_is_waited_out_and_read_back() {
    let (form, store) = setup();
    form.script(&[Answer::StoredThen502]);
    let out = writer(&form, &store)
        .create(month(), records(3), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(out.created, 3);
    assert_eq!(
        form.creates().len(),
        1,
        "found by the read-back: not sent again"
    );
    once_each(&form, 3);
    assert_eq!(pending(&store).await, 0);
    let cps = stored(&store).await;
    assert!(cps.values().all(|cp| cp.data_id.is_some()), "{cps:?}");
}

#[tokio::test]
async fn a_dropped_connection_is_read_back_then_resent_under_the_same_id() {
    let (form, store) = setup();
    form.script(&[Answer::Dropped]);
    let out = writer(&form, &store)
        .create(month(), records(3), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(out.created, 3);
    let creates = form.creates();
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[0], creates[1], "the same intent, never answered");
    once_each(&form, 3);
    assert_eq!(pending(&store).await, 0);
    // The answer to the resend may be a replay: what is stored was read back.
    let cps = stored(&store).await;
    assert!(cps.values().all(|cp| cp.data_id.is_some()), "{cps:?}");
}

#[tokio::test]
async fn a_spent_transaction_id_is_read_back_and_resent_under_a_new_one() {
    let (form, store) = setup();
    form.script(&[Answer::IdSpent]);
    let out = writer(&form, &store)
        .create(month(), records(3), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(out.created, 3);
    let creates = form.creates();
    assert_eq!(creates.len(), 2);
    assert_ne!(creates[0], creates[1], "a spent id gets a new one");
    once_each(&form, 3);
    assert_eq!(pending(&store).await, 0);
}

#[tokio::test]
async fn a_rejected_batch_is_bisected_down_to_the_bad_record() {
    let (form, store) = setup();
    form.refuse("u2");
    let out = writer(&form, &store)
        .create(month(), records(4), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(out.created, 3);
    assert_eq!(out.failed.len(), 1, "{:?}", out.failed);
    assert_eq!(out.failed[0].0, r#"["u2"]"#);
    assert!(
        out.failed[0].1.contains("code 1 (bad value)"),
        "{:?}",
        out.failed
    );
    // [u0..u3] refused, [u0 u1] created, [u2 u3] refused, [u2] refused, [u3] created.
    assert_eq!(form.creates().len(), 5);
    assert_eq!(form.count("userid", &json!("u2")), 0);
    assert_eq!(form.rows().len(), 3);
    assert_eq!(pending(&store).await, 0);
    assert_eq!(stored(&store).await.len(), 3);
}

#[tokio::test]
async fn a_pending_batch_is_settled_after_a_kill_at_every_step() {
    let steps = [
        (Kill::Lookup, InForm::Unknown),
        (Kill::BeforeMark, InForm::Unknown),
        (Kill::AfterMark, InForm::Unknown),
        (Kill::AfterStore, InForm::Unknown),
        // Known absent: no look-up to be killed at, the rest the same.
        (Kill::BeforeMark, InForm::Absent),
        (Kill::AfterMark, InForm::Absent),
        (Kill::AfterStore, InForm::Absent),
    ];
    for (kill, in_form) in steps {
        let (form, store) = setup();
        form.kill_at(Some(kill));
        let first = writer(&form, &store);
        tokio::select! {
            r = first.create(month(), records(3), in_form) => panic!("{kill:?}: the write ended: {r:?}"),
            () = form.killed() => {}
        }
        drop(first);
        let left = pending(&store).await;
        assert_eq!(left, usize::from(kill != Kill::Lookup), "{kill:?}");
        form.kill_at(None);
        // The next run: settle what was left, then create what the store lacks.
        let next = writer(&form, &store);
        let settled = next.settle_pending().await.expect("settle");
        let known = stored(&store).await;
        let rest: Vec<PendingRecord> = records(3)
            .into_iter()
            .filter(|r| !known.contains_key(&r.key))
            .collect();
        let out = next
            .create(month(), rest, InForm::Unknown)
            .await
            .expect("create");
        assert_eq!(settled.created + out.created, 3, "{kill:?} {in_form:?}");
        if kill == Kill::AfterStore {
            assert_eq!(settled.created, 3, "found by the read-back, not sent again");
        }
        once_each(&form, 3);
        assert_eq!(pending(&store).await, 0, "{kill:?} {in_form:?}");
        assert_eq!(stored(&store).await.len(), 3, "{kill:?} {in_form:?}");
    }
}

#[tokio::test]
async fn keys_known_absent_are_created_without_a_look_up() {
    let (form, store) = setup();
    let out = writer(&form, &store)
        .create(month(), records(250), InForm::Absent)
        .await
        .expect("create");
    assert_eq!(out.created, 250);
    assert_eq!((form.creates().len(), form.reads()), (3, 0));
    once_each(&form, 250);

    let (form, store) = setup();
    writer(&form, &store)
        .create(month(), records(250), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(form.reads(), 3, "unknown: each batch looked up first");
}

#[tokio::test]
async fn an_unclear_answer_to_a_batch_known_absent_is_still_read_back() {
    for answer in [Answer::StoredThen502, Answer::Dropped, Answer::Short(1)] {
        let (form, store) = setup();
        form.script(&[answer]);
        let out = writer(&form, &store)
            .create(month(), records(3), InForm::Absent)
            .await
            .expect("create");
        assert_eq!(out.created, 3, "{answer:?}");
        assert!(form.reads() >= 1, "{answer:?}: read back before a resend");
        once_each(&form, 3);
        assert_eq!(pending(&store).await, 0);
    }
}

/// A batch refused for one record is split; the halves were never stored, so
/// they are still created without a look-up, and only the bad record fails.
#[tokio::test]
async fn a_refused_batch_known_absent_is_split_without_look_ups() {
    let (form, store) = setup();
    form.refuse("u2");
    let out = writer(&form, &store)
        .create(month(), records(4), InForm::Absent)
        .await
        .expect("create");
    assert_eq!((out.created, out.failed.len()), (3, 1));
    assert_eq!(form.reads(), 0);
    assert_eq!(form.rows().len(), 3);
}

#[tokio::test]
async fn a_key_already_twice_in_the_form_is_reported_and_nothing_created() {
    let (form, store) = setup();
    let low = form.insert(json!({"userid": "u0", "hours": 8}));
    form.insert(json!({"userid": "u0", "hours": 8}));
    let out = writer(&form, &store)
        .create(month(), records(1), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!(out.duplicates, vec![r#"["u0"]"#.to_string()]);
    assert_eq!((out.created, out.adopted), (0, 1));
    assert!(form.creates().is_empty());
    assert_eq!(form.count("userid", &json!("u0")), 2);
    let cps = stored(&store).await;
    assert_eq!(
        cps[r#"["u0"]"#].data_id.as_deref(),
        Some(low.as_str()),
        "the lowest id is the record kept"
    );
}

#[tokio::test]
async fn a_key_once_in_the_form_with_the_same_content_is_adopted() {
    let (form, store) = setup();
    let id = form.insert(json!({"userid": "u0", "hours": 8.0}));
    let out = writer(&form, &store)
        .create(month(), records(1), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!((out.created, out.adopted, out.updated), (0, 1, 0));
    assert!(form.creates().is_empty());
    assert_eq!(form.updates(), 0);
    let cps = stored(&store).await;
    assert_eq!(cps[r#"["u0"]"#].data_id, Some(id));
    assert_eq!(pending(&store).await, 0);
}

#[tokio::test]
async fn a_key_once_in_the_form_with_other_content_is_updated() {
    let (form, store) = setup();
    let id = form.insert(json!({"userid": "u0", "hours": 5}));
    let out = writer(&form, &store)
        .create(month(), records(1), InForm::Unknown)
        .await
        .expect("create");
    assert_eq!((out.created, out.adopted, out.updated), (0, 0, 1));
    assert!(form.creates().is_empty());
    assert_eq!(form.rows()[0]["hours"], json!(8));
    let cps = stored(&store).await;
    assert_eq!(cps[r#"["u0"]"#].data_id, Some(id));
    assert_eq!(cps[r#"["u0"]"#].content_hash, "h8");
}

#[tokio::test]
async fn an_update_of_a_record_deleted_from_the_form_creates_it_again() {
    let (form, store) = setup();
    let w = writer(&form, &store);
    let out = w
        .update(month(), vec![(Some("gone".into()), record("u0", 8))])
        .await
        .expect("update");
    assert_eq!((out.updated, out.created), (0, 1));
    once_each(&form, 1);
}

#[tokio::test]
async fn an_unknown_id_is_read_by_key_before_an_update() {
    let (form, store) = setup();
    let id = form.insert(json!({"userid": "u0", "hours": 5}));
    let w = writer(&form, &store);
    let out = w
        .update(month(), vec![(None, record("u0", 8))])
        .await
        .expect("update");
    assert_eq!(out.updated, 1);
    assert_eq!(form.rows()[0]["hours"], json!(8));
    assert_eq!(stored(&store).await[r#"["u0"]"#].data_id, Some(id));
}
