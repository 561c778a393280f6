//! The `wikipedia` source: MediaWiki XML dumps (`*-pages-articles*.xml.bz2`,
//! multistream too, or plain/gzip XML) into plain-text articles, for the
//! paper's 20 languages.
//!
//! - [`dump`] reads pages safely (no entity expansion, bounded page size);
//! - [`wikitext`] turns a page's markup into plain text and lists the URLs it cites.
//!
//! Pages outside the main namespace, redirects and pages of other languages
//! are filtered (by `namespace`, `redirect`, `language`), as are articles
//! with no text left (`empty`). Documents have `url` = `wikipedia:LANG/Title`
//! and are keyed by page id. The language comes from the dump's `dbname`
//! (`dewiki` → `de`), else its `xml:lang`. A second output, `refs`
//! (`wikipedia__refs`), holds every external URL an article cites, for the
//! CommonCrawl reference classifier.

pub mod dump;
pub mod wikitext;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{RecordBatch, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use llamaflow_pipeline::document::{DocumentColumnsBuilder, document_id, document_schema};
use llamaflow_pipeline::inputs::InputFile;
use llamaflow_pipeline::progress::Progress;
use llamaflow_pipeline::{
    ParamError, Stage, StageDecl, StageError, StageFactory, UnitContext, UnitCounts, WorkUnit, parse_params,
};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::jsonl::{QUARANTINE_REASON, take_good_rows};
use crate::read::open_input;
use dump::{DumpItem, DumpReader, Page};
use wikitext::{WikitextCleaner, WikitextError};

/// The `source` column value.
const SOURCE: &str = "wikipedia";

/// The paper's 20 languages (LLaMA §2, "Wikipedia").
pub const PAPER_LANGUAGES: &[&str] = &[
    "bg", "ca", "cs", "da", "de", "en", "es", "fr", "hr", "hu", "it", "nl", "pl", "pt", "ro", "ru", "sl", "sr", "sv",
    "uk",
];

/// Pages per batch.
const BATCH_PAGES: usize = 1024;
/// Pages queued between the parsing and the cleaning thread (each at most `max_page_bytes`).
const PAGES_IN_FLIGHT: usize = 8;

/// A page (or a bad record) from the parsing thread, with the dump's site
/// information alongside the first page; or why reading stopped.
type PageMessage = Result<(DumpItem, Option<dump::SiteInfo>), StageError>;
/// Text bytes per batch.
const BATCH_TEXT_BYTES: usize = 32 << 20;

fn default_languages() -> Vec<String> {
    PAPER_LANGUAGES.iter().map(|s| s.to_string()).collect()
}
fn default_max_page_bytes() -> u64 {
    16 << 20
}
fn default_max_template_depth() -> usize {
    100
}

/// `[stages.NAME]` parameters of a `wikipedia` stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WikipediaConfig {
    /// Language codes kept (the dump's `dbname` without `wiki`).
    #[serde(default = "default_languages")]
    pub languages: Vec<String>,
    /// A page taking more XML than this is quarantined without being buffered.
    #[serde(default = "default_max_page_bytes")]
    pub max_page_bytes: u64,
    /// Templates or tables nested deeper than this quarantine the page.
    #[serde(default = "default_max_template_depth")]
    pub max_template_depth: usize,
}

/// Builds `wikipedia` stages.
#[derive(Debug)]
pub struct WikipediaFactory;

impl StageFactory for WikipediaFactory {
    fn type_name(&self) -> &'static str {
        "wikipedia"
    }

    fn summary(&self) -> &'static str {
        "MediaWiki XML dumps (bz2, multistream) into plain-text articles, plus the URLs they cite (output `refs`)"
    }

    fn build(&self, decl: &StageDecl) -> Result<Arc<dyn Stage>, ParamError> {
        let config: WikipediaConfig = parse_params(&decl.params)?;
        if let Some(bad) = config
            .languages
            .iter()
            .find(|l| l.is_empty() || !l.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        {
            return Err(ParamError {
                key: Some("languages".into()),
                message: format!("`{bad}` is not a Wikipedia language code (like `en` or `zh-min-nan`)"),
            });
        }
        if config.max_page_bytes < 1024 || config.max_template_depth == 0 {
            let key = if config.max_page_bytes < 1024 {
                "max_page_bytes"
            } else {
                "max_template_depth"
            };
            return Err(ParamError {
                key: Some(key.into()),
                message: format!("`{key}` is too small to read any page"),
            });
        }
        Ok(Arc::new(WikipediaStage { config }))
    }
}

fn extra_fields() -> Vec<Field> {
    vec![
        Field::new("lang", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("page_id", DataType::UInt64, false),
    ]
}

/// The `wikipedia` dataset's schema: core columns plus `lang`, `title`, `page_id`.
pub fn wikipedia_schema() -> SchemaRef {
    document_schema(extra_fields())
}

fn raw_schema() -> SchemaRef {
    let mut fields: Vec<Field> = extra_fields().into_iter().map(|f| f.with_nullable(true)).collect();
    fields.push(Field::new(QUARANTINE_REASON, DataType::Utf8, true));
    document_schema(fields)
}

/// The `wikipedia__refs` schema: one row per (article, cited URL).
pub fn refs_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("page_id", DataType::UInt64, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
    ]))
}

/// The `wikipedia` stage.
#[derive(Debug)]
pub struct WikipediaStage {
    config: WikipediaConfig,
}

/// One batch from the reading thread: pages (bad ones marked), their cited
/// URLs, and the pages filtered since the last batch.
struct WikiBatch {
    pages: RecordBatch,
    refs: RecordBatch,
    filtered: BTreeMap<&'static str, u64>,
}

#[async_trait]
impl Stage for WikipediaStage {
    fn version(&self) -> u32 {
        1
    }

    fn schema(&self) -> SchemaRef {
        wikipedia_schema()
    }

    fn named_outputs(&self) -> Vec<(&'static str, SchemaRef)> {
        vec![("refs", refs_schema())]
    }

    async fn run_unit(&self, unit: &WorkUnit, ctx: &mut UnitContext) -> Result<UnitCounts, StageError> {
        let mut counts = UnitCounts::default();
        for file in &unit.files {
            let (tx, mut rx) = mpsc::channel::<Result<WikiBatch, StageError>>(2);
            let reader = PageConverter {
                file: file.clone(),
                config: self.config.clone(),
            };
            let progress = ctx.progress.clone();
            let handle = tokio::runtime::Handle::current();
            let task = tokio::task::spawn_blocking(move || reader.run(progress, &handle, &tx));
            while let Some(batch) = rx.recv().await {
                let batch = batch?;
                let filtered: u64 = batch.filtered.values().sum();
                counts.rows_in += filtered;
                ctx.progress.add_docs(filtered);
                for (rule, n) in batch.filtered {
                    *counts.filtered.entry(rule.to_string()).or_default() += n;
                }
                let good = take_good_rows(&batch.pages, ctx, &mut counts).await?;
                counts.kept += good.num_rows() as u64;
                let good = RecordBatch::try_new(ctx.schema(), good.columns().to_vec())?;
                ctx.write(&good).await?;
                ctx.write_named("refs", &batch.refs).await?;
            }
            task.await
                .map_err(|e| StageError::Other(format!("the reading thread of {} failed: {e}", file.display)))?;
        }
        Ok(counts)
    }
}

/// Reads one dump on a blocking thread and sends batches of converted pages.
struct PageConverter {
    file: InputFile,
    config: WikipediaConfig,
}

impl PageConverter {
    fn run(
        self,
        progress: Progress,
        handle: &tokio::runtime::Handle,
        tx: &mpsc::Sender<Result<WikiBatch, StageError>>,
    ) {
        if let Err(e) = self.convert(progress, handle, tx) {
            let _ = tx.blocking_send(Err(e));
        }
    }

    fn convert(
        &self,
        progress: Progress,
        handle: &tokio::runtime::Handle,
        tx: &mpsc::Sender<Result<WikiBatch, StageError>>,
    ) -> Result<(), StageError> {
        let unreadable = |message: String| StageError::Unreadable {
            file: self.file.display.clone(),
            message,
        };
        let opened = open_input(&self.file, progress, handle).map_err(|e| unreadable(e.to_string()))?;
        let fault = opened.fault.clone();
        let mut dump = DumpReader::new(
            opened.reader,
            self.config.max_page_bytes,
            opened.compression.corrupt_stream(),
            Box::new(move || fault.happened()),
        );
        // Two threads: this one decompresses and parses, the other cleans
        // wikitext and builds batches, so one dump file uses two cores.
        let (page_tx, page_rx) = std::sync::mpsc::sync_channel::<PageMessage>(PAGES_IN_FLIGHT);
        std::thread::scope(|scope| {
            scope.spawn(move || self.clean_pages(page_rx, tx));
            let mut site_sent = false;
            loop {
                let message = match dump.next_item() {
                    Ok(None) => break,
                    Ok(Some(item)) => {
                        // The site information is complete once the first page is read.
                        let site = match (&item, site_sent) {
                            (DumpItem::Page(_), false) => {
                                site_sent = true;
                                Some(dump.site().clone())
                            }
                            _ => None,
                        };
                        Ok((item, site))
                    }
                    Err(e) => Err(unreadable(format!("read failed: {e}"))),
                };
                let failed = message.is_err();
                // A closed channel means the cleaning side stopped (it reports why).
                if page_tx.send(message).is_err() || failed {
                    break;
                }
            }
            drop(page_tx); // ends the cleaning side's loop
        });
        Ok(())
    }

    /// The cleaning side: turns pages into batches and sends them downstream.
    fn clean_pages(
        &self,
        pages: std::sync::mpsc::Receiver<PageMessage>,
        tx: &mpsc::Sender<Result<WikiBatch, StageError>>,
    ) {
        let mut rows = WikiRows::new();
        let mut cleaner: Option<(WikitextCleaner, Option<String>)> = None;
        for message in pages {
            let (item, site) = match message {
                Ok(m) => m,
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            if let Some(site) = site {
                let built = WikitextCleaner::new(site.non_text_namespaces(), self.config.max_template_depth);
                cleaner = Some((built, site.language()));
            }
            match item {
                DumpItem::Bad {
                    offset,
                    reason,
                    excerpt,
                } => rows.push_bad(&self.file, offset, &reason, &excerpt),
                DumpItem::Page(page) => {
                    let (cleaner, lang) = cleaner.get_or_insert_with(|| {
                        (WikitextCleaner::new(Vec::new(), self.config.max_template_depth), None)
                    });
                    self.convert_page(page, cleaner, lang.as_deref(), &mut rows);
                }
            }
            if (rows.len() >= BATCH_PAGES || rows.docs.text_bytes() >= BATCH_TEXT_BYTES)
                && tx.blocking_send(rows.finish()).is_err()
            {
                return; // the consumer is gone
            }
        }
        if rows.len() > 0 || !rows.filtered.is_empty() {
            let _ = tx.blocking_send(rows.finish());
        }
    }

    fn convert_page(&self, page: Page, cleaner: &WikitextCleaner, lang: Option<&str>, rows: &mut WikiRows) {
        let file = &self.file;
        let (Some(title), Some(page_id)) = (page.title.as_deref(), page.id) else {
            let raw = format!("title={:?} id={:?}", page.title, page.id);
            rows.push_bad(file, page.offset, "page without a title or a numeric id", &raw);
            return;
        };
        if page.ns != Some(0) {
            return rows.filter("namespace");
        }
        // MediaWiki's syntax: `#REDIRECT [[Target]]` (any case, an optional colon).
        let starts_redirect = |t: &str| {
            t.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("#redirect"))
                && t[9..]
                    .trim_start()
                    .trim_start_matches(':')
                    .trim_start()
                    .starts_with("[[")
        };
        if page.redirect || starts_redirect(page.text.trim_start()) {
            return rows.filter("redirect");
        }
        let Some(lang) = lang.filter(|l| self.config.languages.iter().any(|k| k == l)) else {
            return rows.filter("language");
        };
        match cleaner.clean(&page.text) {
            Err(e @ WikitextError::TooDeep { .. }) => rows.push_bad(file, page.offset, &e.to_string(), title),
            Ok(clean) if clean.text.trim().is_empty() => rows.filter("empty"),
            Ok(clean) => {
                let locator = format!("{}#{page_id}", file.relative);
                let url = format!("wikipedia:{lang}/{}", title.replace(' ', "_"));
                rows.docs
                    .append(&locator, Some(&url), &clean.text, &file.display, page.offset);
                rows.lang.append_value(lang);
                rows.title.append_value(title);
                rows.page_id.append_value(page_id);
                rows.reason.append_null();
                let id = document_id(SOURCE, &locator);
                for cited in clean.urls {
                    rows.refs_id.append_value(&id);
                    rows.refs_page_id.append_value(page_id);
                    rows.refs_lang.append_value(lang);
                    rows.refs_url.append_value(&cited.url);
                    rows.refs_kind.append_value(cited.kind);
                }
            }
        }
    }
}

/// Builders for one batch of pages and their refs.
struct WikiRows {
    docs: DocumentColumnsBuilder,
    lang: StringBuilder,
    title: StringBuilder,
    page_id: UInt64Builder,
    reason: StringBuilder,
    refs_id: StringBuilder,
    refs_page_id: UInt64Builder,
    refs_lang: StringBuilder,
    refs_url: StringBuilder,
    refs_kind: StringBuilder,
    filtered: BTreeMap<&'static str, u64>,
}

impl WikiRows {
    fn new() -> Self {
        WikiRows {
            docs: DocumentColumnsBuilder::new(SOURCE),
            lang: StringBuilder::new(),
            title: StringBuilder::new(),
            page_id: UInt64Builder::new(),
            reason: StringBuilder::new(),
            refs_id: StringBuilder::new(),
            refs_page_id: UInt64Builder::new(),
            refs_lang: StringBuilder::new(),
            refs_url: StringBuilder::new(),
            refs_kind: StringBuilder::new(),
            filtered: BTreeMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.docs.len()
    }

    fn filter(&mut self, rule: &'static str) {
        *self.filtered.entry(rule).or_default() += 1;
    }

    fn push_bad(&mut self, file: &InputFile, offset: u64, reason: &str, excerpt: &str) {
        let locator = format!("{}#{offset}", file.relative);
        self.docs.append(&locator, None, excerpt, &file.display, offset);
        self.lang.append_null();
        self.title.append_null();
        self.page_id.append_null();
        self.reason.append_value(reason);
    }

    fn finish(&mut self) -> Result<WikiBatch, StageError> {
        let mut columns = self.docs.finish();
        columns.push(Arc::new(self.lang.finish()));
        columns.push(Arc::new(self.title.finish()));
        columns.push(Arc::new(self.page_id.finish()));
        columns.push(Arc::new(self.reason.finish()));
        let pages = RecordBatch::try_new(raw_schema(), columns)?;
        let refs = RecordBatch::try_new(
            refs_schema(),
            vec![
                Arc::new(self.refs_id.finish()),
                Arc::new(self.refs_page_id.finish()),
                Arc::new(self.refs_lang.finish()),
                Arc::new(self.refs_url.finish()),
                Arc::new(self.refs_kind.finish()),
            ],
        )?;
        Ok(WikiBatch {
            pages,
            refs,
            filtered: std::mem::take(&mut self.filtered),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_without_the_element_are_caught_by_their_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = InputFile {
            location: llamaflow_pipeline::store::StoreRegistry::default()
                .resolve("dump.xml", dir.path())
                .unwrap(),
            relative: "dump.xml".into(),
            display: "wiki/dump.xml".into(),
            size: 0,
            version: "v".into(),
        };
        let converter = PageConverter {
            file,
            config: parse_params(&toml::Table::new()).unwrap(),
        };
        let cleaner = WikitextCleaner::new(Vec::new(), 100);
        let mut rows = WikiRows::new();
        for (id, text) in [
            (1, "  #REDIRECT [[X]]"),
            (2, "#redirect[[Y]]"),
            (3, "#Redirected fact is text."),
        ] {
            let page = Page {
                title: Some(format!("P{id}")),
                ns: Some(0),
                id: Some(id),
                text: text.into(),
                ..Page::default()
            };
            converter.convert_page(page, &cleaner, Some("en"), &mut rows);
        }
        assert_eq!(rows.filtered.get("redirect"), Some(&2));
        assert_eq!(rows.len(), 1, "a numbered line that starts with 'Redirected' is text");
    }
}
