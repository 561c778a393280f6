//! The tokenizer and tokenize stages end to end: the sample corpus to a
//! tokenizer, to token shards, to the training mixture; HF `tokenizers` and
//! `transformers` (the real consumers) load our tokenizer.json and give the
//! ids our shards hold, on thousands of documents.

mod common;

use std::path::Path;

use common::*;

/// Runs the parity script; it exits non-zero on any mismatch or too few documents.
fn assert_hf_parity(out_root: &Path, min_documents: usize) -> String {
    let script = repo().join("tests/python/tokenizer_parity.py");
    let py = std::process::Command::new("python3")
        .arg(&script)
        .arg(out_root)
        .args(["--min-documents", &min_documents.to_string()])
        .output()
        .expect("python3 runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(
        py.status.success(),
        "HF parity failed (are tokenizers/transformers installed? ./test.sh installs them): {report}"
    );
    report
}

/// Texts that stress a tokenizer: digits, emoji, code, unusual and invalid-looking Unicode.
fn tricky_texts() -> Vec<String> {
    let pieces = [
        "3.14159 2718281828 1,000,000 0x1F600 v2.0.1",
        "🦙🦙 👩‍👩‍👧‍👦 🏳️‍🌈 ✊🏿 🇩🇪",
        "fn main() {\n    let v: Vec<u64> = (0..10).collect();\n\tprintln!(\"{v:?}\");\n}",
        "\u{feff}BOM \u{200b}zero\u{200b}width \u{202e}rtl override\u{202c} \u{00ad}soft",
        "combining: e\u{301}\u{301}\u{301} \u{301}alone \u{fffd}\u{fffd} replacement",
        "private use \u{e000}\u{f8ff} \u{10ffff} noncharacter \u{fffe}",
        "漢字かなカナ한국어 العربية עברית ไทย",
        "   leading spaces and trailing   ",
        "tabs\t\tand\r\nCRLF\nand \u{3000}ideographic space",
        "special look-alikes: <s> </s> <unk> <0x41> ▁ ▁▁word",
    ];
    let mut out = Vec::new();
    for (i, a) in pieces.iter().enumerate() {
        for (j, b) in pieces.iter().enumerate() {
            out.push(format!("{a} {i}{j} {b}"));
        }
    }
    out
}

/// Lines of the sample corpus's deduplicated documents (code, prose, markup) as C4 records.
fn corpus_lines_as_c4(out_root: &Path, limit: usize) -> Vec<String> {
    let dedup = out_root.join("datasets/dedup");
    let texts = query("SELECT text FROM dedup ORDER BY id", &[("dedup", &dedup)]);
    let mut records = Vec::new();
    let mut texts_and_lines: Vec<String> = Vec::new();
    for text in texts {
        texts_and_lines.extend(text.lines().filter(|l| l.trim().len() > 3).map(str::to_string));
    }
    texts_and_lines.truncate(limit);
    texts_and_lines.extend(tricky_texts());
    for (i, text) in texts_and_lines.into_iter().enumerate() {
        let record = serde_json::json!({
            "text": text,
            "timestamp": "2019-04-25T12:57:54Z",
            "url": format!("https://example.com/{i}"),
        });
        records.push(record.to_string());
    }
    records
}

#[test]
fn the_sample_corpus_becomes_shards_that_hf_reproduces_and_the_mixture_serves() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out_root = dir.path().join("out");
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));

    // The tokenizer: LLaMA's layout, loadable by HF (checked by the parity script below).
    let tokenizer_json = out_root.join("datasets/tokenizer/tokenizer.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&tokenizer_json).unwrap()).unwrap();
    assert_eq!(json["model"]["type"], "BPE");
    assert_eq!(json["model"]["byte_fallback"], true);
    assert_eq!(json["model"]["vocab"]["<unk>"], 0);
    assert_eq!(json["model"]["vocab"]["</s>"], 2);
    assert_eq!(json["model"]["vocab"]["<0x0A>"], 3 + 0x0A);
    let vocab = out_root.join("datasets/tokenizer");
    let kinds = query(
        "SELECT kind, count(*) FROM vocab GROUP BY kind ORDER BY kind",
        &[("vocab", &vocab)],
    );
    assert_eq!(kinds[0], "byte|256");
    assert_eq!(kinds[2], "special|3");
    let pieces: u64 = kinds[1].strip_prefix("piece|").unwrap().parse().unwrap();
    assert!(pieces > 10_000 && pieces <= 32_000 - 259, "{kinds:?}");

    // Every deduplicated document is in a shard, and the counts reconcile.
    let dedup_rows = manifest(&out_root, "dedup")["rows"].as_u64().unwrap();
    let tokenize = manifest(&out_root, "tokenize");
    let counts = &tokenize["counts"];
    assert_eq!(counts["rows_in"].as_u64().unwrap(), dedup_rows);
    assert_eq!(
        counts["kept"].as_u64().unwrap() + filtered_total(counts) + counts["quarantined"].as_u64().unwrap(),
        dedup_rows
    );
    let docs = out_root.join("datasets/tokenize");
    let shards = out_root.join("datasets/tokenize__shards");
    let agree = query(
        "SELECT (SELECT sum(tokens) FROM docs) = (SELECT sum(tokens) FROM shards), \
                (SELECT count(*) FROM docs) = (SELECT sum(documents) FROM shards), \
                (SELECT count(DISTINCT source) FROM shards WHERE split = 'train')",
        &[("docs", &docs), ("shards", &shards)],
    );
    assert_eq!(
        agree,
        ["true|true|7"],
        "all seven sources, CommonCrawl included, have train shards"
    );
    assert_hf_parity(&out_root, dedup_rows as usize / 2);

    // The mixture: the paper's Table 1 proportions, every source present (the
    // renormalization when one is missing is pinned by the mixture's unit
    // tests), and 10,000 drawn sequences share their tokens in them.
    let out = run(llamaflow().args(["--pipeline", p, "mixture", "--seq-len", "64", "--draw", "10000"]));
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let planned = report["plan"]["sources"].as_array().unwrap();
    assert_eq!(planned.len(), 7, "{report}");
    assert_eq!(report["plan"]["warnings"].as_array().unwrap().len(), 0, "{report}");
    for source in planned {
        let name = source["name"].as_str().unwrap();
        let proportion = source["proportion"].as_f64().unwrap();
        let share = report["draw"]["share"][name].as_f64().unwrap();
        assert!(
            (share - proportion).abs() < 0.01,
            "{name}: drew {share}, planned {proportion}"
        );
    }
    let c4 = planned.iter().find(|s| s["name"] == "c4").unwrap();
    assert!((c4["proportion"].as_f64().unwrap() - 0.15).abs() < 1e-9, "{report}");

    // Megatron export: one .bin/.idx pair per source and split, documents as in our shards.
    let megatron = dir.path().join("megatron");
    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "export",
        "megatron",
        "--out",
        megatron.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let train_docs = query(
        "SELECT sum(documents) FROM shards WHERE source = 'wikipedia' AND split = 'train'",
        &[("shards", &shards)],
    );
    let idx = std::fs::read(megatron.join("wikipedia_train.idx")).unwrap();
    assert_eq!(&idx[..9], b"MMIDIDX\x00\x00");
    let sequences = u64::from_le_bytes(idx[18..26].try_into().unwrap());
    assert_eq!(sequences.to_string(), train_docs[0]);

    // Thousands more documents through an imported tokenizer (the first run's):
    // lines of the corpus (code, prose, markup) and texts built to be awkward.
    let second = dir.path().join("second");
    std::fs::create_dir_all(second.join("extra")).unwrap();
    write_gz(
        &second.join("extra/lines.json.gz"),
        &corpus_lines_as_c4(&out_root, 4000),
    );
    let toml = format!(
        "[output]\nroot = \"out\"\n\
         [stages.c4]\ntype = \"c4\"\ninputs = [\"extra/*.json.gz\"]\n\
         [stages.tokenizer]\ntype = \"tokenizer\"\ninputs = [\"{}\"]\n\
         [stages.tokenize]\ntype = \"tokenize\"\ninputs = [\"tokenizer\", \"c4\"]\n",
        tokenizer_json.display()
    );
    std::fs::write(second.join("llamaflow.toml"), toml).unwrap();
    let out = run(llamaflow().args([
        "--pipeline",
        second.join("llamaflow.toml").to_str().unwrap(),
        "--quiet",
        "run",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(second.join("out/datasets/tokenizer/tokenizer.json")).unwrap(),
        std::fs::read(&tokenizer_json).unwrap(),
        "an imported tokenizer is copied as it is"
    );
    let report = assert_hf_parity(&second.join("out"), 3000);
    assert!(report.contains("\"mismatches\": 0"), "{report}");
}

#[test]
fn long_documents_are_segmented_with_exactly_the_ids_of_whole_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "tokenizer"]));
    assert!(out.status.success(), "{}", text(&out));
    let tokenizer = dir.path().join("out/datasets/tokenizer/tokenizer.json");

    let long = dir.path().join("long.txt");
    let mut text_body = String::new();
    // Special-token look-alikes aside: a text holding `</s>` is never cut (HF
    // matches added tokens first), which a unit test pins.
    let texts: Vec<String> = tricky_texts().into_iter().filter(|t| !t.contains("<s>")).collect();
    for (i, t) in texts.iter().cycle().take(3000).enumerate() {
        text_body.push_str(&format!("{t} paragraph {i}.\n\n"));
    }
    std::fs::write(&long, &text_body).unwrap();
    let count = |whole: bool| {
        let mut cmd = llamaflow();
        cmd.args([
            "tokens",
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            long.to_str().unwrap(),
        ]);
        if whole {
            cmd.arg("--whole");
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (segmented, whole) = (count(false), count(true));
    assert!(segmented["segments"].as_u64().unwrap() > 10, "{segmented}");
    assert_eq!(segmented["tokens"], whole["tokens"]);
}

#[test]
fn a_file_that_is_not_a_tokenizer_fails_the_stage_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.json"), "{\"model\": 42}").unwrap();
    let toml = "[output]\nroot = \"out\"\n[stages.tokenizer]\ntype = \"tokenizer\"\ninputs = [\"./bad.json\"]\n";
    std::fs::write(dir.path().join("p.toml"), toml).unwrap();
    let out = run(llamaflow().args(["--pipeline", dir.path().join("p.toml").to_str().unwrap(), "run"]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json: not a tokenizer HF `tokenizers` can load"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_killed_tokenize_run_resumes_to_the_same_shards() {
    let dir = tempfile::tempdir().unwrap();
    let lines = sample_lines();
    std::fs::create_dir_all(dir.path().join("c4")).unwrap();
    let files = 24;
    for f in 0..files {
        let docs: Vec<String> = (0..300)
            .map(|i| {
                let v: serde_json::Value = serde_json::from_str(&lines[(f + i) % lines.len()]).unwrap();
                let text = format!("{} [copy {f}-{i}]", v["text"].as_str().unwrap());
                serde_json::json!({"text": text, "url": v["url"], "timestamp": v["timestamp"]}).to_string()
            })
            .collect();
        write_gz(&dir.path().join(format!("c4/part-{f:03}.json.gz")), &docs);
    }
    let toml = "[output]\nroot = \"out\"\n\
                [stages.c4]\ntype = \"c4\"\ninputs = [\"c4/*.json.gz\"]\n\
                [stages.tokenizer]\ntype = \"tokenizer\"\ninputs = [\"c4\"]\nvocab_size = 2000\nsample_bytes = 1000000\n\
                [stages.tokenize]\ntype = \"tokenize\"\ninputs = [\"tokenizer\", \"c4\"]\nvalidation_fraction = 0.05\n";
    std::fs::write(dir.path().join("llamaflow.toml"), toml).unwrap();
    let p = dir.path().join("llamaflow.toml");
    let p = p.to_str().unwrap();
    let (reference, victim) = (dir.path().join("ref"), dir.path().join("victim"));
    for root in [&reference, &victim] {
        let out = run(llamaflow().args([
            "--pipeline",
            p,
            "--quiet",
            "--output",
            root.to_str().unwrap(),
            "run",
            "--stages",
            "tokenizer",
        ]));
        assert!(out.status.success(), "{}", text(&out));
    }
    assert_eq!(
        std::fs::read(reference.join("datasets/tokenizer/tokenizer.json")).unwrap(),
        std::fs::read(victim.join("datasets/tokenizer/tokenizer.json")).unwrap(),
        "training on the same corpus gives the same tokenizer"
    );
    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "--quiet",
        "--output",
        reference.to_str().unwrap(),
        "run",
    ]));
    assert!(out.status.success(), "{}", text(&out));

    // Killed once a few tokenize units are committed, then run again.
    let commits = || {
        std::fs::read_dir(victim.join("datasets/tokenize/_commits"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
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
    kill_when(&mut child, 120, "two committed units", || commits() >= 2);
    assert!(commits() < files, "every unit was committed before the kill");
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "--output", victim.to_str().unwrap(), "run"]));
    assert!(out.status.success(), "{}", text(&out));

    // The same documents in the same shards, token for token; nothing else left in the folder.
    let sql = "SELECT count(*) FROM a FULL OUTER JOIN b ON a.id = b.id \
               WHERE a.id IS NULL OR b.id IS NULL OR a.shard <> b.shard OR a.document <> b.document OR a.tokens <> b.tokens";
    let diff = query(
        sql,
        &[
            ("a", &reference.join("datasets/tokenize")),
            ("b", &victim.join("datasets/tokenize")),
        ],
    );
    assert_eq!(diff, ["0"]);
    let m = manifest(&victim, "tokenize");
    let listed: std::collections::BTreeSet<String> = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(victim.join("datasets/tokenize"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('_'))
        .collect();
    assert_eq!(listed, on_disk);
    for name in listed
        .iter()
        .filter(|n| n.ends_with(".tokens") || n.ends_with(".index"))
    {
        assert_eq!(
            std::fs::read(reference.join("datasets/tokenize").join(name)).unwrap(),
            std::fs::read(victim.join("datasets/tokenize").join(name)).unwrap(),
            "{name}"
        );
    }
    assert_eq!(m["counts"]["rows_in"], files * 300);
}
