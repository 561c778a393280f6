//! llamaflow's UDFs, one `ScalarUDFImpl` a file; [`builtin`] lists the generic
//! ones (those that need a pipeline artifact, like `tokenize`, are added by
//! whoever loads the artifact).

pub mod minhash;
pub mod minhash_jaccard;
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

/// The section every llamaflow UDF's documentation is filed under.
pub(crate) fn doc_section() -> datafusion::logical_expr::DocSection {
    datafusion::logical_expr::DocSection {
        include: true,
        label: "llamaflow",
        description: Some("Functions of llamaflow's corpora and artifacts"),
    }
}
