//! llamaflow's UDFs, one `ScalarUDFImpl` a file; [`builtin`] lists the generic
//! ones (those that need a pipeline artifact, like `tokenize`, are added by
//! whoever loads the artifact).

pub mod detect_language;
pub mod language_score;
pub mod minhash;
pub mod minhash_jaccard;
pub mod perplexity;
pub mod ref_probability;
pub mod text_hash;
pub mod tokenize;
pub mod url_host;

use crate::registry::UdfRegistry;

/// A registry holding every generic UDF (stages add theirs on top).
pub fn builtin() -> UdfRegistry {
    let mut registry = UdfRegistry::default();
    registry.add_scalar(text_hash::TextHash::udf(false));
    registry.add_scalar(text_hash::TextHash::udf(true));
    registry.add_scalar(url_host::UrlHost::udf());
    registry.add_scalar(minhash::MinHash::udf());
    registry.add_scalar(minhash_jaccard::MinHashJaccard::udf());
    registry.add_scalar(detect_language::DetectLanguage::udf());
    registry.add_scalar(language_score::LanguageScore::udf());
    registry
}

/// The single text argument of a string UDF `name`, as a `Utf8` array.
pub(crate) fn text_argument(
    name: &str,
    args: &datafusion::logical_expr::ScalarFunctionArgs,
) -> datafusion::common::Result<arrow::array::ArrayRef> {
    let [arg] = args.args.as_slice() else {
        return datafusion::common::exec_err!("{name} takes one argument");
    };
    let array = arg.to_array(args.number_rows)?;
    Ok(arrow::compute::cast(&array, &arrow::datatypes::DataType::Utf8)?)
}

/// `f` applied to each non-NULL text of the single string argument of UDF
/// `name`; NULL in, or `None` out, gives NULL.
pub(crate) fn map_text(
    name: &str,
    args: &datafusion::logical_expr::ScalarFunctionArgs,
    mut f: impl FnMut(&str) -> Option<String>,
) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
    use arrow::array::{Array, AsArray};
    let array = text_argument(name, args)?;
    let texts = array.as_string::<i32>();
    let mut out = arrow::array::StringBuilder::with_capacity(texts.len(), texts.len() * 32);
    for i in 0..texts.len() {
        match texts.is_valid(i).then(|| f(texts.value(i))).flatten() {
            Some(value) => out.append_value(value),
            None => out.append_null(),
        }
    }
    Ok(datafusion::logical_expr::ColumnarValue::Array(std::sync::Arc::new(
        out.finish(),
    )))
}

/// The section every llamaflow UDF's documentation is filed under.
pub(crate) fn doc_section() -> datafusion::logical_expr::DocSection {
    datafusion::logical_expr::DocSection {
        include: true,
        label: "llamaflow",
        description: Some("Functions of llamaflow's corpora and artifacts"),
    }
}
