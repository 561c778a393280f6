//! The `train` stage end to end through the real binary: sample C4 pages and Wikipedia articles to a tokenizer,
//! to shards, to a `tiny` LLaMA whose loss falls and whose validation loss is reported; a run
//! killed mid-training resumes to the same losses bit for bit; a diverging run stops with a clear
//! message and writes no bad checkpoint.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A pipeline over the sample's C4 pages and Wikipedia articles with a small tokenizer and a `train` stage whose
/// parameters follow `train`.
fn pipeline(dir: &Path, train: &str) -> PathBuf {
    copy_samples(dir);
    let toml = format!(
        "[output]\nroot = \"out\"\n\
         [mixture]\nc4 = 0.5\nwikipedia = 0.5\n\
         [stages.c4]\ntype = \"c4\"\ninputs = [\"c4/*.json.gz\"]\n\
         [stages.wikipedia]\ntype = \"wikipedia\"\ninputs = [\"wikipedia/*.xml*.bz2\"]\n\
         [stages.tokenizer]\ntype = \"tokenizer\"\ninputs = [\"c4\", \"wikipedia\"]\nvocab_size = 2000\nsample_bytes = 2000000\n\
         [stages.tokenize]\ntype = \"tokenize\"\ninputs = [\"tokenizer\", \"c4\", \"wikipedia\"]\nvalidation_fraction = 0.1\n\
         [stages.train]\ntype = \"train\"\ninputs = [\"tokenize\"]\nmodel = \"tiny\"\n\
         seq_len = 32\nmicro_batch = 4\nbatch_tokens = 256\n{train}\n"
    );
    let path = dir.join("train.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

/// Step, loss, lr, grad norm and validation loss of every step, as exact text.
fn metrics(root: &Path) -> Vec<String> {
    query(
        "SELECT step, arrow_cast(loss, 'Utf8'), arrow_cast(lr, 'Utf8'), arrow_cast(grad_norm, 'Utf8'), \
         coalesce(arrow_cast(validation_loss, 'Utf8'), '-') FROM train ORDER BY step",
        &[("train", &root.join("datasets/train"))],
    )
}

fn column(rows: &[String], i: usize) -> Vec<f64> {
    rows.iter()
        .map(|r| r.split('|').nth(i).unwrap().trim().parse().unwrap())
        .collect()
}

#[test]
fn tiny_trains_and_a_killed_run_resumes_to_the_same_losses() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "steps = 40\nlr = 3e-3\nwarmup_steps = 4\ncheckpoint_every = 2\neval_every = 10\neval_sequences = 8",
    );
    let p = p.to_str().unwrap();
    let (reference, victim) = (dir.path().join("ref"), dir.path().join("victim"));
    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "--quiet",
        "--output",
        reference.to_str().unwrap(),
        "run",
    ]));
    assert!(out.status.success(), "{}", text(&out));

    let expected = metrics(&reference);
    assert_eq!(expected.len(), 40, "{expected:?}");
    let loss = column(&expected, 1);
    assert!(
        (loss[0] - 32000f64.ln()).abs() < 0.5,
        "the first loss is about ln(32000): {}",
        loss[0]
    );
    assert!(
        loss[39] < loss[0] - 3.0,
        "loss must fall well below ln(32000): {loss:?}"
    );
    let validation: Vec<&str> = expected.iter().map(|r| r.rsplit('|').next().unwrap().trim()).collect();
    for (i, v) in validation.iter().enumerate() {
        let measured = (i + 1) % 10 == 0;
        assert_eq!(*v != "-", measured, "validation loss at step {}: {v}", i + 1);
    }
    let last_validation: f64 = validation[39].parse().unwrap();
    assert!(last_validation < 32000f64.ln() - 3.0, "{last_validation}");
    let csv = std::fs::read_to_string(reference.join("datasets/train/metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 41);

    // The last checkpoint is a model `generate` can use.
    let checkpoint = reference.join("datasets/train/checkpoints/step-00000040");
    let tokenizer = reference.join("datasets/tokenizer/tokenizer.json");
    let out = run(llamaflow().args([
        "generate",
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--prompt",
        "The",
        "--max-new-tokens",
        "5",
    ]));
    assert!(out.status.success(), "{}", text(&out));

    // Everything before `train` first, so the kill lands in training.
    let out = run(llamaflow().args([
        "--pipeline",
        p,
        "--quiet",
        "--output",
        victim.to_str().unwrap(),
        "run",
        "--stages",
        "tokenize",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    let checkpoints = victim.join("datasets/train/checkpoints");
    let mut child = llamaflow()
        .args(["--pipeline", p, "--quiet", "--output", victim.to_str().unwrap(), "run"])
        .spawn()
        .unwrap();
    kill_when(&mut child, 300, "the step-4 checkpoint", || {
        checkpoints.join("step-00000004").exists()
    });
    assert!(
        !victim.join("datasets/train/_manifest.json").exists(),
        "training finished before the kill"
    );
    let out = run(llamaflow().env("LLAMAFLOW_LOG", "info").args([
        "--pipeline",
        p,
        "--output",
        victim.to_str().unwrap(),
        "run",
    ]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming from the last checkpoint"),
        "{}",
        text(&out)
    );
    assert_eq!(
        metrics(&victim),
        expected,
        "losses after resume must equal the uninterrupted run's"
    );
}

#[test]
fn a_diverging_run_stops_by_step_and_writes_no_bad_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // 1e39 overflows f32: the first update makes the weights infinite.
    let p = pipeline(
        dir.path(),
        "steps = 5\nlr = 1e39\nwarmup_steps = 1\ncheckpoint_every = 1",
    );
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "run"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-finite weights") && err.contains("at step 1") && err.contains("no checkpoint was written"),
        "{err}"
    );
    let checkpoints = dir.path().join("out/datasets/train/checkpoints");
    let written: Vec<_> = std::fs::read_dir(&checkpoints)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn bad_train_parameters_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "steps = 5\nbatch_tokens_typo = 3");
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "validate"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("batch_tokens_typo"),
        "{}",
        text(&out)
    );
}
