//! Help for SQL functions from their own documentation (what the shell's
//! `\h NAME` prints): llamaflow's UDFs and DataFusion's built-ins alike.

use datafusion::execution::SessionState;
use datafusion::logical_expr::Documentation;

/// The help text of function `name`, if the session knows it.
pub fn function_help(state: &SessionState, name: &str) -> Option<String> {
    let name = name.to_ascii_lowercase();
    let documentation = if let Some(f) = state.scalar_functions().get(&name) {
        f.documentation()
    } else if let Some(f) = state.aggregate_functions().get(&name) {
        f.documentation()
    } else if let Some(f) = state.window_functions().get(&name) {
        f.documentation()
    } else {
        return None;
    };
    Some(match documentation {
        Some(doc) => render(doc),
        None => format!("{name}: no documentation"),
    })
}

/// Names of the session's llamaflow functions (those filed under `llamaflow`), sorted.
pub fn llamaflow_functions(state: &SessionState) -> Vec<String> {
    let mut names: Vec<String> = state
        .scalar_functions()
        .iter()
        .filter(|(_, f)| f.documentation().is_some_and(|d| d.doc_section.label == "llamaflow"))
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

fn render(doc: &Documentation) -> String {
    let mut out = format!("{}\n\n{}\n", doc.syntax_example, doc.description);
    if let Some(arguments) = &doc.arguments {
        out.push_str("\nArguments:\n");
        for (name, description) in arguments {
            out.push_str(&format!("  {name}: {description}\n"));
        }
    }
    if let Some(example) = &doc.sql_example {
        out.push_str(&format!("\nExample:\n  {}\n", example.trim().replace('\n', "\n  ")));
    }
    if let Some(related) = &doc.related_udfs {
        out.push_str(&format!("\nSee also: {}\n", related.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_functions_and_builtins_have_help_and_unknown_names_none() {
        let ctx = crate::SessionBuilder::default().build().unwrap();
        let state = ctx.state();
        let help = function_help(&state, "MINHASH_JACCARD").unwrap();
        assert!(help.starts_with("minhash_jaccard(a, b)"), "{help}");
        assert!(help.contains("Arguments:\n  a: "), "{help}");
        assert!(function_help(&state, "upper").unwrap().contains("upper(str)"));
        assert_eq!(function_help(&state, "no_such_function"), None);
        let ours = llamaflow_functions(&state);
        for name in [
            "minhash",
            "minhash_jaccard",
            "normalized_text_hash",
            "text_hash",
            "url_host",
        ] {
            assert!(ours.contains(&name.to_string()), "{ours:?}");
        }
        assert!(!ours.contains(&"upper".to_string()));
    }
}
