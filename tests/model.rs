//! End-to-end: `llamaflow model` and `llamaflow generate` through the real
//! binary: sizes of the paper's configs, a seeded checkpoint converted to
//! Hugging Face and back unchanged, generation with the sample's tokenizer,
//! and clear errors.

mod common;

use common::{copy_samples, llamaflow, run, text};

#[test]
fn info_prints_the_papers_parameter_count() {
    let out = run(llamaflow().args(["model", "info", "7B"]));
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["parameters"], 6_738_415_616u64);
    assert_eq!(info["parameters_billions"], 6.74);
    assert_eq!(info["config"]["ffn_hidden_dim"], 11008);
    // 6N + 12 · layers · dim · seq at the default context of 2048.
    assert_eq!(info["flops_per_token"], 6 * 6_738_415_616u64 + 12 * 32 * 4096 * 2048);

    let out = run(llamaflow().args(["model", "info", "8B"]));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("8B") && err.contains("tiny") && err.contains("65B"),
        "{err}"
    );
}

#[test]
fn init_export_import_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let ok = |args: &[&str]| {
        let out = run(llamaflow().args(args));
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    ok(&["model", "init", "--config", "tiny", "--out", &path("a"), "--seed", "3"]);
    ok(&["model", "init", "--config", "tiny", "--out", &path("b"), "--seed", "3"]);
    ok(&["model", "init", "--config", "tiny", "--out", &path("c"), "--seed", "4"]);
    // Compared through the export: Burn's checkpoint also records parameter ids, drawn per run.
    for name in ["a", "b", "c"] {
        ok(&[
            "model",
            "export-hf",
            "--checkpoint",
            &path(name),
            "--out",
            &path(&format!("hf-{name}")),
        ]);
    }
    let tensors = |name: &str| std::fs::read(dir.path().join(name).join("model.safetensors")).unwrap();
    assert_eq!(tensors("hf-a"), tensors("hf-b"), "the same seed gives the same weights");
    assert_ne!(tensors("hf-a"), tensors("hf-c"));

    ok(&["model", "export-hf", "--checkpoint", &path("a"), "--out", &path("hf")]);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("hf/config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["hidden_size"], 64);
    ok(&["model", "import-hf", "--from", &path("hf"), "--out", &path("back")]);
    ok(&[
        "model",
        "export-hf",
        "--checkpoint",
        &path("back"),
        "--out",
        &path("hf2"),
    ]);
    assert_eq!(tensors("hf"), tensors("hf2"), "export → import → export changes no bit");

    // An existing target is refused, and nothing is left half-written.
    let out = run(llamaflow().args(["model", "init", "--config", "tiny", "--out", &path("a")]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        text(&out)
    );
    let out = run(llamaflow().args(["model", "import-hf", "--from", &path("missing"), "--out", &path("d")]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("missing"),
        "{}",
        text(&out)
    );
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "staging folders left: {leftovers:?}");
    assert!(!dir.path().join("d").exists());
}

#[test]
fn generate_continues_a_prompt_with_the_sample_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let out = run(llamaflow()
        .arg("--pipeline")
        .arg(&pipeline)
        .args(["--quiet", "run", "--stages", "tokenizer"]));
    assert!(out.status.success(), "{}", text(&out));
    let tokenizer = dir.path().join("out/datasets/tokenizer/tokenizer.json");
    let checkpoint = dir.path().join("ckpt");
    let out = run(llamaflow()
        .args(["model", "init", "--config", "tiny", "--seed", "1", "--out"])
        .arg(&checkpoint));
    assert!(out.status.success(), "{}", text(&out));

    let generate = |extra: &[&str]| {
        let out = run(llamaflow()
            .args(["generate", "--checkpoint"])
            .arg(&checkpoint)
            .arg("--tokenizer")
            .arg(&tokenizer)
            .args(["--prompt", "The history of", "--max-new-tokens", "8"])
            .args(extra));
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let greedy = generate(&[]);
    assert!(greedy.starts_with("The history of"), "{greedy}");
    assert!(
        greedy.trim_end().len() > "The history of".len(),
        "nothing was generated: {greedy:?}"
    );
    assert_eq!(greedy, generate(&[]), "greedy decoding is deterministic");
    let sampled = generate(&["--temperature", "1.0", "--top-p", "0.9", "--seed", "5"]);
    assert_eq!(
        sampled,
        generate(&["--temperature", "1.0", "--top-p", "0.9", "--seed", "5"])
    );

    let out = run(llamaflow()
        .args(["generate", "--checkpoint"])
        .arg(&checkpoint)
        .arg("--tokenizer")
        .arg(dir.path().join("no-such-tokenizer.json"))
        .args(["--prompt", "x"]));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-tokenizer.json"),
        "{}",
        text(&out)
    );
}
