//! The README's main job: the sample pipeline runs, reruns as a no-op, and its
//! Parquet is read by DuckDB, the real consumer.

mod common;

use common::*;

#[test]
fn sample_pipeline_runs_then_skips_and_duckdb_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let out_root = dir.path().join("out");

    let out = run(llamaflow().args(["--pipeline", pipeline.to_str().unwrap(), "run"]));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("c4 ") && l.contains("succeeded") && l.contains("2/0/2")),
        "{}",
        text(&out)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("github ") && l.contains("succeeded") && l.contains("1/0/1")),
        "{}",
        text(&out)
    );

    let c4 = out_root.join("datasets/c4");
    let rows = query(
        "SELECT count(*), count(DISTINCT id), min(n_chars) > 0, count(timestamp), min(source), max(source) FROM c4",
        &[("c4", &c4)],
    );
    assert_eq!(rows, ["10|10|true|10|c4|c4"]);
    let cols = query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'c4' ORDER BY ordinal_position",
        &[("c4", &c4)],
    );
    assert_eq!(
        cols,
        [
            "id",
            "source",
            "url",
            "text",
            "n_chars",
            "input_file",
            "input_offset",
            "timestamp"
        ]
    );

    let manifest = manifest(&out_root, "c4");
    assert_eq!(manifest["rows"], 10);
    assert_eq!(manifest["counts"]["rows_in"], 10);
    assert_eq!(manifest["counts"]["kept"], 10);

    // A second run finds everything up to date.
    let out = run(llamaflow().args(["run", "--pipeline", pipeline.to_str().unwrap()]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("c4 ") && l.contains("up_to_date") && l.contains("0/2/2")),
        "{}",
        text(&out)
    );

    let out = run(llamaflow().args(["--pipeline", pipeline.to_str().unwrap(), "status"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.starts_with("c4 ") && l.contains("up to date")),
        "{}",
        text(&out)
    );

    // The ledger has both runs, readable as NDJSON by anyone.
    let runs = std::fs::read_dir(out_root.join("ledger/runs")).unwrap().count();
    assert_eq!(runs, 2);

    // DuckDB reads our Parquet unchanged, ids and all.
    let glob = c4.join("*.parquet");
    let script = format!(
        "import duckdb; print(duckdb.sql(\"SELECT count(*), count(DISTINCT id), sum(n_chars) = sum(length(text)) FROM read_parquet('{}')\").fetchall())",
        glob.display()
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        py.status.success(),
        "duckdb failed (is the duckdb package installed? .ci/run installs it): {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "[(10, 10, True)]");
}

#[test]
fn a_new_input_makes_the_stage_stale_and_only_it_is_processed() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    assert!(
        run(llamaflow().args(["--pipeline", p, "--quiet", "run"]))
            .status
            .success()
    );

    let lines = sample_lines();
    write_gz(&dir.path().join("c4/c4-extra.json.gz"), &lines[..3]);
    let out = run(llamaflow().args(["--pipeline", p, "status"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stale (its inputs changed)"),
        "{}",
        text(&out)
    );
    let out = run(llamaflow().args(["--pipeline", p, "run", "--dry-run"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("run 1 of 3 units"),
        "{}",
        text(&out)
    );

    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1/2/3"), "{}", text(&out));
    let rows = query(
        "SELECT count(*), count(DISTINCT id) FROM c4",
        &[("c4", &dir.path().join("out/datasets/c4"))],
    );
    assert_eq!(rows, ["13|13"]);

    // Removing it again drops its parts from the dataset.
    std::fs::remove_file(dir.path().join("c4/c4-extra.json.gz")).unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));
    let rows = query(
        "SELECT count(*) FROM c4",
        &[("c4", &dir.path().join("out/datasets/c4"))],
    );
    assert_eq!(rows, ["10"]);
}

#[test]
fn validate_and_graph_describe_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["validate", "--pipeline", p]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(": ok (19 stages: commoncrawl, commoncrawl_c4_rules, c4, c4_filter, github, github_repos, wikipedia, quality_lm, ref_classifier, cc_quality, books, books_dedup, arxiv, stackexchange, github_dedup, dedup, tokenizer, tokenize, train;"),
        "{}",
        text(&out)
    );
    let out = run(llamaflow().args(["--pipeline", p, "graph", "--dot"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("digraph llamaflow"),
        "{}",
        text(&out)
    );
    let out = run(llamaflow().args(["--pipeline", p, "graph"]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("c4 (c4)\n  <- c4/*.json.gz"),
        "{}",
        text(&out)
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let out = run(llamaflow().args([
        "--pipeline",
        pipeline.to_str().unwrap(),
        "--log-format",
        "json",
        "run",
        "--stages",
        "c4",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON log line"))
        .collect();
    assert!(
        events.iter().any(|e| e["fields"]["message"] == "stage finished"
            && e["fields"]["stage"] == "c4"
            && e["fields"]["kept"] == 10),
        "{stderr}"
    );
}
