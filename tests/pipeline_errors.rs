//! Mistakes in the pipeline file are reported with the file, the line and the
//! key, before anything runs.

mod common;

use common::*;

fn check(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("c4")).unwrap();
    write_gz(&dir.path().join("c4/a.json.gz"), &sample_lines()[..1]);
    let p = dir.path().join("llamaflow.toml");
    std::fs::write(&p, toml).unwrap();
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "run"]));
    let stderr = String::from_utf8_lossy(&out.stderr).replace(p.to_str().unwrap(), "FILE");
    assert!(!dir.path().join("out/datasets").exists(), "nothing may run: {stderr}");
    (out.status.code(), stderr)
}

#[test]
fn an_unknown_stage_parameter_is_named_with_its_line() {
    let (code, err) =
        check("[output]\nroot = \"out\"\n\n[stages.c4]\ntype = \"c4\"\ninputs = [\"c4/*.json.gz\"]\nmin_chars = 300\n");
    assert_eq!(code, Some(2));
    assert!(
        err.contains("FILE:7: `stages.c4.min_chars`: unknown field `min_chars`"),
        "{err}"
    );
}

#[test]
fn an_unknown_top_level_key_is_named_with_its_line() {
    let (code, err) = check("[output]\nroot = \"out\"\n[mixtrue]\nc4 = 1.0\n");
    assert_eq!(code, Some(2));
    assert!(err.contains("FILE:3: `mixtrue`: unknown field `mixtrue`"), "{err}");
}

#[test]
fn a_cycle_is_named() {
    let (code, err) = check(
        "[output]\nroot = \"out\"\n[stages.a]\ntype = \"c4\"\ninputs = [\"b\"]\n[stages.b]\ntype = \"c4\"\ninputs = [\"a\"]\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("the stages form a cycle: a -> b -> a") || err.contains("the stages form a cycle: b -> a -> b"),
        "{err}"
    );
    assert!(
        err.contains("FILE:5: `stages.a.inputs`") || err.contains("FILE:8: `stages.b.inputs`"),
        "{err}"
    );
}

#[test]
fn unknown_types_and_missing_stages_are_named() {
    let (_, err) = check("[output]\nroot = \"out\"\n[stages.a]\ntype = \"c5\"\ninputs = [\"c4/*.json.gz\"]\n");
    assert!(
        err.contains("FILE:4: `stages.a.type`: unknown stage type `c5` (known: arxiv, books, c4, c4_filter, cc_quality, commoncrawl, dedup, github, quality_lm, ref_classifier, stackexchange, tokenize, tokenizer, train, wikipedia)"),
        "{err}"
    );
    let (_, err) = check("[output]\nroot = \"out\"\n[stages.a]\ntype = \"c4\"\ninputs = [\"wikipedia.refs\"]\n");
    assert!(
        err.contains("FILE:5: `stages.a.inputs`: input `wikipedia.refs` names no stage"),
        "{err}"
    );
}

#[test]
fn a_named_output_must_exist_wherever_its_stage_is_declared() {
    // The reader comes first in the file, the stage it reads later.
    let (code, err) = check(
        "[output]\nroot = \"out\"\n[stages.b]\ntype = \"c4\"\ninputs = [\"a.refs\"]\n[stages.a]\ntype = \"c4\"\ninputs = [\"c4/*.json.gz\"]\n",
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("FILE:5: `stages.b.inputs`: stage `a` has no output named `refs`"),
        "{err}"
    );
    // Every stage has a quarantine output.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("c4")).unwrap();
    write_gz(&dir.path().join("c4/a.json.gz"), &sample_lines()[..1]);
    let p = dir.path().join("llamaflow.toml");
    std::fs::write(&p, "[output]\nroot = \"out\"\n[stages.b]\ntype = \"c4\"\ninputs = [\"a.quarantine\"]\n[stages.a]\ntype = \"c4\"\ninputs = [\"c4/*.json.gz\"]\n").unwrap();
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "validate"]));
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn an_input_matching_nothing_fails_the_stage_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("llamaflow.toml");
    std::fs::write(
        &p,
        "[output]\nroot = \"out\"\n[stages.c4]\ntype = \"c4\"\ninputs = [\"nothing/*.json.gz\"]\n",
    )
    .unwrap();
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "run"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr).replace(p.to_str().unwrap(), "FILE");
    assert!(
        stderr.contains("FILE:5: `stages.c4.inputs`: input `nothing/*.json.gz` matched no files"),
        "{}",
        text(&out)
    );
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "validate"]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("matched no files"),
        "{}",
        text(&out)
    );
}
