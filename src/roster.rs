//! The employees of one run, held compactly.
//!
//! A 200,000-person organisation is listed once per run and kept for the run's
//! later months. As `String`s in a `Vec` plus a `HashSet` to de-duplicate people in
//! two departments, that cost ~120 bytes per employee; here it is the userids'
//! bytes, a 4-byte end offset and a ~5-byte hash-table slot.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// A set of userids in the order they were first inserted.
#[derive(Default)]
pub struct UserIds {
    /// Every userid, back to back.
    text: String,
    /// Where each userid ends in `text`.
    ends: Vec<u32>,
    /// Indexes into `ends`, hashed by their userid.
    index: HashTable<u32>,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for UserIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIds").field("len", &self.len()).finish()
    }
}

impl UserIds {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The `i`-th userid inserted.
    pub fn get(&self, i: usize) -> Option<&str> {
        nth(&self.text, &self.ends, i)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.holds(self.hasher.hash_one(id), id)
    }

    fn holds(&self, hash: u64, id: &str) -> bool {
        self.index
            .find(hash, |&i| self.get(i as usize) == Some(id))
            .is_some()
    }

    /// Adds `id` unless it is already there; true when it was added. Userids
    /// beyond 4 GiB of text in all are refused (false), never silently mixed up.
    pub fn insert(&mut self, id: &str) -> bool {
        let hash = self.hasher.hash_one(id);
        if self.holds(hash, id) {
            return false;
        }
        let (Ok(end), Ok(position)) = (
            u32::try_from(self.text.len() + id.len()),
            u32::try_from(self.ends.len()),
        ) else {
            return false;
        };
        self.text.push_str(id);
        self.ends.push(end);
        // The table may grow and rehash: it needs each entry's userid again, which
        // the buffer (borrowed apart from the table) gives.
        let (text, ends, hasher) = (&self.text, &self.ends, &self.hasher);
        self.index.insert_unique(hash, position, |&i| {
            hasher.hash_one(nth(text, ends, i as usize).unwrap_or_default())
        });
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// The userids from `start` (inclusive) to `end` (exclusive), as owned strings
    /// for one pull.
    pub fn slice(&self, start: usize, end: usize) -> Vec<String> {
        (start..end.min(self.len()))
            .filter_map(|i| self.get(i).map(str::to_string))
            .collect()
    }
}

/// The `i`-th userid of a buffer and its end offsets.
fn nth<'a>(text: &'a str, ends: &[u32], i: usize) -> Option<&'a str> {
    let end = *ends.get(i)? as usize;
    let start = match i.checked_sub(1) {
        Some(before) => ends[before] as usize,
        None => 0,
    };
    text.get(start..end)
}

impl<S: AsRef<str>> FromIterator<S> for UserIds {
    fn from_iter<I: IntoIterator<Item = S>>(items: I) -> Self {
        let mut ids = UserIds::new();
        for id in items {
            ids.insert(id.as_ref());
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keeps_first_insertion_order_and_drops_repeats() {
        let mut ids = UserIds::new();
        assert!(ids.insert("ZhangSan"));
        assert!(ids.insert("李四"));
        assert!(!ids.insert("ZhangSan"));
        assert!(ids.insert(""));
        assert!(ids.insert("wang"));
        assert_eq!(ids.len(), 4);
        assert_eq!(
            ids.iter().collect::<Vec<_>>(),
            ["ZhangSan", "李四", "", "wang"]
        );
        assert!(ids.contains("李四") && ids.contains("") && !ids.contains("Zhang"));
        assert_eq!(ids.slice(1, 3), ["李四", ""]);
        assert_eq!(ids.slice(3, 99), ["wang"]);
        assert_eq!(ids.get(4), None);
    }

    proptest! {
        #[test]
        fn behaves_like_a_vec_with_a_seen_set(items in proptest::collection::vec("[a-c]{0,3}", 0..200)) {
            let ids: UserIds = items.iter().collect();
            let mut seen = std::collections::HashSet::new();
            let expected: Vec<&str> = items.iter().map(String::as_str).filter(|s| seen.insert(*s)).collect();
            prop_assert_eq!(ids.iter().collect::<Vec<_>>(), expected.clone());
            prop_assert_eq!(ids.len(), expected.len());
            for s in &items {
                prop_assert!(ids.contains(s));
            }
        }
    }
}
