//! Every byte llamaflow reads or writes goes through `object_store`, local files
//! included; this module turns a URL or path into a store and a path in it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use url::Url;

/// Errors raised while resolving a location to an object store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The text is neither a path nor a URL we understand.
    #[error("`{0}` is not a valid path or URL: {1}")]
    BadLocation(String, String),
    /// The URL's scheme has no object store compiled in.
    #[error("`{0}`: the scheme `{1}` is not supported (use a local path, file://, s3:// or http(s)://)")]
    UnsupportedScheme(String, String),
    /// The object store refused its configuration (credentials, bucket name).
    #[error("cannot open the object store for `{0}`: {1}")]
    Open(String, #[source] object_store::Error),
}

/// A place in an object store: the store, the path inside it, and its URL.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store holding the object.
    pub store: Arc<dyn ObjectStore>,
    /// The path inside `store`.
    pub path: StorePath,
    /// The full URL (`file:///...`, `s3://bucket/...`), for messages and lineage.
    pub url: Url,
}

impl Location {
    /// The location of `child` (a `/`-separated relative path) under this one.
    pub fn join(&self, child: &str) -> Location {
        let mut path = self.path.clone();
        for part in child.split('/').filter(|p| !p.is_empty()) {
            path = path.join(part);
        }
        let mut url = self.url.clone();
        let joined = format!("{}/{}", self.url.path().trim_end_matches('/'), child);
        url.set_path(&joined);
        Location {
            store: self.store.clone(),
            path,
            url,
        }
    }

    /// The location of `path`, another path in the same store.
    pub fn with_path(&self, path: StorePath) -> Location {
        let mut url = self.url.clone();
        url.set_path(&format!("/{}", path.as_ref()));
        Location {
            store: self.store.clone(),
            path,
            url,
        }
    }
}

/// Opens object stores by URL and caches them, one per scheme and bucket.
#[derive(Debug, Default, Clone)]
pub struct StoreRegistry {
    stores: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl StoreRegistry {
    /// Resolves `text` (a URL, an absolute path, or a path relative to `base_dir`).
    pub fn resolve(&self, text: &str, base_dir: &std::path::Path) -> Result<Location, StoreError> {
        let url = parse_location(text, base_dir)?;
        self.open(&url, text)
    }

    /// Opens the store for an already-parsed URL.
    pub fn open(&self, url: &Url, original: &str) -> Result<Location, StoreError> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        let store = {
            let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
            match stores.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let s = open_store(url, original)?;
                    stores.insert(key, s.clone());
                    s
                }
            }
        };
        let path = match url.scheme() {
            "file" => {
                let fs_path = url
                    .to_file_path()
                    .map_err(|_| StoreError::BadLocation(original.to_string(), "not a file path".into()))?;
                StorePath::from_absolute_path(&fs_path)
                    .map_err(|e| StoreError::BadLocation(original.to_string(), e.to_string()))?
            }
            _ => StorePath::from_url_path(url.path())
                .map_err(|e| StoreError::BadLocation(original.to_string(), e.to_string()))?,
        };
        Ok(Location {
            store,
            path,
            url: url.clone(),
        })
    }
}

/// Parses a URL with a scheme, or a local path (relative to `base_dir`) into a `file://` URL.
pub fn parse_location(text: &str, base_dir: &std::path::Path) -> Result<Url, StoreError> {
    if has_scheme(text) {
        return Url::parse(text).map_err(|e| StoreError::BadLocation(text.to_string(), e.to_string()));
    }
    let path = std::path::Path::new(text);
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    };
    let abs = normalize(&abs);
    Url::from_file_path(&abs).map_err(|_| StoreError::BadLocation(text.to_string(), "not an absolute path".into()))
}

/// True when `text` starts with a URL scheme such as `s3://` or `file://`.
pub fn has_scheme(text: &str) -> bool {
    match text.find("://") {
        Some(i) => {
            i > 1
                && text[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
        }
        None => false,
    }
}

/// Removes `.` and `..` components without touching the file system (the path may not exist yet).
fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn open_store(url: &Url, original: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    match url.scheme() {
        "file" => Ok(Arc::new(LocalFileSystem::new())),
        "s3" | "s3a" => {
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(|e| StoreError::Open(original.to_string(), e))?;
            Ok(Arc::new(store))
        }
        "http" | "https" => {
            let store = object_store::http::HttpBuilder::new()
                .with_url(format!("{}://{}", url.scheme(), url.authority()))
                .build()
                .map_err(|e| StoreError::Open(original.to_string(), e))?;
            Ok(Arc::new(store))
        }
        other => Err(StoreError::UnsupportedScheme(original.to_string(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_base_dir() {
        let url = parse_location("c4/x.json.gz", std::path::Path::new("/data/samples")).unwrap();
        assert_eq!(url.as_str(), "file:///data/samples/c4/x.json.gz");
        let url = parse_location("../out", std::path::Path::new("/data/samples")).unwrap();
        assert_eq!(url.as_str(), "file:///data/out");
    }

    #[test]
    fn urls_keep_their_scheme() {
        assert!(has_scheme("s3://bucket/key"));
        assert!(!has_scheme("c4/*.json.gz"));
        let reg = StoreRegistry::default();
        let loc = reg.resolve("/tmp/x/y", std::path::Path::new("/")).unwrap();
        assert_eq!(loc.path.as_ref(), "tmp/x/y");
        assert_eq!(loc.join("a/b").path.as_ref(), "tmp/x/y/a/b");
        assert_eq!(loc.join("a/b").url.as_str(), "file:///tmp/x/y/a/b");
        assert!(matches!(
            reg.resolve("gs://b/k", std::path::Path::new("/")),
            Err(StoreError::UnsupportedScheme(..))
        ));
    }
}
