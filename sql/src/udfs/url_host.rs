//! `url_host(url)`: the host of a URL, lowercased (`https://Www.Example.com/a`
//! → `www.example.com`); NULL for NULL, for text that is not a URL, and for
//! URLs without a host (`wikipedia:en/Title`, `mailto:`).

use std::sync::LazyLock;

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
    // Fast paths (nearly every URL of a corpus), decided in one pass over the
    // scheme and authority; anything unusual goes to the full URL parser.
    if let Some((scheme, rest)) = text.split_once(':') {
        let valid = scheme.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if valid {
            let http = scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https");
            if let (true, Some(after)) = (http, rest.strip_prefix("//")) {
                if let Some(host) = plain_host(after) {
                    return Some(host.to_ascii_lowercase());
                }
            } else if !is_special(scheme) && !rest.starts_with("//") {
                // `wikipedia:en/Title`, `github:repo/path`, `mailto:`: a URL of
                // a non-special scheme without `//` has no host.
                return None;
            }
        }
    }
    let url = url::Url::parse(text).ok()?;
    url.host_str().map(str::to_ascii_lowercase)
}

/// The URL standard's special schemes, whose URLs always have a host.
fn is_special(scheme: &str) -> bool {
    ["http", "https", "ftp", "ws", "wss", "file"]
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
}

/// The host at the start of `authority` (what follows `http://`) when it is
/// plain ASCII letters, digits, dots and hyphens, with at most a numeric port:
/// for such hosts the full parse only lowercases them. `None` for anything
/// else (userinfo, IDNA, percent-escapes, IP literals, odd dots), which the
/// parser handles.
fn plain_host(authority: &str) -> Option<&str> {
    let bytes = authority.as_bytes();
    let mut end = bytes.len();
    let mut port_at = None;
    let mut previous = b'.';
    let mut label_start = 0;
    let mut label_all_digits = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' | b'?' | b'#' | b'\\' => {
                end = i;
                break;
            }
            b':' if port_at.is_none() => port_at = Some(i),
            _ if port_at.is_some() => {
                if !b.is_ascii_digit() {
                    return None;
                }
            }
            b'.' => {
                if previous == b'.' || previous == b'-' && i == label_start + 1 {
                    return None;
                }
                label_start = i + 1;
                label_all_digits = true;
            }
            b'-' if previous == b'.' => return None,
            _ if b.is_ascii_alphanumeric() || b == b'-' => {
                label_all_digits &= b.is_ascii_digit();
                // An IDNA label (`xn--`) is checked and normalized by the parser.
                if i == label_start + 3 && bytes[label_start..=i].eq_ignore_ascii_case(b"xn--") {
                    return None;
                }
            }
            _ => return None,
        }
        if port_at.is_none() {
            previous = b;
        }
    }
    let host_end = port_at.unwrap_or(end);
    // Empty, ending in a dot, or a last label of digits (maybe an IPv4 address,
    // which the parser normalizes): leave it to the parser.
    if host_end == 0 || previous == b'.' || label_all_digits {
        return None;
    }
    Some(&authority[..host_end])
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
        super::map_text(self.name(), &args, host_of)
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
            "http://example.com:/",
            "http://EXAMPLE.com-/",
            "http://a_b.example/",
            "http://xN--bcher-kva.example/",
            "http://www.xn--bcher-kva.example/",
            "http://ex ample.com/",
            "http://a.-b.example/",
            "http://a-.b.example/",
            "http://1.2.3.4:80/",
            "http://example.123/",
        ] {
            let full = url::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase));
            assert_eq!(host_of(url), full, "{url}");
        }
    }
}
