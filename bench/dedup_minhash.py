#!/usr/bin/env python3
"""Benchmark: MinHash near-duplicate dedup, llamaflow next to datatrove, same documents, same run.

    python3 bench/dedup_minhash.py [--docs 100000] [--scales 1,4,16] [--jobs 2] [--memory-limit 1G]
                                   [--bin target/release/llamaflow] [--datatrove-python /tmp/venv-bench/bin/python]
                                   [--quality-only] [--tools llamaflow,datatrove] [--work DIR]

Corpus (deterministic, --seed): the sentences of a real C4 excerpt (the team's
shared `c4-train.00000-of-01024.head1000.json.gz` when ../shared is there,
else the bundled samples/c4) are the pool; each base document is 8..40
sentences drawn at random from it (so unrelated documents share a few
sentences, like boilerplate). For 10% of the base documents one near copy is
planted at a random place: a fraction of its words edited at random positions
(replaced, deleted or a word inserted), the fraction drawn from
{0 (the same text upper-cased), 0.01, 0.03, 0.05, 0.10, 0.20}. Written as
C4-style gzip JSON lines (url https://example.invalid/<id>) to
bench/work/dedup/c4/, --docs x scale base documents for each scale.

Per scale:
  - llamaflow: `run --stages c4` once, untimed (ingest), then timed
    `--jobs J --memory-limit M run --stages near --no-deps --force`, a `dedup`
    stage in `minhash` mode at its defaults (exact pass, then MinHash 5-grams,
    20 bands x 8 rows, pairs verified at 0.7);
  - datatrove 0.10.1 (run by --datatrove-python): its four MinHash stages with
    MinhashConfig() defaults (5-grams, 14 buckets x 8 hashes) over the same c4
    Parquet files (id and text), each a LocalPipelineExecutor: signatures (J
    tasks), buckets (14 tasks), cluster (1 task, save_cluster_id=True), filter
    (J tasks, load_cluster_ids=True, kept and removed documents written as Parquet);
    all four timed together as one process.
Both are timed with c4_ingest.py's `measure` (wall, CPU seconds user+sys, peak
RSS). Reported: documents/s wall, documents per CPU second, peak RSS, and
llamaflow/datatrove per core. datatrove's peak RSS is that of its largest single
process (its workers are separate processes; RUSAGE_CHILDREN gives the largest,
not the sum), llamaflow's that of its one process.

Quality (at 1x only; it does not change with scale): the truth pairs are the
planted (original, copy) pairs whose true Jaccard similarity of word 5-gram
sets (lowercased, split on non-alphanumerics) is >= 0.7. A tool's predicted
pairs are (removed document, the document its cluster keeps): llamaflow's
`near__removed` (id, kept_id; ids mapped to the corpus by the c4 dataset's url),
datatrove's removed documents with the kept document of the same
minhash_cluster_id. Precision = predicted pairs that are truth pairs / predicted
pairs; recall = truth pairs whose two documents end in the same cluster / truth
pairs, also per edit fraction.

--quality-only runs 1x only; --tools picks the tools (`--tools datatrove` skips
llamaflow: datatrove then reads llamaflow's c4 output when it is there, else
Parquet written here from the corpus; `--tools llamaflow` skips datatrove, for
scales where it would take hours: about 14 minutes at 1x on 2 cores, 1 hour at
4x, 4 hours at 16x).
Needs: `cargo build --release` and, in the datatrove venv,
`pip install datatrove==0.10.1 pyarrow regex 'xxhash<4' spacy` (English words: spacy.blank("en")).
"""
import argparse
import collections
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, _HERE)
from c4_ingest import measure, source_lines  # noqa: E402  (the same harness and source text)

ROOT = Path(_HERE).parent
WORK = ROOT / "bench" / "work" / "dedup"  # --work changes it
URL = "https://example.invalid/"
FRACTIONS = (0.0, 0.01, 0.03, 0.05, 0.10, 0.20)
THRESHOLD = 0.7  # llamaflow's default; datatrove's 14 x 8 banding has its 50% point near 0.72
DOCS_PER_FILE = 25_000

PIPELINE = """[output]
root = "out"
[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]
[stages.near]
type = "dedup"
mode = "minhash"
inputs = ["c4"]
"""

# datatrove's four MinHash stages: argv = Parquet folder, paths file (names relative to it), work folder, tasks.
DATATROVE_PEER = r"""
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import (MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster,
                                      MinhashDedupFilter, MinhashDedupSignature)
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
folder, paths, work, jobs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = MinhashConfig()  # 5-grams, 14 buckets x 8 hashes per bucket

def reader():  # the same files in the same order in stages 1 and 4: a document's index in its task is its key
    return ParquetReader(folder, paths_file=paths, read_metadata=False, text_key="text", id_key="id")

def run(name, pipeline, tasks, workers):
    LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=workers, logging_dir=f"{work}/logs/{name}",
                          skip_completed=False, start_method="fork").run()

run("1-signatures", [reader(), MinhashDedupSignature(f"{work}/signatures", config=config)], jobs, jobs)
run("2-buckets", [MinhashDedupBuckets(f"{work}/signatures", f"{work}/buckets", config=config)],
    config.num_buckets, jobs)
run("3-cluster", [MinhashDedupCluster(f"{work}/buckets", f"{work}/remove_ids", config=config,
                                      save_cluster_id=True)], 1, 1)
run("4-filter", [reader(),
                 MinhashDedupFilter(f"{work}/remove_ids", load_cluster_ids=True,
                                    exclusion_writer=ParquetWriter(f"{work}/removed", expand_metadata=True)),
                 ParquetWriter(f"{work}/kept", expand_metadata=True)], jobs, jobs)
"""


class Corpus:
    """Base documents and planted near copies, each text a pure function of (seed, index)."""

    def __init__(self, lines, n_base: int, seed: int):
        pool = set()
        for line in lines:
            for para in json.loads(line)["text"].split("\n"):
                pool.update(s for s in re.split(r"(?<=[.!?])\s+", para.strip()) if len(s.split()) >= 4)
        self.sentences = sorted(pool)
        self.words = sorted({w for s in self.sentences for w in s.split()})
        self.n_base, self.seed = n_base, seed
        rng = random.Random(seed)
        self.planted = {i: rng.choice(FRACTIONS) for i in sorted(rng.sample(range(n_base), n_base // 10))}
        self.copies_after = collections.defaultdict(list)  # base position -> copies written right after it
        for i in self.planted:
            self.copies_after[rng.randrange(n_base)].append(i)

    def __len__(self):
        return self.n_base + len(self.planted)

    @staticmethod
    def base_id(i):
        return f"d{i:08d}"

    def base_text(self, i: int) -> str:
        rng = random.Random(self.seed * 1_000_000_007 + i)
        text = ""
        for k in range(rng.randint(8, 40)):
            sep = "" if k == 0 else ("\n" if rng.random() < 0.25 else " ")
            text += sep + self.sentences[rng.randrange(len(self.sentences))]
        return text

    def copy_text(self, i: int) -> str:
        text, fraction = self.base_text(i), self.planted[i]
        if fraction == 0:
            return text.upper()
        rng = random.Random(self.seed * 1_000_000_007 + i + 500_000_000)
        words = text.split(" ")
        edited = list(words)
        for pos in rng.sample(range(len(words)), max(1, round(fraction * len(words)))):
            op = rng.randrange(3)
            if op == 0:
                edited[pos] = rng.choice(self.words)
            elif op == 1:
                edited[pos] = None
            else:
                edited[pos] = f"{rng.choice(self.words)} {words[pos]}"
        return " ".join(w for w in edited if w is not None)

    def documents(self):
        """(id, text) in file order: each base document, then the copies planted after it."""
        for pos in range(self.n_base):
            yield self.base_id(pos), self.base_text(pos)
            for i in self.copies_after.get(pos, ()):
                yield f"{self.base_id(i)}-near", self.copy_text(i)


def write_corpus(corpus: Corpus, folder: Path, n_files: int):
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    outs = [gzip.open(folder / f"c4-{k:04d}.json.gz", "wt", encoding="utf-8", compresslevel=1) for k in range(n_files)]
    text_bytes = 0
    for n, (doc_id, text) in enumerate(corpus.documents()):
        rec = {"text": text, "url": URL + doc_id, "timestamp": "2019-04-25T12:00:00Z"}
        outs[n * n_files // len(corpus)].write(json.dumps(rec, ensure_ascii=False) + "\n")
        text_bytes += len(text.encode())
    for out in outs:
        out.close()
    return text_bytes


def shingles(text: str, n: int = 5):
    words = re.findall(r"[^\W_]+", text.lower())
    return {tuple(words[k:k + n]) for k in range(max(1, len(words) - n + 1))}


def planted_pairs(corpus: Corpus):
    """{frozenset(original id, copy id): (edit fraction, true Jaccard)} for every planted copy."""
    pairs = {}
    for i, fraction in corpus.planted.items():
        a, b = shingles(corpus.base_text(i)), shingles(corpus.copy_text(i))
        pairs[frozenset((corpus.base_id(i), f"{corpus.base_id(i)}-near"))] = (fraction, len(a & b) / len(a | b))
    return pairs


def parquet_files(folder: Path):
    """The files a dataset's _manifest.json lists, else every *.parquet under the folder."""
    manifest = folder / "_manifest.json"
    if manifest.exists():
        return [folder / f["name"] for f in json.loads(manifest.read_text())["files"] if f["name"].endswith(".parquet")]
    return sorted(folder.rglob("*.parquet"))


def read_columns(folder: Path, columns):
    import pyarrow.parquet as pq
    rows = []
    for path in parquet_files(folder):
        # A datatrove task with nothing to remove writes no minhash_cluster_id column: None there.
        t = pq.read_table(path, columns=[c for c in columns if c in pq.read_schema(path).names])
        rows.extend(zip(*(t.column(c).to_pylist() if c in t.column_names else [None] * t.num_rows for c in columns)))
    return rows


def standin_parquet(corpus_folder: Path, folder: Path):
    """--tools datatrove without llamaflow's c4 output: the corpus as Parquet (id = corpus id, url, text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for k, path in enumerate(sorted(corpus_folder.glob("*.json.gz"))):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            recs = [json.loads(line) for line in f if line.strip()]
        ids = [r["url"].removeprefix(URL) for r in recs]
        pq.write_table(pa.table({"id": ids, "url": [r["url"] for r in recs], "text": [r["text"] for r in recs]}),
                       folder / f"part-{k:04d}.parquet")


def quality(predicted, planted):
    """Precision and recall of predicted (removed, kept) corpus-id pairs against the planted pairs."""
    truth = {p for p, (_, j) in planted.items() if j >= THRESHOLD}
    kept_of = dict(predicted)
    hits = sum(frozenset(p) in truth for p in predicted)
    wrong = [frozenset(p) for p in predicted if frozenset(p) not in truth]
    found = {p for p in planted if len({kept_of.get(d, d) for d in p}) == 1}
    by_fraction = {}
    for f in FRACTIONS:
        in_f = [p for p, (fr, _) in planted.items() if fr == f]
        t = [p for p in in_f if p in truth]
        by_fraction[f] = {"planted": len(in_f), "truth": len(t),
                          "mean_jaccard": round(sum(planted[p][1] for p in in_f) / max(1, len(in_f)), 3),
                          "recall": round(sum(p in found for p in t) / len(t), 4) if t else None,
                          "found": sum(p in found for p in in_f)}
    return {"predicted": len(predicted), "truth": len(truth),
            "precision": round(hits / len(predicted), 4) if predicted else None,
            "recall": round(len(found & truth) / len(truth), 4) if truth else None,
            "false_planted_below_threshold": sum(p in planted for p in wrong),
            "false_unrelated": sum(p not in planted for p in wrong), "by_fraction": by_fraction}


def llamaflow_pairs(out: Path, corpus_id):
    rows = read_columns(out / "datasets" / "near__removed", ["id", "kept_id", "rule"])
    print(f"  llamaflow removed: {dict(collections.Counter(r for _, _, r in rows))}", flush=True)
    return [(corpus_id[a], corpus_id[b]) for a, b, _ in rows]


def datatrove_pairs(dt_work: Path, corpus_id):
    kept = {c: corpus_id[i] for i, c in read_columns(dt_work / "kept", ["id", "minhash_cluster_id"]) if c not in (-1, None)}
    removed = read_columns(dt_work / "removed", ["id", "minhash_cluster_id"])
    print(f"  datatrove removed: {len(removed)} in {len(kept)} clusters", flush=True)
    return [(corpus_id[i], kept.get(c)) for i, c in removed]


def run_scale(args, lines, scale, evaluate):
    corpus = Corpus(lines, args.docs * scale, args.seed)
    n_files = max(2 * args.jobs, -(-len(corpus) // DOCS_PER_FILE))
    corpus_folder, out, dt_work = WORK / "c4", WORK / "out", WORK / "datatrove"
    stamp = {"base": corpus.n_base, "seed": args.seed, "files": n_files, "sentences": len(corpus.sentences)}
    stamp_path = WORK / "corpus.json"
    if not stamp_path.exists() or json.loads(stamp_path.read_text()) != stamp or not corpus_folder.is_dir():
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(WORK / "peers-c4", ignore_errors=True)
        text_mb = write_corpus(corpus, corpus_folder, n_files) / 1e6
        stamp_path.write_text(json.dumps(stamp))
        print(f"{scale}x corpus: {len(corpus)} documents ({len(corpus.planted)} near copies), "
              f"{text_mb:.0f} MB of text, {n_files} files", flush=True)
    else:
        print(f"{scale}x corpus: reusing {corpus_folder} ({len(corpus)} documents)", flush=True)
    pipeline = WORK / "llamaflow.toml"
    pipeline.write_text(PIPELINE)
    base = [str(args.bin), "--pipeline", str(pipeline), "--quiet", "--jobs", str(args.jobs)]

    results = {}
    if "llamaflow" in args.tools:
        subprocess.run(base + ["run", "--stages", "c4"], check=True, stdout=subprocess.DEVNULL)
        results["llamaflow"] = measure(base + ["--memory-limit", args.memory_limit,
                                               "run", "--stages", "near", "--no-deps", "--force"])
    c4_folder = out / "datasets" / "c4"
    if not parquet_files(c4_folder):
        if "llamaflow" in args.tools:
            raise SystemExit(f"no Parquet in {c4_folder} after the c4 stage")
        c4_folder = WORK / "peers-c4"
        if not parquet_files(c4_folder):
            standin_parquet(corpus_folder, c4_folder)
        print(f"  datatrove reads Parquet written here ({c4_folder}), not llamaflow's c4 output", flush=True)
    if "datatrove" in args.tools:
        files = parquet_files(c4_folder)
        paths_file = WORK / "datatrove-paths.txt"
        paths_file.write_text("".join(f"{f.relative_to(c4_folder)}\n" for f in files))
        shutil.rmtree(dt_work, ignore_errors=True)
        results["datatrove"] = measure([args.datatrove_python, "-c", DATATROVE_PEER, str(c4_folder),
                                        str(paths_file), str(dt_work), str(args.jobs)])

    rows = []
    for tool, (wall, cpu, rss) in results.items():
        rows.append({"scale": scale, "tool": tool, "documents": len(corpus), "wall_s": round(wall, 2),
                     "cpu_s": round(cpu, 2), "docs_per_s": round(len(corpus) / wall),
                     "docs_per_cpu_s": round(len(corpus) / cpu), "peak_rss_mib": round(rss)})
        print(f"  {tool}: {rows[-1]}", flush=True)

    scores = {}
    if evaluate:
        planted = planted_pairs(corpus)
        corpus_id = {i: u.removeprefix(URL) for i, u in read_columns(c4_folder, ["id", "url"])}
        if "llamaflow" in results:
            scores["llamaflow"] = quality(llamaflow_pairs(out, corpus_id), planted)
        if "datatrove" in results:
            scores["datatrove"] = quality(datatrove_pairs(dt_work, corpus_id), planted)
        for tool, q in scores.items():
            print(f"  {tool} quality: {json.dumps({k: v for k, v in q.items() if k != 'by_fraction'})}", flush=True)
    return rows, scores


def main():
    global WORK
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=100_000, help="base documents at 1x (plus 10%% near copies)")
    ap.add_argument("--scales", default="1,4,16", help="comma-separated multiples of --docs")
    ap.add_argument("--jobs", type=int, default=2, help="llamaflow --jobs; datatrove tasks and workers")
    ap.add_argument("--memory-limit", default="1G", help="llamaflow --memory-limit")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llamaflow")
    ap.add_argument("--datatrove-python", default="/tmp/venv-bench/bin/python", help="a python with datatrove 0.10.1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quality-only", action="store_true", help="1x only (speed and quality)")
    ap.add_argument("--work", type=Path, default=WORK, help="scratch folder (corpus, outputs)")
    ap.add_argument("--tools", default="llamaflow,datatrove", help="comma-separated: llamaflow, datatrove")
    args = ap.parse_args()
    args.tools = set(args.tools.split(","))
    if not args.tools or not args.tools <= {"llamaflow", "datatrove"}:
        raise SystemExit("--tools: llamaflow and/or datatrove")
    args.bin = args.bin.resolve()
    scales = [1] if args.quality_only else [int(s) for s in args.scales.split(",")]
    WORK = args.work.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)  # the children's cwd (and sys.path[0] for `python -c`)
    src, lines = source_lines()
    print(f"source: {', '.join(str(s) for s in src)} ({len(lines)} documents); machine: {os.cpu_count()} cores; "
          f"jobs={args.jobs}; llamaflow --memory-limit {args.memory_limit}", flush=True)

    rows, scores = [], {}
    for scale in scales:
        scale_rows, scale_scores = run_scale(args, lines, scale, evaluate=scale == 1)
        rows += scale_rows
        scores = scale_scores or scores

    print(f"\n### Speed (jobs={args.jobs}, {os.cpu_count()} cores; datatrove RSS: its largest process)\n")
    print("| scale | tool | documents | wall s | CPU s | docs/s | docs/CPU-s | peak RSS MiB | llamaflow/datatrove per core |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        peer = next((p for p in rows if p["scale"] == r["scale"] and p["tool"] == "datatrove"), None)
        ratio = f"{r['docs_per_cpu_s'] / peer['docs_per_cpu_s']:.2f}x" if r["tool"] == "llamaflow" and peer else ""
        print(f"| {r['scale']}x | {r['tool']} | {r['documents']} | {r['wall_s']} | {r['cpu_s']} | {r['docs_per_s']} | "
              f"{r['docs_per_cpu_s']} | {r['peak_rss_mib']} | {ratio} |")
    if scores:
        print(f"\n### Quality at 1x (truth: planted pairs with true 5-gram Jaccard >= {THRESHOLD})\n")
        print("| tool | predicted | truth | precision | recall | false: planted < thr | false: unrelated | "
              + " | ".join(f"edit {f:g}: recall (found/planted)" for f in FRACTIONS) + " |")
        print("|---|" + "---:|" * (6 + len(FRACTIONS)))
        for tool, q in scores.items():
            per = " | ".join(f"{'-' if b['recall'] is None else b['recall']} ({b['found']}/{b['planted']})"
                             for b in q["by_fraction"].values())
            print(f"| {tool} | {q['predicted']} | {q['truth']} | {q['precision']} | {q['recall']} | "
                  f"{q['false_planted_below_threshold']} | {q['false_unrelated']} | {per} |")
        any_q = next(iter(scores.values()))["by_fraction"]
        print("\nplanted per edit fraction (planted / truth / mean Jaccard): "
              + ", ".join(f"{f:g}: {b['planted']}/{b['truth']}/{b['mean_jaccard']}" for f, b in any_q.items()))
    print("\n" + json.dumps({"cores": os.cpu_count(), "jobs": args.jobs, "memory_limit": args.memory_limit,
                             "speed": rows, "quality": {t: {**q, "by_fraction": {str(f): b for f, b in q["by_fraction"].items()}}
                                                        for t, q in scores.items()}}))


if __name__ == "__main__":
    main()
