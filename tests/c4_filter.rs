//! The `c4_filter` stage through the binary: hand-made pages that each rule
//! should catch next to the real C4 sample, with `--jobs 1` and `--jobs 2`.

mod common;

use std::path::Path;

use common::*;

const PIPELINE: &str = r#"
[output]
root = "out"

[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]

[stages.clean]
type = "c4_filter"
inputs = ["c4"]
columns = "c4"
"#;

const GOOD: &str = "This sentence is long enough and it ends properly.";

fn five_good() -> Vec<&'static str> {
    vec![GOOD; 5]
}

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("c4")).unwrap();
    std::fs::write(dir.join("llamaflow.toml"), PIPELINE).unwrap();
    std::fs::copy(
        repo().join("samples/c4/c4-sample.00000-of-00002.json.gz"),
        dir.join("c4/real.json.gz"),
    )
    .unwrap();
    let mut kept = vec!["Home | News | Contact"];
    kept.extend(five_good());
    kept.push("Please enable JavaScript to see the comments.");
    kept.push("This site uses cookies to improve your experience.");
    let with = |extra: &str| {
        let mut lines = five_good();
        lines.push(extra);
        lines.join("\n")
    };
    write_gz(
        &dir.join("c4/made.json.gz"),
        &[
            c4_line(&kept.join("\n"), "https://made.example/kept"),
            c4_line(
                &with("Lorem ipsum dolor sit amet, consectetur."),
                "https://made.example/lorem",
            ),
            c4_line(
                &with("The code is function() { return 1; } here."),
                "https://made.example/curly",
            ),
            c4_line(&[GOOD; 4].join("\n"), "https://made.example/four"),
            c4_line("menu\nlogin\nsearch", "https://made.example/empty"),
        ],
    );
}

#[test]
fn each_rule_catches_its_pages_and_lines_whatever_the_jobs() {
    let mut outputs = Vec::new();
    for jobs in ["1", "2"] {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let p = dir.path().join("llamaflow.toml");
        let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "--jobs", jobs, "run"]));
        assert!(out.status.success(), "{}", text(&out));
        let root = dir.path().join("out");

        let counts = manifest(&root, "clean")["counts"].clone();
        let rows_in = counts["rows_in"].as_u64().unwrap();
        assert_eq!(
            rows_in,
            counts["kept"].as_u64().unwrap() + filtered_total(&counts) + counts["quarantined"].as_u64().unwrap(),
            "{counts}"
        );
        for rule in ["lorem_ipsum", "curly_bracket"] {
            assert_eq!(counts["filtered"][rule], 1, "{rule}: {counts}");
        }
        // `four` has four sentences; `empty` has no line with a mark.
        assert!(
            counts["filtered"]["too_few_sentences"].as_u64().unwrap() >= 2,
            "{counts}"
        );

        let clean = dir.path().join("out/datasets/clean");
        let kept = query(
            "SELECT text FROM t WHERE url = 'https://made.example/kept'",
            &[("t", &clean)],
        );
        assert_eq!(kept, [five_good().join("\n")], "the menu, script and cookie lines go");
        let lines: std::collections::BTreeMap<String, u64> = query(
            "SELECT rule, sum(lines) FROM l GROUP BY rule ORDER BY rule",
            &[("l", &dir.path().join("out/datasets/clean__lines"))],
        )
        .iter()
        .map(|r| {
            let (rule, n) = r.split_once('|').unwrap();
            (rule.to_string(), n.parse().unwrap())
        })
        .collect();
        // The made pages' lines, plus whatever the real pages lose.
        assert!(lines["javascript"] >= 1 && lines["policy"] >= 1, "{lines:?}");
        assert!(lines["no_terminal_punctuation"] >= 4, "{lines:?}");
        assert!(lines["seen"] >= 6 + 9 + 4 + 3, "{lines:?}");

        // The released C4 already passed these rules: nearly all of it stays.
        let real = query(
            "SELECT count(*) FROM t WHERE url NOT LIKE 'https://made.example/%'",
            &[("t", &clean)],
        );
        let real: u64 = real[0].parse().unwrap();
        assert!(real + 3 >= rows_in - 5, "{real} of {} real C4 pages kept", rows_in - 5);
        outputs.push(query("SELECT id, text FROM t ORDER BY id", &[("t", &clean)]));
    }
    assert_eq!(outputs[0], outputs[1], "--jobs does not change the output");
}
