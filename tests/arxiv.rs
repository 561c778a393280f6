//! The `arxiv` source on its samples (two real arXiv papers, as a bulk source
//! bundle, a gzipped `.tex` and a project tarball) and on hostile input:
//! macros that expand forever or exponentially, escaping archive paths and
//! links, a gzip bomb, a truncated bundle, Latin-1 sources, PDF-only papers.

mod common;

use std::path::Path;

use common::*;

fn run_arxiv(dir: &Path, inputs: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("llamaflow.toml"),
        format!("[output]\nroot = \"out\"\n[stages.arxiv]\ntype = \"arxiv\"\ninputs = [{inputs}]\nmax_paper_bytes = 2_000_000\n"),
    )
    .unwrap();
    let p = dir.join("llamaflow.toml");
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));
    dir.join("out")
}

#[test]
fn sample_papers_are_cleaned_the_same_from_every_packaging() {
    let dir = tempfile::tempdir().unwrap();
    copy_samples(dir.path());
    let root = run_arxiv(dir.path(), "\"arxiv/*\"");
    let c = manifest(&root, "arxiv")["counts"].clone();
    // The bundle's two papers, the gzipped .tex and the project tarball.
    assert_eq!(
        (c["rows_in"].as_u64(), c["kept"].as_u64(), c["quarantined"].as_u64()),
        (Some(4), Some(4), Some(0)),
        "{c}"
    );

    let arxiv = root.join("datasets/arxiv");
    let rows = query(
        "SELECT input_file, arxiv_id, url, \
                text LIKE '%\\newcommand%' OR text LIKE '%\\def\\%' OR text LIKE '%thebibliography%' \
                  OR text LIKE '%\\documentclass%' OR text LIKE '%\\begin{document}%' OR text LIKE '%\\end{document}%', \
                n_chars > 10000 \
         FROM a ORDER BY input_file, arxiv_id",
        &[("a", &arxiv)],
    );
    assert_eq!(
        rows,
        [
            "arxiv/arXiv_src_sample.tar|1601.05437|https://arxiv.org/abs/1601.05437|false|true",
            "arxiv/arXiv_src_sample.tar|1809.03842|https://arxiv.org/abs/1809.03842|false|true",
            "arxiv/quantikz.tex.gz|||false|true",
            "arxiv/tikz-feynman-src.tar.gz|||false|true",
        ]
    );
    // The same paper gives the same text whichever way it was packed.
    let same = query(
        "SELECT count(DISTINCT text) FROM a GROUP BY (CASE WHEN input_file LIKE '%quantikz%' OR arxiv_id = '1809.03842' THEN 1 ELSE 2 END)",
        &[("a", &arxiv)],
    );
    assert_eq!(same, ["1", "1"]);
    // No comment line survives, and text starts at the first section.
    let texts = query("SELECT text FROM a", &[("a", &arxiv)]);
    for t in &texts {
        assert!(
            t.starts_with("\\section") || t.starts_with("\\part") || t.starts_with("\\chapter"),
            "{}",
            &t[..80]
        );
        assert!(
            !t.lines().any(|l| l.trim_start().starts_with('%')),
            "a comment line is left"
        );
    }
}

#[test]
fn hostile_papers_are_quarantined_and_counts_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("arxiv")).unwrap();
    let paper = |body: &str| {
        format!(
            "\\documentclass{{article}}\n{body}\n\\begin{{document}}\n\\section{{Intro}}\nText \\x.\n\\end{{document}}\n"
        )
    };
    let recursive = paper("\\newcommand{\\x}{\\x\\x}");
    // 2^24 copies of `ha`: within the depth limit, far over the size cap.
    let mut exponential = String::from("\\def\\a0{ha}\n");
    for i in 1..25 {
        exponential.push_str(&format!("\\def\\a{i}{{\\a{}\\a{}}}\n", i - 1, i - 1));
    }
    // Digits end a control word, so name the levels with letters.
    let exponential: String = exponential
        .replace("\\a", "\\lvl")
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                (b'a' + c as u8 - b'0') as char
            } else {
                c
            }
        })
        .collect();
    let exponential = paper(&format!("{exponential}\\newcommand{{\\x}}{{\\lvlce}}"));
    let good = paper("\\newcommand{\\x}[1][y]{ok-#1}");
    let mut latin1 = b"\\section{Caf\xe9}\nUne phrase en fran\xe7ais, \\'a la main.\n".to_vec();
    latin1.extend_from_slice(b"\\begin{thebibliography}{9}\\bibitem{a} A.\\end{thebibliography}\n");
    let no_section = b"Just some text without any sectioning command.\n".to_vec();
    let bundle = tar_bytes(&[
        (
            b"2401/2401.00001.gz",
            tar::EntryType::Regular,
            &gzip(recursive.as_bytes()),
        ),
        (
            b"2401/2401.00002.gz",
            tar::EntryType::Regular,
            &gzip(exponential.as_bytes()),
        ),
        (b"2401/2401.00003.gz", tar::EntryType::Regular, &gzip(good.as_bytes())),
        (b"2401/2401.00004.gz", tar::EntryType::Regular, &gzip(&latin1)),
        (b"2401/2401.00005.gz", tar::EntryType::Regular, &gzip(&no_section)),
        (
            b"2401/2401.00006.gz",
            tar::EntryType::Regular,
            &gzip(b"%PDF-1.5 binary"),
        ),
        (
            b"2401/2401.00007.gz",
            tar::EntryType::Regular,
            &gzip(&vec![b'a'; 32 << 20]),
        ),
        (
            b"2401/2401.00008.gz",
            tar::EntryType::Regular,
            &gzip(&tar_bytes(&[
                (b"main.tex", tar::EntryType::Regular, good.as_bytes()),
                (b"../../escape.tex", tar::EntryType::Regular, b"evil"),
            ])),
        ),
        (b"../2401.00009.gz", tar::EntryType::Regular, &gzip(good.as_bytes())),
        (b"2401/2401.00010.gz", tar::EntryType::Symlink, b""),
    ]);
    std::fs::write(d.join("arxiv/arXiv_src_2401_001.tar"), &bundle).unwrap();
    // A second bundle cut in the middle of its second member.
    let words: String = (0..5000).map(|i| format!("w{} ", i * 7919 % 10007)).collect();
    let second = gzip(paper(&words).as_bytes());
    assert!(second.len() > 4000);
    let cut = tar_bytes(&[
        (b"2402/2402.00001.gz", tar::EntryType::Regular, &gzip(good.as_bytes())),
        (b"2402/2402.00002.gz", tar::EntryType::Regular, &second),
    ]);
    std::fs::write(d.join("arxiv/arXiv_src_2402_001.tar"), &cut[..1024 + 512 + 2000]).unwrap();

    let started = std::time::Instant::now();
    let root = run_arxiv(d, "\"arxiv/*.tar\"");
    assert!(started.elapsed().as_secs() < 60, "hostile macros must not take long");
    let c = manifest(&root, "arxiv")["counts"].clone();
    let total = c["kept"].as_u64().unwrap() + filtered_total(&c) + c["quarantined"].as_u64().unwrap();
    assert_eq!(total, c["rows_in"].as_u64().unwrap(), "{c}");
    assert_eq!(c["filtered"]["no_section"], 1, "{c}");
    assert_eq!(c["filtered"]["pdf"], 1, "{c}");

    let arxiv = root.join("datasets/arxiv");
    let kept = query("SELECT arxiv_id, text FROM a ORDER BY arxiv_id", &[("a", &arxiv)]);
    assert_eq!(
        kept,
        [
            "2401.00003|\\section{Intro}\nText ok-y.",
            "2401.00004|\\section{Café}\nUne phrase en français, \\'a la main.",
            "2402.00001|\\section{Intro}\nText ok-y.",
        ]
    );
    let reasons = query(
        "SELECT reason FROM q ORDER BY input_file, input_offset",
        &[("q", &root.join("datasets/arxiv__quarantine"))],
    )
    .join("\n");
    for expected in [
        "2401/2401.00001.gz: macro",
        "2401/2401.00002.gz:",
        "2401/2401.00007.gz: more than 2000000 bytes",
        "2401/2401.00008.gz: ../../escape.tex: archive entry refused: a `..` path",
        "archive entry refused: a `..` path",
        "archive entry refused: a link",
        "corrupt or truncated archive",
    ] {
        assert!(reasons.contains(expected), "{expected} missing from\n{reasons}");
    }
    assert_eq!(c["quarantined"], 7, "{c}\n{reasons}");
    assert!(!d.join("escape.tex").exists() && !d.parent().unwrap().join("escape.tex").exists());
}
