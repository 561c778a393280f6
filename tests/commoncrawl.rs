//! The `commoncrawl` stage through the binary: CCNet's rules on hand-made WET
//! pages, the bundled WET sample with `--jobs 1` and `--jobs 2`, a listing with
//! `limit`, WARC input, and bad bytes quarantined with file and offset.

mod common;

use std::path::Path;

use common::*;

/// One WET conversion record.
fn conversion(url: &str, text: &str) -> Vec<u8> {
    conversion_bytes(url, text.as_bytes())
}

fn conversion_bytes(url: &str, block: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-05-18T01:58:10Z\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        block.len()
    )
    .into_bytes();
    out.extend_from_slice(block);
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// A WET file: each record its own gzip member.
fn wet(records: &[Vec<u8>]) -> Vec<u8> {
    records.iter().flat_map(|r| gzip(r)).collect()
}

/// English prose of exactly `n` characters (ASCII), ending in a period.
fn prose(seed: &str, n: usize) -> String {
    let base = format!(
        "{seed} The council discussed the new library budget and agreed that the reading rooms need longer opening hours. "
    );
    let mut text: String = base.chars().cycle().take(n - 1).collect();
    text.push('.');
    text
}

fn run_stage(dir: &Path, stage_toml: &str, jobs: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("llamaflow.toml"),
        format!("[output]\nroot = \"out\"\n\n[stages.cc]\ntype = \"commoncrawl\"\n{stage_toml}"),
    )
    .unwrap();
    let p = dir.join("llamaflow.toml");
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "--jobs", jobs, "run"]));
    assert!(out.status.success(), "{}", text(&out));
    dir.join("out")
}

fn reconciles(root: &Path, dataset: &str) -> serde_json::Value {
    let counts = manifest(root, dataset)["counts"].clone();
    assert_eq!(
        counts["rows_in"].as_u64().unwrap(),
        counts["kept"].as_u64().unwrap() + filtered_total(&counts) + counts["quarantined"].as_u64().unwrap(),
        "{counts}"
    );
    counts
}

#[test]
fn each_ccnet_rule_catches_its_lines_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("wet")).unwrap();
    let first = format!("{}\nCopyright 2019 ACME, Inc.", prose("First.", 400));
    // Normalizes to the copyright line of the first page (case, digits, punctuation): dropped.
    let second = format!("{}\ncopyright 2023 acme inc", prose("Second.", 400));
    let german = "Der Ausschuss traf sich am Dienstag, um den Haushalt für das kommende Jahr zu besprechen. \
                  Die meisten Mitglieder waren sich einig, dass die Lesesäle der Bibliothek länger geöffnet sein sollten, \
                  und der Vorsitzende versprach, bis zum Frühjahr einen Vorschlag vorzulegen. Danach wurde über die \
                  Renovierung des Rathauses gesprochen, die im nächsten Sommer beginnen soll.";
    std::fs::write(
        d.join("wet/a.warc.wet.gz"),
        wet(&[
            conversion("https://a.example/1", &first),
            conversion("https://a.example/short", &prose("Short.", 299)),
            conversion("https://a.example/exact", &prose("Exact.", 300)),
        ]),
    )
    .unwrap();
    std::fs::write(
        d.join("wet/b.warc.wet.gz"),
        wet(&[
            conversion("https://b.example/2", &second),
            conversion("https://b.example/de", german),
            // 320 characters, 80 of them in a line repeated from the first page: under 300 after dedup.
            conversion(
                "https://b.example/shrinks",
                &format!("{}\nCopyright 2019 ACME, Inc.", prose("Shrinks.", 290)),
            ),
        ]),
    )
    .unwrap();
    let root = run_stage(d, "inputs = [\"wet/*.warc.wet.gz\"]\n", "2");
    let counts = reconciles(&root, "cc");
    assert_eq!(counts["kept"], 3, "{counts}");
    assert_eq!(counts["filtered"]["too_short"], 2, "{counts}");
    assert_eq!(counts["filtered"]["language"], 1, "{counts}");
    let cc = root.join("datasets/cc");
    let rows = query("SELECT url, text, language FROM cc ORDER BY url", &[("cc", &cc)]);
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].starts_with("https://a.example/1|") && rows[0].contains("Copyright 2019 ACME, Inc."));
    assert!(rows[1].starts_with("https://a.example/exact|"), "{rows:?}");
    assert!(
        rows[2].starts_with("https://b.example/2|") && !rows[2].contains("copyright"),
        "{rows:?}"
    );
    assert!(rows.iter().all(|r| r.ends_with("|en")));
    let lines = root.join("datasets/cc__lines");
    let dropped = query(
        "SELECT input, lines FROM lines WHERE rule = 'line_dedup' ORDER BY input",
        &[("lines", &lines)],
    );
    assert_eq!(dropped, ["wet/a.warc.wet.gz|0", "wet/b.warc.wet.gz|2"]);
    let languages = root.join("datasets/cc__languages");
    let de = query(
        "SELECT sum(documents) FROM l WHERE language = 'de'",
        &[("l", &languages)],
    );
    assert_eq!(de, ["1"]);
    let hashes = root.join("datasets/cc__line_hashes");
    let seen = query("SELECT sum(lines) FROM l WHERE rule = 'seen'", &[("l", &lines)]);
    let hashed = query("SELECT sum(lines) FROM h", &[("h", &hashes)]);
    assert_eq!(seen, hashed, "every line read in pass 2 was hashed in pass 1");
    let first = query(
        "SELECT first_input, first_line, lines FROM h WHERE lines = 3",
        &[("h", &hashes)],
    );
    assert_eq!(
        first,
        ["wet/a.warc.wet.gz|1|3"],
        "the copyright line: first seen in a, line 1"
    );
}

#[test]
fn the_sample_gives_the_same_documents_whatever_the_jobs_and_line_dedup_can_be_off() {
    let mut kept = Vec::new();
    for jobs in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        copy_samples(d);
        let root = run_stage(d, "inputs = [\"commoncrawl/*.warc.wet.gz\"]\ngroup_files = 2\n", jobs);
        let counts = reconciles(&root, "cc");
        assert!(counts["filtered"]["language"].as_u64().unwrap() >= 1, "{counts}");
        let cc = root.join("datasets/cc");
        kept.push(query("SELECT id, md5(text) FROM cc ORDER BY id", &[("cc", &cc)]));
        let lines = root.join("datasets/cc__lines");
        let dropped = query("SELECT sum(lines) FROM l WHERE rule = 'line_dedup'", &[("l", &lines)]);
        assert_ne!(dropped, ["0"], "boilerplate repeats across the sample's pages");
    }
    assert!(kept[0].len() > 10, "{:?}", kept[0]);
    assert_eq!(
        kept[0], kept[1],
        "--jobs 1 and --jobs 2 keep the same documents and lines"
    );

    let dir = tempfile::tempdir().unwrap();
    copy_samples(dir.path());
    let root = run_stage(
        dir.path(),
        "inputs = [\"commoncrawl/*.warc.wet.gz\"]\nline_dedup = false\n",
        "2",
    );
    reconciles(&root, "cc");
    let lines = root.join("datasets/cc__lines");
    assert_eq!(
        query("SELECT sum(lines) FROM l WHERE rule = 'line_dedup'", &[("l", &lines)]),
        ["0"]
    );
    assert_eq!(
        manifest(&root, "cc__line_hashes")["rows"],
        0,
        "no hashes without line dedup"
    );
}

#[test]
fn a_listing_with_a_limit_reads_its_first_paths_and_warc_responses_become_text() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    copy_samples(d);
    std::fs::write(
        d.join("commoncrawl/wet.paths"),
        "CC-MAIN-sample-00001.warc.wet.gz\nCC-MAIN-sample-00000.warc.wet.gz\n",
    )
    .unwrap();
    let root = run_stage(d, "inputs = [\"commoncrawl/wet.paths\"]\nlimit = 1\n", "2");
    reconciles(&root, "cc");
    let lines = root.join("datasets/cc__lines");
    assert_eq!(
        query("SELECT DISTINCT input FROM l", &[("l", &lines)]),
        ["CC-MAIN-sample-00001.warc.wet.gz"]
    );

    let dir = tempfile::tempdir().unwrap();
    copy_samples(dir.path());
    let root = run_stage(
        dir.path(),
        "inputs = [\"commoncrawl/*.warc.gz\"]\nline_dedup = false\nmin_chars = 100\n",
        "1",
    );
    reconciles(&root, "cc");
    let cc = root.join("datasets/cc");
    let rows = query("SELECT url, text FROM cc ORDER BY url", &[("cc", &cc)]);
    assert!(
        rows.iter()
            .any(|r| r.starts_with("https://www.commoncrawl.org/|") && r.contains("Common Crawl")),
        "{rows:?}"
    );
    assert!(
        rows.iter().all(|r| !r.contains("<div") && !r.contains("<script")),
        "{rows:?}"
    );
}

#[test]
fn bad_records_are_quarantined_with_file_and_offset_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("wet")).unwrap();
    let good = |n: &str| gzip(&conversion(&format!("https://ok.example/{n}"), &prose(n, 400)));
    let overrun = {
        let text = String::from_utf8(conversion("https://bad.example/len", "short")).unwrap();
        gzip(text.replace("Content-Length: 5", "Content-Length: 5000").as_bytes())
    };
    let binary = gzip(&conversion_bytes(
        "https://bad.example/bin",
        b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR",
    ));
    let invalid = gzip(&conversion_bytes("https://bad.example/utf8", b"caf\xe9 au lait"));
    let truncated = good("cut");
    let truncated = &truncated[..truncated.len() / 2];
    let (one, two) = (good("one"), good("two"));
    let parts: Vec<&[u8]> = vec![&one, &overrun, &binary, &invalid, &two, truncated];
    let mut offsets = Vec::new();
    let mut file = Vec::new();
    for p in &parts {
        offsets.push(file.len());
        file.extend_from_slice(p);
    }
    std::fs::write(d.join("wet/mixed.warc.wet.gz"), &file).unwrap();
    std::fs::write(d.join("wet/notes.warc.wet.gz"), b"{\"text\": \"not a WARC file\"}\n").unwrap();
    let root = run_stage(d, "inputs = [\"wet/*.warc.wet.gz\"]\n", "1");
    let counts = reconciles(&root, "cc");
    assert_eq!(counts["kept"], 2, "{counts}");
    assert_eq!(counts["quarantined"], 5, "{counts}");
    let q = root.join("datasets/cc__quarantine");
    let rows = query(
        "SELECT input_file, input_offset, reason FROM q ORDER BY input_file, input_offset",
        &[("q", &q)],
    );
    let expect = [
        (
            "wet/mixed.warc.wet.gz",
            offsets[1],
            "Content-Length 5000 overruns the gzip member",
        ),
        ("wet/mixed.warc.wet.gz", offsets[2], "binary payload"),
        ("wet/mixed.warc.wet.gz", offsets[3], "invalid UTF-8 at byte 3"),
        ("wet/mixed.warc.wet.gz", offsets[5], "corrupt or truncated gzip member"),
        ("wet/notes.warc.wet.gz", 0, "not a WARC record"),
    ];
    assert_eq!(rows.len(), expect.len(), "{rows:?}");
    for (row, (file, offset, reason)) in rows.iter().zip(expect) {
        assert!(
            row.starts_with(&format!("{file}|{offset}|{reason}")),
            "{row} vs {file} {offset} {reason}"
        );
    }
}
