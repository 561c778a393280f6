#!/usr/bin/env python3
"""Checks the `tokenize` stage's shards against Hugging Face, token for token.

    python3 tests/python/tokenizer_parity.py OUT [--tokenizer-dataset tokenizer]
        [--tokenize-dataset tokenize] [--min-documents 1000] [--limit N]

OUT is a pipeline output root (a local folder with datasets/). The script loads
OUT/datasets/<tokenizer-dataset>/tokenizer.json twice, with
`tokenizers.Tokenizer.from_file` and with
`transformers.PreTrainedTokenizerFast(tokenizer_file=...)`, reads the tokenize
dataset's Parquet files (only those its _manifest.json lists), finds each
document's text by (source, id) in every dataset under OUT/datasets whose
manifest schema has both `id` and `text` columns, reads the document's token
ids from `<shard>.tokens` through `<shard>.index`, and checks, per document:

  - ours == tokenizers `encode(text, add_special_tokens=False).ids` + [id of </s>];
  - transformers `encode(text, add_special_tokens=False)` == tokenizers' ids;
  - the row's `tokens` column == the length of its slice of the shard;
  - `decode(ids)` == text, for a sample of documents without a leading space
    (Metaspace drops one leading space on decode) or a literal "\u2581" (it
    decodes to a space);

and, per shard: the index header (magic LFTOKIDX, version 1, token width,
documents, tokens), offsets that start at 0, never go down and end at the
header's token count, a .tokens file of exactly tokens * width bytes, one
Parquet row per document of the shard, and the shard's row in
`<tokenize-dataset>__shards` when that dataset is there.

Prints one JSON line (documents compared, mismatches, tokens compared, ...).
Exit 1 on any mismatch (the first 3 are printed with the first differing
position and the ids/tokens around it), 2 if fewer than --min-documents
documents were compared, else 0. Needs pyarrow, numpy, tokenizers and
transformers (tests/requirements.txt pins them).
"""
import argparse
import hashlib
import json
import os
import random
import struct
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

MAGIC = b"LFTOKIDX"
HEADER = struct.Struct("<8sIIQQ")  # magic, version, token width bytes, documents, tokens: 32 bytes
DECODE_SAMPLE = 500  # documents whose decode round trip is checked
ENCODE_BATCH = 256


def manifest(folder: Path):
    path = folder / "_manifest.json"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def listed_parquet(folder: Path, m):
    return [folder / f["name"] for f in m.get("files", []) if f["name"].endswith(".parquet")]


def schema_columns(folder: Path, m):
    cols = [c.get("name") for c in m.get("schema", []) if isinstance(c, dict)]
    if not cols:
        files = listed_parquet(folder, m)
        if files:
            cols = pq.read_schema(files[0]).names
    return set(cols)


class Report:
    def __init__(self):
        self.mismatches = 0
        self.by_kind = {}
        self.examples = []
        self.warnings = []

    def fail(self, kind, message):
        self.mismatches += 1
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1
        if len(self.examples) < 3:
            self.examples.append(f"[{kind}] {message}")


def first_difference(a, b):
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def describe_diff(tok, a_name, a, b_name, b):
    """The first differing position of two id lists, with ids and tokens around it."""
    pos = first_difference(a, b)
    lo, hi = max(0, pos - 3), pos + 4

    def window(ids):
        return " ".join(f"{i}:{tok.id_to_token(int(i))!r}" for i in ids[lo:hi])

    return (f"first difference at token {pos} (lengths {a_name} {len(a)}, {b_name} {len(b)}); "
            f"tokens {lo}..{hi}: {a_name} [{window(a)}] {b_name} [{window(b)}]")


class Shard:
    def __init__(self, folder: Path, name: str):
        self.name = name
        self.index_path = folder / f"{name}.index"
        self.tokens_path = folder / f"{name}.tokens"
        self.error = None
        self.offsets = None
        self.ids = None
        self.width = self.documents = self.tokens = None
        try:
            self._open()
        except (OSError, ValueError) as e:
            self.error = str(e)

    def _open(self):
        raw = self.index_path.read_bytes()
        if len(raw) < HEADER.size:
            raise ValueError(f"{self.index_path.name}: {len(raw)} bytes, shorter than the {HEADER.size}-byte header")
        magic, version, width, documents, tokens = HEADER.unpack_from(raw)
        self.width, self.documents, self.tokens = width, documents, tokens
        if magic != MAGIC:
            raise ValueError(f"{self.index_path.name}: magic {magic!r}, expected {MAGIC!r}")
        if version != 1:
            raise ValueError(f"{self.index_path.name}: version {version}, expected 1")
        if width not in (2, 4):
            raise ValueError(f"{self.index_path.name}: token width {width}, expected 2 or 4")
        want = HEADER.size + 8 * (documents + 1)
        if len(raw) != want:
            raise ValueError(f"{self.index_path.name}: {len(raw)} bytes, expected {want} for {documents} documents")
        offsets = np.frombuffer(raw, dtype="<u8", offset=HEADER.size)
        if offsets[0] != 0 or offsets[-1] != tokens:
            raise ValueError(f"{self.index_path.name}: offsets run {offsets[0]}..{offsets[-1]}, expected 0..{tokens}")
        if documents and np.any(offsets[1:] < offsets[:-1]):
            raise ValueError(f"{self.index_path.name}: offsets go down")
        size = self.tokens_path.stat().st_size
        if size != tokens * width:
            raise ValueError(f"{self.tokens_path.name}: {size} bytes, expected {tokens} tokens * {width}")
        self.offsets = offsets
        dtype = "<u2" if width == 2 else "<u4"
        self.ids = np.memmap(self.tokens_path, dtype=dtype, mode="r") if tokens else np.zeros(0, dtype=dtype)

    def document(self, i):
        return self.ids[int(self.offsets[i]):int(self.offsets[i + 1])]


def load_tokenize_rows(folder: Path, m):
    cols = ["id", "source", "split", "shard", "document", "tokens"]
    rows = {c: [] for c in cols}
    for path in listed_parquet(folder, m):
        t = pq.read_table(path, columns=cols)
        for c in cols:
            rows[c].extend(t.column(c).to_pylist())
    return [dict(zip(cols, r)) for r in zip(*(rows[c] for c in cols))]


def find_texts(datasets: Path, wanted, skip):
    """(source, id) -> list of distinct texts, from every dataset with id and text columns."""
    texts = {}
    scanned = []
    keys_of = {}
    for key in wanted:
        keys_of.setdefault(key[1], []).append(key)
    for folder in sorted(p for p in datasets.iterdir() if p.is_dir() and p.name not in skip):
        m = manifest(folder)
        if m is None:
            continue
        cols = schema_columns(folder, m)
        if not {"id", "text"} <= cols:
            continue
        scanned.append(folder.name)
        read = ["id", "text"] + (["source"] if "source" in cols else [])
        for path in listed_parquet(folder, m):
            pf = pq.ParquetFile(path)
            for batch in pf.iter_batches(columns=read, batch_size=4096):
                ids = batch.column("id").to_pylist()
                sources = batch.column("source").to_pylist() if "source" in read else [None] * len(ids)
                text_col = batch.column("text")
                for k, (doc_id, source) in enumerate(zip(ids, sources)):
                    keys = keys_of.get(doc_id)
                    if not keys:
                        continue
                    for key in keys:
                        if source is not None and key[0] != source:
                            continue
                        text = text_col[k].as_py()
                        found = texts.setdefault(key, [])
                        if text not in found:
                            found.append(text)
    return texts, scanned


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="pipeline output root (holds datasets/)")
    ap.add_argument("--tokenizer-dataset", default="tokenizer")
    ap.add_argument("--tokenize-dataset", default="tokenize")
    ap.add_argument("--min-documents", type=int, default=1000)
    ap.add_argument("--limit", type=int, default=0, help="compare at most N documents (a seeded random sample; 0: all)")
    args = ap.parse_args()

    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    datasets = args.out / "datasets"
    tok_path = datasets / args.tokenizer_dataset / "tokenizer.json"
    tok = Tokenizer.from_file(str(tok_path))
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tok_path))
    eos = tok.token_to_id("</s>")
    if eos is None:
        raise SystemExit(f"{tok_path}: no </s> token")
    vocab = tok.get_vocab_size(with_added_tokens=True)
    want_width = 2 if vocab <= 65536 else 4
    report = Report()

    tk_folder = datasets / args.tokenize_dataset
    tk_manifest = manifest(tk_folder)
    if tk_manifest is None:
        raise SystemExit(f"{tk_folder}: no _manifest.json")
    rows = load_tokenize_rows(tk_folder, tk_manifest)

    # Shards: header, offsets, sizes, and their rows.
    shards = {}
    rows_by_shard = {}
    for r in rows:
        rows_by_shard.setdefault(r["shard"], []).append(r)
        if r["split"] not in ("train", "validation"):
            report.fail("row", f"document {r['id']!r}: split {r['split']!r}")
    for name, shard_rows in sorted(rows_by_shard.items()):
        s = shards[name] = Shard(tk_folder, name)
        if s.error:
            report.fail("shard", f"{name}: {s.error}")
            continue
        if s.width != want_width:
            report.fail("shard", f"{name}: token width {s.width}, expected {want_width} for a vocab of {vocab}")
        docs = sorted(r["document"] for r in shard_rows)
        if docs != list(range(s.documents)):
            report.fail("shard", f"{name}: {len(docs)} Parquet rows for {s.documents} documents, "
                                 f"or document numbers not 0..{s.documents - 1} each once")
        if s.tokens and int(s.ids.max()) >= vocab:
            report.fail("shard", f"{name}: token id {int(s.ids.max())} outside the vocab ({vocab})")

    # The __shards dataset, when there.
    sh_folder = datasets / f"{args.tokenize_dataset}__shards"
    sh_manifest = manifest(sh_folder)
    shard_table_rows = 0
    if sh_manifest is not None:
        tok_sha = hashlib.sha256(tok_path.read_bytes()).hexdigest()
        for path in listed_parquet(sh_folder, sh_manifest):
            for r in pq.read_table(path).to_pylist():
                shard_table_rows += 1
                s = shards.get(r["shard"])
                if s is None:
                    report.fail("shards", f"{r['shard']}: in {sh_folder.name} but no document row names it")
                    continue
                if s.error:
                    continue
                got = (r["documents"], r["tokens"], r["token_width"])
                if got != (s.documents, s.tokens, s.width):
                    report.fail("shards", f"{r['shard']}: {sh_folder.name} says documents, tokens, width = {got}, "
                                          f"the index says {(s.documents, s.tokens, s.width)}")
                srcs = {(x["source"], x["split"]) for x in rows_by_shard[r["shard"]]}
                if srcs != {(r["source"], r["split"])}:
                    report.fail("shards", f"{r['shard']}: {sh_folder.name} says {(r['source'], r['split'])}, rows say {sorted(srcs)}")
                if r.get("tokenizer_sha256") != tok_sha:
                    report.warnings.append(f"{r['shard']}: tokenizer_sha256 {r.get('tokenizer_sha256')} != sha256 of {tok_path.name} {tok_sha}")
        if shard_table_rows != len(shards):
            report.fail("shards", f"{sh_folder.name} has {shard_table_rows} rows for {len(shards)} shards")

    # Documents.
    if args.limit and len(rows) > args.limit:
        rows = random.Random(0).sample(rows, args.limit)
    wanted = {(r["source"], r["id"]) for r in rows}
    skip = {args.tokenize_dataset, f"{args.tokenize_dataset}__shards", args.tokenizer_dataset}
    texts, scanned = find_texts(datasets, wanted, skip)

    compared = tokens_compared = decode_checked = ambiguous = 0
    todo = []
    for r in rows:
        s = shards.get(r["shard"])
        if s is None or s.error:
            continue
        if r["document"] >= s.documents:
            report.fail("row", f"document {r['id']!r}: document {r['document']} of {r['shard']}, which has {s.documents}")
            continue
        found = texts.get((r["source"], r["id"]))
        if not found:
            report.fail("missing_text", f"document {r['id']!r} (source {r['source']!r}): no text in {scanned}")
            continue
        todo.append((r, s, found))

    for start in range(0, len(todo), ENCODE_BATCH):
        batch = todo[start:start + ENCODE_BATCH]
        # Every distinct text of an id is tried; one that matches is the document's.
        flat = [t for _, _, found in batch for t in found]
        encoded = [e.ids for e in tok.encode_batch(flat, add_special_tokens=False)]
        k = 0
        for r, s, found in batch:
            cand = encoded[k:k + len(found)]
            k += len(found)
            ours = s.document(r["document"]).tolist()
            label = f"document {r['id']!r} ({r['shard']} #{r['document']})"
            compared += 1
            tokens_compared += len(ours)
            if r["tokens"] != len(ours):
                report.fail("tokens_column", f"{label}: tokens column {r['tokens']}, shard slice {len(ours)}")
            pick = next((j for j, c in enumerate(cand) if c + [eos] == ours), None)
            if len(found) > 1:
                ambiguous += 1
            if pick is None:
                report.fail("ids", f"{label}: " + describe_diff(tok, "ours", ours, "hf+</s>", cand[0] + [eos]))
                pick = 0
            text, ids = found[pick], cand[pick]
            tf_ids = hf.encode(text, add_special_tokens=False)
            if tf_ids != ids:
                report.fail("transformers", f"{label}: " + describe_diff(tok, "transformers", tf_ids, "tokenizers", ids))
            if decode_checked < DECODE_SAMPLE and text and not text[0].isspace() and "\u2581" not in text:
                decode_checked += 1
                back = tok.decode(ids, skip_special_tokens=False)
                if back != text:
                    p = first_difference(back, text)
                    report.fail("decode", f"{label}: decode differs from the text at char {p}: "
                                          f"{back[max(0, p - 20):p + 20]!r} vs {text[max(0, p - 20):p + 20]!r}")

    summary = {
        "documents": compared,
        "mismatches": report.mismatches,
        "tokens": tokens_compared,
        "shards": len(shards),
        "decode_checked": decode_checked,
        "ambiguous_ids": ambiguous,
        "mismatch_kinds": report.by_kind,
        "text_datasets": scanned,
        "vocab": vocab,
        "warnings": len(report.warnings),
    }
    print(json.dumps(summary))
    for w in report.warnings[:3]:
        print(f"warning: {w}", file=sys.stderr)
    if report.mismatches:
        for e in report.examples:
            print(e, file=sys.stderr)
        sys.exit(1)
    if compared < args.min_documents:
        print(f"only {compared} documents compared, fewer than --min-documents {args.min_documents}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
