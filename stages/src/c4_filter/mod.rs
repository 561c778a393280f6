//! The `c4_filter` stage: C4's heuristic quality filters ([`C4Rules`]) on any
//! document dataset. Each page loses the lines the line rules drop; a page
//! the page rules drop (or left with nothing) is filtered, by rule. Lines
//! dropped are counted per rule and input file in the named output `lines`
//! (`<stage>__lines`: `input`, `rule`, `lines`, with rule `seen` for every
//! line looked at), so SQL tells how much each rule cut.
//!
//! One unit per input Parquet file, read in order and written in order, so
//! the output does not depend on `--jobs`. A null id or text is quarantined.

mod rules;
mod sentences;

pub use rules::{C4Rules, LINE_RULES, PageOutcome, PageVerdict};

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, StringBuilder, UInt64Array};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};

/// Builds `c4_filter` stages.
#[derive(Debug)]
pub struct C4FilterFactory;

impl StageFactory for C4FilterFactory {
    fn type_name(&self) -> &'static str {
        "c4_filter"
    }

    fn summary(&self) -> &'static str {
        "C4's heuristic filters (terminal punctuation, short lines, lorem ipsum, curly brackets, javascript and policy notices, too few sentences) on any document dataset"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        // `columns` is the stage's; every other key is a rule's.
        let mut params = decl.params.clone();
        let columns = match params.remove("columns") {
            None => "document".to_string(),
            Some(value) => value.as_str().map(str::to_string).ok_or_else(|| ParamError {
                key: Some("columns".into()),
                message: "must be a string".into(),
            })?,
        };
        let rules: C4Rules = parse_params(&params)?;
        let schema = crate::datasets::columns_schema(&columns).ok_or_else(|| ParamError {
            key: Some("columns".into()),
            message: format!(
                "`{columns}` is not `document` or a source type (`c4`, `commoncrawl`, `github`, `wikipedia`)"
            ),
        })?;
        Ok(Arc::new(C4FilterStage { rules, schema }))
    }
}

/// The `lines` output: lines dropped per rule and input file.
pub fn lines_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("input", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("lines", DataType::UInt64, false),
    ]))
}

/// The `c4_filter` stage.
#[derive(Debug)]
pub struct C4FilterStage {
    rules: C4Rules,
    schema: SchemaRef,
}

/// Line counts of one unit, as [`LINE_RULES`], plus every line seen.
#[derive(Default)]
struct LineCounts {
    dropped: [u64; LINE_RULES.len()],
    seen: u64,
}

impl LineCounts {
    fn add(&mut self, outcome: &PageOutcome) {
        for (total, n) in self.dropped.iter_mut().zip(outcome.lines_dropped) {
            *total += u64::from(n);
        }
        self.seen += u64::from(outcome.lines_seen);
    }

    fn batch(&self, input: &str) -> Result<RecordBatch, StageError> {
        let rules: Vec<&str> = LINE_RULES.iter().copied().chain(["seen"]).collect();
        let lines: Vec<u64> = self.dropped.iter().copied().chain([self.seen]).collect();
        Ok(RecordBatch::try_new(
            lines_schema(),
            vec![
                Arc::new(StringArray::from(vec![input; rules.len()])) as ArrayRef,
                Arc::new(StringArray::from(rules)),
                Arc::new(UInt64Array::from(lines)),
            ],
        )?)
    }
}

#[async_trait]
impl Stage for C4FilterStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![("lines", lines_schema())]
    }

    /// One unit per input Parquet file.
    fn units(&self, inputs: Vec<InputFile>) -> Vec<WorkUnit> {
        inputs
            .into_iter()
            .filter(|f| f.relative.ends_with(".parquet"))
            .map(WorkUnit::single)
            .collect()
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let session = ctx.session.clone();
        let files: Vec<&InputFile> = unit.files.iter().collect();
        let fields: Vec<Field> = self.schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let hint = "; set `columns = \"document\"` to filter on the core columns";
        let frame = crate::datasets::read_datasets(&files, &session, &fields, hint).await?;
        let input = files
            .first()
            .map_or(unit.key.as_str(), |f| f.display.as_str())
            .to_string();
        let text_column = self
            .schema
            .index_of("text")
            .map_err(|_| StageError::Other("c4_filter: the output schema has no `text` column".into()))?;
        let id_column = self
            .schema
            .index_of("id")
            .map_err(|_| StageError::Other("c4_filter: the output schema has no `id` column".into()))?;
        let mut counts = UnitCounts::default();
        let mut lines = LineCounts::default();
        // Partitions one after the other: rows are written in file order.
        for mut stream in frame.execute_stream_partitioned().await? {
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let ids = arrow::compute::cast(batch.column(id_column), &DataType::Utf8)?;
                let texts = arrow::compute::cast(batch.column(text_column), &DataType::Utf8)?;
                let (ids, texts) = (ids.as_string::<i32>(), texts.as_string::<i32>());
                let mut keep = Vec::with_capacity(batch.num_rows());
                let mut cleaned = StringBuilder::new();
                for row in 0..batch.num_rows() {
                    let offset = counts.rows_in;
                    counts.rows_in += 1;
                    if ids.is_null(row) || texts.is_null(row) {
                        keep.push(false);
                        counts.quarantined += 1;
                        let id = if ids.is_null(row) { "" } else { ids.value(row) };
                        ctx.quarantine(&input, offset, "the document's id or text is null", id)
                            .await?;
                        continue;
                    }
                    let outcome = self.rules.apply(texts.value(row));
                    lines.add(&outcome);
                    match outcome.verdict {
                        PageVerdict::Kept(text) => {
                            keep.push(true);
                            cleaned.append_value(text);
                            counts.kept += 1;
                        }
                        PageVerdict::Dropped(rule) => {
                            keep.push(false);
                            counts.filter(rule);
                        }
                    }
                }
                ctx.progress.add_docs(batch.num_rows() as u64);
                let kept = filter_record_batch(&batch, &BooleanArray::from(keep))?;
                if kept.num_rows() == 0 {
                    continue;
                }
                let mut columns = kept.columns().to_vec();
                columns[text_column] = Arc::new(cleaned.finish());
                ctx.write(&RecordBatch::try_new(self.schema.clone(), columns)?).await?;
            }
        }
        ctx.write_named("lines", &lines.batch(&input)?).await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(toml: &str) -> Result<Arc<dyn Stage>, ParamError> {
        let decl = StageDecl {
            name: "f".into(),
            type_name: "c4_filter".into(),
            inputs: Vec::new(),
            params: toml::from_str(toml).unwrap(),
            line: 1,
            mixture: Default::default(),
        };
        C4FilterFactory.build(&decl)
    }

    #[test]
    fn rules_and_columns_are_set_by_name_and_unknown_keys_refused() {
        assert!(stage("min_sentences = 3\njavascript = false\ncolumns = \"c4\"").is_ok());
        assert_eq!(
            stage("min_sentence = 3").unwrap_err().key.as_deref(),
            Some("min_sentence")
        );
        assert_eq!(stage("columns = \"nope\"").unwrap_err().key.as_deref(), Some("columns"));
        assert_eq!(stage("columns = 3").unwrap_err().key.as_deref(), Some("columns"));
        let c4 = stage("columns = \"c4\"").unwrap();
        assert!(c4.schema().field_with_name("timestamp").is_ok());
    }

    #[test]
    fn line_counts_are_one_row_per_rule_plus_seen() {
        let mut counts = LineCounts::default();
        counts.add(&C4Rules::default().apply("Too short.\nnot ended\nThis one is fine and ends here."));
        let batch = counts.batch("in.parquet").unwrap();
        assert_eq!(batch.num_rows(), LINE_RULES.len() + 1);
        let lines = batch.column(2).as_primitive::<arrow::datatypes::UInt64Type>();
        assert_eq!(lines.values().to_vec(), vec![0, 1, 1, 0, 0, 3]);
    }
}
