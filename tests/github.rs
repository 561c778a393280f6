//! The `github` source on its sample (real files from crates and a PyPI
//! package, with MIT/Apache, BSD, Unlicense/MIT, Apache and GPL rows).

mod common;

use common::*;

#[test]
fn github_sample_keeps_only_permissive_code_files() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "github"]));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.lines().any(|l| l.starts_with("c4 ")),
        "--stages github runs github alone: {stdout}"
    );

    let m = manifest(&dir.path().join("out"), "github");
    let c = &m["counts"];
    assert_eq!(c["rows_in"], 584, "{c}");
    assert_eq!(c["quarantined"], 0, "{c}");
    assert_eq!(c["filtered"]["license_not_allowed"], 215, "the GPL rows: {c}");
    let filtered = filtered_total(c);
    assert_eq!(c["kept"].as_u64().unwrap() + filtered, 584, "{c}");

    let gh = dir.path().join("out/datasets/github");
    let rows = query(
        "SELECT count(*), sum(CASE WHEN license LIKE '%GPL%' THEN 1 ELSE 0 END), \
                sum(CASE WHEN lower(path) LIKE '%license%' OR lower(path) LIKE '%copying%' THEN 1 ELSE 0 END), \
                sum(CASE WHEN url = concat('github:', repo_name, '/', path) THEN 1 ELSE 0 END), \
                sum(CASE WHEN n_chars = character_length(text) THEN 1 ELSE 0 END), \
                count(DISTINCT id) \
         FROM gh",
        &[("gh", &gh)],
    );
    let kept = c["kept"].as_u64().unwrap();
    assert_eq!(rows, [format!("{kept}|0|0|{kept}|{kept}|{kept}")]);
    let long = query(
        "SELECT count(*) FROM gh WHERE text LIKE '%Copyright%' AND strpos(text, 'Copyright') < 5",
        &[("gh", &gh)],
    );
    assert_eq!(long, ["0"], "leading copyright headers are stripped");
}

#[test]
fn a_parquet_export_of_the_same_rows_gives_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    // DuckDB writes the sample rows as Parquet, as a BigQuery export would arrive.
    std::fs::create_dir_all(dir.path().join("export")).unwrap();
    let script = format!(
        "import duckdb; duckdb.sql(\"COPY (SELECT * FROM read_json('{}')) TO '{}' (FORMAT PARQUET)\")",
        dir.path().join("github/github_files.jsonl.gz").display(),
        dir.path().join("export/github.parquet").display()
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let toml = std::fs::read_to_string(&pipeline).unwrap()
        + "\n[stages.github_parquet]\ntype = \"github\"\ninputs = [\"export/*.parquet\"]\n";
    std::fs::write(&pipeline, toml).unwrap();
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "github,github_parquet"]));
    assert!(out.status.success(), "{}", text(&out));
    let root = dir.path().join("out");
    let (jsonl, parquet) = (manifest(&root, "github"), manifest(&root, "github_parquet"));
    assert_eq!(jsonl["counts"], parquet["counts"]);
    assert_eq!(parquet["counts"]["rows_in"], 584);
    let same = query(
        "SELECT count(*) FROM j FULL OUTER JOIN p ON j.url = p.url AND j.text = p.text WHERE j.url IS NULL OR p.url IS NULL",
        &[
            ("j", &root.join("datasets/github")),
            ("p", &root.join("datasets/github_parquet")),
        ],
    );
    assert_eq!(same, ["0"], "the same files, cleaned the same way");
}
