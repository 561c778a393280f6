//! The output root as a SQL catalog: one table per dataset folder, named like
//! the folder (`c4`, `wikipedia__refs`, `dedup__removed`), `quarantine` over
//! every stage's quarantine, `runs`, `stage_runs` and `units` over the run
//! ledger, and `mixture`, the pipeline file's `[mixture]`. Tables are built when a query first names
//! them (one listing of `datasets/` up front), so opening a huge corpus costs
//! nothing until a query runs; a name that is not a dataset folder is not a
//! table, so no name reaches a file outside the output root.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;

use arrow::datatypes::{DataType, Field, Schema};

use crate::dataset::{DatasetError, DatasetManifest, OutputRoot, read_json};
use crate::document::quarantine_schema;

/// The name of the view over every stage's quarantine.
pub const QUARANTINE: &str = "quarantine";

/// Tables over the run ledger (one JSON record a file), by table name and
/// ledger folder: every run, every stage of every run, every unit attempt. A
/// dataset of the same name (a stage called `runs`) hides one.
pub const LEDGER_TABLES: [(&str, &str); 3] = [("runs", "runs"), ("stage_runs", "stages"), ("units", "units")];

/// The table of the pipeline file's `[mixture]`: `source`, `weight`.
pub const MIXTURE: &str = "mixture";

/// The datasets of an output root as DataFusion tables.
#[derive(Debug)]
pub struct OutputCatalog {
    root: OutputRoot,
    datasets: BTreeSet<String>,
    state: SessionState,
    mixture: std::collections::BTreeMap<String, f64>,
}

impl OutputCatalog {
    /// Lists the dataset folders of `root`; `state` (whose runtime knows the
    /// root's object store) is used to read their Parquet footers later.
    pub async fn open(
        root: OutputRoot,
        state: SessionState,
        mixture: std::collections::BTreeMap<String, f64>,
    ) -> Result<Self, DatasetError> {
        let datasets_dir = root.root.join("datasets");
        let listed = datasets_dir.store.list_with_delimiter(Some(&datasets_dir.path)).await?;
        let datasets = listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .filter(|n| !n.starts_with('_') && !n.starts_with('.'))
            .collect();
        Ok(OutputCatalog {
            root,
            datasets,
            state,
            mixture,
        })
    }

    fn url_of(&self, dataset: &str) -> Result<ListingTableUrl, DataFusionError> {
        ListingTableUrl::parse(format!("{}/", self.root.dataset(dataset).url))
    }

    /// The schema of a dataset whose stage committed no rows (so no Parquet
    /// file to read one from), from its manifest; `None` when it has files.
    async fn empty_dataset_schema(&self, name: &str) -> Result<Option<arrow::datatypes::SchemaRef>, DataFusionError> {
        let manifest = read_json::<DatasetManifest>(&self.root.dataset(name).join("_manifest.json"))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let Some(manifest) = manifest.filter(|m| m.files.iter().all(|f| !f.name.ends_with(".parquet"))) else {
            return Ok(None);
        };
        let fields = manifest
            .schema
            .iter()
            .map(|c| {
                let data_type: DataType = c.data_type.parse()?;
                Ok(Field::new(&c.name, data_type, c.nullable))
            })
            .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
        Ok(Some(Arc::new(Schema::new(fields))))
    }

    /// A table over the Parquet files under `urls`; the schema is read from
    /// the first file unless given (quarantines, which may have no file yet).
    async fn listing(
        &self,
        urls: Vec<ListingTableUrl>,
        schema: Option<arrow::datatypes::SchemaRef>,
    ) -> Result<Arc<dyn TableProvider>, DataFusionError> {
        let options = ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        let config = ListingTableConfig::new_with_multi_paths(urls).with_listing_options(options);
        let config = match schema {
            Some(schema) => config.with_schema(schema),
            None => config.infer_schema(&self.state as &dyn Session).await?,
        };
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

#[async_trait]
impl SchemaProvider for OutputCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.datasets.iter().cloned().collect();
        for table in LEDGER_TABLES.iter().map(|(t, _)| *t).chain([MIXTURE]) {
            if !self.datasets.contains(table) {
                names.push(table.to_string());
            }
        }
        if self.datasets.iter().any(|d| d.ends_with("__quarantine")) {
            names.push(QUARANTINE.to_string());
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        if name == QUARANTINE && !self.datasets.contains(name) {
            let urls = self
                .datasets
                .iter()
                .filter(|d| d.ends_with("__quarantine"))
                .map(|d| self.url_of(d))
                .collect::<Result<Vec<_>, _>>()?;
            if urls.is_empty() {
                return Ok(None);
            }
            return self.listing(urls, Some(quarantine_schema())).await.map(Some);
        }
        if name == MIXTURE && !self.datasets.contains(name) {
            let schema = Arc::new(Schema::new(vec![
                Field::new("source", DataType::Utf8, false),
                Field::new("weight", DataType::Float64, false),
            ]));
            let sources = arrow::array::StringArray::from_iter_values(self.mixture.keys());
            let weights = arrow::array::Float64Array::from_iter_values(self.mixture.values().copied());
            let batch = arrow::array::RecordBatch::try_new(schema.clone(), vec![Arc::new(sources), Arc::new(weights)])?;
            return Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?)));
        }
        if let Some((_, folder)) = LEDGER_TABLES.iter().find(|(t, _)| *t == name)
            && !self.datasets.contains(name)
        {
            let url = ListingTableUrl::parse(format!("{}/", self.root.ledger().join(folder).url))?;
            let options = ListingOptions::new(Arc::new(JsonFormat::default())).with_file_extension(".json");
            let config = ListingTableConfig::new(url)
                .with_listing_options(options)
                .infer_schema(&self.state as &dyn Session)
                .await?;
            return Ok(Some(Arc::new(ListingTable::try_new(config)?)));
        }
        if !self.datasets.contains(name) {
            return Ok(None);
        }
        let schema = match name.ends_with("__quarantine") {
            true => Some(quarantine_schema()),
            false => self.empty_dataset_schema(name).await?,
        };
        self.listing(vec![self.url_of(name)?], schema).await.map(Some)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.datasets.contains(name) || self.table_names().iter().any(|n| n == name)
    }
}
