//! Helpers shared by the end-to-end tests: run the real binary on copies of
//! the bundled samples, and read what it wrote.

#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `llamaflow` command with logs kept quiet and deterministic.
pub fn llamaflow() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llamaflow"));
    cmd.env_remove("LLAMAFLOW_LOG").env_remove("LLAMAFLOW_PIPELINE");
    cmd
}

/// Runs a command, returning its output; panics with its stderr when it could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the llamaflow binary starts")
}

/// Stdout and stderr of an output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Copies the sample pipeline file and the sample inputs into `dir`; returns the pipeline path.
pub fn copy_samples(dir: &Path) -> PathBuf {
    let samples = repo().join("samples");
    for entry in std::fs::read_dir(&samples).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() && entry.file_name() != "out" {
            copy_dir(&entry.path(), &dir.join(entry.file_name()));
        }
    }
    let pipeline = dir.join("llamaflow.toml");
    std::fs::copy(samples.join("llamaflow.toml"), &pipeline).unwrap();
    pipeline
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// The sample C4 records, as JSON lines.
pub fn sample_lines() -> Vec<String> {
    let mut lines = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(repo().join("samples/c4"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let gz = flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap());
        for line in std::io::BufReader::new(gz).lines() {
            lines.push(line.unwrap());
        }
    }
    lines
}

/// Writes `lines` as one gzip file.
pub fn write_gz(path: &Path, lines: &[String]) {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for l in lines {
        enc.write_all(l.as_bytes()).unwrap();
        enc.write_all(b"\n").unwrap();
    }
    std::fs::write(path, enc.finish().unwrap()).unwrap();
}

/// Runs a query over Parquet files with DataFusion; returns rows as strings (columns joined by `|`).
pub fn query(sql: &str, tables: &[(&str, &Path)]) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = datafusion::prelude::SessionConfig::new().with_information_schema(true);
        let ctx = datafusion::prelude::SessionContext::new_with_config(config);
        for (name, dir) in tables {
            ctx.register_parquet(*name, dir.to_str().unwrap(), Default::default())
                .await
                .unwrap();
        }
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut rows = Vec::new();
        for b in batches {
            for r in 0..b.num_rows() {
                let cols: Vec<String> = (0..b.num_columns())
                    .map(|c| datafusion::arrow::util::display::array_value_to_string(b.column(c), r).unwrap())
                    .collect();
                rows.push(cols.join("|"));
            }
        }
        rows
    })
}

/// Reads a dataset's `_manifest.json`.
pub fn manifest(root: &Path, dataset: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(root.join("datasets").join(dataset).join("_manifest.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The sum of a manifest's `counts.filtered` over every rule.
pub fn filtered_total(counts: &serde_json::Value) -> u64 {
    counts["filtered"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum()
}

/// Gzip-compresses `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A tar of (raw name, type, data) entries; names are written raw so `../`
/// and absolute ones can be made (a symlink points at /etc/passwd).
pub fn tar_bytes(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        if *kind == tar::EntryType::Symlink {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// One C4 JSON line (`text`, `url`, a fixed `timestamp`).
pub fn c4_line(text: &str, url: &str) -> String {
    serde_json::json!({"text": text, "url": url, "timestamp": "2019-04-25T12:00:00Z"}).to_string()
}

/// Waits until `ready()` holds, then SIGKILLs `child` (a run to interrupt); panics if the child
/// finished first (nothing would be interrupted) or `ready` does not hold within `limit_s`.
pub fn kill_when(child: &mut std::process::Child, limit_s: u64, what: &str, ready: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run finished before it could be killed"
        );
        assert!(
            start.elapsed() < std::time::Duration::from_secs(limit_s),
            "{what} not reached in {limit_s} s"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}
