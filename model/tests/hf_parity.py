#!/usr/bin/env python3
"""Hugging Face transformers side of llamaflow-model's parity tests (tests/hf_parity.rs).

Two commands, both writing logits as JSON {"shape": [...], "logits": [flat f32 values]}:
  logits --model-dir D --ids IDS.json --out OUT.json
      Load D with LlamaForCausalLM.from_pretrained (float32) and run the token ids.
  make --model-dir D --ids IDS.json --out OUT.json --seed S
      Build a seeded random tiny LlamaForCausalLM, save_pretrained(D, safetensors), run the ids.
IDS.json is {"ids": [[...], ...]} (batch x seq).
"""

import argparse
import json

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

# transformers 4.56 renamed `torch_dtype` to `dtype`; older releases only know the former.
_DTYPE_KWARG = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"


def load_ids(path):
    with open(path) as f:
        return torch.tensor(json.load(f)["ids"], dtype=torch.long)


def write_logits(model, ids, out):
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits.float()
    with open(out, "w") as f:
        json.dump({"shape": list(logits.shape), "logits": logits.reshape(-1).tolist()}, f)


def cmd_logits(args):
    model = LlamaForCausalLM.from_pretrained(
        args.model_dir, attn_implementation="eager", **{_DTYPE_KWARG: torch.float32}
    )
    write_logits(model, load_ids(args.ids), args.out)


def cmd_make(args):
    torch.manual_seed(args.seed)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        tie_word_embeddings=False,
        attention_bias=False,
        hidden_act="silu",
        bos_token_id=1,
        eos_token_id=2,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or "layernorm" in name:
                # Non-unit gains, so swapping the two per-layer norms would show.
                param.uniform_(0.5, 1.5)
            elif "q_proj" in name or "k_proj" in name:
                # Large enough that attention is peaked and a wrong RoPE layout changes logits.
                param.normal_(0.0, 0.3)
            else:
                param.normal_(0.0, 0.02)
    model.save_pretrained(args.model_dir, safe_serialization=True)
    write_logits(model, load_ids(args.ids), args.out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("logits", "make"):
        p = sub.add_parser(name)
        p.add_argument("--model-dir", required=True)
        p.add_argument("--ids", required=True)
        p.add_argument("--out", required=True)
        if name == "make":
            p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    {"logits": cmd_logits, "make": cmd_make}[args.command](args)


if __name__ == "__main__":
    main()
