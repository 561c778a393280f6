//! The SQL that stages run, kept as `.sql` files in `sql/queries/` so they can
//! be read, and run by hand, as they are.

/// The `tokenize` stage's query over a table named `documents`.
pub const TOKENIZE: &str = include_str!("../queries/tokenize.sql");

/// `query` with its `FROM documents` pointed at `table` instead; `None` when
/// the query has no such clause (a query edited out of shape).
pub fn over_table(query: &str, table: &str) -> Option<String> {
    query
        .contains("FROM documents")
        .then(|| query.replace("FROM documents", &format!("FROM {table}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokenize_query_reads_documents() {
        let q = over_table(TOKENIZE, "t_1").unwrap();
        assert!(q.contains("FROM t_1") && !q.contains("FROM documents"), "{q}");
        assert!(over_table("SELECT 1", "t").is_none());
    }
}
