//! Deterministic sampling: a document's place in [0, 1) is a hash of its id
//! and a seed, so a sample is the same on every run, machine and `--jobs`.

use std::collections::BinaryHeap;

/// A document's place in [0, 1) for sampling: a hash of its id and the seed.
pub fn sample_point(id: &str, seed: u64) -> f64 {
    (xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), seed) >> 11) as f64 / (1u64 << 53) as f64
}

/// The `k` items of smallest sample point seen, whatever order they come in.
#[derive(Debug)]
pub struct BottomK<T> {
    k: usize,
    heap: BinaryHeap<Entry<T>>,
}

#[derive(Debug)]
struct Entry<T> {
    key: (u64, u64),
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl<T> BottomK<T> {
    /// Keeps at most `k` items.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::new(),
        }
    }

    /// The key an id gets: its hash under `seed`, then a second hash to break ties.
    pub fn key(id: &str, seed: u64) -> (u64, u64) {
        (
            xxhash_rust::xxh3::xxh3_64_with_seed(id.as_bytes(), seed),
            xxhash_rust::xxh3::xxh3_64(id.as_bytes()),
        )
    }

    /// Whether an item of `key` would be kept now (call before doing the work of making it).
    pub fn admits(&self, key: (u64, u64)) -> bool {
        self.heap.len() < self.k || self.heap.peek().is_some_and(|top| key < top.key)
    }

    /// Offers an item; it stays if it is among the `k` smallest so far.
    pub fn offer(&mut self, key: (u64, u64), item: T) {
        if !self.admits(key) {
            return;
        }
        self.heap.push(Entry { key, item });
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    /// Items kept so far.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The kept items, smallest key first.
    pub fn into_sorted(self) -> Vec<T> {
        self.heap.into_sorted_vec().into_iter().map(|e| e.item).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_points_are_uniform_and_seeded() {
        let n = 20_000;
        let below = (0..n).filter(|i| sample_point(&format!("doc/{i}"), 0) < 0.25).count();
        assert!((below as f64 / n as f64 - 0.25).abs() < 0.02, "{below}");
        assert_ne!(sample_point("a", 0), sample_point("a", 1));
    }

    #[test]
    fn bottom_k_does_not_depend_on_arrival_order() {
        let ids: Vec<String> = (0..500).map(|i| format!("doc/{i}")).collect();
        let pick = |ids: &mut dyn Iterator<Item = &String>| {
            let mut b = BottomK::new(10);
            for id in ids {
                b.offer(BottomK::<String>::key(id, 7), id.clone());
            }
            b.into_sorted()
        };
        let forward = pick(&mut ids.iter());
        assert_eq!(forward.len(), 10);
        assert_eq!(forward, pick(&mut ids.iter().rev()));
    }
}
