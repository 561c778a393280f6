//! The `dedup` stage on planted duplicates: exact, within GitHub (the `github`
//! preset) and across sources; near-duplicates by MinHash at two thresholds;
//! each with `--jobs 1` and `--jobs 2`.

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

/// A deterministic stream of pseudo-random numbers (a 64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn words(&mut self, n: usize) -> Vec<String> {
        (0..n).map(|_| format!("w{}", self.next() % 20_000)).collect()
    }
}

/// `words` with `percent`% of them, at random positions, replaced by new words.
fn edited(words: &[String], percent: usize, rng: &mut Lcg) -> String {
    let mut out = words.to_vec();
    let mut changed = std::collections::HashSet::new();
    while changed.len() < words.len() * percent / 100 {
        let at = (rng.next() as usize) % words.len();
        if changed.insert(at) {
            out[at] = format!("edit{}", rng.next());
        }
    }
    out.join(" ")
}

#[test]
fn near_duplicates_are_removed_as_the_thresholds_say_whatever_the_jobs() {
    // Word 5-grams: scattered edits of 5%, 10% and 20% of the words leave about
    // 0.63, 0.42 and 0.20 Jaccard similarity; `near` verifies pairs at 0.5,
    // `near_default` at the default 0.7.
    let pipeline = r#"
[output]
root = "out"

[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]

[stages.near]
type = "dedup"
mode = "minhash"
inputs = ["c4"]
bands = 30
rows = 4
threshold = 0.5

[stages.near_default]
type = "dedup"
mode = "minhash"
inputs = ["c4"]
"#;
    let mut rng = Lcg(7);
    let base: Vec<Vec<String>> = (0..4).map(|_| rng.words(1000)).collect();
    let boilerplate = rng.words(60).join(" ");
    let mut lines = vec![
        c4_line(&base[0].join(" "), "https://a.example/original"),
        c4_line(&base[0].join("  ").to_uppercase(), "https://a.example/exact-copy"),
        c4_line(&edited(&base[0], 1, &mut rng), "https://a.example/edited-1"),
        c4_line(&edited(&base[0], 5, &mut rng), "https://a.example/edited-5"),
        c4_line(&edited(&base[0], 10, &mut rng), "https://a.example/edited-10"),
        c4_line(&edited(&base[0], 20, &mut rng), "https://a.example/edited-20"),
        c4_line(
            &format!("{} {boilerplate}", base[1].join(" ")),
            "https://b.example/with-boilerplate",
        ),
        c4_line(
            &format!("{} {boilerplate}", base[2].join(" ")),
            "https://c.example/with-boilerplate",
        ),
        c4_line(&base[3].join(" "), "https://d.example/unrelated"),
    ];
    // A chain of edits, each 1% away from the previous: one cluster, kept once.
    let mut chain = base[3].clone();
    for step in 0..3 {
        chain = edited(&chain, 1, &mut rng).split(' ').map(String::from).collect();
        lines.push(c4_line(&chain.join(" "), &format!("https://d.example/chain-{step}")));
    }

    let mut results = Vec::new();
    for jobs in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("c4")).unwrap();
        std::fs::write(dir.path().join("llamaflow.toml"), pipeline).unwrap();
        write_gz(&dir.path().join("c4/a.json.gz"), &lines);
        let p = dir.path().join("llamaflow.toml");
        let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "--jobs", jobs, "run"]));
        assert!(out.status.success(), "{}", text(&out));
        let root = dir.path().join("out");
        let removed = |stage: &str| {
            query(
                "SELECT d.url, k.url, r.rule, round(r.similarity, 2) FROM r JOIN d ON r.id = d.id \
                 JOIN d k ON r.kept_id = k.id ORDER BY d.url",
                &[
                    ("r", &root.join(format!("datasets/{stage}__removed"))),
                    ("d", &root.join("datasets/c4")),
                ],
            )
        };
        let near = removed("near");
        let rows: Vec<Vec<&str>> = near.iter().map(|r| r.split('|').collect()).collect();
        let removed_urls: Vec<&str> = rows.iter().map(|r| r[0]).collect();
        for site in ["https://a.example/", "https://d.example/"] {
            // Four documents each (the original, its exact copy, its 1% and 5%
            // edits; the unrelated page and its chain of 1% edits): one cluster,
            // one keeper, which is not itself removed.
            let cluster: Vec<&Vec<&str>> = rows.iter().filter(|r| r[0].starts_with(site)).collect();
            assert_eq!(cluster.len(), 3, "{site}: {near:?}");
            let keepers: std::collections::HashSet<&str> = cluster.iter().map(|r| r[1]).collect();
            assert_eq!(keepers.len(), 1, "{site}: {near:?}");
            assert!(!removed_urls.contains(keepers.iter().next().unwrap()), "{near:?}");
        }
        for stays in ["edited-10", "edited-20", "with-boilerplate"] {
            assert!(
                !removed_urls.iter().any(|u| u.ends_with(stays)),
                "{stays} is below the threshold: {near:?}"
            );
        }
        let exact: Vec<&Vec<&str>> = rows.iter().filter(|r| r[2] == "exact_duplicate").collect();
        assert_eq!(exact.len(), 1, "the case/space copy is an exact duplicate: {near:?}");
        assert!(exact[0][0].ends_with("/original") || exact[0][0].ends_with("/exact-copy"));
        let counts = manifest(&root, "near")["counts"].clone();
        assert_eq!(counts["rows_in"], lines.len(), "{counts}");
        assert_eq!(counts["kept"], lines.len() - 6, "{counts}");
        assert_eq!(counts["filtered"]["near_duplicate"], 5, "{counts}");
        // At the default 0.7, the 5%-edited copy (about 0.63) stays.
        let default = removed("near_default");
        assert!(
            !default.iter().any(|r| r.starts_with("https://a.example/edited-5")),
            "{default:?}"
        );
        assert_eq!(
            default.iter().filter(|r| r.starts_with("https://a.example/")).count(),
            2,
            "the exact copy, and the 1% edit (about 0.9) or its original: {default:?}"
        );
        let index = query(
            "SELECT kind, count(*) FROM i GROUP BY kind ORDER BY kind",
            &[("i", &root.join("datasets/near__index"))],
        );
        // 30 band keys for each document the exact pass kept: all but the exact copy.
        assert_eq!(
            index[0],
            format!("minhash_band|{}", 30 * (lines.len() - 1)),
            "{index:?}"
        );
        assert_eq!(index[1], format!("normalized_text|{}", lines.len() - 1), "{index:?}");
        results.push((near, default));
    }
    assert_eq!(results[0], results[1], "--jobs does not change what is removed");
}
