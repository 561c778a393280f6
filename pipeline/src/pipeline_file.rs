//! The pipeline file: one TOML file naming the output root, the stages (their
//! `type`, `inputs` and parameters) and the mixture. Every error names the
//! file, the line and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// An error in a pipeline file, located by file, line and key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
pub struct PipelineFileError {
    /// The pipeline file.
    pub file: String,
    /// 1-based line of the offending key (1 when unknown).
    pub line: usize,
    /// The dotted key, e.g. `stages.c4.inptus`.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// One entry of a stage's `inputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRef {
    /// Another stage's main output (`"c4"`) or named output (`"wikipedia.refs"`).
    Stage {
        /// The upstream stage.
        stage: String,
        /// The named secondary output, if any.
        output: Option<String>,
    },
    /// Files: a URL, a path or glob relative to the pipeline file, or a listing file.
    Location(String),
}

impl std::fmt::Display for InputRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputRef::Stage { stage, output: None } => write!(f, "{stage}"),
            InputRef::Stage { stage, output: Some(o) } => write!(f, "{stage}.{o}"),
            InputRef::Location(l) => write!(f, "{l}"),
        }
    }
}

/// A stage as declared in the pipeline file, before its type parses its parameters.
#[derive(Debug, Clone)]
pub struct StageDecl {
    /// The stage's name (the `[stages.NAME]` key).
    pub name: String,
    /// Its `type`.
    pub type_name: String,
    /// Its `inputs`, in order.
    pub inputs: Vec<InputRef>,
    /// Every other key: the stage type's own parameters.
    pub params: toml::Table,
    /// Line of the `[stages.NAME]` header.
    pub line: usize,
    /// The pipeline's `[mixture]` proportions, for stages that sample by them.
    pub mixture: BTreeMap<String, f64>,
}

/// A parsed pipeline file.
#[derive(Debug, Clone)]
pub struct PipelineFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The directory relative inputs and the output root resolve against.
    pub base_dir: PathBuf,
    /// `[output] root`, as written.
    pub output_root: String,
    /// The stages, in file order.
    pub stages: Vec<StageDecl>,
    /// `[mixture]`: sampling proportion per source (the paper's Table 1).
    pub mixture: BTreeMap<String, f64>,
    spans: SpanIndex,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    output: RawOutput,
    #[serde(default)]
    mixture: BTreeMap<String, f64>,
    #[serde(default)]
    stages: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    root: String,
}

impl PipelineFile {
    /// Reads and parses a pipeline file from disk.
    pub fn load(path: &Path) -> Result<Self, PipelineFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| PipelineFileError {
            file: path.display().to_string(),
            line: 1,
            key: None,
            message: format!("cannot read the pipeline file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses pipeline-file `text` that was read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, PipelineFileError> {
        let file = path.display().to_string();
        let err = |line: usize, key: Option<String>, message: String| PipelineFileError {
            file: file.clone(),
            line,
            key,
            message,
        };
        let spans = SpanIndex::parse(text).map_err(|(line, msg)| err(line, None, msg))?;
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |s| spans.line_of_offset(s.start));
            let key = unknown_field(e.message()).map(|k| spans.qualify_unknown(&k, e.span()));
            err(line, key, e.message().trim().to_string())
        })?;

        let mut stages = Vec::new();
        for (name, value) in raw.stages {
            let key = |k: &str| format!("stages.{name}.{k}");
            let line = spans.line_of(&["stages", &name]);
            if !is_valid_name(&name) {
                return Err(err(
                    line,
                    Some(format!("stages.{name}")),
                    "stage names are lowercase letters, digits and `_`".into(),
                ));
            }
            let toml::Value::Table(mut table) = value else {
                return Err(err(
                    line,
                    Some(format!("stages.{name}")),
                    "a stage must be a table `[stages.NAME]`".into(),
                ));
            };
            let type_name = match table.remove("type") {
                Some(toml::Value::String(t)) => t,
                Some(_) => {
                    return Err(err(
                        spans.line_of(&["stages", &name, "type"]),
                        Some(key("type")),
                        "`type` must be a string".into(),
                    ));
                }
                None => return Err(err(line, Some(format!("stages.{name}")), "missing `type`".into())),
            };
            let inputs = match table.remove("inputs") {
                None => Vec::new(),
                Some(toml::Value::Array(items)) => {
                    let mut inputs = Vec::new();
                    for item in items {
                        let toml::Value::String(s) = item else {
                            return Err(err(
                                spans.line_of(&["stages", &name, "inputs"]),
                                Some(key("inputs")),
                                "inputs must be strings".into(),
                            ));
                        };
                        inputs.push(classify_input(&s));
                    }
                    inputs
                }
                Some(_) => {
                    return Err(err(
                        spans.line_of(&["stages", &name, "inputs"]),
                        Some(key("inputs")),
                        "`inputs` must be an array of strings".into(),
                    ));
                }
            };
            stages.push(StageDecl {
                name,
                type_name,
                inputs,
                params: table,
                line,
                mixture: BTreeMap::new(),
            });
        }
        stages.sort_by_key(|s| s.line);

        for (source, weight) in &raw.mixture {
            if !weight.is_finite() || *weight < 0.0 {
                return Err(err(
                    spans.line_of(&["mixture", source]),
                    Some(format!("mixture.{source}")),
                    "a mixture proportion must be a finite number ≥ 0".into(),
                ));
            }
        }
        if !raw.mixture.is_empty() && raw.mixture.values().sum::<f64>() <= 0.0 {
            return Err(err(
                spans.line_of(&["mixture"]),
                Some("mixture".into()),
                "the mixture proportions sum to 0".into(),
            ));
        }

        for stage in &mut stages {
            stage.mixture = raw.mixture.clone();
        }
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir
        };
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        let file = PipelineFile {
            path: path.to_path_buf(),
            base_dir,
            output_root: raw.output.root,
            stages,
            mixture: raw.mixture,
            spans,
        };
        file.check_references()?;
        Ok(file)
    }

    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// An error located at `stages.STAGE.KEY` (or the stage header when the key is absent).
    pub fn error_at(&self, stage: &str, key: Option<&str>, message: impl Into<String>) -> PipelineFileError {
        let line = match key {
            Some(k) => {
                let l = self.spans.line_of(&["stages", stage, k]);
                if l > 1 {
                    l
                } else {
                    self.spans.line_of(&["stages", stage])
                }
            }
            None => self.spans.line_of(&["stages", stage]),
        };
        PipelineFileError {
            file: self.path.display().to_string(),
            line,
            key: Some(match key {
                Some(k) => format!("stages.{stage}.{k}"),
                None => format!("stages.{stage}"),
            }),
            message: message.into(),
        }
    }

    fn check_references(&self) -> Result<(), PipelineFileError> {
        for stage in &self.stages {
            for input in &stage.inputs {
                if let InputRef::Stage { stage: upstream, .. } = input {
                    if self.stage(upstream).is_none() {
                        return Err(self.error_at(
                            &stage.name,
                            Some("inputs"),
                            format!("input `{input}` names no stage in this file (write `./{input}` for a file of that name)"),
                        ));
                    }
                    if upstream == &stage.name {
                        return Err(self.error_at(
                            &stage.name,
                            Some("inputs"),
                            format!("stage `{upstream}` reads its own output"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// True for a valid stage name: lowercase ASCII letters, digits and `_`, not empty.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A bare `name` or `name.output` made of name characters is a stage reference;
/// anything else (a scheme, a slash, a glob, other characters, a listing file
/// such as `wet.paths`) is a location.
fn classify_input(text: &str) -> InputRef {
    if text.ends_with(".paths") || text.ends_with(".paths.gz") {
        return InputRef::Location(text.to_string());
    }
    let mut parts = text.splitn(2, '.');
    let stage = parts.next().unwrap_or_default();
    let output = parts.next();
    if is_valid_name(stage) && output.is_none_or(is_valid_name) {
        InputRef::Stage {
            stage: stage.to_string(),
            output: output.map(str::to_string),
        }
    } else {
        InputRef::Location(text.to_string())
    }
}

/// Pulls the field name out of serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Byte offsets of every key in the file, to turn a key path into a line.
#[derive(Debug, Clone, Default)]
struct SpanIndex {
    line_starts: Vec<usize>,
    keys: BTreeMap<Vec<String>, usize>,
}

impl SpanIndex {
    fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut index = SpanIndex {
            line_starts: vec![0],
            keys: BTreeMap::new(),
        };
        index.line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let doc = toml_edit::Document::parse(text.to_string()).map_err(|e| {
            let line = e.span().map_or(1, |s| index.line_of_offset(s.start));
            (line, e.message().trim().to_string())
        })?;
        index.walk(doc.as_table(), &mut Vec::new());
        Ok(index)
    }

    fn walk(&mut self, table: &toml_edit::Table, prefix: &mut Vec<String>) {
        for (key, item) in table.iter() {
            prefix.push(key.to_string());
            let offset = table
                .key(key)
                .and_then(|k| k.span())
                .or_else(|| item.span())
                .map(|s| s.start);
            if let Some(offset) = offset {
                self.keys.insert(prefix.clone(), offset);
            }
            if let Some(child) = item.as_table() {
                self.walk(child, prefix);
            }
            prefix.pop();
        }
    }

    fn line_of_offset(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset).max(1)
    }

    /// 1-based line of the key path, or 1 when it is not in the file.
    fn line_of(&self, path: &[&str]) -> usize {
        let key: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        self.keys.get(&key).map_or(1, |&o| self.line_of_offset(o))
    }

    /// The full dotted path of an unknown key found near `span`.
    fn qualify_unknown(&self, key: &str, span: Option<std::ops::Range<usize>>) -> String {
        let near = span.map(|s| s.start);
        self.keys
            .iter()
            .filter(|(path, _)| path.last().map(String::as_str) == Some(key))
            .min_by_key(|(_, off)| near.map_or(0, |n| n.abs_diff(**off)))
            .map_or_else(|| key.to_string(), |(path, _)| path.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PipelineFile, PipelineFileError> {
        PipelineFile::parse(Path::new("/p/llamaflow.toml"), text)
    }

    #[test]
    fn parses_stages_inputs_and_mixture() {
        let f = parse(
            r#"
[output]
root = "out"

[mixture]
c4 = 0.15
commoncrawl = 0.67

[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]

[stages.dedup]
type = "dedup"
inputs = ["c4", "wiki.refs", "s3://b/k/*.parquet"]
threshold = 0.8

[stages.wiki]
type = "wikipedia"
inputs = ["wiki/*.bz2"]
"#,
        )
        .unwrap();
        assert_eq!(f.output_root, "out");
        assert_eq!(f.base_dir, PathBuf::from("/p"));
        assert_eq!(f.stages.len(), 3);
        assert_eq!(f.stages[0].name, "c4");
        assert_eq!(f.stages[0].line, 9);
        assert_eq!(f.stages[0].inputs, vec![InputRef::Location("c4/*.json.gz".into())]);
        assert_eq!(f.mixture["c4"], 0.15);
        let err = f.stages[1].inputs.clone();
        assert_eq!(
            err[0],
            InputRef::Stage {
                stage: "c4".into(),
                output: None
            }
        );
        assert_eq!(
            err[1],
            InputRef::Stage {
                stage: "wiki".into(),
                output: Some("refs".into())
            }
        );
        assert!(matches!(err[2], InputRef::Location(_)));
        assert_eq!(classify_input("c4.paths"), InputRef::Location("c4.paths".into()));
        assert_eq!(f.stages[1].params["threshold"].as_float(), Some(0.8));
    }

    #[test]
    fn unknown_top_level_key_names_line_and_key() {
        let e = parse("[output]\nroot = \"out\"\nrot = 1\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
        assert_eq!(e.key.as_deref(), Some("output.rot"), "{e}");
        assert!(
            e.to_string()
                .starts_with("/p/llamaflow.toml:3: `output.rot`: unknown field"),
            "{e}"
        );
    }

    #[test]
    fn input_naming_a_missing_stage_is_an_error() {
        let e = parse("[output]\nroot = \"o\"\n[stages.a]\ntype = \"c4\"\ninputs = [\"nothere\"]\n").unwrap_err();
        assert_eq!(e.line, 5);
        assert!(e.message.contains("`nothere` names no stage"), "{e}");
    }

    #[test]
    fn syntax_errors_have_lines() {
        let e = parse("[output]\nroot = \"o\"\n[stages.a\n").unwrap_err();
        assert_eq!(e.line, 3, "{e}");
    }

    #[test]
    fn bad_names_and_missing_type_are_errors() {
        let e = parse("[output]\nroot = \"o\"\n[stages.Bad]\ntype = \"c4\"\n").unwrap_err();
        assert!(e.message.contains("lowercase"), "{e}");
        let e = parse("[output]\nroot = \"o\"\n[stages.a]\ninputs = []\n").unwrap_err();
        assert!(e.message.contains("missing `type`"), "{e}");
        assert_eq!(e.line, 3);
    }

    #[test]
    fn mixture_must_be_non_negative() {
        let e = parse("[output]\nroot = \"o\"\n[mixture]\nc4 = -1.0\n").unwrap_err();
        assert_eq!(e.line, 4);
    }
}
