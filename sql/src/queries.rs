//! The SQL that stages run, kept as `.sql` files in `sql/queries/` so they can
//! be read, and run by hand, as they are.

/// The `tokenize` stage's query over a table named `documents`.
pub const TOKENIZE: &str = include_str!("../queries/tokenize.sql");

/// Ready-made queries for `llamaflow sql --query NAME`, by name.
pub const LIBRARY: &[(&str, &str)] = &[
    ("sources_overview", include_str!("../queries/sources_overview.sql")),
    ("top_domains", include_str!("../queries/top_domains.sql")),
    ("why_removed", include_str!("../queries/why_removed.sql")),
    ("token_budget", include_str!("../queries/token_budget.sql")),
];

/// The ready-made query called `name`.
pub fn named(name: &str) -> Option<&'static str> {
    LIBRARY.iter().find(|(n, _)| *n == name).map(|(_, q)| *q)
}

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
