//! CommonCrawl's quality stages through the binary on the bundled sample:
//! `run --stages cc_quality` runs exactly its upstream (wikipedia,
//! commoncrawl, quality_lm, ref_classifier), counts reconcile, the kept pages
//! obey the rules, `--jobs 1` and `--jobs 2` agree, and `sql` scores text
//! with the same models.

mod common;

use std::path::Path;

use common::*;

fn run_cc_quality(dir: &Path, jobs: &str) -> std::path::PathBuf {
    let pipeline = copy_samples(dir);
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "--quiet",
        "--jobs",
        jobs,
        "run",
        "--stages",
        "cc_quality",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    dir.join("out")
}

fn counts(root: &Path, dataset: &str) -> serde_json::Value {
    let counts = manifest(root, dataset)["counts"].clone();
    assert_eq!(
        counts["rows_in"].as_u64().unwrap(),
        counts["kept"].as_u64().unwrap() + filtered_total(&counts) + counts["quarantined"].as_u64().unwrap(),
        "{dataset}: {counts}"
    );
    counts
}

#[test]
fn cc_quality_runs_its_upstream_and_keeps_what_its_rules_allow() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let root = run_cc_quality(one.path(), "2");
    let datasets = root.join("datasets");
    for stage in ["wikipedia", "commoncrawl", "quality_lm", "ref_classifier", "cc_quality"] {
        assert!(
            datasets.join(stage).join("_manifest.json").exists(),
            "{stage} did not run"
        );
        counts(&root, stage);
    }
    for stage in ["c4", "dedup", "tokenize", "train"] {
        assert!(
            !datasets.join(stage).exists(),
            "{stage} ran but cc_quality does not need it"
        );
    }
    // The artifacts: a model per language, the cut-offs, the classifier.
    let lm = std::fs::read(datasets.join("quality_lm/lm.en.bin")).unwrap();
    assert!(lm.starts_with(b"llamaflow-ngram-lm 1\n"));
    let cutoffs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(datasets.join("quality_lm/cutoffs.json")).unwrap()).unwrap();
    let (head, middle) = (
        cutoffs["en"]["head_max"].as_f64().unwrap(),
        cutoffs["en"]["middle_max"].as_f64().unwrap(),
    );
    assert!(0.0 < head && head <= middle, "{cutoffs}");
    let report = query(
        "SELECT positives_from, positives > 0, negatives > 0 FROM r",
        &[("r", &datasets.join("ref_classifier"))],
    );
    assert_eq!(
        report,
        vec!["cited pages + wikipedia articles|true|true"],
        "the sample's pages meet none of its citations: articles stand in"
    );

    // Every page of commoncrawl is scored; each dropped one by a rule.
    let cc = counts(&root, "commoncrawl");
    let q = counts(&root, "cc_quality");
    assert_eq!(q["rows_in"], cc["kept"]);
    assert!(q["kept"].as_u64().unwrap() > 0, "{q}");
    assert!(filtered_total(&q) > 0, "{q}");
    for rule in q["filtered"].as_object().unwrap().keys() {
        assert!(
            [
                "bucket_tail",
                "bucket_middle",
                "bucket_head",
                "ref_probability",
                "no_language_model"
            ]
            .contains(&rule.as_str()),
            "{rule}"
        );
    }
    let kept = datasets.join("cc_quality");
    let violations = query(
        &format!(
            "SELECT count(*) FROM k WHERE bucket NOT IN ('head', 'middle') OR ref_probability < 0.25 \
             OR perplexity > {middle}"
        ),
        &[("k", &kept)],
    );
    assert_eq!(violations, vec!["0"]);
    let per_bucket = query(
        "SELECT CAST(sum(documents) AS BIGINT), CAST(sum(CASE WHEN kept THEN documents ELSE 0 END) AS BIGINT) FROM b",
        &[("b", &datasets.join("cc_quality__buckets"))],
    );
    assert_eq!(per_bucket, vec![format!("{}|{}", q["rows_in"], q["kept"])]);

    // The SQL functions score with the same models as the stage.
    let p = one.path().join("llamaflow.toml");
    let out = run(llamaflow().args([
        "--pipeline",
        p.to_str().unwrap(),
        "--quiet",
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT count(*) FROM cc_quality WHERE abs(perplexity(text, language) - perplexity) > 1e-9 \
         OR abs(ref_probability(text) - ref_probability) > 1e-6",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().last(),
        Some("0"),
        "{}",
        text(&out)
    );

    // Determinism: one worker or two, the same models and the same pages.
    let root_two = run_cc_quality(two.path(), "1");
    assert_eq!(
        lm,
        std::fs::read(root_two.join("datasets/quality_lm/lm.en.bin")).unwrap()
    );
    let ids = |root: &Path| {
        query(
            "SELECT id, bucket, ref_probability FROM k ORDER BY id",
            &[("k", &root.join("datasets/cc_quality"))],
        )
    };
    assert_eq!(ids(&root), ids(&root_two));

    // An incremental refresh: new CommonCrawl input is scored with the same
    // models and cut-offs (CCNet's were pinned); only a new Wikipedia retrains.
    let wet = one.path().join("commoncrawl");
    std::fs::copy(
        wet.join("CC-MAIN-sample-00000.warc.wet.gz"),
        wet.join("CC-MAIN-sample-00002.warc.wet.gz"),
    )
    .unwrap();
    let out = run(llamaflow().args([
        "--pipeline",
        p.to_str().unwrap(),
        "--quiet",
        "run",
        "--stages",
        "cc_quality",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    let state = |stage: &str| {
        summary
            .lines()
            .find(|l| l.split_whitespace().next() == Some(stage))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    assert_eq!(state("commoncrawl").as_deref(), Some("succeeded"), "{summary}");
    assert!(
        matches!(state("quality_lm").as_deref(), None | Some("up_to_date")),
        "{summary}"
    );
    let ledger = run(llamaflow().args([
        "--pipeline",
        p.to_str().unwrap(),
        "--quiet",
        "sql",
        "--format",
        "csv",
        "-c",
        "SELECT stage, count(*) FROM stage_runs WHERE status = 'succeeded' AND stage IN ('quality_lm', 'commoncrawl') GROUP BY stage ORDER BY stage",
    ]));
    assert_eq!(
        String::from_utf8_lossy(&ledger.stdout)
            .lines()
            .skip(1)
            .collect::<Vec<_>>(),
        vec!["commoncrawl,2", "quality_lm,1"],
        "{}",
        text(&ledger)
    );
    assert_eq!(state("cc_quality").as_deref(), Some("succeeded"), "{summary}");
    assert_eq!(lm, std::fs::read(root.join("datasets/quality_lm/lm.en.bin")).unwrap());
    counts(&root, "cc_quality");
}
