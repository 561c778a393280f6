//! Clusters of near-duplicates: connected components of the verified
//! candidate pairs, each keeping one document, the first by the stable order
//! (source priority, source, id).
//!
//! Only documents that appear in a verified pair are held (a union-find over
//! them), so memory follows the number of near-duplicates, not the corpus.

use std::collections::HashMap;

/// Where a document stands in keep-first order: lower is kept first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderKey {
    /// The source's rank in the priority list.
    pub rank: i64,
    /// The source's name (orders sources outside the list).
    pub source: String,
    /// The document id.
    pub id: String,
}

/// A document dropped as a near-duplicate.
#[derive(Debug, Clone, PartialEq)]
pub struct NearRemoval {
    /// The dropped document.
    pub id: String,
    /// The document its cluster keeps.
    pub kept_id: String,
    /// The highest estimated Jaccard similarity of the pairs that joined it to the cluster.
    pub similarity: f64,
}

/// A union-find over the documents of verified pairs.
#[derive(Debug, Default)]
pub struct Clusters {
    index: HashMap<String, usize>,
    keys: Vec<OrderKey>,
    parent: Vec<usize>,
    best_similarity: Vec<f64>,
}

impl Clusters {
    /// Records that `a` and `b` are near-duplicates with estimated Jaccard `similarity`.
    pub fn join(&mut self, a: OrderKey, b: OrderKey, similarity: f64) {
        let a = self.node(a, similarity);
        let b = self.node(b, similarity);
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            // The root is always the cluster's keeper: the lesser key wins.
            if self.keys[ra] <= self.keys[rb] {
                self.parent[rb] = ra;
            } else {
                self.parent[ra] = rb;
            }
        }
    }

    /// Every document but its cluster's keeper, sorted by id.
    pub fn removals(mut self) -> Vec<NearRemoval> {
        let mut out = Vec::new();
        for node in 0..self.keys.len() {
            let root = self.root(node);
            if root != node {
                out.push(NearRemoval {
                    id: self.keys[node].id.clone(),
                    kept_id: self.keys[root].id.clone(),
                    similarity: self.best_similarity[node],
                });
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn node(&mut self, key: OrderKey, similarity: f64) -> usize {
        let node = match self.index.get(&key.id) {
            Some(&node) => node,
            None => {
                let node = self.keys.len();
                self.index.insert(key.id.clone(), node);
                self.keys.push(key);
                self.parent.push(node);
                self.best_similarity.push(similarity);
                node
            }
        };
        if similarity > self.best_similarity[node] {
            self.best_similarity[node] = similarity;
        }
        node
    }

    fn root(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            // Path halving keeps the trees flat.
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rank: i64, id: &str) -> OrderKey {
        OrderKey {
            rank,
            source: "s".into(),
            id: id.into(),
        }
    }

    #[test]
    fn chains_form_one_cluster_kept_by_the_first_in_order() {
        let mut clusters = Clusters::default();
        clusters.join(key(2, "c"), key(2, "d"), 0.8);
        clusters.join(key(1, "z"), key(2, "c"), 0.9);
        clusters.join(key(3, "x"), key(3, "y"), 0.75);
        let removals = clusters.removals();
        let pairs: Vec<(&str, &str)> = removals.iter().map(|r| (r.id.as_str(), r.kept_id.as_str())).collect();
        // Rank 1 beats the lower ids of rank 2; within a rank the lower id stays.
        assert_eq!(pairs, vec![("c", "z"), ("d", "z"), ("y", "x")]);
        assert_eq!(removals[0].similarity, 0.9);
        assert_eq!(removals[1].similarity, 0.8);
    }

    #[test]
    fn the_keeper_does_not_depend_on_the_order_pairs_arrive_in() {
        let edges = [("a", "b"), ("b", "c"), ("c", "d"), ("e", "d")];
        let mut forward = Clusters::default();
        let mut backward = Clusters::default();
        for (x, y) in edges {
            forward.join(key(0, x), key(0, y), 1.0);
        }
        for (x, y) in edges.iter().rev() {
            backward.join(key(0, y), key(0, x), 1.0);
        }
        assert_eq!(forward.removals(), backward.removals());
    }
}
