//! The in-memory schedule of one consumer: per ordering key (conversation), the owed events in
//! `seq` order; only the head of each key may be in flight, which is what keeps each
//! conversation's events in order while different conversations proceed concurrently.
//!
//! Pure data structure: no I/O, no clock (callers pass `now`).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use crate::store::webhooks::Delivery;

pub struct Item {
    pub delivery: Delivery,
    /// The envelope, kept for fresh events so the first attempt needs no read.
    pub body: Option<Arc<String>>,
}

#[derive(Default)]
pub struct Schedule {
    keys: HashMap<String, BTreeMap<u64, Item>>,
    /// Candidate heads by due time; stale entries are skipped when popped.
    heap: BinaryHeap<Reverse<(i64, u64, String)>>,
    in_flight: HashSet<String>,
    len: usize,
}

impl Schedule {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub fn contains(&self, key: &str, seq: u64) -> bool {
        self.keys.get(key).is_some_and(|q| q.contains_key(&seq))
    }

    /// Lowest owed `seq`, if any.
    pub fn min_seq(&self) -> Option<u64> {
        self.keys.values().filter_map(|q| q.keys().next().copied()).min()
    }

    pub fn push(&mut self, delivery: Delivery, body: Option<Arc<String>>) {
        let key = delivery.ordering_key.clone();
        let seq = delivery.seq;
        let queue = self.keys.entry(key.clone()).or_default();
        if queue.insert(seq, Item { delivery, body }).is_none() {
            self.len += 1;
        }
        if queue.keys().next() == Some(&seq) && !self.in_flight.contains(&key) {
            self.push_head(&key);
        }
    }

    fn push_head(&mut self, key: &str) {
        if let Some((seq, item)) = self.keys.get(key).and_then(|q| q.iter().next()) {
            self.heap.push(Reverse((item.delivery.next_attempt_at, *seq, key.to_owned())));
        }
    }

    /// The due time of the earliest head that may be sent.
    pub fn next_due(&mut self) -> Option<i64> {
        while let Some(Reverse((due, seq, key))) = self.heap.peek().cloned() {
            if self.is_current_head(&key, seq, due) {
                return Some(due);
            }
            self.heap.pop();
        }
        None
    }

    fn is_current_head(&self, key: &str, seq: u64, due: i64) -> bool {
        !self.in_flight.contains(key)
            && self
                .keys
                .get(key)
                .and_then(|q| q.iter().next())
                .is_some_and(|(s, item)| *s == seq && item.delivery.next_attempt_at == due)
    }

    /// Takes the next head due at `now` and marks its key in flight.
    pub fn take_due(&mut self, now: i64) -> Option<(Delivery, Option<Arc<String>>)> {
        let due = self.next_due()?;
        if due > now {
            return None;
        }
        let Reverse((_, seq, key)) = self.heap.pop()?;
        self.in_flight.insert(key.clone());
        let item = self.keys.get_mut(&key)?.get_mut(&seq)?;
        Some((item.delivery.clone(), item.body.clone()))
    }

    /// The head of `key` is done (delivered or dead): drop it and let the next one go.
    pub fn complete(&mut self, key: &str, seq: u64) -> Option<Item> {
        self.in_flight.remove(key);
        let queue = self.keys.get_mut(key)?;
        let item = queue.remove(&seq);
        if item.is_some() {
            self.len -= 1;
        }
        if queue.is_empty() {
            self.keys.remove(key);
        } else {
            self.push_head(key);
        }
        item
    }

    /// The head of `key` failed: keep it first, due again at `next_attempt_at`. Its body is
    /// dropped (a retry reads it back) so a long outage does not hold every body in memory.
    pub fn reschedule(&mut self, key: &str, seq: u64, attempts: u32, next_attempt_at: i64, error: String) {
        self.in_flight.remove(key);
        if let Some(item) = self.keys.get_mut(key).and_then(|q| q.get_mut(&seq)) {
            item.delivery.attempts = attempts;
            item.delivery.next_attempt_at = next_attempt_at;
            item.delivery.last_error = Some(error);
            item.body = None;
        }
        self.push_head(key);
    }

    /// Rebuilds the heap from every head (after a consumer is re-enabled).
    pub fn reset_heads(&mut self) {
        self.heap.clear();
        let keys: Vec<String> = self.keys.keys().filter(|k| !self.in_flight.contains(*k)).cloned().collect();
        for key in keys {
            self.push_head(&key);
        }
    }

    /// Makes every waiting head due at `now` (a consumer's URL changed: the wait may have been
    /// for the old one).
    pub fn heads_due_now(&mut self, now: i64) {
        for (key, queue) in &mut self.keys {
            if let Some(item) = queue.values_mut().next().filter(|_| !self.in_flight.contains(key)) {
                item.delivery.next_attempt_at = item.delivery.next_attempt_at.min(now);
            }
        }
        self.reset_heads();
    }

    pub fn release(&mut self, key: &str) {
        self.in_flight.remove(key);
        self.push_head(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(seq: u64, key: &str, due: i64) -> Delivery {
        Delivery {
            seq,
            event_id: format!("evt_{seq}"),
            ordering_key: key.into(),
            created_at: 0,
            attempts: 0,
            next_attempt_at: due,
            last_error: None,
            dead: false,
        }
    }

    #[test]
    fn one_in_flight_per_key_in_seq_order() {
        let mut s = Schedule::default();
        s.push(d(1, "a", 0), None);
        s.push(d(2, "a", 0), None);
        s.push(d(3, "b", 0), None);
        let (first, _) = s.take_due(0).unwrap();
        let (second, _) = s.take_due(0).unwrap();
        assert_eq!((first.seq, second.seq), (1, 3));
        assert!(s.take_due(0).is_none(), "seq 2 waits for seq 1");
        s.complete("a", 1);
        assert_eq!(s.take_due(0).unwrap().0.seq, 2);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_failed_head_blocks_only_its_key() {
        let mut s = Schedule::default();
        s.push(d(1, "a", 0), None);
        s.push(d(2, "a", 0), None);
        s.push(d(3, "b", 0), None);
        s.take_due(0);
        s.reschedule("a", 1, 1, 100, "HTTP 500".into());
        assert_eq!(s.take_due(0).unwrap().0.seq, 3);
        assert!(s.take_due(50).is_none());
        assert_eq!(s.next_due(), Some(100));
        let (again, _) = s.take_due(100).unwrap();
        assert_eq!((again.seq, again.attempts), (1, 1));
    }

    #[test]
    fn min_seq_and_reset() {
        let mut s = Schedule::default();
        assert_eq!(s.min_seq(), None);
        s.push(d(7, "a", 5), None);
        s.push(d(4, "b", 5), None);
        assert_eq!(s.min_seq(), Some(4));
        s.reset_heads();
        assert_eq!(s.next_due(), Some(5));
    }
}
