//! `llamaflow sql` over the sample pipeline's output: every dataset a table,
//! the quarantine view, the tokenizer's UDFs, the output formats, DuckDB
//! agreeing on counts, and every writing statement refused.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;

/// The sample pipeline, run once per test process into a folder of the build's
/// temporary space (wiped first), shared by the tests below; its pipeline file.
fn sample() -> &'static Path {
    static SAMPLE: OnceLock<PathBuf> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sql-sample");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let pipeline = copy_samples(&dir);
        let out = run(llamaflow().args(["--pipeline", pipeline.to_str().unwrap(), "--quiet", "run"]));
        assert!(out.status.success(), "{}", text(&out));
        pipeline
    })
}

fn sql(pipeline: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = llamaflow();
    cmd.args(["--pipeline", pipeline, "sql"]).args(args);
    run(&mut cmd)
}

#[test]
fn sql_reads_every_dataset_and_refuses_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = sample();
    let p = pipeline.to_str().unwrap();
    let root = pipeline.parent().unwrap();

    let out = sql(
        p,
        &[
            "--format",
            "ndjson",
            "-c",
            "SELECT source, count(*) AS docs, sum(tokens) AS tokens FROM tokenize GROUP BY source ORDER BY source",
            "-c",
            "SELECT count(*) AS n FROM quarantine",
            "-c",
            "SELECT token_count('in 1987') AS n",
            "-c",
            "SELECT count(*) AS n FROM wikipedia__refs",
            "-c",
            "SELECT count(*) AS n, count(kept_id) AS k FROM github_dedup__removed",
            "-c",
            "SELECT count(*) AS n, min(status) AS status FROM runs",
            "-c",
            "SELECT count(*) AS n FROM units WHERE stage = 'tokenize' AND status = 'committed'",
            "-c",
            "SELECT count(*) AS n FROM stage_runs WHERE status = 'succeeded'",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let sources: Vec<&str> = lines[..7].iter().map(|l| l["source"].as_str().unwrap()).collect();
    assert_eq!(
        sources,
        [
            "arxiv",
            "books",
            "c4",
            "commoncrawl",
            "github",
            "stackexchange",
            "wikipedia"
        ]
    );
    assert_eq!(lines[2]["docs"], 10);
    let lines = &lines[7..];
    assert_eq!(lines[0]["n"], 0, "the sample quarantines nothing");
    assert_eq!(lines[1]["n"], 6, "`▁in`, `▁`, then the digits 1, 9, 8, 7, each a token");
    assert!(lines[2]["n"].as_u64().unwrap() > 0);
    assert_eq!(lines[3]["n"], 0, "a dataset without rows is a table with its columns");
    assert_eq!(
        (&lines[4]["n"], &lines[4]["status"]),
        (&1.into(), &"succeeded".into()),
        "the ledger's runs"
    );
    assert_eq!(lines[5]["n"], 1, "the tokenize stage's one unit");
    assert_eq!(lines[6]["n"], 19, "every stage of the sample pipeline");

    // A file of statements, and the table format's row limit.
    let file = dir.path().join("q.sql");
    std::fs::write(
        &file,
        "-- two statements\nSELECT 'a;b' AS s;\nSELECT id, token FROM tokenizer ORDER BY id;\n",
    )
    .unwrap();
    let out = sql(p, &["-f", file.to_str().unwrap(), "--maxrows", "3"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("| a;b |"), "{stdout}");
    assert!(stdout.contains("| 2  | </s>  |"), "{stdout}");
    assert!(
        stdout.contains("(32000 rows, 3 shown; --maxrows 0 shows all)"),
        "{stdout}"
    );

    // The ready-made queries run on the sample output.
    let out = sql(
        p,
        &[
            "--format",
            "ndjson",
            "--query",
            "sources_overview",
            "--query",
            "top_domains",
            "--query",
            "why_removed",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(r#""source":"github","documents":354"#), "{stdout}");
    assert!(stdout.contains(r#""host":""#), "{stdout}");
    // token_budget agrees with `llamaflow mixture`'s plan.
    let out = sql(p, &["--format", "ndjson", "--query", "token_budget"]);
    assert!(out.status.success(), "{}", text(&out));
    let budget: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let plan = run(llamaflow().args(["--pipeline", p, "mixture"]));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    for planned in plan["plan"]["sources"].as_array().unwrap() {
        let row = budget.iter().find(|r| r["source"] == planned["name"]).unwrap();
        assert_eq!(row["tokens"], planned["tokens"]);
        let (ours, theirs) = (row["epochs"].as_f64().unwrap(), planned["epochs"].as_f64().unwrap());
        assert!((ours - theirs).abs() < 1e-9, "{row} vs {planned}");
    }
    let out = sql(p, &["--query", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no ready-made query `nope` (known: sources_overview"));

    // The interactive shell, fed through a pipe: backslash commands, a
    // statement over two lines, an error that does not end the session.
    let mut child = llamaflow()
        .args(["--pipeline", p, "--quiet", "sql"])
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"\\d\n\\d tokenize__shards\n\\h minhash_jaccard\n\\h\nSELECT 40\n  + 2 AS answer;\nSELECT nope;\nSELECT 'still here' AS s;\n\\q\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().any(|l| l == "tokenize__shards"), "{stdout}");
    assert!(stdout.contains("| tokenizer_sha256 |"), "{stdout}");
    assert!(stdout.contains("| 42     |"), "{stdout}");
    assert!(
        stdout.contains("minhash_jaccard(a, b)\n\nThe Jaccard similarity"),
        "{stdout}"
    );
    assert!(stdout.contains("llamaflow's functions: detect_language, language_score, minhash, minhash_jaccard, normalized_text_hash, perplexity, ref_probability, text_hash, token_count, tokenize, url_host"), "{stdout}");
    assert!(stdout.contains("still here"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("No field named nope"),
        "{}",
        text(&out)
    );

    // DuckDB reads the same tables and counts the same rows.
    for table in ["tokenize", "tokenize__shards", "tokenizer", "dedup__index", "c4"] {
        let ours = sql(
            p,
            &["--format", "csv", "-c", &format!("SELECT count(*) AS n FROM {table}")],
        );
        assert!(ours.status.success(), "{}", text(&ours));
        let ours = String::from_utf8_lossy(&ours.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
        let glob = root.join("out/datasets").join(table).join("*.parquet");
        let script = format!(
            "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('{}')\").fetchall()[0][0])",
            glob.display()
        );
        let py = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
        assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), ours, "{table}");
    }

    for statement in [
        "INSERT INTO tokenizer SELECT * FROM tokenizer",
        "COPY (SELECT 1) TO 'x.csv'",
        "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '/etc/'",
        "CREATE VIEW v AS SELECT 1",
        "DROP TABLE c4",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let out = sql(p, &["-c", statement]);
        assert!(!out.status.success(), "{statement}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("`llamaflow sql` is read-only"),
            "{statement}: {}",
            text(&out)
        );
    }
    for outside in ["SELECT * FROM '/etc/passwd'", "SELECT * FROM \"../ledger\""] {
        let out = sql(p, &["-c", outside]);
        assert!(!out.status.success(), "{outside}: {}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not found"),
            "{}",
            text(&out)
        );
    }
    assert!(!root.join("x.csv").exists() && !Path::new("x.csv").exists());
}

/// `llamaflow sql` as a sqllogictest database: each statement runs through the
/// real binary with `--format csv`. An empty CSV field reads as `NULL`.
struct LlamaflowSql {
    pipeline: String,
}

/// A statement's failure: what `llamaflow sql` printed on stderr.
#[derive(Debug)]
struct SqlError(String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

impl sqllogictest::DB for LlamaflowSql {
    type Error = SqlError;
    type ColumnType = sqllogictest::DefaultColumnType;

    fn run(&mut self, statement: &str) -> Result<sqllogictest::DBOutput<Self::ColumnType>, SqlError> {
        let out = sql(&self.pipeline, &["--format", "csv", "-c", statement]);
        if !out.status.success() {
            return Err(SqlError(String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
        let columns = reader.headers().map_err(|e| SqlError(e.to_string()))?.len();
        let mut rows = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| SqlError(e.to_string()))?;
            rows.push(
                record
                    .iter()
                    .map(|field| {
                        if field.is_empty() {
                            "NULL".to_string()
                        } else {
                            field.to_string()
                        }
                    })
                    .collect(),
            );
        }
        Ok(sqllogictest::DBOutput::Rows {
            types: vec![sqllogictest::DefaultColumnType::Any; columns],
            rows,
        })
    }
}

/// Every `tests/slt/*.slt` file passes over the sample pipeline's output.
#[test]
fn sqllogictest_files_pass_over_the_sample_output() {
    let pipeline = sample().to_str().unwrap().to_string();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/slt"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let pipeline = pipeline.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let pipeline = pipeline.clone();
            async move { Ok(LlamaflowSql { pipeline }) }
        });
        if let Err(e) = runner.run_file(&file) {
            panic!("{}: {}", file.display(), e.display(true));
        }
    }
}
