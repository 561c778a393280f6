//! `url_host(url)`: the host of a URL, lowercased (`https://Www.Example.com/a`
//! → `www.example.com`); NULL for NULL, for text that is not a URL, and for
//! URLs without a host (`wikipedia:en/Title`, `mailto:`).

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The `url_host` UDF.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UrlHost {
    signature: Signature,
}

impl UrlHost {
    /// `url_host(url)`.
    pub fn udf() -> ScalarUDF {
        ScalarUDF::from(UrlHost {
            signature: Signature::string(1, Volatility::Immutable),
        })
    }
}

/// The lowercased host of `text`, if it is a URL with one.
pub fn host_of(text: &str) -> Option<String> {
    let text = text.trim();
    if let Some(host) = plain_http_host(text) {
        return Some(host.to_ascii_lowercase());
    }
    if hostless_scheme(text) {
        return None;
    }
    let url = url::Url::parse(text).ok()?;
    url.host_str().map(str::to_ascii_lowercase)
}

/// Whether `text` is `scheme:rest` with a scheme that is not one of the URL
/// standard's special ones and no `//` after it (`wikipedia:en/Title`,
/// `github:repo/path`, `mailto:`): such a URL has no host, whatever the rest.
fn hostless_scheme(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    let valid = scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let special = ["http", "https", "ftp", "ws", "wss", "file"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s));
    valid && !special && !rest.starts_with("//")
}

/// The host of an `http(s)://` URL whose host is plain ASCII letters, digits,
/// dots and hyphens (nearly every URL of a web corpus), found without a full
/// parse: for such hosts the URL standard's parse only lowercases them, and a
/// full parse costs several times the rest of a GROUP BY. Anything else (IDNA,
/// percent-escapes, IP literals, other schemes) returns `None` for the parser.
fn plain_http_host(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return None;
    }
    let authority = &rest[..rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return None;
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return None,
        None => authority,
    };
    let plain = !host.is_empty()
        && !host.starts_with(['.', '-'])
        && !host.ends_with('.')
        && !host.contains("..")
        && !host.starts_with("xn--")
        && !host.contains(".xn--")
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        // All-digit labels may be an IPv4 address, which the parser normalizes.
        && !host.rsplit('.').next().is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()));
    plain.then_some(host)
}

static DOCUMENTATION: LazyLock<Documentation> = LazyLock::new(|| {
    Documentation::builder(
        super::doc_section(),
        "The host of a URL, lowercased; NULL for NULL, for text that is not a URL and for URLs without a host.",
        "url_host(url)",
    )
    .with_argument("url", "A URL (any string type).")
    .with_sql_example("SELECT url_host(url) AS host, count(*) FROM c4 GROUP BY host ORDER BY 2 DESC LIMIT 10;")
    .build()
});

impl ScalarUDFImpl for UrlHost {
    fn name(&self) -> &str {
        "url_host"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let array = super::text_argument(self.name(), &args)?;
        let urls = array.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(urls.len(), urls.len() * 16);
        for i in 0..urls.len() {
            match urls.is_valid(i).then(|| host_of(urls.value(i))).flatten() {
                Some(host) => out.append_value(host),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }

    fn documentation(&self) -> Option<&Documentation> {
        Some(&DOCUMENTATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lowercased_and_urls_without_one_give_none() {
        assert_eq!(
            host_of("https://Www.Example.com/a?b#c").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host_of("http://[::1]:8080/").as_deref(), Some("[::1]"));
        assert_eq!(host_of("wikipedia:en/Title"), None);
        assert_eq!(host_of("mailto:a@b.c"), None);
        assert_eq!(host_of("not a url"), None);
    }

    #[test]
    fn the_fast_path_agrees_with_the_full_parse() {
        for url in [
            "http://Example.COM",
            "https://a.b-c.example.org:8443/x?y#z",
            "HTTPS://www.example.com?q",
            "http://example.com#frag",
            "http://example.com\\path",
            "http://user:pw@example.com/",
            "http://192.168.0.1/",
            "http://0x7f.1/",
            "http://bücher.example/",
            "http://xn--bcher-kva.example/",
            "http://ex%41mple.com/",
            "http://example.com:notaport/",
            "http://example.com.:80/",
            "http://-example.com/",
            "ftp://example.com/",
            "http://",
            "http:///path",
            "wikipedia:en/Albert_Sidney_Johnston",
            "github:libz-ng-sys-1.1.15/src/zlib-ng/crc32_fold.h",
            "mailto:a@b.c",
            "urn:isbn:123",
            "foo://Host.example/x",
            "http:example.com/relative-special",
            "1abc:rest",
        ] {
            let full = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
            assert_eq!(host_of(url), full, "{url}");
        }
    }
}
