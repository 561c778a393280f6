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
    let url = url::Url::parse(text.trim()).ok()?;
    url.host_str().map(str::to_ascii_lowercase)
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
}
