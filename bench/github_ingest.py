#!/usr/bin/env python3
"""Benchmark: the `github` stage next to its floor, same files, same run.

    python3 bench/github_ingest.py [--mb 500] [--jobs N]

Repeats the bundled GitHub sample (samples/github, 584 BigQuery rows) into
~100 MB gzip files totalling ~MB megabytes of `content`, then measures:
  - llamaflow's `github` stage (parse, licence, filters, header strip, Parquet);
  - the floor: plain decompression (`gzip -dc > /dev/null`) and decompression
    plus JSON parsing of the same rows (DuckDB `read_json`, summing content lengths).
Reports content MB per CPU second (per core) and peak RSS for each.
Needs `cargo build --release` and `pip install duckdb==2.0.0`.
"""
import argparse
import gzip
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from c4_ingest import measure  # noqa: E402  (same measuring harness)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"


def make_corpus(folder: Path, content_mb: float):
    lines = [l for l in gzip.open(ROOT / "samples" / "github" / "github_files.jsonl.gz", "rt", encoding="utf-8") if l.strip()]
    sizes = [len(json.loads(l)["content"].encode()) for l in lines]
    folder.mkdir(parents=True, exist_ok=True)
    target, written, n = int(content_mb * 1e6), 0, 0
    while written < target:
        chunk = 0
        with gzip.open(folder / f"github-{n:04d}.jsonl.gz", "wt", encoding="utf-8", compresslevel=1) as out:
            while chunk < 100e6 and written < target:
                for l, s in zip(lines, sizes):
                    out.write(l if l.endswith("\n") else l + "\n")
                    chunk += s
                    written += s
        n += 1
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=500, help="megabytes of file content")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    corpus = WORK / "github-corpus"
    if corpus.exists():
        shutil.rmtree(corpus)
    mb = make_corpus(corpus, args.mb) / 1e6
    files = sorted(str(p) for p in corpus.glob("*.jsonl.gz"))
    pipeline = WORK / "bench-github.toml"
    pipeline.write_text('[output]\nroot = "out-github"\n[stages.github]\ntype = "github"\ninputs = ["github-corpus/*.jsonl.gz"]\n')
    shutil.rmtree(WORK / "out-github", ignore_errors=True)
    results = {
        "llamaflow github": measure([str(ROOT / "target" / "release" / "llamaflow"), "--pipeline", str(pipeline), "--quiet", "--jobs", str(args.jobs), "run"]),
        "floor: gzip -dc": measure(["bash", "-c", "for f in \"$@\"; do gzip -dc \"$f\"; done > /dev/null", "x", *files]),
        "floor: duckdb read_json": measure([sys.executable, "-c", (
            "import duckdb; c = duckdb.connect(); c.execute('SET threads TO %d');"
            "print(c.sql(\"SELECT count(*), sum(length(content)) FROM read_json('%s', format='newline_delimited', compression='gzip')\").fetchall())"
        ) % (args.jobs, corpus / "*.jsonl.gz")]),
    }
    print(f"content: {mb:.0f} MB in {len(files)} files; jobs={args.jobs}")
    print(f"{'what':<26} {'wall s':>8} {'cpu s':>8} {'MB/s':>8} {'MB/s/core':>10} {'peak RSS MiB':>13}")
    for name, (wall, cpu, rss) in results.items():
        print(f"{name:<26} {wall:>8.2f} {cpu:>8.2f} {mb / wall:>8.1f} {mb / cpu:>10.1f} {rss:>13.0f}")
    ours = mb / results["llamaflow github"][1]
    print(f"llamaflow per core vs floor: {ours / (mb / results['floor: gzip -dc'][1]):.2f}x gzip -dc, "
          f"{ours / (mb / results['floor: duckdb read_json'][1]):.2f}x duckdb read_json")
    shutil.rmtree(corpus)
    shutil.rmtree(WORK / "out-github", ignore_errors=True)


if __name__ == "__main__":
    main()
