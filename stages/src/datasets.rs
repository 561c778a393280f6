//! Reading upstream datasets: the Parquet files a stage gets from `inputs =
//! ["c4", "wikipedia"]`, as one DataFrame with the columns the stage needs.

use std::collections::{BTreeMap, HashSet};

use arrow::datatypes::Field;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext, cast, col};
use llamaflow_pipeline::StageError;
use llamaflow_pipeline::inputs::InputFile;

/// The dataset an input file belongs to (the folder part of `relative`).
pub fn dataset_of(file: &InputFile) -> &str {
    file.relative.split_once('/').map_or("", |(d, _)| d)
}

/// Counts one document read and, when its id or text is null (`null`),
/// quarantines it at its ordinal in `input`; true when it was quarantined.
pub async fn count_row(
    ctx: &mut llamaflow_pipeline::UnitContext,
    counts: &mut llamaflow_pipeline::UnitCounts,
    input: &str,
    null: bool,
) -> Result<bool, StageError> {
    let offset = counts.rows_in;
    counts.rows_in += 1;
    if null {
        counts.quarantined += 1;
        ctx.quarantine(input, offset, "the document's id or text is null", "")
            .await?;
    }
    Ok(null)
}

/// One unit per document Parquet file, each also reading every artifact file
/// (`is_artifact`: a tokenizer, model files), whose versions are part of every
/// unit's fingerprint, so a new artifact redoes every unit. The artifact
/// stages' own tables are not documents and are left out.
pub fn units_with_artifacts(
    inputs: Vec<InputFile>,
    is_artifact: impl Fn(&InputFile) -> bool,
) -> Vec<llamaflow_pipeline::WorkUnit> {
    let (artifacts, documents): (Vec<InputFile>, Vec<InputFile>) = inputs.into_iter().partition(|f| is_artifact(f));
    let versions: String = artifacts
        .iter()
        .map(|a| format!("{}\0{}\n", a.relative, a.version))
        .collect();
    let artifact_datasets: Vec<&str> = artifacts.iter().map(dataset_of).collect();
    documents
        .into_iter()
        .filter(|f| f.relative.ends_with(".parquet") && !artifact_datasets.contains(&dataset_of(f)))
        .map(|file| {
            let fingerprint = llamaflow_pipeline::unit::short_hash(&format!(
                "{}\0{}\0{}\0{versions}",
                file.relative, file.size, file.version
            ));
            let mut files = vec![file.clone()];
            files.extend(artifacts.iter().cloned());
            llamaflow_pipeline::WorkUnit {
                key: file.relative,
                files,
                fingerprint,
            }
        })
        .collect()
}

/// The dataset an `inputs` reference names: `wikipedia.refs` is `wikipedia__refs`.
pub fn dataset_name(reference: &str) -> String {
    reference.replacen('.', "__", 1)
}

/// Reads every Parquet file of `files` as one frame of `fields` (cast to their
/// types), datasets unioned; a dataset lacking a field is an error that names
/// it, followed by `hint`.
pub async fn read_datasets(
    files: &[&InputFile],
    session: &SessionContext,
    fields: &[Field],
    hint: &str,
) -> Result<DataFrame, StageError> {
    // Files of one dataset share a schema; datasets may differ (cross-source stages).
    let mut datasets: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut registered = HashSet::new();
    for f in files {
        let mut base = f.location.url.clone();
        base.set_path("");
        if registered.insert(base.to_string()) {
            session
                .runtime_env()
                .register_object_store(&base, f.location.store.clone());
        }
        datasets
            .entry(dataset_of(f))
            .or_default()
            .push(f.location.url.to_string());
    }
    let mut all: Option<DataFrame> = None;
    for (dataset, urls) in datasets {
        let frame = session.read_parquet(urls, ParquetReadOptions::default()).await?;
        let has = |c: &str| frame.schema().field_with_unqualified_name(c).is_ok();
        if let Some(missing) = fields.iter().map(|f| f.name()).find(|c| !has(c)) {
            return Err(StageError::Other(format!(
                "input `{dataset}` has no `{missing}` column{hint}"
            )));
        }
        // DataFusion reads Parquet strings as views; stages get the types they asked for.
        let frame = frame.select(
            fields
                .iter()
                .map(|f| cast(col(f.name()), f.data_type().clone()).alias(f.name()))
                .collect::<Vec<_>>(),
        )?;
        all = Some(match all {
            Some(prev) => prev.union(frame)?,
            None => frame,
        });
    }
    all.ok_or_else(|| StageError::Other("the stage has no input documents".into()))
}

/// The output schema a stage's `columns` setting names: `document` (the core
/// columns) or a source type whose columns every input has.
pub fn columns_schema(columns: &str) -> Option<arrow::datatypes::SchemaRef> {
    use crate::sources;
    Some(match columns {
        "document" => llamaflow_pipeline::document::document_schema(Vec::new()),
        "c4" => sources::c4::c4_schema(),
        "commoncrawl" => sources::commoncrawl::commoncrawl_schema(),
        "github" => sources::github::github_schema(),
        "wikipedia" => sources::wikipedia::wikipedia_schema(),
        _ => return None,
    })
}
