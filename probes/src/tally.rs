//! The tables of versions and pods that `probe watch` and `probe load` report, bounded in number.
//!
//! A server chooses the names it answers with: a report keeps at most [`MAX_NAMES`] of them per
//! table, and counts every further one under [`OTHERS`], so that neither a long watch nor a long
//! load grows with them. (Each name's length is bounded where it is read:
//! [`crate::client::MAX_NAME_CHARS`].)

use std::collections::{btree_map, BTreeMap};

use serde::Serialize;

/// The most distinct versions (or pods) a table keeps; further ones are counted together under
/// [`OTHERS`].
pub const MAX_NAMES: usize = 64;

/// The name under which versions or pods beyond [`MAX_NAMES`] are counted.
pub const OTHERS: &str = "(others)";

/// Values by version or pod name, in name order: [`MAX_NAMES`] names, then [`OTHERS`].
/// Serialised as a plain map.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Tally<V> {
    table: BTreeMap<String, V>,
}

impl<V> Default for Tally<V> {
    fn default() -> Self {
        Tally {
            table: BTreeMap::new(),
        }
    }
}

impl<V> Tally<V> {
    /// The key under which `name` is tallied: itself while there is room or when it is already
    /// there, else [`OTHERS`].
    fn key<'a>(&self, name: &'a str) -> &'a str {
        if self.table.len() < MAX_NAMES || self.table.contains_key(name) {
            name
        } else {
            OTHERS
        }
    }

    /// Changes the value of `name` (of [`OTHERS`] when the table is full), made by `new` first
    /// if there is none yet.
    pub fn update(&mut self, name: &str, new: impl FnOnce() -> V, change: impl FnOnce(&mut V)) {
        let key = self.key(name);
        // Looked up by `&str` first: a name already there costs no allocation.
        match self.table.get_mut(key) {
            Some(value) => change(value),
            None => {
                let mut value = new();
                change(&mut value);
                self.table.insert(key.to_owned(), value);
            }
        }
    }

    /// Whether `name` has a row of its own (a name counted under [`OTHERS`] has none).
    pub fn contains(&self, name: &str) -> bool {
        self.table.contains_key(name)
    }

    /// The value of `name`'s own row.
    pub fn get(&self, name: &str) -> Option<&V> {
        self.table.get(name)
    }

    /// The rows, in name order.
    pub fn iter(&self) -> btree_map::Iter<'_, String, V> {
        self.table.iter()
    }

    /// The values, in name order.
    pub fn values(&self) -> btree_map::Values<'_, String, V> {
        self.table.values()
    }

    /// Whether no name was tallied.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// How many rows, [`OTHERS`] included.
    pub fn len(&self) -> usize {
        self.table.len()
    }
}

impl Tally<u64> {
    /// Counts `n` more for `name`.
    pub fn add(&mut self, name: &str, n: u64) {
        self.update(name, || 0, |count| *count += n);
    }

    /// Adds every count of `other` (a worker's, a second's) to this one, within this table's
    /// bound.
    pub fn merge(&mut self, other: &Tally<u64>) {
        for (name, n) in other {
            self.add(name, *n);
        }
    }
}

impl<'a, V> IntoIterator for &'a Tally<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = btree_map::Iter<'a, String, V>;

    fn into_iter(self) -> Self::IntoIter {
        self.table.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Tally<u64> {
        let mut tally = Tally::default();
        for i in 0..MAX_NAMES {
            tally.add(&format!("v{i}"), 1);
        }
        tally
    }

    #[test]
    fn counts_each_name_until_the_table_is_full() {
        let mut tally = Tally::default();
        tally.add("0.9", 1);
        tally.add("0.8", 2);
        tally.add("0.9", 1);
        let rows: Vec<(&str, u64)> = tally.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(rows, [("0.8", 2), ("0.9", 2)]);
        assert!(tally.contains("0.8") && !tally.contains(OTHERS));
    }

    #[test]
    fn names_beyond_the_bound_are_counted_under_others() {
        let mut tally = full();
        tally.add("late", 1);
        tally.add("later", 2);
        assert_eq!(tally.len(), MAX_NAMES + 1);
        assert!(!tally.contains("late") && !tally.contains("later"));
        assert_eq!(tally.get(OTHERS), Some(&3));
    }

    #[test]
    fn a_name_already_kept_keeps_its_row_when_the_table_is_full() {
        let mut tally = full();
        tally.add("late", 1);
        tally.add("v7", 5);
        assert_eq!(tally.get("v7"), Some(&6));
        assert_eq!(tally.get(OTHERS), Some(&1));
    }

    #[test]
    fn update_makes_the_value_once_and_changes_it_every_time() {
        let mut tally: Tally<Vec<u32>> = Tally::default();
        for i in 0..3 {
            tally.update("pod-a", Vec::new, |seen| seen.push(i));
        }
        assert_eq!(tally.get("pod-a"), Some(&vec![0, 1, 2]));
    }

    #[test]
    fn merging_keeps_the_bound_of_the_table_merged_into() {
        let mut total = full();
        let mut worker = Tally::default();
        worker.add("v1", 2);
        worker.add("new", 3);
        worker.add(OTHERS, 4);
        total.merge(&worker);
        assert_eq!(total.get("v1"), Some(&3));
        assert_eq!(total.get(OTHERS), Some(&7));
        assert_eq!(total.len(), MAX_NAMES + 1);
    }

    #[test]
    fn serialises_as_a_plain_map() {
        let mut tally = Tally::default();
        tally.add("0.9", 3);
        let json = serde_json::to_string(&tally).unwrap_or_default();
        assert_eq!(json, r#"{"0.9":3}"#);
    }
}
