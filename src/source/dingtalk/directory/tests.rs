//! The directory walk against the DingTalk simulator.

use super::*;
use crate::http::pace::TOTAL;
use crate::source::dingtalk::testkit::*;

#[tokio::test]
async fn pulls_120_users_across_nested_departments_with_small_pages() {
    let config = DingtalkSimConfig {
        page_size_cap: Some(7),
        messy_dates: true,
        ..fast_sim()
    };
    let sim = start(120, config).await;
    let cfg = job(&sim, &DEFAULT_COLUMNS[..10], &["年假", "事假", "病假"]);
    let stats = Arc::new(CallStats::default());
    let source = source_client(&cfg, stats.clone());
    assert_eq!(source.kind(), "dingtalk");
    assert_eq!(source.chunk_size(), EMPLOYEES_PER_CHUNK);
    assert_eq!(source.metering().map(|m| m.costs().per_employee), Some(2));
    let (employees, pulled) = pull_all(&source, october(), after_october()).await.unwrap();

    let mut expected: Vec<String> = sim.org().users.iter().map(|u| u.userid.clone()).collect();
    expected.sort();
    assert_eq!(employees, expected);
    assert_eq!(pulled.records.len(), 120);
    assert!(pulled.failed.is_empty() && pulled.absent.is_empty());
    check_records(&sim, &cfg, &pulled, october());
    // Nested departments, several pages each.
    assert!(sim.org().departments.iter().any(|d| d.parent_id > 1));
    assert!(sim.calls(USER_LIST) > sim.org().departments.len());
    assert_eq!(sim.calls(LISTSUB), sim.org().departments.len());
    let r = &pulled.records[0].record;
    assert!(!r["departments"].as_array().unwrap().is_empty());
    assert_eq!(r["columns"].as_object().unwrap().len(), 10);
    assert_eq!(r["leave"].as_object().unwrap().len(), 3);

    assert_eq!(sim.calls(GETCOLUMNVAL), 120);
    assert_eq!(sim.calls(GETLEAVETIME), 120);
    assert_eq!(sim.calls(SIM_COLUMNS), 1);
    assert_eq!(sim.calls(GETTOKEN), 1);
    assert_eq!(source.client.metered_calls(), 241);
    assert_eq!(sim.metered_calls(), 241);
    let snapshot = stats.snapshot();
    assert_eq!(crate::http::metered_calls(&snapshot), 241);
    assert_eq!(snapshot[GETCOLUMNVAL].calls, 120);
    assert_eq!(sim.quota_violations(), 0);
}

#[tokio::test]
async fn page_size_shrinks_on_invalid_parameter() {
    let config = DingtalkSimConfig {
        max_page_size: 40,
        page_size_cap: None,
        ..fast_sim()
    };
    let sim = start(60, config).await;
    let client = client_for(&job(&sim, &["出勤天数"], &[]));
    let employees = client.employees(&Scope::default()).await.unwrap();
    assert_eq!(employees.len(), 60);
    let refused = sim
        .call_log()
        .iter()
        .filter(|c| c.endpoint == USER_LIST && c.outcome.code() == Some(400002))
        .count();
    // 100 → 50 → 25, once.
    assert_eq!(refused, 2);
}

#[tokio::test]
async fn discover_hands_people_on_while_the_directory_is_walked() {
    let latency = Duration::from_millis(10);
    let config = DingtalkSimConfig {
        page_size_cap: Some(7),
        latency,
        ..fast_sim()
    };
    let sim = start(300, config).await;
    let cfg = job(&sim, &["出勤天数"], &["年假"]);
    let walker = client_for(&cfg);
    let client = &walker;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let scope = Scope::default();
    let receiving = async {
        let mut batches = Vec::new();
        while let Some(batch) = rx.recv().await {
            batches.push((Instant::now(), batch));
        }
        batches
    };
    let (all, batches) = tokio::join!(
        async move {
            let all = client.discover(&scope, &tx).await;
            drop(tx);
            all
        },
        receiving
    );
    let all = all.unwrap();
    let walked_at = Instant::now();
    let received: Vec<String> = batches.iter().flat_map(|(_, b)| b.clone()).collect();
    assert_eq!(
        received,
        all.iter().collect::<Vec<_>>(),
        "each once, in order"
    );
    let mut sorted = received.clone();
    sorted.sort();
    let expected = client_for(&cfg).employees(&Scope::default()).await.unwrap();
    assert_eq!(sorted, expected, "the same people as listing first");
    assert!(batches.len() > 3, "{} batches", batches.len());
    assert!(
        batches[0].0 + latency * 5 < walked_at,
        "the first came early"
    );
    // Every record names all the departments of its person, though some were
    // handed on before every department was named.
    let pulled = walker
        .month_data(&received, october(), after_october(), SH)
        .await
        .unwrap();
    assert_eq!(pulled.records.len(), 300);
    check_records(&sim, &cfg, &pulled, october());
    let in_two = sim
        .org()
        .users
        .iter()
        .filter(|u| u.departments.len() > 1)
        .count();
    assert!(in_two > 0, "the organisation has people in two departments");
}

/// A department's users are asked for as soon as it is found, beside its own
/// `listsub`, not a round trip after it: the first chunk of a large
/// organisation is complete that much sooner. The root's users go with the
/// first `listsub`; its children's before any child's `listsub` is answered.
#[tokio::test]
async fn a_department_is_listed_beside_its_own_listsub() {
    let latency = Duration::from_millis(100);
    let config = DingtalkSimConfig {
        latency,
        ..fast_sim()
    };
    let sim = start(300, config).await;
    let client = client_for(&job(&sim, &["出勤天数"], &[]));
    let employees = client.employees(&Scope::default()).await.unwrap();
    assert_eq!(employees.len(), 300);
    let log = sim.call_log();
    let arrivals = |endpoint: &str| -> Vec<Instant> {
        log.iter()
            .filter(|c| c.endpoint == endpoint)
            .map(|c| c.at)
            .collect()
    };
    let (walks, lists) = (arrivals(LISTSUB), arrivals(USER_LIST));
    let children = sim
        .org()
        .departments
        .iter()
        .filter(|d| d.parent_id == ROOT_DEPARTMENT && d.id != ROOT_DEPARTMENT)
        .count();
    assert!(children >= 2, "{children} children of the root");
    // The root's users left with the root's `listsub`, before any child's.
    assert!(lists[0] < walks[1], "the root was listed after its listsub");
    // A child's `listsub` answers `latency` after it arrived; the children's
    // users were asked for before the first of those answers.
    let first_child_answered = walks[1] + latency;
    let early = lists
        .iter()
        .filter(|at| **at < first_child_answered)
        .count();
    assert!(
        early > 1,
        "only {early} user list(s) before a child's listsub answered"
    );
}

#[tokio::test]
async fn directory_and_reports_overlap_calls_within_bounds() {
    let latency = Duration::from_millis(20);
    let config = DingtalkSimConfig {
        page_size_cap: Some(7),
        latency,
        ..fast_sim()
    };
    let sim = start(300, config).await;
    let cfg = job(&sim, &["出勤天数", "工作时长"], &["年假"]);
    let client = client_for(&cfg);
    let started = Instant::now();
    let employees = client.employees(&Scope::default()).await.unwrap();
    let listing = started.elapsed();
    let mut expected: Vec<String> = sim.org().users.iter().map(|u| u.userid.clone()).collect();
    expected.sort();
    assert_eq!(employees, expected);
    let log = sim.call_log();
    let (walked, pages) = (sim.calls(LISTSUB), sim.calls(USER_LIST));
    assert_eq!(walked, sim.org().departments.len());
    assert!(pages > 2 * walked, "{pages} pages");
    // One call at a time, the listing takes at least one latency per call
    // (bound loose for loaded machines: the overlap itself is checked below).
    let one_at_a_time = latency * (walked + pages) as u32;
    assert!(listing < one_at_a_time, "{listing:?} vs {one_at_a_time:?}");
    for endpoint in [LISTSUB, USER_LIST] {
        // With the simulator holding each call for `latency`, the most
        // arrivals within it bound how many were under way at once.
        let most = attendsync_sim::most_calls_within(&log, endpoint, latency);
        assert!(
            (2..=DIRECTORY_IN_FLIGHT).contains(&most),
            "{endpoint}: {most}"
        );
    }
    // Users are listed while the walk goes on.
    let first_page = log.iter().find(|c| c.endpoint == USER_LIST).unwrap().at;
    let last_walk = log.iter().rev().find(|c| c.endpoint == LISTSUB).unwrap().at;
    assert!(first_page < last_walk);

    let pulled = client
        .month_data(&employees, october(), after_october(), SH)
        .await
        .unwrap();
    assert_eq!(pulled.records.len(), 300);
    check_records(&sim, &cfg, &pulled, october());
    let order: Vec<&String> = pulled.records.iter().map(|r| &r.employee).collect();
    assert_eq!(order, employees.iter().collect::<Vec<_>>());
    let log = sim.call_log();
    for endpoint in [GETCOLUMNVAL, GETLEAVETIME] {
        // With the simulator holding each call for `latency`, the most
        // arrivals within it bound how many were under way at once.
        let most = attendsync_sim::most_calls_within(&log, endpoint, latency);
        assert!(
            (2..=EMPLOYEES_IN_FLIGHT).contains(&most),
            "{endpoint}: {most}"
        );
    }
    assert_eq!(client.metered_calls(), 1 + 2 * 300);
    assert_eq!(sim.metered_calls(), 1 + 2 * 300);
    assert_eq!(sim.quota_violations(), 0);

    // A slow configured rate keeps fewer under way than that.
    let mut slow = cfg.clone();
    slow.limits = vec![(GETLEAVETIME.to_owned(), Rate::per_minute(240))];
    let client = client_for(&slow);
    assert_eq!(client.employees_in_flight, 4);
    assert_eq!(client.departments_in_flight, DIRECTORY_IN_FLIGHT);
    slow.limits = vec![(TOTAL.to_owned(), Rate::per_second(3))];
    let client = client_for(&slow);
    assert_eq!(
        (client.employees_in_flight, client.user_pages_in_flight),
        (3, 3)
    );
    slow.limits = vec![(USER_LIST.to_owned(), Rate::per_minute(10))];
    assert_eq!(client_for(&slow).user_pages_in_flight, 1);
}

#[tokio::test]
async fn root_out_of_scope_walks_from_the_configured_departments() {
    let sim = start(120, fast_sim()).await;
    let org = sim.org().clone();
    let tops: Vec<u64> = org
        .departments
        .iter()
        .filter(|d| d.parent_id == 1)
        .map(|d| d.id)
        .take(2)
        .collect();
    assert_eq!(tops.len(), 2);
    let mut cfg = job(&sim, &["出勤天数"], &[]);
    cfg.scope.departments = tops.clone();
    let client = client_for(&cfg);
    sim.inject_answer(
        LISTSUB,
        json!({"errcode": 50004, "errmsg": "部门不在授权范围"}),
        1,
    );
    let employees = client.employees(&cfg.scope).await.unwrap();
    let mut expected: Vec<String> = org
        .users
        .iter()
        .filter(|u| {
            u.departments.iter().any(|d| {
                org.top_level_department(*d)
                    .is_some_and(|t| tops.contains(&t.id))
            })
        })
        .map(|u| u.userid.clone())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(employees, expected);
    let subtree = org
        .departments
        .iter()
        .filter(|d| {
            org.top_level_department(d.id)
                .is_some_and(|t| tops.contains(&t.id))
        })
        .count();
    // The refused root, then each configured subtree once.
    assert_eq!(sim.calls(LISTSUB), 1 + subtree);

    // Without configured departments there is nothing to fall back to.
    sim.inject_answer(
        LISTSUB,
        json!({"errcode": 50004, "errmsg": "部门不在授权范围"}),
        1,
    );
    let e = client_for(&job(&sim, &["出勤天数"], &[]))
        .employees(&Scope::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("errcode 50004") && e.contains("listsub"), "{e}");
}

/// Everything logged while it lives, on this thread.
#[derive(Clone, Default)]
struct Logged(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logged {
    type Writer = Logged;
    fn make_writer(&'a self) -> Logged {
        self.clone()
    }
}

/// Walking from the configured departments (the root out of scope), a
/// configured department without sub-departments was walked all the same:
/// no "not found under the root" warning for it (there was one, found by a
/// helper trying odd scopes). One configured twice is walked and listed once.
#[tokio::test]
async fn a_configured_leaf_walked_after_the_root_was_refused_is_not_reported_missing() {
    let sim = start(120, fast_sim()).await;
    let org = sim.org().clone();
    let parents: HashSet<u64> = org.departments.iter().map(|d| d.parent_id).collect();
    let leaf = org
        .departments
        .iter()
        .find(|d| d.parent_id != 0 && !parents.contains(&d.id))
        .map(|d| d.id)
        .unwrap();
    let mut cfg = job(&sim, &["出勤天数"], &[]);
    cfg.scope.departments = vec![leaf, leaf];
    sim.inject_answer(
        LISTSUB,
        json!({"errcode": 50004, "errmsg": "部门不在授权范围"}),
        1,
    );
    let logged = Logged::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logged.clone())
        .with_ansi(false)
        .finish();
    let employees = {
        let _guard = tracing::subscriber::set_default(subscriber);
        client_for(&cfg).employees(&cfg.scope).await.unwrap()
    };
    let mut expected: Vec<String> = org
        .users
        .iter()
        .filter(|u| u.departments.contains(&leaf))
        .map(|u| u.userid.clone())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(employees, expected);
    let text = String::from_utf8(logged.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("walking from the configured departments"),
        "{text}"
    );
    assert!(!text.contains("not found under the root"), "{text}");
    // The refused root, then the leaf once; its users once.
    assert_eq!(sim.calls(LISTSUB), 2);
    assert_eq!(sim.calls(USER_LIST), expected.len().div_ceil(100));
}

#[tokio::test]
async fn scope_by_userids_and_departments() {
    let sim = start(80, fast_sim()).await;
    let org = sim.org().clone();
    let mut cfg = job(&sim, &["出勤天数"], &[]);
    let (a, b) = (org.users[5].userid.clone(), org.users[2].userid.clone());
    cfg.scope.userids = vec![a.clone(), b.clone(), "ghost".into(), a.clone()];
    let source = source_client(&cfg, Arc::new(CallStats::default()));
    let (employees, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
    let mut expected = vec![a, b, "ghost".to_owned()];
    expected.sort();
    assert_eq!(employees, expected);
    assert_eq!(pulled.records.len(), 2);
    assert_eq!(pulled.absent, ["ghost"]);

    // One top-level department: its subtree's members, with every department's name.
    let top = org
        .departments
        .iter()
        .find(|d| d.parent_id == 1)
        .unwrap()
        .id;
    let mut cfg = job(&sim, &["出勤天数"], &[]);
    cfg.scope.departments = vec![top];
    let source = source_client(&cfg, Arc::new(CallStats::default()));
    let (employees, pulled) = pull_all(&source, october(), after_october()).await.unwrap();
    let mut expected: Vec<String> = org
        .users
        .iter()
        .filter(|u| {
            u.departments
                .iter()
                .any(|d| org.top_level_department(*d).is_some_and(|t| t.id == top))
        })
        .map(|u| u.userid.clone())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());
    assert_eq!(employees, expected);
    check_records(&sim, &cfg, &pulled, october());
}
