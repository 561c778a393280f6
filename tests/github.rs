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

/// The sample's rows of one repository, as (path, content).
fn sample_repo(repo: &str) -> Vec<(String, String)> {
    let gz = flate2::read::MultiGzDecoder::new(
        std::fs::File::open(repo_root().join("samples/github/github_files.jsonl.gz")).unwrap(),
    );
    std::io::BufRead::lines(std::io::BufReader::new(gz))
        .map(|l| serde_json::from_str::<serde_json::Value>(&l.unwrap()).unwrap())
        .filter(|r| r["repo_name"] == repo)
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_file(path: &std::path::Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn plain_repositories_get_their_licence_from_their_licence_files() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let repos = dir.path().join("repos");
    let memchr = sample_repo("memchr-2.7.4");
    let mit = std::fs::read(repo_root().join("LICENSE-MIT")).unwrap();
    let apache = std::fs::read(repo_root().join("LICENSE-APACHE")).unwrap();
    // memchr as a folder, under the project's own MIT and Apache-2.0 texts, plus
    // a binary image (not read) and a Python file that is not UTF-8 (quarantined).
    for (path, content) in &memchr {
        write_file(&repos.join("memchr").join(path), content.as_bytes());
    }
    write_file(&repos.join("memchr/LICENSE-MIT"), &mit);
    write_file(&repos.join("memchr/LICENSE-APACHE"), &apache);
    write_file(&repos.join("memchr/logo.png"), &[0x89, b'P', b'N', b'G', 0xff, 0x00]);
    write_file(&repos.join("memchr/tools/gen.py"), b"print('caf\xe9')\n");
    // zlib-ng's own licence file (the Zlib licence, not allowed), no licence, an unknown licence.
    let zlib = sample_repo("libz-ng-sys-1.1.15");
    let zlib_license = &zlib.iter().find(|(p, _)| p.ends_with("LICENSE.md")).unwrap().1;
    write_file(&repos.join("zlib/LICENSE.md"), zlib_license.as_bytes());
    write_file(&repos.join("zlib/adler32.c"), b"int adler(void) { return 1; }\n");
    write_file(&repos.join("nolicense/main.py"), b"print('hello world')\n");
    write_file(
        &repos.join("custom/LICENSE"),
        b"You may read this code but not use it.\n",
    );
    write_file(&repos.join("custom/main.py"), b"print('hello world')\n");

    // The same memchr as a GitHub-style tarball (one top folder), and a truncated copy.
    let staging = dir.path().join("staging/memchr-2.7.4-abc123");
    for (path, content) in &memchr {
        write_file(&staging.join(path), content.as_bytes());
    }
    write_file(&staging.join("LICENSE-MIT"), &mit);
    write_file(&staging.join("LICENSE-APACHE"), &apache);
    std::fs::create_dir_all(dir.path().join("tarballs")).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["czf", "../tarballs/memchr.tar.gz", "memchr-2.7.4-abc123"])
        .current_dir(dir.path().join("staging"))
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let whole = std::fs::read(dir.path().join("tarballs/memchr.tar.gz")).unwrap();
    write_file(&dir.path().join("tarballs/cut.tar.gz"), &whole[..whole.len() / 2]);

    let toml = std::fs::read_to_string(&pipeline).unwrap()
        + "\n[stages.gh_folders]\ntype = \"github\"\ninputs = [\"repos/\"]\n\
           \n[stages.gh_tarballs]\ntype = \"github\"\ninputs = [\"tarballs/*.tar.gz\"]\n";
    std::fs::write(&pipeline, toml).unwrap();
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "gh_folders,gh_tarballs"]));
    assert!(out.status.success(), "{}", text(&out));

    let root = dir.path().join("out");
    let c = manifest(&root, "gh_folders")["counts"].clone();
    let files = memchr.len() as u64 + 4 + 2 + 1 + 2;
    assert_eq!(c["rows_in"], files, "{c}");
    assert_eq!(c["quarantined"], 1, "the Latin-1 Python file: {c}");
    assert_eq!(c["filtered"]["license_not_allowed"], 2, "zlib: {c}");
    assert_eq!(c["filtered"]["license_missing"], 1, "{c}");
    assert_eq!(c["filtered"]["license_unparsable"], 2, "custom: {c}");
    assert_eq!(c["kept"].as_u64().unwrap() + filtered_total(&c) + 1, files, "{c}");
    let folders = root.join("datasets/gh_folders");
    let kept = query("SELECT DISTINCT repo_name, license FROM f", &[("f", &folders)]);
    assert_eq!(kept, ["memchr|Apache-2.0 AND MIT"]);
    let q = query(
        "SELECT reason FROM q",
        &[("q", &root.join("datasets/gh_folders__quarantine"))],
    );
    assert_eq!(q, ["tools/gen.py is not UTF-8 (invalid byte at 10)"]);

    // The tarball gives the same documents (paths without the top folder);
    // the truncated one is quarantined after what could be read, and the run goes on.
    let tarballs = root.join("datasets/gh_tarballs");
    let same = query(
        "SELECT count(*) FROM f FULL OUTER JOIN t ON f.path = t.path AND f.text = t.text AND t.input_file LIKE '%memchr.tar.gz' \
         WHERE (f.path IS NULL AND t.input_file LIKE '%memchr.tar.gz') OR t.path IS NULL",
        &[("f", &folders), ("t", &tarballs)],
    );
    assert_eq!(same, ["0"]);
    let cut = query(
        "SELECT reason FROM q WHERE input_file LIKE '%cut.tar.gz'",
        &[("q", &root.join("datasets/gh_tarballs__quarantine"))],
    );
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert!(cut[0].contains("truncated"), "{cut:?}");
}

#[test]
fn sample_crate_tarballs_are_kept_or_dropped_by_their_detected_licence() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "github_repos"]));
    assert!(out.status.success(), "{}", text(&out));
    let c = manifest(&dir.path().join("out"), "github_repos")["counts"].clone();
    // itoa ships LICENSE-MIT and LICENSE-APACHE (without the appendix);
    // unicode-ident adds LICENSE-UNICODE (Unicode-3.0), so all of it goes.
    assert_eq!(c["rows_in"], 40, "{c}");
    assert_eq!(c["filtered"]["license_not_allowed"], 26, "{c}");
    let rows = query(
        "SELECT repo_name, license, count(*) FROM g GROUP BY repo_name, license",
        &[("g", &dir.path().join("out/datasets/github_repos"))],
    );
    assert_eq!(rows, ["itoa-1.0.19|Apache-2.0 AND MIT|5"]);
}
