//! The stage graph: edges from `inputs`, cycle detection, a deterministic
//! topological order, and the selections `run` offers (`--stages`, `--from`, `--until`).

use std::collections::{BTreeMap, BTreeSet};

use crate::pipeline_file::{InputRef, PipelineFile, PipelineFileError};

/// The DAG of a pipeline file's stages.
#[derive(Debug, Clone)]
pub struct Dag {
    order: Vec<String>,
    upstream: BTreeMap<String, BTreeSet<String>>,
    downstream: BTreeMap<String, BTreeSet<String>>,
}

impl Dag {
    /// Builds the graph; a cycle is an error naming its stages and the file and line.
    pub fn build(file: &PipelineFile) -> Result<Self, PipelineFileError> {
        let mut upstream: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut downstream: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for stage in &file.stages {
            upstream.entry(stage.name.clone()).or_default();
            downstream.entry(stage.name.clone()).or_default();
        }
        for stage in &file.stages {
            for input in &stage.inputs {
                if let InputRef::Stage { stage: up, .. } = input {
                    upstream.entry(stage.name.clone()).or_default().insert(up.clone());
                    downstream.entry(up.clone()).or_default().insert(stage.name.clone());
                }
            }
        }
        // Kahn's algorithm, taking ready stages in file order so the order is stable.
        let file_order: Vec<&str> = file.stages.iter().map(|s| s.name.as_str()).collect();
        let mut remaining: BTreeMap<&str, usize> = upstream.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        let mut order = Vec::new();
        while order.len() < file_order.len() {
            let Some(next) = file_order.iter().find(|s| remaining.get(**s) == Some(&0)) else {
                let cycle = find_cycle(&upstream, &remaining);
                let first = cycle.first().cloned().unwrap_or_default();
                return Err(file.error_at(
                    &first,
                    Some("inputs"),
                    format!("the stages form a cycle: {} -> {}", cycle.join(" -> "), first),
                ));
            };
            let next = next.to_string();
            remaining.remove(next.as_str());
            for down in &downstream[&next] {
                if let Some(n) = remaining.get_mut(down.as_str()) {
                    *n -= 1;
                }
            }
            order.push(next);
        }
        Ok(Dag {
            order,
            upstream,
            downstream,
        })
    }

    /// Every stage, upstream before downstream.
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The stages `stage` reads directly.
    pub fn upstream(&self, stage: &str) -> impl Iterator<Item = &String> {
        self.upstream.get(stage).into_iter().flatten()
    }

    /// The stages that read `stage` directly.
    pub fn downstream(&self, stage: &str) -> impl Iterator<Item = &String> {
        self.downstream.get(stage).into_iter().flatten()
    }

    /// `stages` and everything they depend on, transitively.
    pub fn with_ancestors(&self, stages: &BTreeSet<String>) -> BTreeSet<String> {
        self.closure(stages, &self.upstream)
    }

    /// `stages` and everything that depends on them, transitively.
    pub fn with_descendants(&self, stages: &BTreeSet<String>) -> BTreeSet<String> {
        self.closure(stages, &self.downstream)
    }

    /// The stages a run selects, in order: `--stages` (with ancestors unless
    /// `no_deps`), `--from` (and descendants), `--until` (and ancestors).
    pub fn select(
        &self,
        stages: &[String],
        from: Option<&str>,
        until: Option<&str>,
        no_deps: bool,
    ) -> Result<Vec<String>, String> {
        for name in stages.iter().map(String::as_str).chain(from).chain(until) {
            if !self.upstream.contains_key(name) {
                return Err(format!(
                    "no stage named `{name}` in the pipeline file (stages: {})",
                    self.order.join(", ")
                ));
            }
        }
        let mut selected: BTreeSet<String> = if stages.is_empty() {
            self.order.iter().cloned().collect()
        } else {
            let named: BTreeSet<String> = stages.iter().cloned().collect();
            if no_deps { named } else { self.with_ancestors(&named) }
        };
        if let Some(from) = from {
            let after = self.with_descendants(&BTreeSet::from([from.to_string()]));
            selected.retain(|s| after.contains(s));
        }
        if let Some(until) = until {
            let before = self.with_ancestors(&BTreeSet::from([until.to_string()]));
            selected.retain(|s| before.contains(s));
        }
        Ok(self.order.iter().filter(|s| selected.contains(*s)).cloned().collect())
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self, types: &BTreeMap<String, String>) -> String {
        let mut out = String::from("digraph llamaflow {\n  rankdir=LR;\n  node [shape=box];\n");
        for stage in &self.order {
            let t = types.get(stage).map(String::as_str).unwrap_or("");
            out.push_str(&format!("  \"{stage}\" [label=\"{stage}\\n({t})\"];\n"));
        }
        for stage in &self.order {
            for down in &self.downstream[stage] {
                out.push_str(&format!("  \"{stage}\" -> \"{down}\";\n"));
            }
        }
        out.push_str("}\n");
        out
    }

    fn closure(&self, start: &BTreeSet<String>, edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
        let mut seen = start.clone();
        let mut todo: Vec<String> = start.iter().cloned().collect();
        while let Some(s) = todo.pop() {
            for next in edges.get(&s).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    }
}

/// Walks upstream edges among the stages left by Kahn's algorithm until one repeats.
fn find_cycle(upstream: &BTreeMap<String, BTreeSet<String>>, remaining: &BTreeMap<&str, usize>) -> Vec<String> {
    let Some(start) = remaining.keys().next() else {
        return Vec::new();
    };
    let mut path: Vec<String> = vec![start.to_string()];
    loop {
        let last = path.last().cloned().unwrap_or_default();
        let Some(next) = upstream[&last].iter().find(|u| remaining.contains_key(u.as_str())) else {
            return path;
        };
        if let Some(pos) = path.iter().position(|p| p == next) {
            let mut cycle = path.split_off(pos);
            cycle.reverse();
            return cycle;
        }
        path.push(next.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn dag(text: &str) -> Result<Dag, PipelineFileError> {
        Dag::build(&PipelineFile::parse(Path::new("p.toml"), text)?)
    }

    const CHAIN: &str = "[output]\nroot=\"o\"\n[stages.b]\ntype=\"x\"\ninputs=[\"a\"]\n[stages.a]\ntype=\"x\"\ninputs=[\"d/*\"]\n[stages.c]\ntype=\"x\"\ninputs=[\"b\"]\n[stages.z]\ntype=\"x\"\n";

    #[test]
    fn orders_upstream_first() {
        let d = dag(CHAIN).unwrap();
        assert_eq!(d.order(), ["a", "b", "c", "z"]);
    }

    #[test]
    fn selection_adds_ancestors_unless_no_deps() {
        let d = dag(CHAIN).unwrap();
        assert_eq!(d.select(&["c".into()], None, None, false).unwrap(), ["a", "b", "c"]);
        assert_eq!(d.select(&["c".into()], None, None, true).unwrap(), ["c"]);
        assert_eq!(d.select(&[], Some("b"), None, false).unwrap(), ["b", "c"]);
        assert_eq!(d.select(&[], None, Some("b"), false).unwrap(), ["a", "b"]);
        assert_eq!(d.select(&[], Some("b"), Some("b"), false).unwrap(), ["b"]);
        assert!(
            d.select(&["nope".into()], None, None, false)
                .unwrap_err()
                .contains("no stage named `nope`")
        );
    }

    #[test]
    fn cycles_are_named_with_their_line() {
        let e = dag(
            "[output]\nroot=\"o\"\n[stages.a]\ntype=\"x\"\ninputs=[\"b\"]\n[stages.b]\ntype=\"x\"\ninputs=[\"a\"]\n",
        )
        .unwrap_err();
        assert!(
            e.message.contains("cycle: a -> b -> a") || e.message.contains("cycle: b -> a -> b"),
            "{e}"
        );
        assert!(e.line == 5 || e.line == 8, "{e}");
    }

    #[test]
    fn dot_lists_edges() {
        let d = dag(CHAIN).unwrap();
        let dot = d.to_dot(&BTreeMap::new());
        assert!(dot.contains("\"a\" -> \"b\""));
    }
}
