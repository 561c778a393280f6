//! Turns a stage's `inputs` entries into the concrete files it reads: globs and
//! prefixes are listed through the object store, listing files (`*.paths`,
//! `*.paths.gz`) are read, stage references become the upstream's committed parts.

use std::io::Read;

use futures::TryStreamExt;
use object_store::ObjectStoreExt;

use crate::store::{Location, StoreError, StoreRegistry, has_scheme, parse_location};

/// One file a stage reads, with the names it goes by in ids and lineage.
#[derive(Debug, Clone)]
pub struct InputFile {
    /// Where the bytes are.
    pub location: Location,
    /// The path relative to the base of the `inputs` entry that matched it
    /// (the part before the first wildcard; for a listing, the listed path):
    /// the document id's locator starts with it.
    pub relative: String,
    /// The name shown in `input_file` columns and messages: the entry's base as
    /// written in the pipeline file, followed by `relative`.
    pub display: String,
    /// Size in bytes.
    pub size: u64,
    /// What changes when the file does (ETag, or size and modification time).
    pub version: String,
}

/// Errors raised while resolving inputs.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The entry is not a usable location.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing or reading the entry failed.
    #[error("input `{entry}`: {source}")]
    Read {
        /// The entry as written.
        entry: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// A listing file could not be decoded.
    #[error("listing file `{entry}`: {message}")]
    Listing {
        /// The listing file.
        entry: String,
        /// What went wrong.
        message: String,
    },
    /// Nothing matched.
    #[error("input `{0}` matched no files")]
    NoMatch(String),
    /// The glob pattern is malformed.
    #[error("input `{0}`: bad glob pattern: {1}")]
    BadGlob(String, String),
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

fn is_listing(text: &str) -> bool {
    text.ends_with(".paths") || text.ends_with(".paths.gz")
}

/// Resolves one location entry (`inputs` item that is not a stage reference).
pub async fn resolve_location(
    entry: &str,
    base_dir: &std::path::Path,
    stores: &StoreRegistry,
) -> Result<Vec<InputFile>, InputError> {
    if is_listing(entry) && !is_glob(entry) {
        return resolve_listing(entry, base_dir, stores).await;
    }
    let (written_base, pattern) = match entry.find(['*', '?', '[']) {
        Some(i) => {
            let cut = entry[..i].rfind('/').map_or(0, |j| j + 1);
            (&entry[..cut], Some(&entry[cut..]))
        }
        None => (entry, None),
    };
    let base_text = if written_base.is_empty() { "." } else { written_base };
    let base = stores.resolve(base_text, base_dir)?;
    let read_err = |source| InputError::Read {
        entry: entry.to_string(),
        source,
    };

    let Some(pattern) = pattern else {
        // A plain path: one object, or every object under it when it is a folder.
        match base.store.head(&base.path).await {
            Ok(meta) => {
                let name = meta.location.filename().unwrap_or_default().to_string();
                return Ok(vec![InputFile {
                    location: base.with_path(meta.location.clone()),
                    relative: name,
                    display: entry.to_string(),
                    size: meta.size,
                    version: version_of(&meta),
                }]);
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(read_err(e)),
        }
        let files = list_under(&base, entry, written_base, None).await?;
        return if files.is_empty() {
            Err(InputError::NoMatch(entry.to_string()))
        } else {
            Ok(files)
        };
    };
    let glob = glob::Pattern::new(pattern).map_err(|e| InputError::BadGlob(entry.to_string(), e.to_string()))?;
    let files = list_under(&base, entry, written_base, Some(&glob)).await?;
    if files.is_empty() {
        return Err(InputError::NoMatch(entry.to_string()));
    }
    Ok(files)
}

async fn list_under(
    base: &Location,
    entry: &str,
    written_base: &str,
    glob: Option<&glob::Pattern>,
) -> Result<Vec<InputFile>, InputError> {
    let metas: Vec<object_store::ObjectMeta> =
        base.store
            .list(Some(&base.path))
            .try_collect()
            .await
            .map_err(|source| InputError::Read {
                entry: entry.to_string(),
                source,
            })?;
    let prefix = base.path.as_ref();
    let options = glob::MatchOptions {
        require_literal_separator: true,
        ..Default::default()
    };
    let mut files = Vec::new();
    for meta in metas {
        let full = meta.location.as_ref();
        let relative = full
            .strip_prefix(prefix)
            .unwrap_or(full)
            .trim_start_matches('/')
            .to_string();
        // Hidden and underscore files are bookkeeping (ours or other tools'), never data.
        if relative.split('/').any(|p| p.starts_with('.') || p.starts_with('_')) {
            continue;
        }
        if let Some(glob) = glob
            && !glob.matches_with(&relative, options)
        {
            continue;
        }
        let sep = if written_base.is_empty() || written_base.ends_with('/') {
            ""
        } else {
            "/"
        };
        files.push(InputFile {
            location: base.with_path(meta.location.clone()),
            display: format!("{written_base}{sep}{relative}"),
            relative,
            size: meta.size,
            version: version_of(&meta),
        });
    }
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    Ok(files)
}

async fn resolve_listing(
    entry: &str,
    base_dir: &std::path::Path,
    stores: &StoreRegistry,
) -> Result<Vec<InputFile>, InputError> {
    let listing = stores.resolve(entry, base_dir)?;
    let read_err = |source| InputError::Read {
        entry: entry.to_string(),
        source,
    };
    let result = listing.store.get(&listing.path).await.map_err(read_err)?;
    let listing_version = version_of(&result.meta);
    let bytes = result.bytes().await.map_err(read_err)?;
    let mut text = String::new();
    let decoded = if entry.ends_with(".gz") {
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_string(&mut text)
    } else {
        (&bytes[..]).read_to_string(&mut text)
    };
    decoded.map_err(|e| InputError::Listing {
        entry: entry.to_string(),
        message: e.to_string(),
    })?;
    let listing_dir = listing.url.join(".").map_err(|e| InputError::Listing {
        entry: entry.to_string(),
        message: e.to_string(),
    })?;
    let mut files = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let url = if has_scheme(line) {
            parse_location(line, base_dir)?
        } else {
            listed_base(&listing_dir, line)
                .join(line)
                .map_err(|e| InputError::Listing {
                    entry: entry.to_string(),
                    message: format!("bad path `{line}`: {e}"),
                })?
        };
        // Listed files are not probed one by one (a CommonCrawl listing names
        // ~90k files): their size is unknown here, their version is the
        // listing's, and a missing one fails only its own unit.
        files.push(InputFile {
            location: stores.open(&url, line)?,
            relative: line.to_string(),
            display: line.to_string(),
            size: 0,
            version: format!("listed in {listing_version}"),
        });
    }
    if files.is_empty() {
        return Err(InputError::NoMatch(entry.to_string()));
    }
    Ok(files)
}

/// The folder a relative listed path resolves against: the listing's folder,
/// or, when the path's first folder is one of that folder's ancestors' names,
/// the folder above it. CommonCrawl's `wet.paths.gz` lists paths from the
/// bucket's root (`crawl-data/CC-MAIN-2024-22/segments/...`) while the listing
/// itself sits in `crawl-data/CC-MAIN-2024-22/`.
fn listed_base(listing_dir: &url::Url, line: &str) -> url::Url {
    let Some((first, _)) = line.split_once('/') else {
        return listing_dir.clone();
    };
    let path = listing_dir.path();
    let marker = format!("/{first}/");
    match path.find(&marker) {
        Some(at) => {
            let mut base = listing_dir.clone();
            base.set_path(&path[..=at]);
            base
        }
        None => listing_dir.clone(),
    }
}

fn version_of(meta: &object_store::ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => format!("etag:{tag}"),
        None => format!(
            "size:{};mtime:{}",
            meta.size,
            meta.last_modified.timestamp_nanos_opt().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commoncrawl_listings_resolve_from_the_bucket_root() {
        let dir = url::Url::parse("https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/").unwrap();
        let line = "crawl-data/CC-MAIN-2024-22/segments/1/wet/a.warc.wet.gz";
        assert_eq!(
            listed_base(&dir, line).join(line).unwrap().as_str(),
            "https://data.commoncrawl.org/crawl-data/CC-MAIN-2024-22/segments/1/wet/a.warc.wet.gz"
        );
        let local = url::Url::parse("file:///data/lists/").unwrap();
        assert_eq!(listed_base(&local, "c4/a.json.gz"), local);
        assert_eq!(listed_base(&local, "a.json.gz"), local);
    }

    #[tokio::test]
    async fn globs_listings_and_folders_resolve_relative_to_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("c4/sub")).unwrap();
        std::fs::write(d.join("c4/b.json.gz"), b"x").unwrap();
        std::fs::write(d.join("c4/a.json.gz"), b"xy").unwrap();
        std::fs::write(d.join("c4/notes.txt"), b"").unwrap();
        std::fs::write(d.join("c4/_tmp.json.gz"), b"").unwrap();
        std::fs::write(d.join("c4/sub/c.json.gz"), b"").unwrap();
        std::fs::write(d.join("list.paths"), "c4/b.json.gz\n\nc4/sub/c.json.gz\n").unwrap();
        let stores = StoreRegistry::default();

        let files = resolve_location("c4/*.json.gz", d, &stores).await.unwrap();
        let rel: Vec<_> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(rel, ["a.json.gz", "b.json.gz"]);
        assert_eq!(files[0].display, "c4/a.json.gz");
        assert_eq!(files[0].size, 2);

        let files = resolve_location("c4/**/*.json.gz", d, &stores).await.unwrap();
        assert_eq!(files.len(), 3);

        let files = resolve_location("c4", d, &stores).await.unwrap();
        assert_eq!(files.len(), 4, "a folder means every data file under it");

        let files = resolve_location("list.paths", d, &stores).await.unwrap();
        let rel: Vec<_> = files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(rel, ["c4/b.json.gz", "c4/sub/c.json.gz"]);

        let one = resolve_location("c4/a.json.gz", d, &stores).await.unwrap();
        assert_eq!(one[0].relative, "a.json.gz");

        assert!(matches!(
            resolve_location("c4/*.parquet", d, &stores).await,
            Err(InputError::NoMatch(_))
        ));
        assert!(matches!(
            resolve_location("missing/x", d, &stores).await,
            Err(InputError::NoMatch(_))
        ));
    }
}
