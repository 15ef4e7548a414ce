//! The directory walk: departments with `listsub`, their users with
//! `v2/user/list`, several calls of each under way at once; people are handed
//! on as they become complete (see `people.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde_json::json;

use super::people::{Gatherer, Listed, Person};
use super::transport::CallError;
use super::wire::{number, text, truthy};
use super::{lock, DingtalkClient, LISTSUB, ROOT_DEPARTMENT, USER_LIST};
use crate::http::call::Failure;
use crate::http::codes::{dingtalk_code, Class};
use crate::roster::UserIds;
use crate::source::config::Scope;
use crate::source::SourceError;

/// `size` of a `v2/user/list` page; halved on 400002 down to [`MIN_PAGE_SIZE`].
const PAGE_SIZE: u32 = 100;
const MIN_PAGE_SIZE: u32 = 10;

/// What walking the departments found (the people go to a [`Gatherer`]).
#[derive(Default)]
struct Crawl {
    children: HashMap<u64, Vec<u64>>,
    /// Departments whose users were listed.
    listed: HashSet<u64>,
}

/// One finished step of [`DingtalkClient::crawl`].
enum Found {
    /// `None`: the department was skipped.
    Children {
        id: u64,
        children: Option<Vec<(u64, String)>>,
    },
    Users {
        id: u64,
        users: Vec<Listed>,
    },
}

enum CrawlError {
    /// Kept unconverted, so that the root being out of scope can be told apart.
    Walk(Failure<CallError>),
    Users(SourceError),
}

impl DingtalkClient {
    /// The userids a job covers, sorted and de-duplicated (docs/vendors/dingtalk.md
    /// "The calls", 2–3). Keeps each user's name, department names, job number and
    /// title for the records. Userids configured in `scope.userids` but not found are
    /// returned too (with a warning), so a pull reports them as absent.
    pub async fn employees(&self, scope: &Scope) -> Result<Vec<String>, SourceError> {
        let all = self.gather(scope, None).await?;
        let mut ids: Vec<String> = all.iter().map(str::to_owned).collect();
        ids.sort();
        Ok(ids)
    }

    /// The same employees as [`Self::employees`], sent to `tx` as they are found
    /// so that pulling starts while the directory is walked; in the order found.
    pub async fn discover(
        &self,
        scope: &Scope,
        tx: &tokio::sync::mpsc::Sender<Vec<String>>,
    ) -> Result<UserIds, SourceError> {
        self.gather(scope, Some(tx)).await
    }

    /// The people the chunk's userids are (`None`: not in the directory). Walks
    /// the directory first if no walk has started (a pull without a listing).
    pub(super) async fn people(
        &self,
        userids: &[String],
    ) -> Result<Vec<Option<Arc<Person>>>, SourceError> {
        if !self.walked.load(Ordering::SeqCst) {
            let scope = self.scope.clone();
            self.employees(&scope).await?;
        }
        let directory = lock(&self.directory);
        Ok(userids.iter().map(|u| directory.get(u).cloned()).collect())
    }

    /// One department's children (id, name) from `listsub`; `None` when a
    /// department found while walking has vanished (60003) or is outside the
    /// app's scope (50004): skipped with a warning. The same errors on a start
    /// department stop the job.
    async fn subdepartments(
        &self,
        id: u64,
        start: bool,
    ) -> Result<Option<Vec<(u64, String)>>, Failure<CallError>> {
        let body = match self
            .call(LISTSUB, &json!({"dept_id": id, "language": "zh_CN"}))
            .await
        {
            Ok(b) => b,
            Err(Failure::Api(f))
                if !start
                    && (f.class == Class::NotFound || f.code == dingtalk_code::OUT_OF_SCOPE) =>
            {
                tracing::warn!(department = id, code = f.code, message = %f.message,
                    "skipping a DingTalk department (deleted since listing, or outside the app's scope)");
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        Ok(Some(
            body["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|d| {
                    let child = number(&d["dept_id"]).and_then(|c| u64::try_from(c).ok())?;
                    Some((child, text(&d["name"])))
                })
                .collect(),
        ))
    }

    /// The users of one department, page by page (`v2/user/list`), in page
    /// order. `size` is shared by all departments: halved on 400002 down to
    /// [`MIN_PAGE_SIZE`], by the first call refused at that size only, so that
    /// refusals of calls under way at once halve it once. `settled` is set once
    /// a page was answered, so the caller knows the size fits.
    async fn department_users(
        &self,
        dept: u64,
        scope: &Scope,
        size: &AtomicU32,
        settled: &AtomicBool,
    ) -> Result<Vec<Listed>, SourceError> {
        let mut users = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let asked = size.load(Ordering::SeqCst);
            let body =
                json!({"dept_id": dept, "cursor": cursor, "size": asked, "language": "zh_CN"});
            let answer = match self.call(USER_LIST, &body).await {
                Ok(a) => a,
                Err(Failure::Api(f))
                    if f.code == dingtalk_code::INVALID_PARAMETER && asked > MIN_PAGE_SIZE =>
                {
                    let smaller = (asked / 2).max(MIN_PAGE_SIZE);
                    if size
                        .compare_exchange(asked, smaller, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                    {
                        tracing::info!(
                            size = smaller,
                            "DingTalk refused the page size of v2/user/list; shrinking it"
                        );
                    }
                    continue;
                }
                Err(Failure::Api(f))
                    if !scope.departments.contains(&dept)
                        && (f.class == Class::NotFound
                            || f.code == dingtalk_code::OUT_OF_SCOPE) =>
                {
                    tracing::warn!(department = dept, code = f.code, message = %f.message,
                        "skipping the users of a DingTalk department (deleted since listing, or outside the app's scope)");
                    return Ok(users);
                }
                Err(e) => return Err(self.error(USER_LIST, e)),
            };
            settled.store(true, Ordering::SeqCst);
            let result = &answer["result"];
            for u in result["list"].as_array().into_iter().flatten() {
                let userid = text(&u["userid"]);
                if userid.is_empty() {
                    continue;
                }
                let dept_ids: Vec<u64> = match u["dept_id_list"].as_array() {
                    Some(ids) => ids
                        .iter()
                        .filter_map(|d| number(d).and_then(|d| u64::try_from(d).ok()))
                        .collect(),
                    None => vec![dept],
                };
                users.push(Listed {
                    userid,
                    name: text(&u["name"]),
                    dept_ids,
                    job_number: text(&u["job_number"]),
                    title: text(&u["title"]),
                });
            }
            if !truthy(&result["has_more"]) {
                return Ok(users);
            }
            match number(&result["next_cursor"]).and_then(|c| u64::try_from(c).ok()) {
                Some(next) if next > cursor => cursor = next,
                _ => {
                    return Err(self.protocol(
                        USER_LIST,
                        format!(
                            "has_more is true but next_cursor {} does not advance past {cursor}",
                            result["next_cursor"]
                        ),
                    ))
                }
            }
        }
    }

    /// Walks `listsub` breadth-first from `starts` and lists the users of every
    /// selected department (the configured ones and everything under them, or
    /// everything) as soon as it is found, beside its own `listsub` (its name,
    /// which its users' records need, came with its parent's answer; a start
    /// department is listed from the first call). Several calls of
    /// each API are under way at once: one call at a time, latency would set the
    /// pace, and walking before listing would add the two APIs' times instead
    /// of overlapping them (they have separate quotas). The first `v2/user/list`
    /// call goes alone until a page size is accepted, so a refused size is
    /// shrunk once rather than by every call under way.
    async fn crawl(
        &self,
        starts: &[u64],
        scope: &Scope,
        size: &AtomicU32,
        settled: &AtomicBool,
        gather: &mut Gatherer<'_>,
    ) -> Result<Crawl, CrawlError> {
        let wanted = |d: u64| scope.departments.is_empty() || scope.departments.contains(&d);
        let mut crawl = Crawl::default();
        let mut seen: HashSet<u64> = starts.iter().copied().collect();
        let mut selected: HashSet<u64> = starts.iter().copied().filter(|d| wanted(*d)).collect();
        let mut to_walk: VecDeque<(u64, bool)> = starts.iter().map(|d| (*d, true)).collect();
        let mut to_list: VecDeque<u64> = starts.iter().copied().filter(|d| wanted(*d)).collect();
        let mut tasks: FuturesUnordered<BoxFuture<'_, Result<Found, CrawlError>>> =
            FuturesUnordered::new();
        let (mut walking, mut listing) = (0usize, 0usize);
        loop {
            while walking < self.departments_in_flight {
                let Some((id, start)) = to_walk.pop_front() else {
                    break;
                };
                walking += 1;
                tasks.push(Box::pin(async move {
                    let children = self
                        .subdepartments(id, start)
                        .await
                        .map_err(CrawlError::Walk)?;
                    Ok(Found::Children { id, children })
                }));
            }
            let users_in_flight = if settled.load(Ordering::SeqCst) {
                self.user_pages_in_flight
            } else {
                1
            };
            while listing < users_in_flight {
                let Some(id) = to_list.pop_front() else {
                    break;
                };
                listing += 1;
                tasks.push(Box::pin(async move {
                    let users = self
                        .department_users(id, scope, size, settled)
                        .await
                        .map_err(CrawlError::Users)?;
                    Ok(Found::Users { id, users })
                }));
            }
            let Some(found) = tasks.next().await else {
                break;
            };
            match found? {
                Found::Children { id, children } => {
                    walking -= 1;
                    for (child, name) in children.into_iter().flatten() {
                        gather.named(child, name);
                        crawl.children.entry(id).or_default().push(child);
                        if selected.contains(&id) || wanted(child) {
                            selected.insert(child);
                        }
                        if seen.insert(child) {
                            to_walk.push_back((child, false));
                            if selected.contains(&child) {
                                to_list.push_back(child);
                            }
                        }
                    }
                }
                Found::Users { id, users } => {
                    listing -= 1;
                    crawl.listed.insert(id);
                    gather.listed(users);
                }
            }
            gather.flush();
            if gather.is_abandoned() {
                break;
            }
        }
        Ok(crawl)
    }

    /// Everyone in the selected departments, each once, handed to `tx` (when
    /// given) as they become complete; returns them in that order. The directory
    /// holds everyone listed afterwards.
    async fn gather(
        &self,
        scope: &Scope,
        tx: Option<&tokio::sync::mpsc::Sender<Vec<String>>>,
    ) -> Result<UserIds, SourceError> {
        self.walked.store(true, Ordering::SeqCst);
        let mut gather = Gatherer::new(&self.directory, &scope.userids, tx);
        // Walk from the root so every department has its name, then keep the
        // configured subtrees. If the root is outside the app's scope, walk
        // from the configured departments (whose own names stay unknown).
        let size = AtomicU32::new(PAGE_SIZE);
        let settled = AtomicBool::new(false);
        let (size, settled) = (&size, &settled);
        let root = [ROOT_DEPARTMENT];
        let crawled = match self.crawl(&root, scope, size, settled, &mut gather).await {
            Err(CrawlError::Walk(Failure::Api(f)))
                if f.code == dingtalk_code::OUT_OF_SCOPE && !scope.departments.is_empty() =>
            {
                tracing::info!(
                    "the DingTalk root department is outside the app's scope; walking from the configured departments"
                );
                self.crawl(&scope.departments, scope, size, settled, &mut gather)
                    .await
            }
            other => other,
        };
        let crawl = crawled.map_err(|e| match e {
            CrawlError::Walk(e) => self.error(LISTSUB, e),
            CrawlError::Users(e) => e,
        })?;
        if gather.is_abandoned() {
            return Ok(gather.finish().await.0);
        }
        for id in &scope.departments {
            if *id != ROOT_DEPARTMENT && !gather.is_named(*id) && !crawl.children.contains_key(id) {
                tracing::warn!(
                    department = id,
                    "configured DingTalk department not found under the root"
                );
            }
        }
        // Configured departments the walk did not reach are listed all the same
        // (a missing one stops the job, as any error on a configured department).
        let unreached: Vec<u64> = scope
            .departments
            .iter()
            .copied()
            .filter(|d| !crawl.listed.contains(d))
            .collect();
        if !unreached.is_empty() {
            let mut listed = futures::stream::iter(unreached)
                .map(|id| self.department_users(id, scope, size, settled))
                .buffered(self.user_pages_in_flight);
            while let Some(users) = listed.next().await {
                gather.listed(users?);
                gather.flush();
            }
        }
        let (all, missing) = gather.finish().await;
        if !missing.is_empty() {
            tracing::warn!(userids = ?missing, "configured userids not found in the DingTalk departments listed");
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
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
}
