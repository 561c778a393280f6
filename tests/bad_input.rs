//! Bad input never takes the run down: truncated gzip, invalid JSON and invalid
//! UTF-8 go to quarantine with file, offset and reason, and counts reconcile.

mod common;

use common::*;

#[test]
fn bad_records_are_quarantined_and_counts_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("c4")).unwrap();
    let lines = sample_lines();

    // 1. A gzip file cut in half.
    let many: Vec<String> = (0..200)
        .map(|i| lines[i % lines.len()].replacen("{\"text\": \"", &format!("{{\"text\": \"{i} "), 1))
        .collect();
    write_gz(&d.join("c4/truncated.json.gz"), &many);
    let full = std::fs::read(d.join("c4/truncated.json.gz")).unwrap();
    std::fs::write(d.join("c4/truncated.json.gz"), &full[..full.len() / 2]).unwrap();

    // 2. One line of invalid JSON between good ones, and one blank-text document.
    let mixed = vec![
        lines[0].clone(),
        "{\"text\": \"unterminated".to_string(),
        lines[1].clone(),
        "{\"text\": \"   \"}".to_string(),
    ];
    write_gz(&d.join("c4/bad-json.json.gz"), &mixed);

    // 3. A file that is not UTF-8 at all (Latin-1 bytes).
    let mut latin1 = b"{\"text\": \"caf\xe9 cr\xe8me\"}\n".to_vec();
    latin1.extend_from_slice(b"{\"text\": \"na\xefve\"}\n");
    std::fs::write(d.join("c4/latin1.json"), latin1).unwrap();

    std::fs::write(
        d.join("llamaflow.toml"),
        "[output]\nroot = \"out\"\n[stages.c4]\ntype = \"c4\"\ninputs = [\"c4/*.json*\"]\n",
    )
    .unwrap();
    let p = d.join("llamaflow.toml");
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "run"]));
    assert!(out.status.success(), "quarantine is not failure: {}", text(&out));

    let m = manifest(&d.join("out"), "c4");
    let c = &m["counts"];
    let (rows_in, kept, quarantined) = (
        c["rows_in"].as_u64().unwrap(),
        c["kept"].as_u64().unwrap(),
        c["quarantined"].as_u64().unwrap(),
    );
    let filtered = filtered_total(c);
    assert_eq!(rows_in, kept + filtered + quarantined, "counts reconcile: {c}");
    assert_eq!(c["filtered"]["empty_text"], 1);
    assert_eq!(quarantined, 4, "truncated tail + bad JSON + two Latin-1 lines: {c}");

    let q = d.join("out/datasets/c4__quarantine");
    let rows = query(
        "SELECT input_file, input_offset, reason FROM q ORDER BY input_file, input_offset",
        &[("q", &q)],
    );
    assert_eq!(rows.len(), 4, "{rows:?}");
    let bad_json_offset = lines[0].len() + 1;
    assert_eq!(
        rows[0],
        format!(
            "c4/bad-json.json.gz|{bad_json_offset}|invalid JSON record: EOF while parsing a string at line 1 column 22"
        )
    );
    assert!(
        rows[1].starts_with("c4/latin1.json|0|invalid UTF-8 at byte 13 of the line"),
        "{rows:?}"
    );
    assert!(rows[2].starts_with("c4/latin1.json|"), "{rows:?}");
    assert!(
        rows[3].starts_with("c4/truncated.json.gz|") && rows[3].contains("corrupt or truncated gzip stream"),
        "{rows:?}"
    );

    // What was readable before the cut was kept.
    let kept_truncated = query(
        "SELECT count(*) FROM c4 WHERE input_file = 'c4/truncated.json.gz'",
        &[("c4", &d.join("out/datasets/c4"))],
    );
    let n: u64 = kept_truncated[0].parse().unwrap();
    assert!(n > 10 && n < 200, "{n}");

    // `status` shows the same reconciled counts.
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "status", "--json"]));
    let status: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(status["reconciles"], true);
    assert_eq!(status["quarantined"], 4);
}

#[test]
fn an_input_that_cannot_be_read_fails_its_unit_and_the_rest_commits() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("c4")).unwrap();
    let lines = sample_lines();
    write_gz(&d.join("c4/one.json.gz"), &lines[..2]);
    write_gz(&d.join("c4/three.json.gz"), &lines[2..5]);
    // A listing that names a file which does not exist.
    std::fs::write(
        d.join("c4.paths"),
        "c4/one.json.gz\nc4/missing.json.gz\nc4/three.json.gz\n",
    )
    .unwrap();
    std::fs::write(
        d.join("llamaflow.toml"),
        "[output]\nroot = \"out\"\n[stages.c4]\ntype = \"c4\"\ninputs = [\"c4.paths\"]\n",
    )
    .unwrap();
    let p = d.join("llamaflow.toml");
    let p = p.to_str().unwrap();

    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unit c4/missing.json.gz: cannot read c4/missing.json.gz"),
        "{}",
        text(&out)
    );
    assert!(stderr.contains("1 of 3 units failed"), "{}", text(&out));

    // The ledger records the failed unit with its reason; the others are committed.
    let units: Vec<serde_json::Value> = std::fs::read_dir(d.join("out/ledger/units"))
        .unwrap()
        .map(|e| serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    let failed: Vec<_> = units.iter().filter(|u| u["status"] == "failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["unit"], "c4/missing.json.gz");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("not found")
            || failed[0]["error"].as_str().unwrap().contains("No such file"),
        "{:?}",
        failed[0]
    );
    assert_eq!(units.iter().filter(|u| u["status"] == "committed").count(), 2);

    // Once the file exists, the next run does only that unit.
    write_gz(&d.join("c4/missing.json.gz"), &lines[5..6]);
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1/2/3"), "{}", text(&out));
    let rows = query(
        "SELECT count(*), count(DISTINCT id) FROM c4",
        &[("c4", &d.join("out/datasets/c4"))],
    );
    assert_eq!(rows, ["6|6"]);
}
