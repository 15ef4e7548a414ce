//! The DingTalk directory as it is walked: users become people (with the names of
//! all their departments) as soon as those names are known, so that pulling can
//! start while the walk goes on.
//!
//! `v2/user/list` gives a user's department ids; the names come from the
//! `listsub` answers of the parents, which may still be under way when the user
//! is listed. A user in one department is complete when listed (the department
//! was named before its users were asked for); a user in several waits until
//! each of them is named, or until the walk is over (some never are: the root,
//! and departments outside the app's scope).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc::{self, error::TrySendError};

use super::{lock, ROOT_DEPARTMENT};
use crate::roster::UserIds;

/// What the record needs about one employee, from `v2/user/list`.
#[derive(Debug, Clone)]
pub(super) struct Person {
    pub name: String,
    pub departments: Vec<String>,
    pub job_number: String,
    pub title: String,
}

/// One user as `v2/user/list` lists them.
#[derive(Debug, Clone)]
pub(super) struct Listed {
    pub userid: String,
    pub name: String,
    pub dept_ids: Vec<u64>,
    pub job_number: String,
    pub title: String,
}

/// The people found by one walk of the directory.
pub(super) type Directory = Mutex<HashMap<String, Arc<Person>>>;

/// A listed user whose departments are not all named yet.
struct Waiting {
    user: Listed,
    unnamed: usize,
}

/// Turns what the walk finds into people, in the order they become complete,
/// and hands the wanted ones' userids on (see the module doc).
pub(super) struct Gatherer<'a> {
    directory: &'a Directory,
    /// Only these userids are handed on; empty: everyone.
    wanted: HashSet<&'a str>,
    names: HashMap<u64, String>,
    waiting: Vec<Option<Waiting>>,
    /// Index into `waiting` of each userid there.
    waiting_ids: HashMap<String, usize>,
    /// Indexes into `waiting` of the users each unnamed department holds back.
    held_by: HashMap<u64, Vec<usize>>,
    /// Complete and wanted, not handed on yet.
    ready: Vec<String>,
    released: UserIds,
    tx: Option<&'a mpsc::Sender<Vec<String>>>,
    closed: bool,
}

impl<'a> Gatherer<'a> {
    /// Fills `directory` (emptied first); hands userids to `tx` when given.
    pub fn new(
        directory: &'a Directory,
        wanted: &'a [String],
        tx: Option<&'a mpsc::Sender<Vec<String>>>,
    ) -> Self {
        lock(directory).clear();
        Gatherer {
            directory,
            wanted: wanted.iter().map(String::as_str).collect(),
            names: HashMap::new(),
            waiting: Vec::new(),
            waiting_ids: HashMap::new(),
            held_by: HashMap::new(),
            ready: Vec::new(),
            released: UserIds::new(),
            tx,
            closed: false,
        }
    }

    pub fn is_named(&self, dept: u64) -> bool {
        self.names.contains_key(&dept)
    }

    /// True once the receiver of the userids has gone: nobody needs the rest.
    pub fn is_abandoned(&self) -> bool {
        self.closed
    }

    /// A department's name, from its parent's `listsub`.
    pub fn named(&mut self, dept: u64, name: String) {
        self.names.insert(dept, name);
        for i in self.held_by.remove(&dept).into_iter().flatten() {
            let done = match self.waiting.get_mut(i) {
                Some(Some(w)) => {
                    w.unnamed = w.unnamed.saturating_sub(1);
                    w.unnamed == 0
                }
                _ => false,
            };
            if done {
                self.complete_waiting(i);
            }
        }
    }

    /// Users one department's pages listed; a user already found is skipped.
    pub fn listed(&mut self, users: Vec<Listed>) {
        for user in users {
            if self.waiting_ids.contains_key(&user.userid)
                || lock(self.directory).contains_key(&user.userid)
            {
                continue;
            }
            let mut unnamed: Vec<u64> = user
                .dept_ids
                .iter()
                .copied()
                .filter(|d| *d != ROOT_DEPARTMENT && !self.names.contains_key(d))
                .collect();
            unnamed.sort_unstable();
            unnamed.dedup();
            if unnamed.is_empty() {
                self.complete(user);
                continue;
            }
            let i = self.waiting.len();
            for d in &unnamed {
                self.held_by.entry(*d).or_default().push(i);
            }
            self.waiting_ids.insert(user.userid.clone(), i);
            self.waiting.push(Some(Waiting {
                user,
                unnamed: unnamed.len(),
            }));
        }
    }

    fn complete_waiting(&mut self, i: usize) {
        if let Some(w) = self.waiting.get_mut(i).and_then(Option::take) {
            self.waiting_ids.remove(&w.user.userid);
            self.complete(w.user);
        }
    }

    fn complete(&mut self, user: Listed) {
        let departments = user
            .dept_ids
            .iter()
            .filter_map(|d| self.names.get(d))
            .filter(|n| !n.is_empty())
            .cloned()
            .collect();
        let person = Person {
            name: user.name,
            departments,
            job_number: user.job_number,
            title: user.title,
        };
        let wanted = self.wanted.is_empty() || self.wanted.contains(user.userid.as_str());
        if wanted && self.released.insert(&user.userid) {
            self.ready.push(user.userid.clone());
        }
        lock(self.directory).insert(user.userid, Arc::new(person));
    }

    /// Hands on what is ready without waiting: the walk never waits for the
    /// pull (what the receiver cannot take yet goes with a later flush).
    pub fn flush(&mut self) {
        let (Some(tx), false) = (self.tx, self.ready.is_empty()) else {
            return;
        };
        match tx.try_send(std::mem::take(&mut self.ready)) {
            Ok(()) => {}
            Err(TrySendError::Full(back)) => self.ready = back,
            Err(TrySendError::Closed(_)) => self.closed = true,
        }
    }

    /// The walk is over: users still waiting keep the department names found,
    /// wanted userids never listed are added at the end (a pull reports them
    /// absent), and the rest is handed on. Returns every userid handed on.
    pub async fn finish(mut self) -> (UserIds, Vec<String>) {
        for i in 0..self.waiting.len() {
            self.complete_waiting(i);
        }
        let mut wanted: Vec<&str> = self.wanted.iter().copied().collect();
        wanted.sort_unstable();
        let mut missing = Vec::new();
        for id in wanted {
            if self.released.insert(id) {
                missing.push(id.to_owned());
                self.ready.push(id.to_owned());
            }
        }
        if let (Some(tx), false) = (self.tx, self.ready.is_empty()) {
            let _ = tx.send(std::mem::take(&mut self.ready)).await;
        }
        (self.released, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, depts: &[u64]) -> Listed {
        Listed {
            userid: id.into(),
            name: format!("name of {id}"),
            dept_ids: depts.to_vec(),
            job_number: String::new(),
            title: String::new(),
        }
    }

    fn departments(d: &Directory, id: &str) -> Vec<String> {
        lock(d)
            .get(id)
            .map(|p| p.departments.clone())
            .unwrap_or_default()
    }

    fn received(rx: &mut mpsc::Receiver<Vec<String>>) -> Vec<String> {
        let mut all = Vec::new();
        while let Ok(batch) = rx.try_recv() {
            all.extend(batch);
        }
        all
    }

    #[tokio::test]
    async fn a_user_is_handed_on_once_all_departments_are_named() {
        let directory = Directory::default();
        let (tx, mut rx) = mpsc::channel(16);
        let mut g = Gatherer::new(&directory, &[], Some(&tx));
        g.named(2, "Sales".into());
        g.listed(vec![user("a", &[2]), user("b", &[2, 3]), user("r", &[1])]);
        g.flush();
        // "b" is also in department 3, whose name is not known yet.
        assert_eq!(received(&mut rx), ["a", "r"]);
        assert!(
            departments(&directory, "r").is_empty(),
            "the root has no name"
        );
        g.named(3, "Support".into());
        g.flush();
        assert_eq!(received(&mut rx), ["b"]);
        assert_eq!(departments(&directory, "b"), ["Sales", "Support"]);
        let (all, missing) = g.finish().await;
        assert_eq!(all.iter().collect::<Vec<_>>(), ["a", "r", "b"]);
        assert!(missing.is_empty());
    }

    #[tokio::test]
    async fn the_end_of_the_walk_completes_users_whose_departments_stay_unnamed() {
        let directory = Directory::default();
        let (tx, mut rx) = mpsc::channel(16);
        let mut g = Gatherer::new(&directory, &[], Some(&tx));
        g.named(2, "Sales".into());
        g.listed(vec![user("x", &[2, 99])]);
        g.flush();
        assert!(received(&mut rx).is_empty());
        let (all, _) = g.finish().await;
        assert_eq!(received(&mut rx), ["x"]);
        assert_eq!(all.len(), 1);
        assert_eq!(departments(&directory, "x"), ["Sales"]);
    }

    #[tokio::test]
    async fn a_user_in_two_departments_is_handed_on_once() {
        let directory = Directory::default();
        let (tx, mut rx) = mpsc::channel(16);
        let mut g = Gatherer::new(&directory, &[], Some(&tx));
        g.named(2, "A".into());
        g.named(3, "B".into());
        g.listed(vec![user("u", &[2, 3])]);
        g.listed(vec![user("u", &[2, 3]), user("v", &[3])]);
        g.flush();
        assert_eq!(received(&mut rx), ["u", "v"]);
        // Waiting users are not taken twice either.
        g.listed(vec![user("w", &[4])]);
        g.listed(vec![user("w", &[4])]);
        g.named(4, "C".into());
        g.flush();
        assert_eq!(received(&mut rx), ["w"]);
    }

    #[tokio::test]
    async fn configured_userids_only_and_the_missing_ones_at_the_end() {
        let directory = Directory::default();
        let (tx, mut rx) = mpsc::channel(16);
        let wanted = vec!["b".to_string(), "ghost".to_string()];
        let mut g = Gatherer::new(&directory, &wanted, Some(&tx));
        g.named(2, "A".into());
        g.listed(vec![user("a", &[2]), user("b", &[2])]);
        g.flush();
        assert_eq!(received(&mut rx), ["b"]);
        assert!(
            lock(&directory).contains_key("a"),
            "everyone is in the directory"
        );
        let (all, missing) = g.finish().await;
        assert_eq!(received(&mut rx), ["ghost"]);
        assert_eq!(missing, ["ghost"]);
        assert_eq!(all.len(), 2);
    }

    #[tokio::test]
    async fn a_full_channel_never_blocks_the_walk_and_a_closed_one_abandons_it() {
        let directory = Directory::default();
        let (tx, mut rx) = mpsc::channel(1);
        let mut g = Gatherer::new(&directory, &[], Some(&tx));
        g.named(2, "A".into());
        g.listed(vec![user("a", &[2])]);
        g.flush();
        g.listed(vec![user("b", &[2])]);
        g.flush(); // full: kept for later
        assert_eq!(received(&mut rx), ["a"]);
        g.listed(vec![user("c", &[2])]);
        g.flush();
        assert_eq!(received(&mut rx), ["b", "c"]);
        drop(rx);
        g.listed(vec![user("d", &[2])]);
        g.flush();
        assert!(g.is_abandoned());
    }
}
