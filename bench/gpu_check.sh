#!/usr/bin/env bash
# The model issue's GPU check, as one prepared call on a borrowed H100 (no Rust there): our
# stripped release `cuda` binary, carried as ./llamaflow-cuda, trains a ~1B LLaMA shape (dim 2048,
# 16 heads, 16 layers, sequence 2048) for 20 measured steps after 3 warm-up ones, at the largest
# batch that fits (tried from 8 down), and PyTorch's HF LlamaForCausalLM (SDPA, bf16 autocast,
# AdamW) runs the same shape and batch in the same call. Results: $OUT/gpu_check.json and stdout.
#
#   cargo build --release --features cuda && strip -o llamaflow-cuda target/release/llamaflow
#   (device tool) run: bash bench/gpu_check.sh      carry: llamaflow-cuda
set -uo pipefail
BIN=${BIN:-./llamaflow-cuda}
OUT=${OUT:-/tmp}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
# Smoke first: CubeCL compiles its kernels on first use, and a failure here is cheaper to read.
timeout 180 "$BIN" model bench --device cuda --config tiny --seq-len 128 --steps 2 --warmup 1 || exit 1
for batch in 8 4 2 1; do
  echo "=== batch $batch"
  if timeout 420 python3 bench/train_step.py --bin "$BIN" --device cuda --dim 2048 --n-layers 16 --n-heads 16 \
       --seq-len 2048 --batch "$batch" --steps 20 --warmup 3 --peak-tflops 989 --json "$OUT/gpu_check.json"; then
    exit 0
  fi
done
exit 1
