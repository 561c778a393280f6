#!/usr/bin/env python3
"""Benchmark: the `tokenize` stage next to raw HF tokenizers and datatrove, same text, same tokenizer, same run.

    python3 bench/tokenize_throughput.py [--mb 200] [--bin target/release/llamaflow] [--jobs N] [--peers-only]

Repeats a real C4 excerpt (the team's shared `c4-train.00000-of-01024.head1000.json.gz`
when ../shared is there, else the bundled samples/c4), each copy of a document
prefixed with a counter line, into gzip files under bench/work/tokenize/c4/
(~MB megabytes of text), writes bench/work/tokenize/llamaflow.toml (c4 ->
tokenizer -> tokenize), runs `llamaflow run --stages c4,tokenizer` once
(untimed), then measures with the same harness as c4_ingest.py (wall, CPU
seconds user+sys, peak RSS):
  - llamaflow: `--jobs N run --stages tokenize --force`;
  - raw HF tokenizers: `Tokenizer.encode_batch` over the `text` column of the
    c4 Parquet files listed in out/datasets/c4/_manifest.json, 1000 texts a
    call, all cores (TOKENIZERS_PARALLELISM=true, RAYON_NUM_THREADS=N);
  - datatrove: ParquetReader (id and text only) -> DocumentTokenizer (eos
    `</s>`, no document shuffling, as llamaflow does none) in a
    LocalPipelineExecutor with N tasks on N workers (fork), writing to
    bench/work/tokenize/datatrove; one tokenizer thread per task.
All three use out/datasets/tokenizer/tokenizer.json and count `</s>` once per
document (HF: ids + 1 per document; datatrove: its `tokens` stat, which
includes the eos its post-processor appends; llamaflow: the `tokens` column).
Reports tokens/s (wall) and tokens per CPU second, and llamaflow's ratio to each.

Then the long-document part: a 10 KB and a 10 MB document of natural text
(sample C4 texts joined) and the same sizes of a text with no space at all (the
C4 text with whitespace and digits removed: one pre-token, nowhere to split),
timed with `llamaflow tokens --tokenizer ... FILE` (its own `seconds`), with
`--whole` (one HF encode over the whole text) and with Python HF
`Tokenizer.encode` of the whole text (killed after --timeout s: "> N s").
Reports the 10 MB / 10 KB cost ratio (linear: about 1000x).

--peers-only runs only the peers (and Python's long-document encodes), on
llamaflow's c4 output when it is there, else on Parquet written here from the
corpus; the tokenizer then comes from out/ or --tokenizer.
Needs: `cargo build --release` and `pip install datatrove==0.10.1 tokenizers==0.23.2`
(pyarrow, numpy come with them).
"""
import argparse
import gzip
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, _HERE)
from c4_ingest import measure, source_lines  # noqa: E402  (the same harness and source text)

ROOT = Path(_HERE).parent
WORK = ROOT / "bench" / "work" / "tokenize"

PIPELINE = """[output]
root = "out"
[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]
[stages.tokenizer]
type = "tokenizer"
inputs = ["c4"]
sample_bytes = 20000000
[stages.tokenize]
type = "tokenize"
inputs = ["tokenizer", "c4"]
validation_fraction = 0.001
"""

# Raw HF tokenizers: argv = tokenizer.json, JSON list of Parquet files, batch size, result path.
HF_PEER = r"""
import json, sys, time
import pyarrow.parquet as pq
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
files, batch, result = json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
docs = tokens = 0
encode_s = 0.0
for path in files:
    for b in pq.ParquetFile(path).iter_batches(columns=["text"], batch_size=batch):
        texts = b.column(0).to_pylist()
        t = time.perf_counter()
        enc = tok.encode_batch(texts, add_special_tokens=False)
        encode_s += time.perf_counter() - t
        docs += len(texts)
        tokens += sum(len(e) for e in enc) + len(texts)  # + </s> per document, as llamaflow counts
json.dump({"documents": docs, "tokens": tokens, "encode_s": encode_s}, open(result, "w"))
"""

# datatrove: argv = tokenizer.json, Parquet folder, paths file (names relative to it), output folder,
# logging folder, tasks, result path.
DATATROVE_PEER = r"""
import json, sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.tokens import DocumentTokenizer
tok, folder, paths, out, logs, tasks, result = sys.argv[1:8]
tasks = int(tasks)
ex = LocalPipelineExecutor(
    pipeline=[
        ParquetReader(folder, paths_file=paths, read_metadata=False, text_key="text", id_key="id"),
        DocumentTokenizer(out, tokenizer_name_or_path=tok, eos_token="</s>", shuffle_documents=False),
    ],
    tasks=tasks, workers=tasks, logging_dir=logs, skip_completed=False, start_method="fork",
)
stats = ex.run()
steps = json.loads(stats.to_json()) if hasattr(stats, "to_json") else None
json.dump({"stats": steps}, open(result, "w"))
"""

# Python HF encode of one whole file: argv = tokenizer.json, file, repeats, result path.
HF_WHOLE = r"""
import json, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
best, n = None, 0
for _ in range(int(sys.argv[3])):
    t = time.perf_counter()
    n = len(tok.encode(text, add_special_tokens=False))
    s = time.perf_counter() - t
    best = s if best is None else min(best, s)
json.dump({"seconds": best, "tokens": n}, open(sys.argv[4], "w"))
"""


def build_corpus(folder: Path, text_mb: float, lines, n_files: int):
    """Writes n_files gzip JSON-lines files of ~text_mb MB of text; each copy of a document
    gets a counter line on top (and a distinct URL), so no two documents are the same."""
    docs = [json.loads(l) for l in lines]
    target = int(text_mb * 1e6)
    per_file = target / n_files
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def copies():
        copy = 0
        while True:
            for d in docs:
                rec = dict(d)
                rec["text"] = f"{copy}\n{d['text']}"
                if rec.get("url"):
                    rec["url"] = f"{d['url']}#copy-{copy}"
                yield rec
            copy += 1

    stream = copies()
    written = documents = 0
    for k in range(n_files):
        in_file = 0
        with gzip.open(folder / f"c4-{k:04d}.json.gz", "wt", encoding="utf-8", compresslevel=1) as out:
            while in_file < per_file and written < target:
                rec = next(stream)
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n = len(rec["text"].encode())
                written += n
                in_file += n
                documents += 1
    return written, documents


def listed(folder: Path, ext=".parquet"):
    m = json.loads((folder / "_manifest.json").read_text())
    return [folder / f["name"] for f in m["files"] if f["name"].endswith(ext)]


def standin_parquet(corpus: Path, folder: Path):
    """--peers-only without llamaflow's c4 output: the same documents as Parquet (id, source, text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    files = []
    for k, path in enumerate(sorted(corpus.glob("*.json.gz"))):
        texts = []
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts = [json.loads(l)["text"] for l in f if l.strip()]
        ids = [hashlib.md5(t.encode()).hexdigest() for t in texts]
        name = f"part-{k:016x}-00000.parquet"
        pq.write_table(pa.table({"id": ids, "source": ["c4"] * len(texts), "text": texts}), folder / name)
        files.append({"name": name, "rows": len(texts), "bytes": (folder / name).stat().st_size})
    (folder / "_manifest.json").write_text(json.dumps({"dataset": "c4", "files": files}))


def long_documents(folder: Path, lines):
    """10 KB and 10 MB of natural text, and the same sizes with no whitespace or digit at all."""
    folder.mkdir(parents=True, exist_ok=True)
    natural = "\n\n".join(json.loads(l)["text"] for l in lines)
    packed = "".join(c for c in natural if not c.isspace() and not c.isdigit())
    files = {}
    for label, text in (("natural", natural), ("no-space", packed)):
        for size_label, size in (("10KB", 10_000), ("10MB", 10_000_000)):
            reps = -(-size // len(text.encode()))
            data = (text * reps).encode()[:size].decode("utf-8", errors="ignore")
            path = folder / f"{label}-{size_label}.txt"
            path.write_text(data, encoding="utf-8")
            files[(label, size_label)] = path
    return files


def run_json(cmd, timeout, env=None):
    """Runs cmd; returns its last stdout line as JSON, or None when it ran past timeout."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None
    if p.returncode != 0:
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(map(str, cmd))}\n{p.stderr[-4000:]}")
    return p


def tokens_of_llamaflow(out: Path):
    """(documents, tokens) from the tokenize dataset's listed Parquet files."""
    import pyarrow.parquet as pq
    docs = tokens = 0
    for path in listed(out / "datasets" / "tokenize"):
        t = pq.read_table(path, columns=["tokens"])
        docs += t.num_rows
        tokens += sum(t.column("tokens").to_pylist())
    return docs, tokens


def datatrove_tokens(result):
    """The `tokens` stat of datatrove's tokenizer step (documents tokenized and eos included)."""
    for step in result.get("stats") or []:
        st = step.get("stats", {})
        if "tokens" in st and ("TOKENIZER" in step.get("name", "") or "Writer" in step.get("name", "")):
            return int(st["tokens"]["total"] if isinstance(st["tokens"], dict) else st["tokens"])
    for step in result.get("stats") or []:
        st = step.get("stats", {})
        if "tokens" in st:
            return int(st["tokens"]["total"] if isinstance(st["tokens"], dict) else st["tokens"])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200, help="megabytes of text in the corpus")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llamaflow")
    ap.add_argument("--jobs", type=int, default=os.cpu_count(), help="cores for every tool")
    ap.add_argument("--batch", type=int, default=1000, help="texts per HF encode_batch call")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a whole-document encode is given up")
    ap.add_argument("--peers-only", action="store_true", help="run only the peers (no llamaflow binary needed)")
    ap.add_argument("--tokenizer", type=Path, help="with --peers-only: tokenizer.json to use when out/ has none")
    ap.add_argument("--skip-long", action="store_true", help="skip the long-document part")
    args = ap.parse_args()
    binary = args.bin.resolve()
    tokenizer_arg = args.tokenizer.resolve() if args.tokenizer else None
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # children's sys.path[0] is the cwd: never bench/ (see above)
    jobs = args.jobs
    src, lines = source_lines()
    print(f"source: {', '.join(str(s) for s in src)} ({len(lines)} documents); "
          f"machine: {os.cpu_count()} cores; jobs={jobs}", flush=True)

    # Corpus (reused when the same size was built from the same source).
    corpus, out = WORK / "c4", WORK / "out"
    n_files = max(2 * jobs, math.ceil(args.mb / 50))
    stamp_path = WORK / "corpus.json"
    stamp = {"mb": args.mb, "files": n_files, "source": [str(s) for s in src], "documents": len(lines)}
    old = json.loads(stamp_path.read_text()) if stamp_path.exists() else None
    if old is None or {k: old.get(k) for k in stamp} != stamp or not corpus.is_dir():
        t = time.perf_counter()
        text_bytes, documents = build_corpus(corpus, args.mb, lines, n_files)
        stamp.update(text_bytes=text_bytes, documents_written=documents)
        stamp_path.write_text(json.dumps(stamp))
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(WORK / "peers-c4", ignore_errors=True)
        print(f"corpus: {text_bytes / 1e6:.0f} MB of text, {documents} documents, {n_files} files "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    else:
        stamp = old
        print(f"corpus: reusing {corpus} ({stamp['text_bytes'] / 1e6:.0f} MB of text, {stamp['documents_written']} documents)")
    text_mb = stamp["text_bytes"] / 1e6
    pipeline = WORK / "llamaflow.toml"
    pipeline.write_text(PIPELINE)

    results = {}
    counts = {}
    if not args.peers_only:
        subprocess.run([str(binary), "--pipeline", str(pipeline), "run", "--stages", "c4,tokenizer"], check=True,
                       stdout=subprocess.DEVNULL)
        results["llamaflow tokenize"] = measure([str(binary), "--pipeline", str(pipeline), "--jobs", str(jobs),
                                                 "run", "--stages", "tokenize", "--force"])
        counts["llamaflow tokenize"] = tokens_of_llamaflow(out)

    tok_json = out / "datasets" / "tokenizer" / "tokenizer.json"
    if args.peers_only and not tok_json.exists():
        if tokenizer_arg is None:
            raise SystemExit(f"{tok_json} is not there: pass --tokenizer PATH (a tokenizer.json) with --peers-only")
        tok_json = tokenizer_arg
    c4_folder = out / "datasets" / "c4"
    if not (c4_folder / "_manifest.json").exists():
        if not args.peers_only:
            raise SystemExit(f"{c4_folder}/_manifest.json is not there after the c4 stage")
        c4_folder = WORK / "peers-c4"
        if not (c4_folder / "_manifest.json").exists():
            standin_parquet(corpus, c4_folder)
        print(f"peers read Parquet written here ({c4_folder}), not llamaflow's c4 output")
    files = listed(c4_folder)
    print(f"tokenizer: {tok_json}; {len(files)} Parquet files", flush=True)

    # Raw HF tokenizers, all cores.
    hf_result = WORK / "hf-result.json"
    env = dict(os.environ, TOKENIZERS_PARALLELISM="true", RAYON_NUM_THREADS=str(jobs))
    results["HF tokenizers encode_batch"] = measure(
        [sys.executable, "-c", HF_PEER, str(tok_json), json.dumps([str(f) for f in files]), str(args.batch), str(hf_result)], env=env)
    hf = json.loads(hf_result.read_text())
    counts["HF tokenizers encode_batch"] = (hf["documents"], hf["tokens"])

    # datatrove, one task per core.
    dt_out, dt_logs, dt_result = WORK / "datatrove", WORK / "datatrove-logs", WORK / "datatrove-result.json"
    for d in (dt_out, dt_logs):
        shutil.rmtree(d, ignore_errors=True)
    paths_file = WORK / "datatrove-paths.txt"
    paths_file.write_text("".join(f"{f.relative_to(c4_folder)}\n" for f in files))
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    results["datatrove DocumentTokenizer"] = measure(
        [sys.executable, "-c", DATATROVE_PEER, str(tok_json), str(c4_folder), str(paths_file), str(dt_out),
         str(dt_logs), str(jobs), str(dt_result)], env=env)
    dt_tokens = datatrove_tokens(json.loads(dt_result.read_text()))
    counts["datatrove DocumentTokenizer"] = (None, dt_tokens)

    rows = []
    for name, (wall, cpu, rss) in results.items():
        docs, tokens = counts[name]
        rows.append({"tool": name, "documents": docs, "tokens": tokens, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "tokens_per_s": round(tokens / wall) if tokens else None,
                     "tokens_per_cpu_s": round(tokens / cpu) if tokens else None, "peak_rss_mib": round(rss)})
    ref = hf["tokens"]
    for r in rows:
        r["tokens_vs_hf"] = round((r["tokens"] - ref) / ref, 6) if r["tokens"] else None

    print(f"\n### Throughput ({text_mb:.0f} MB of text, {hf['documents']} documents, {os.cpu_count()} cores, jobs={jobs})\n")
    print("| tool | tokens | tokens vs HF | wall s | CPU s | tokens/s | tokens/CPU-s | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        diff = "" if r["tokens_vs_hf"] is None else f"{r['tokens_vs_hf'] * 100:+.3f}%"
        print(f"| {r['tool']} | {r['tokens']} | {diff} | {r['wall_s']} | {r['cpu_s']} | {r['tokens_per_s']} | "
              f"{r['tokens_per_cpu_s']} | {r['peak_rss_mib']} |")
    print(f"\nHF encode_batch alone (no Parquet reading): {hf['encode_s']:.2f} s wall. "
          "Token counts include one `</s>` per document for every tool.")
    ratios = {}
    ours = next((r for r in rows if r["tool"] == "llamaflow tokenize"), None)
    if ours:
        for r in rows:
            if r is ours or not r["tokens_per_s"]:
                continue
            ratios[r["tool"]] = {"wall": round(ours["tokens_per_s"] / r["tokens_per_s"], 2),
                                 "per_cpu": round(ours["tokens_per_cpu_s"] / r["tokens_per_cpu_s"], 2)}
            print(f"llamaflow / {r['tool']}: {ratios[r['tool']]['wall']}x tokens/s, "
                  f"{ratios[r['tool']]['per_cpu']}x tokens/CPU-s")
        print("targets: >= 0.9x HF tokenizers, >= 3x datatrove")

    long_rows = []
    if not args.skip_long:
        docs = long_documents(WORK / "long", lines)
        for (label, size), path in docs.items():
            row = {"text": label, "size": size}
            if not args.peers_only:
                for mode, extra in (("llamaflow", []), ("llamaflow --whole", ["--whole"])):
                    p = run_json([str(binary), "tokens", "--tokenizer", str(tok_json), *extra, str(path)], args.timeout * 2)
                    if p is None:
                        row[mode] = f"> {args.timeout * 2:.0f} s"
                        continue
                    j = json.loads(p.stdout.strip().splitlines()[-1])
                    row[mode] = j["seconds"]
                    row[f"{mode} tokens"] = j["tokens"]
                    row[f"{mode} segments"] = j.get("segments")
            res = WORK / "hf-whole.json"
            res.unlink(missing_ok=True)
            repeats = 5 if size == "10KB" else 1
            p = run_json([sys.executable, "-c", HF_WHOLE, str(tok_json), str(path), str(repeats), str(res)], args.timeout,
                         env=dict(os.environ, TOKENIZERS_PARALLELISM="true"))
            if p is None:
                row["python HF encode"] = f"> {args.timeout:.0f} s"
            else:
                j = json.loads(res.read_text())
                row["python HF encode"] = round(j["seconds"], 6)
                row["python HF encode tokens"] = j["tokens"]
            counted = {c: row[f"{c} tokens"] for c in ("llamaflow", "llamaflow --whole", "python HF encode") if f"{c} tokens" in row}
            if len(set(counted.values())) > 1:
                print(f"note: token counts differ for {label} {size}: {counted}")
            long_rows.append(row)
            print(f"long document {label} {size}: {row}", flush=True)

        cols = ["python HF encode"] if args.peers_only else ["llamaflow", "llamaflow --whole", "python HF encode"]
        print("\n### One long document (seconds; tokens: ids of the text, no `</s>`, as `llamaflow tokens` counts)\n")
        print("| text | size | " + " | ".join(cols) + " | tokens |")
        print("|---|---|" + "---:|" * (len(cols) + 1))
        for r in long_rows:
            toks = next((r.get(f"{c} tokens") for c in reversed(cols) if r.get(f"{c} tokens")), "")
            print(f"| {r['text']} | {r['size']} | " + " | ".join(_fmt(r.get(c)) for c in cols) + f" | {toks} |")
        for label in ("natural", "no-space"):
            small = next(r for r in long_rows if r["text"] == label and r["size"] == "10KB")
            big = next(r for r in long_rows if r["text"] == label and r["size"] == "10MB")
            for c in cols:
                if isinstance(small.get(c), (int, float)) and isinstance(big.get(c), (int, float)) and small[c] > 0:
                    ratio = round(big[c] / small[c])
                    ratios[f"10MB/10KB {label} {c}"] = ratio
                    print(f"10 MB / 10 KB cost, {label}, {c}: {ratio}x (linear: ~1000x)")

    print("\n" + json.dumps({"cores": os.cpu_count(), "jobs": jobs, "text_mb": round(text_mb, 1),
                             "documents": hf["documents"], "tokenizer": str(tok_json), "throughput": rows,
                             "long_documents": long_rows, "ratios": ratios}))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4f}" if v < 1 else f"{v:.2f}"
    return "" if v is None else str(v)


if __name__ == "__main__":
    main()
