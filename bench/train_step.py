#!/usr/bin/env python3
"""Benchmark: one LLaMA training step on CPU, llamaflow (Burn, ndarray) next to PyTorch, same run.

    python3 bench/train_step.py [--config small] [--seq-len 256] [--batch 1] [--steps 3] [--bin target/release/llamaflow]
    python3 bench/train_step.py --device cuda --dim 2048 --n-layers 16 --n-heads 16 --seq-len 2048 \
        --batch 4 --steps 20 --warmup 3 --peak-tflops 989 --bin ./llamaflow      # the GPU check (bench/gpu_check.sh)

Both sides build the same architecture from `llamaflow model info CONFIG` (RMSNorm pre-norm,
SwiGLU, RoPE, untied 32k head), seed random weights, and time full optimiser steps on random
token ids: forward, mean next-token cross-entropy, backward, global-norm clipping at 1.0, AdamW
(beta 0.9/0.95, weight decay 0.1). After `--warmup` untimed steps, `--steps` are timed and the
median is reported.
  - llamaflow: `llamaflow model bench` (f32, Burn's BalancedCheckpointing autodiff);
  - PyTorch: Hugging Face `LlamaForCausalLM` (SDPA attention, f32) with torch.optim.AdamW and
    torch.nn.utils.clip_grad_norm_, torch's default CPU threads.
Reports step seconds, tokens/s, achieved GFLOP/s (6N + 12 L d s per token) and the ratio
llamaflow / PyTorch in step time (above 1: llamaflow is slower). A recorded figure, not a target.
With --device cuda: llamaflow's `cuda` build (f32) and PyTorch with bf16 autocast (its usual
recipe), MFU against --peak-tflops (H100 SXM dense bf16: 989), and peak GPU memory (PyTorch's
max_memory_allocated; for llamaflow, nvidia-smi's memory.used sampled every 0.2 s).
Needs: `cargo build --release`, `pip install torch transformers` (tests/requirements.txt pins them).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shape_flags(args):
    if args.dim:
        return ["--dim", str(args.dim), "--n-layers", str(args.n_layers), "--n-heads", str(args.n_heads)]
    return ["--config", args.config]


def gpu_memory_sampler():
    """Samples nvidia-smi's memory.used (MiB) until stopped; returns (stop, peak())."""
    import threading
    peak = [0]
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                peak[0] = max(peak[0], max(int(x) for x in out.split()))
            except Exception:
                pass
            stop.wait(0.2)

    threading.Thread(target=loop, daemon=True).start()
    return stop, lambda: peak[0]


def llamaflow(args):
    cmd = [args.bin, "model", "bench", *shape_flags(args), "--seq-len", str(args.seq_len), "--device", args.device,
           "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    sampler = gpu_memory_sampler() if args.device == "cuda" else None
    try:
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as e:
        sys.exit(f"llamaflow failed: {e.stderr[-4000:]}")
    result = json.loads(out.stdout)
    if sampler:
        sampler[0].set()
        result["peak_memory_mib"] = sampler[1]()
    return result


def pytorch(args, info):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    c = info["config"]
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = LlamaConfig(
        vocab_size=c["vocab_size"], hidden_size=c["dim"], intermediate_size=c["ffn_hidden_dim"],
        num_hidden_layers=c["n_layers"], num_attention_heads=c["n_heads"], num_key_value_heads=c["n_heads"],
        rms_norm_eps=c["norm_eps"], rope_theta=c["rope_theta"], max_position_embeddings=c["max_seq_len"],
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
    model = LlamaForCausalLM._from_config(config, attn_implementation="sdpa").to(device).train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    optim = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                              lr=c["learning_rate"], betas=(0.9, 0.95), eps=1e-8)
    seconds, losses = [], []
    for i in range(args.warmup + args.steps):
        ids = torch.randint(0, c["vocab_size"], (args.batch, args.seq_len + 1), device=device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.autocast(device_type=args.device, dtype=torch.bfloat16, enabled=args.device == "cuda"):
            logits = model(input_ids=ids[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        optim.zero_grad(set_to_none=True)
        if args.device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        losses.append(loss.item())
        if i >= args.warmup:
            seconds.append(elapsed)
    median = statistics.median(seconds)
    tokens = args.batch * args.seq_len
    backend = (f"torch {torch.__version__} CUDA, bf16 autocast, SDPA" if args.device == "cuda"
               else f"torch {torch.__version__} CPU f32, SDPA, {torch.get_num_threads()} threads")
    extra = {"peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20} if args.device == "cuda" else {}
    return {**extra, "tool": "pytorch", "backend": backend,
            "step_seconds": seconds, "median_step_seconds": median, "tokens_per_second": tokens / median,
            "gflops_per_second": info["flops_per_token"] * tokens / median / 1e9, "losses": losses}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="small")
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/llamaflow"))
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dim", type=int, help="a LLaMA shape instead of --config (with --n-layers, --n-heads)")
    ap.add_argument("--n-layers", type=int)
    ap.add_argument("--n-heads", type=int)
    ap.add_argument("--peak-tflops", type=float, help="the device's peak, for MFU")
    ap.add_argument("--json", help="also write both results here")
    args = ap.parse_args()
    if args.dim:
        from math import ceil
        hidden = 256 * ceil(int(2 * 4 * args.dim / 3) / 256)
        params = 2 * 32000 * args.dim + args.n_layers * (4 * args.dim ** 2 + 3 * args.dim * hidden + 2 * args.dim) + args.dim
        config = {"dim": args.dim, "n_layers": args.n_layers, "n_heads": args.n_heads, "vocab_size": 32000,
                  "ffn_hidden_dim": hidden, "norm_eps": 1e-6, "rope_theta": 10000.0, "max_seq_len": 2048,
                  "learning_rate": 3e-4}
        info = {"config": config, "parameters": params,
                "flops_per_token": 6 * params + 12 * args.n_layers * args.dim * args.seq_len}
    else:
        info = json.loads(subprocess.run([args.bin, "model", "info", args.config, "--seq-len", str(args.seq_len)],
                                         check=True, capture_output=True, text=True).stdout)
    print(f"{args.config}: {info['parameters']:,} parameters, seq {args.seq_len}, batch {args.batch}, "
          f"{os.cpu_count()} CPUs", file=sys.stderr)
    ours = llamaflow(args)
    theirs = pytorch(args, info)
    print(f"{'tool':<10} {'median step s':>14} {'tokens/s':>10} {'GFLOP/s':>9} {'MFU':>6} {'peak MiB':>9}  backend")
    for r in (ours, theirs):
        mfu = f"{r['gflops_per_second'] / (args.peak_tflops * 1e3):.3f}" if args.peak_tflops else "-"
        r["mfu"] = None if mfu == "-" else float(mfu)
        mem = f"{r['peak_memory_mib']:.0f}" if "peak_memory_mib" in r else "-"
        print(f"{r['tool']:<10} {r['median_step_seconds']:>14.3f} {r['tokens_per_second']:>10.1f} "
              f"{r['gflops_per_second']:>9.1f} {mfu:>6} {mem:>9}  {r['backend']}")
    ratio = ours["median_step_seconds"] / theirs["median_step_seconds"]
    print(f"llamaflow step time / PyTorch step time: {ratio:.2f}")
    print(f"first losses: llamaflow {ours['losses'][0]:.3f}, pytorch {theirs['losses'][0]:.3f} (ln V = "
          f"{__import__('math').log(info['config']['vocab_size']):.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "info": info, "llamaflow": ours, "pytorch": theirs, "ratio": ratio}, f, indent=1)


if __name__ == "__main__":
    main()
