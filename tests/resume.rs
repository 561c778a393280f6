//! A run killed with SIGKILL mid-stage resumes on the next `run` and ends with
//! exactly the documents of an uninterrupted run: none lost, none twice.

mod common;

use common::*;

/// Enough input that a one-job run takes seconds, so it can be caught mid-stage.
fn big_inputs(dir: &std::path::Path, files: usize, docs_per_file: usize) {
    let lines = sample_lines();
    std::fs::create_dir_all(dir.join("c4")).unwrap();
    for f in 0..files {
        let docs: Vec<String> = (0..docs_per_file)
            .map(|i| {
                let v: serde_json::Value = serde_json::from_str(&lines[(f + i) % lines.len()]).unwrap();
                // Vary each copy so every document is distinct.
                serde_json::json!({"text": format!("{} [copy {f}-{i}]", v["text"].as_str().unwrap()), "url": v["url"], "timestamp": v["timestamp"]}).to_string()
            })
            .collect();
        write_gz(&dir.join(format!("c4/part-{f:03}.json.gz")), &docs);
    }
    std::fs::write(
        dir.join("llamaflow.toml"),
        "[output]\nroot = \"out\"\n[stages.c4]\ntype = \"c4\"\ninputs = [\"c4/*.json.gz\"]\n",
    )
    .unwrap();
}

fn commits(root: &std::path::Path) -> usize {
    std::fs::read_dir(root.join("datasets/c4/_commits"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn killed_run_resumes_to_the_same_documents() {
    let dir = tempfile::tempdir().unwrap();
    let files = 40;
    big_inputs(dir.path(), files, 400);
    let p = dir.path().join("llamaflow.toml");
    let p = p.to_str().unwrap();

    // The reference: one uninterrupted run.
    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "--quiet",
        "--output",
        dir.path().join("ref").to_str().unwrap(),
        "run",
    ]));
    assert!(out.status.success(), "{}", text(&out));

    // The victim: killed once a few units are committed, before all are.
    let victim = dir.path().join("victim");
    let mut child = llamaflow()
        .args([
            "--pipeline",
            p,
            "--quiet",
            "--jobs",
            "1",
            "--output",
            victim.to_str().unwrap(),
            "run",
        ])
        .spawn()
        .unwrap();
    kill_when(&mut child, 120, "three committed units", || commits(&victim) >= 3);
    let committed_at_kill = commits(&victim);
    assert!(committed_at_kill < files, "every unit was committed before the kill");

    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "--quiet",
        "--output",
        victim.to_str().unwrap(),
        "status",
    ]));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("partial ("),
        "{}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("never finished (killed?)"),
        "{}",
        text(&out)
    );

    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "--output", victim.to_str().unwrap(), "run"]));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reused = format!("{}/{}/{}", files - committed_at_kill, committed_at_kill, files);
    assert!(stdout.contains(&reused), "expected units {reused}: {}", text(&out));

    let sql = "SELECT count(*), count(DISTINCT id) FROM c4";
    let reference = query(sql, &[("c4", &dir.path().join("ref/datasets/c4"))]);
    let resumed = query(sql, &[("c4", &victim.join("datasets/c4"))]);
    assert_eq!(reference, [format!("{0}|{0}", files * 400)]);
    assert_eq!(resumed, reference);
    let ids = "SELECT count(*) FROM a FULL OUTER JOIN b ON a.id = b.id WHERE a.id IS NULL OR b.id IS NULL";
    let diff = query(
        ids,
        &[
            ("a", &dir.path().join("ref/datasets/c4")),
            ("b", &victim.join("datasets/c4")),
        ],
    );
    assert_eq!(diff, ["0"], "the resumed run's ids differ from the reference's");

    // Nothing but the manifest's files is left in the dataset folder.
    let m = manifest(&victim, "c4");
    let listed: std::collections::BTreeSet<String> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(victim.join("datasets/c4"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(listed, on_disk);
}
