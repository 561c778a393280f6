//! The stage's parameters and grouping; the rules end to end are in `tests/commoncrawl.rs`.

use super::*;

fn stage(toml: &str) -> Result<Arc<dyn Stage>, ParamError> {
    let table: toml::Table = toml::from_str(toml).unwrap();
    let decl = StageDecl {
        name: "cc".into(),
        type_name: "commoncrawl".into(),
        inputs: vec![],
        params: table,
        line: 1,
        mixture: Default::default(),
    };
    CommonCrawlFactory.build(&decl)
}

fn file(name: &str) -> InputFile {
    let loc = llamaflow_pipeline::store::StoreRegistry::default()
        .resolve(name, std::path::Path::new("/tmp"))
        .unwrap();
    InputFile {
        location: loc,
        relative: name.to_string(),
        display: name.to_string(),
        size: 1,
        version: "v".into(),
    }
}

#[test]
fn bad_parameters_are_refused_by_name() {
    for (toml, key) in [
        ("group_files = 0", "group_files"),
        ("languages = [\"xx\"]", "languages"),
        ("language_threshold = 1.5", "language_threshold"),
        ("limit = 0", "limit"),
    ] {
        let err = stage(toml).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{toml}: {err}");
    }
    assert!(stage("min_chars = 300\nlanguages = []\nline_dedup = false").is_ok());
}

#[test]
fn units_are_groups_of_consecutive_files_after_the_limit() {
    let grouped = stage("group_files = 2\nlimit = 5").unwrap();
    let names = ["e", "b", "a", "d", "c", "f"];
    let units = grouped.units(names.iter().map(|n| file(n)).collect());
    let groups: Vec<Vec<&str>> = units
        .iter()
        .map(|u| u.files.iter().map(|f| f.relative.as_str()).collect())
        .collect();
    // The limit takes the first five in listing order (not "f"), then groups go by path.
    assert_eq!(groups, vec![vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    assert_eq!(units[0].key, "group:a");
    let per_file = stage("line_dedup = false\ngroup_files = 2").unwrap();
    assert_eq!(per_file.units(names.iter().map(|n| file(n)).collect()).len(), 6);
}

#[test]
fn character_counts_are_exact_at_the_boundary() {
    assert!(!has_chars(&"é".repeat(299), 300));
    assert!(has_chars(&"é".repeat(300), 300));
    assert!(!has_chars(&"a".repeat(299), 300));
    assert!(has_chars("", 0));
}
