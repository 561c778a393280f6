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
    assert!(!stdout.lines().any(|l| l.starts_with("c4 ")), "--stages github runs github alone: {stdout}");

    let m = manifest(&dir.path().join("out"), "github");
    let c = &m["counts"];
    assert_eq!(c["rows_in"], 584, "{c}");
    assert_eq!(c["quarantined"], 0, "{c}");
    assert_eq!(c["filtered"]["license_not_allowed"], 215, "the GPL rows: {c}");
    let filtered: u64 = c["filtered"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
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
    let long = query("SELECT count(*) FROM gh WHERE text LIKE '%Copyright%' AND strpos(text, 'Copyright') < 5", &[("gh", &gh)]);
    assert_eq!(long, ["0"], "leading copyright headers are stripped");
}
