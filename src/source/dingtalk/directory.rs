//! The directory walk: departments with `listsub`, their users with
//! `v2/user/list`, several calls of each under way at once; people are handed
//! on as they become complete (see `people.rs`).

use std::collections::{HashSet, VecDeque};
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
    /// Departments whose own `listsub` answered.
    walked: HashSet<u64>,
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
        let mut seen: HashSet<u64> = HashSet::new();
        // A department configured twice is walked and listed once.
        let starts: Vec<u64> = starts.iter().copied().filter(|d| seen.insert(*d)).collect();
        let mut to_walk: VecDeque<(u64, bool)> = starts.iter().map(|d| (*d, true)).collect();
        let mut to_list: VecDeque<u64> = starts.iter().copied().filter(|d| wanted(*d)).collect();
        let mut selected: HashSet<u64> = to_list.iter().copied().collect();
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
                    if children.is_some() {
                        crawl.walked.insert(id);
                    }
                    for (child, name) in children.into_iter().flatten() {
                        gather.named(child, name);
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
            if *id != ROOT_DEPARTMENT && !gather.is_named(*id) && !crawl.walked.contains(id) {
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
mod tests;
