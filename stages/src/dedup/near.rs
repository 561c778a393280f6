//! Near-duplicate detection: MinHash signatures, LSH banding, candidate pairs
//! verified by their estimated Jaccard similarity, clusters by connected
//! components.
//!
//! 1. One DataFusion query computes every document's signature with the
//!    `minhash` UDF (in parallel over the session's partitions). The stream is
//!    written to three scratch Parquet files, each keyed by `doc`, a 16-byte
//!    hash of the id ([`doc_key`]): what the key stands for (`doc, id, source,
//!    rank`), the signatures (`doc, sig`) and the band keys (`band_key, doc`;
//!    a band key hashes the band's index with its rows' slots, so one column
//!    holds all bands). The band keys also go to the stage's `index` output,
//!    for incremental runs.
//! 2. Four queries, each written to scratch Parquet before the next starts
//!    (so no two sorts compete for the memory pool): the band keys grouped (a
//!    window partitioned by key, sorted and spilled under the session's pool)
//!    pair each document with the first of its bucket; the signatures of the
//!    paired documents are picked out (a semi join building on their keys);
//!    each pair gets the document's signature (a hash join building on the
//!    pairs, keys only), then the anchor's (a sort-merge join, which spills:
//!    the pairs' signatures would not fit a hash join's build side at scale),
//!    scored with `minhash_jaccard`.
//! 3. Pairs at or above the threshold are looked up in the key table and
//!    join clusters ([`Clusters`]); each cluster keeps its first document in
//!    keep-first order.
//!
//! Pairing with one member of the bucket rather than with every member keeps
//! the candidates linear in the bucket size; a member joins its cluster
//! through whichever bucket puts it next to a verified neighbour.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, UInt64Type};
use datafusion::common::config::TableParquetOptions;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use futures::StreamExt;
use llamaflow_pipeline::{StageError, UnitContext};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

use super::components::{Clusters, NearRemoval, OrderKey};

/// The MinHash and LSH settings of a `dedup` stage in `minhash` mode.
#[derive(Debug, Clone, PartialEq)]
pub struct MinHashSettings {
    /// Words per shingle.
    pub ngram: usize,
    /// LSH bands.
    pub bands: usize,
    /// Signature slots per band (slots in all: bands × rows).
    pub rows: usize,
    /// Least estimated Jaccard similarity of a verified pair.
    pub threshold: f64,
}

impl Default for MinHashSettings {
    /// Word 5-grams as datatrove, 20 bands × 8 rows (datatrove: 14 × 8), pairs
    /// verified at 0.7. Verification removes the false candidates that more
    /// bands let in, so the extra bands buy recall near the threshold: a pair at
    /// Jaccard 0.77 is a candidate with probability 0.93 (0.84 with 14 bands),
    /// and the 160-slot estimate that verifies it has a standard deviation of
    /// about 0.03 (0.04 with 112 slots).
    fn default() -> Self {
        MinHashSettings {
            ngram: 5,
            bands: 20,
            rows: 8,
            threshold: 0.7,
        }
    }
}

/// What the near-duplicate pass found.
#[derive(Debug, Default)]
pub struct NearDuplicates {
    /// Documents to drop, with the document their cluster keeps.
    pub removals: Vec<NearRemoval>,
    /// Distinct candidate pairs the bands produced.
    pub candidates: u64,
    /// Candidate pairs at or above the threshold.
    pub verified: u64,
}

/// Finds the near-duplicates among the documents of `table` (registered in
/// `session`), ordered keep-first by `rank_sql`, then source, then id.
pub async fn find_near_duplicates(
    session: &SessionContext,
    table: &str,
    rank_sql: &str,
    settings: &MinHashSettings,
    ctx: &mut UnitContext,
) -> Result<NearDuplicates, StageError> {
    let scratch = tempfile::Builder::new()
        .prefix("llamaflow-minhash-")
        .tempdir()
        .map_err(|e| StageError::Other(format!("cannot create a scratch folder for MinHash: {e}")))?;
    let paths = ScratchPaths {
        docs: scratch.path().join("docs.parquet"),
        sigs: scratch.path().join("signatures.parquet"),
        bands: scratch.path().join("bands.parquet"),
    };
    write_signatures(session, table, rank_sql, settings, &paths, ctx).await?;

    let name = |what: &str| format!("dedup_{what}_{}", ctx.stage);
    let (docs, sigs, bands) = (name("docs"), name("signatures"), name("bands"));
    let (pairs, needed, half) = (name("pairs"), name("needed_signatures"), name("half_pairs"));
    let tables = [&docs, &sigs, &bands, &pairs, &needed, &half];
    let result = async {
        register(session, &docs, &paths.docs).await?;
        register(session, &sigs, &paths.sigs).await?;
        register(session, &bands, &paths.bands).await?;
        // One sort a query, each query's result on disk: a finished sort
        // holds its rows until they are consumed, so sorts chained in one
        // query would starve each other of the memory pool.
        // 2a. Each document paired with the first of its bucket (by key: any
        // fixed order pairs the same buckets; the keeper is chosen later).
        let pairs_sql = format!(
            "SELECT DISTINCT doc, anchor FROM ( \
               SELECT doc, first_value(doc) OVER w AS anchor FROM {bands} \
               WINDOW w AS (PARTITION BY band_key ORDER BY doc \
                            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) \
             WHERE doc <> anchor"
        );
        materialize(session, &pairs_sql, &scratch.path().join("pairs"), &pairs).await?;
        // 2b. The signatures of the documents in a pair, a semi join building
        // on those keys, so the sort below holds only candidates' signatures.
        let needed_sql = format!(
            "SELECT s.doc, s.sig FROM (SELECT doc FROM {pairs} UNION SELECT anchor FROM {pairs}) n \
             RIGHT SEMI JOIN {sigs} s ON n.doc = s.doc"
        );
        materialize(session, &needed_sql, &scratch.path().join("needed"), &needed).await?;
        // 2c. The document's signature: a hash join whose build side is the pairs (keys only).
        let half_sql = format!("SELECT p.doc, p.anchor, s.sig FROM {pairs} p JOIN {needed} s ON p.doc = s.doc");
        materialize(session, &half_sql, &scratch.path().join("half"), &half).await?;
        // 2d. The anchor's signature, and the estimate.
        let verify_sql = format!(
            "SELECT h.doc, h.anchor, minhash_jaccard(h.sig, s.sig) AS similarity \
             FROM {half} h JOIN {needed} s ON h.anchor = s.doc"
        );
        let mut found = NearDuplicates::default();
        let edges = verify(session, &verify_sql, settings.threshold, &mut found).await?;
        found.removals = cluster(session, &docs, edges).await?;
        Ok(found)
    }
    .await;
    for table in tables {
        let _ = session.deregister_table(table.as_str());
    }
    result
}

/// The scratch files pass 1 writes.
struct ScratchPaths {
    /// `doc, id, source, rank`: what a document key stands for.
    docs: std::path::PathBuf,
    /// `doc, sig`.
    sigs: std::path::PathBuf,
    /// `band_key, doc`.
    bands: std::path::PathBuf,
}

/// A document's key in the scratch tables: the 128-bit hash of its id.
///
/// Sorting and joining 16-byte keys instead of (rank, source, id) strings
/// makes the band sort, the largest of the pass, several times smaller.
/// Two distinct ids share a key with probability about n²/2¹²⁹ (1e-21 at a
/// billion documents); [`cluster`] still checks the documents it resolves.
fn doc_key(id: &str) -> [u8; 16] {
    xxhash_rust::xxh3::xxh3_128(id.as_bytes()).to_le_bytes()
}

async fn register(session: &SessionContext, table: &str, path: &Path) -> Result<(), StageError> {
    session
        .register_parquet(table, path_str(path)?, ParquetReadOptions::default())
        .await?;
    Ok(())
}

/// Runs `sql` into Parquet files under `folder`, registered as `table`.
async fn materialize(session: &SessionContext, sql: &str, folder: &Path, table: &str) -> Result<(), StageError> {
    std::fs::create_dir_all(folder)
        .map_err(|e| StageError::Other(format!("cannot create {}: {e}", folder.display())))?;
    // Small row groups: the writer holds its open row group in memory, and
    // a row here may carry a 1.3 kB signature.
    let mut options = TableParquetOptions::default();
    options.global.max_row_group_size = 16 * 1024;
    session
        .sql(sql)
        .await?
        .write_parquet(path_str(folder)?, DataFrameWriteOptions::new(), Some(options))
        .await?;
    register(session, table, folder).await
}

/// Pass 1: keys, signatures and band keys to the scratch files, band keys to the `index` output.
async fn write_signatures(
    session: &SessionContext,
    table: &str,
    rank_sql: &str,
    settings: &MinHashSettings,
    paths: &ScratchPaths,
    ctx: &mut UnitContext,
) -> Result<(), StageError> {
    let permutations = settings.bands * settings.rows;
    let sql = format!(
        "SELECT id, source, {rank_sql} AS rank, minhash(text, {permutations}, {ngram}) AS sig FROM {table}",
        ngram = settings.ngram
    );
    let mut stream = session.sql(&sql).await?.execute_stream().await?;
    // Small row groups: a writer buffers its open row group in memory, and a
    // signature is 8 bytes a slot (1.3 kB at 160 slots), so the default of
    // a million rows would hold gigabytes outside the memory pool.
    let sig_rows = (16 * 1024 * 1024 / (8 * permutations).max(1)).clamp(1024, 65_536);
    let props = |rows: usize| {
        Some(
            WriterProperties::builder()
                .set_max_row_group_row_count(Some(rows))
                .build(),
        )
    };
    let mut docs_writer =
        ArrowWriter::try_new(create(&paths.docs)?, docs_schema(), props(65_536)).map_err(scratch_error)?;
    let mut sigs_writer =
        ArrowWriter::try_new(create(&paths.sigs)?, signatures_schema(), props(sig_rows)).map_err(scratch_error)?;
    let mut bands_writer =
        ArrowWriter::try_new(create(&paths.bands)?, bands_schema(), props(262_144)).map_err(scratch_error)?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let ids = cast_utf8(batch.column(0))?;
        let sources = cast_utf8(batch.column(1))?;
        let ranks = arrow::compute::cast(batch.column(2), &DataType::Int64)?;
        let ids = ids.as_string::<i32>();
        let signatures = batch.column(3).as_list::<i32>();
        // Documents without a word (all slots untouched) have no shingles to compare.
        let mut with_words = Vec::with_capacity(batch.num_rows());
        let (mut band_keys, mut band_rows) = (Vec::new(), Vec::new());
        for row in 0..batch.num_rows() {
            let signature = signatures.value(row);
            let slots = signature.as_primitive::<UInt64Type>().values();
            let has_words = slots.first().is_some_and(|&v| v != u64::MAX);
            with_words.push(has_words);
            if has_words {
                for band in 0..settings.bands {
                    band_keys.push(band_key(band, &slots[band * settings.rows..(band + 1) * settings.rows]));
                    band_rows.push(row as u32);
                }
            }
        }
        let keys: ArrayRef = Arc::new(FixedSizeBinaryArray::try_from_iter(
            ids.iter().map(|id| doc_key(id.unwrap_or_default())),
        )?);
        let keep = arrow::array::BooleanArray::from(with_words);
        let doc_batch = RecordBatch::try_new(docs_schema(), vec![keys.clone(), Arc::new(ids.clone()), sources, ranks])?;
        docs_writer
            .write(&arrow::compute::filter_record_batch(&doc_batch, &keep)?)
            .map_err(scratch_error)?;
        let sig_batch = RecordBatch::try_new(signatures_schema(), vec![keys.clone(), batch.column(3).clone()])?;
        sigs_writer
            .write(&arrow::compute::filter_record_batch(&sig_batch, &keep)?)
            .map_err(scratch_error)?;
        let take = arrow::array::UInt32Array::from(band_rows);
        let bands = RecordBatch::try_new(
            bands_schema(),
            vec![
                Arc::new(UInt64Array::from_iter_values(band_keys.iter().copied())) as ArrayRef,
                arrow::compute::take(&keys, &take, None)?,
            ],
        )?;
        bands_writer.write(&bands).map_err(scratch_error)?;
        let index = RecordBatch::try_new(
            super::index_schema(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    band_keys.iter().map(|k| format!("{k:016x}")),
                )) as ArrayRef,
                arrow::compute::take(ids, &take, None)?,
                Arc::new(StringArray::from(vec!["minhash_band"; band_keys.len()])),
            ],
        )?;
        ctx.write_named("index", &index).await?;
    }
    docs_writer.close().map_err(scratch_error)?;
    sigs_writer.close().map_err(scratch_error)?;
    bands_writer.close().map_err(scratch_error)?;
    Ok(())
}

/// A verified pair: two document keys and their estimated Jaccard similarity.
type Edge = ([u8; 16], [u8; 16], f64);

/// Pass 2's last query: candidate pairs scored; returns those at or above
/// `threshold`, counting candidates and verified pairs into `found`.
async fn verify(
    session: &SessionContext,
    sql: &str,
    threshold: f64,
    found: &mut NearDuplicates,
) -> Result<Vec<Edge>, StageError> {
    // Sort-merge join for this query only: the pairs carry signatures (8
    // bytes a slot), which a hash join would hold on its build side, beyond
    // the memory pool on a large corpus; sorts spill.
    // The state is a copy; its catalog (the scratch tables) is shared.
    // Small batches, too: merging spilled sort runs holds a batch per run, and
    // a row here carries a signature (1.3 kB at 160 slots).
    let mut state = session.state();
    let options = state.config_mut().options_mut();
    options.optimizer.prefer_hash_join = false;
    options.execution.batch_size = datafusion::common::config::ConfigNonZeroUsize::try_new(1024)?;
    let plan = state.create_logical_plan(sql).await?;
    let mut stream = DataFrame::new(state, plan).execute_stream().await?;
    let mut edges = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let docs = batch.column(0).as_fixed_size_binary();
        let anchors = batch.column(1).as_fixed_size_binary();
        let similarity = batch.column(2).as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            found.candidates += 1;
            if similarity.is_null(row) || similarity.value(row) < threshold {
                continue;
            }
            found.verified += 1;
            edges.push((
                key_bytes(docs.value(row))?,
                key_bytes(anchors.value(row))?,
                similarity.value(row),
            ));
        }
    }
    Ok(edges)
}

/// Pass 3: the verified pairs' documents looked up in `docs` (a scan that
/// keeps only those), then clustered, each cluster keeping its first document.
async fn cluster(session: &SessionContext, docs: &str, edges: Vec<Edge>) -> Result<Vec<NearRemoval>, StageError> {
    let mut keys: HashMap<[u8; 16], Option<OrderKey>> = HashMap::new();
    for (a, b, _) in &edges {
        keys.insert(*a, None);
        keys.insert(*b, None);
    }
    if !keys.is_empty() {
        let sql = format!("SELECT doc, id, source, rank FROM {docs}");
        let mut stream = session.sql(&sql).await?.execute_stream().await?;
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            let doc_keys = batch.column(0).as_fixed_size_binary();
            let (ids, sources) = (cast_utf8(batch.column(1))?, cast_utf8(batch.column(2))?);
            let (ids, sources) = (ids.as_string::<i32>(), sources.as_string::<i32>());
            let ranks = batch.column(3).as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let Some(slot) = keys.get_mut(&key_bytes(doc_keys.value(row))?) else {
                    continue;
                };
                let key = OrderKey {
                    rank: ranks.value(row),
                    source: sources.value(row).to_string(),
                    id: ids.value(row).to_string(),
                };
                if let Some(earlier) = slot.as_ref().filter(|earlier| earlier.id != key.id) {
                    return Err(StageError::Other(format!(
                        "documents {:?} and {:?} have the same 128-bit key; rename one",
                        earlier.id, key.id
                    )));
                }
                *slot = Some(key);
            }
        }
    }
    let mut clusters = Clusters::default();
    for (a, b, similarity) in edges {
        let (Some(Some(a)), Some(Some(b))) = (keys.get(&a), keys.get(&b)) else {
            return Err(StageError::Other(
                "a verified near-duplicate pair names a document missing from the scratch table".into(),
            ));
        };
        clusters.join(a.clone(), b.clone(), similarity);
    }
    Ok(clusters.removals())
}

fn key_bytes(value: &[u8]) -> Result<[u8; 16], StageError> {
    value
        .try_into()
        .map_err(|_| StageError::Other(format!("a document key has {} bytes, not 16", value.len())))
}

/// The key of one band: its index and its slots, hashed together.
fn band_key(band: usize, slots: &[u64]) -> u64 {
    let mut bytes = Vec::with_capacity(8 + slots.len() * 8);
    bytes.extend_from_slice(&(band as u64).to_le_bytes());
    for slot in slots {
        bytes.extend_from_slice(&slot.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

fn doc_key_field(name: &str) -> Field {
    Field::new(name, DataType::FixedSizeBinary(16), false)
}

fn docs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        doc_key_field("doc"),
        Field::new("id", DataType::Utf8, true),
        Field::new("source", DataType::Utf8, true),
        Field::new("rank", DataType::Int64, true),
    ]))
}

fn signatures_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        doc_key_field("doc"),
        Field::new("sig", llamaflow_sql::udfs::minhash::signature_type(), true),
    ]))
}

fn bands_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("band_key", DataType::UInt64, false),
        doc_key_field("doc"),
    ]))
}

/// A failure writing the scratch Parquet files.
fn scratch_error(e: parquet::errors::ParquetError) -> StageError {
    StageError::Other(format!("cannot write MinHash scratch files: {e}"))
}

fn create(path: &Path) -> Result<File, StageError> {
    File::create(path).map_err(|e| StageError::Other(format!("cannot write {}: {e}", path.display())))
}

fn path_str(path: &Path) -> Result<&str, StageError> {
    path.to_str()
        .ok_or_else(|| StageError::Other(format!("scratch path {} is not UTF-8", path.display())))
}

fn cast_utf8(array: &ArrayRef) -> Result<ArrayRef, StageError> {
    Ok(arrow::compute::cast(array, &DataType::Utf8)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_keys_differ_by_band_and_by_slots() {
        let slots = [1u64, 2, 3];
        assert_ne!(band_key(0, &slots), band_key(1, &slots));
        assert_ne!(band_key(0, &slots), band_key(0, &[1, 2, 4]));
        assert_eq!(band_key(2, &slots), band_key(2, &[1, 2, 3]));
    }
}
