//! The `dedup` stage (exact) on planted duplicates, within GitHub (the
//! `github` preset) and across sources, with `--jobs 1` and `--jobs 2`.

mod common;

use std::path::Path;

use common::*;

const PIPELINE: &str = r#"
[output]
root = "out"

[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]

[stages.wikipedia]
type = "wikipedia"
inputs = ["wiki/*.xml"]

[stages.github]
type = "github"
inputs = ["gh/*.jsonl.gz"]

[stages.github_dedup]
type = "dedup"
preset = "github"
inputs = ["github"]

[stages.dedup]
type = "dedup"
inputs = ["c4", "github_dedup", "wikipedia"]
"#;

fn c4_line(text: &str, url: &str) -> String {
    serde_json::json!({"text": text, "url": url, "timestamp": "2019-04-25T12:00:00Z"}).to_string()
}

fn gh_line(repo: &str, path: &str, content: &str) -> String {
    serde_json::json!({"repo_name": repo, "path": path, "license": "MIT", "content": content}).to_string()
}

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("c4")).unwrap();
    std::fs::create_dir_all(dir.join("wiki")).unwrap();
    std::fs::create_dir_all(dir.join("gh")).unwrap();
    std::fs::write(dir.join("llamaflow.toml"), PIPELINE).unwrap();
    // Two C4 files: a page, its copy with other case and spacing, a page also on Wikipedia, a unique one.
    write_gz(
        &dir.join("c4/a.json.gz"),
        &[
            c4_line("The quick brown fox jumps over the lazy dog.", "https://a.example/1"),
            c4_line("The Berlin Wall fell in 1989.", "https://a.example/wall"),
        ],
    );
    write_gz(
        &dir.join("c4/b.json.gz"),
        &[
            c4_line(
                "the QUICK brown fox\n\njumps over   the lazy dog.",
                "https://b.example/copy",
            ),
            c4_line("Nothing else says this.", "https://b.example/unique"),
        ],
    );
    let wiki = "<mediawiki xml:lang=\"en\"><siteinfo><dbname>enwiki</dbname></siteinfo>\
        <page><title>Wall</title><ns>0</ns><id>7</id><revision><text>The [[Berlin Wall]] fell in '''1989'''.</text></revision></page>\
        </mediawiki>";
    std::fs::write(dir.join("wiki/enwiki.xml"), wiki).unwrap();
    // The same file in two repositories, and a copy differing only in indentation (kept: the preset compares bytes).
    let code = "fn main() {\n    println!(\"hi\");\n}\n";
    write_gz(
        &dir.join("gh/rows.jsonl.gz"),
        &[
            gh_line("a/one", "src/main.rs", code),
            gh_line("b/two", "src/main.rs", code),
            gh_line("c/three", "src/main.rs", &code.replace("    ", "  ")),
        ],
    );
}

#[test]
fn exact_duplicates_are_removed_by_priority_then_id_whatever_the_jobs() {
    let mut kept_sets = Vec::new();
    for jobs in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let p = dir.path().join("llamaflow.toml");
        let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "--jobs", jobs, "run"]));
        assert!(out.status.success(), "{}", text(&out));
        let root = dir.path().join("out");

        let gh = manifest(&root, "github_dedup")["counts"].clone();
        assert_eq!(
            (gh["rows_in"].as_u64(), gh["kept"].as_u64()),
            (Some(3), Some(2)),
            "{gh}"
        );
        assert_eq!(gh["filtered"]["exact_duplicate"], 1, "{gh}");
        let repos = query(
            "SELECT repo_name FROM g ORDER BY repo_name",
            &[("g", &root.join("datasets/github_dedup"))],
        );
        let ids = query(
            "SELECT repo_name, id FROM g ORDER BY id",
            &[("g", &root.join("datasets/github"))],
        );
        // Of the two identical files, the one with the smaller id survives.
        let first_of_pair = ids.iter().find(|r| !r.starts_with("c/three")).unwrap();
        let survivor = first_of_pair.split('|').next().unwrap();
        assert_eq!(repos, [survivor, "c/three"]);

        let c = manifest(&root, "dedup")["counts"].clone();
        assert_eq!(c["rows_in"], 4 + 1 + 2, "{c}");
        // The fox copy, the wall page, and the re-indented file: normalized
        // text ignores the indentation that the github preset kept apart.
        assert_eq!(c["filtered"]["exact_duplicate"], 3, "{c}");
        let removed = query(
            "SELECT d.url, k.url, r.rule, r.similarity FROM r JOIN d ON r.id = d.id JOIN d k ON r.kept_id = k.id ORDER BY d.url",
            &[
                ("r", &root.join("datasets/dedup__removed")),
                ("d", &root.join("datasets/c4")),
            ],
        );
        // The fox copies: the one with the smaller id stays. The wall page stays as Wikipedia's.
        assert_eq!(removed.len(), 1, "{removed:?}");
        let wall = query(
            "SELECT r.kept_id = w.id, r.rule FROM r JOIN c ON r.id = c.id, w WHERE c.url = 'https://a.example/wall'",
            &[
                ("r", &root.join("datasets/dedup__removed")),
                ("c", &root.join("datasets/c4")),
                ("w", &root.join("datasets/wikipedia")),
            ],
        );
        assert_eq!(
            wall,
            ["true|exact_duplicate"],
            "a page on Wikipedia and C4 survives as Wikipedia's"
        );
        let index = query(
            "SELECT count(*), count(DISTINCT key), min(kind) FROM i",
            &[("i", &root.join("datasets/dedup__index"))],
        );
        assert_eq!(index, ["4|4|normalized_text"]);
        let kept = query("SELECT id FROM d ORDER BY id", &[("d", &root.join("datasets/dedup"))]);
        assert_eq!(kept.len(), 4);
        kept_sets.push(kept);
    }
    assert_eq!(kept_sets[0], kept_sets[1], "--jobs does not change what is kept");
}
