#!/usr/bin/env python3
"""Benchmark: C4 JSON lines -> Parquet, llamaflow next to DuckDB, same files, same run.

    python3 bench/c4_ingest.py [--mb 1000] [--scale 4] [--jobs N]

Builds a corpus of ~MB megabytes of text by repeating a real C4 excerpt (the
team's shared `c4-train.00000-of-01024.head1000.json.gz` when ../shared is
there, else the bundled sample) into gzip files, then ingests it with
`target/release/llamaflow` (a `c4` stage) and with DuckDB's
`COPY (SELECT * FROM read_json(...)) TO ... (FORMAT PARQUET)`. Reports MB of
text per second per core (text MB / CPU seconds, user+sys, so the figure does
not depend on how many cores happened to be free) and peak RSS for both, then
does it again at `--scale` times the input, to show whether memory stays flat.
Needs: `cargo build --release` and `pip install duckdb==2.0.0`.
"""
import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
SHARED_C4 = ROOT.parent / "shared" / "samples" / "c4" / "c4-train.00000-of-01024.head1000.json.gz"

DUCKDB = """
import duckdb, sys
con = duckdb.connect()
con.execute("SET threads TO {threads}")
con.execute("COPY (SELECT * FROM read_json('{glob}', format='newline_delimited', compression='gzip')) TO '{out}' (FORMAT PARQUET)")
"""


def source_lines():
    if SHARED_C4.exists():
        src = [SHARED_C4]
    else:
        src = sorted((ROOT / "samples" / "c4").glob("*.json.gz"))
    lines = []
    for path in src:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines.extend(l for l in f if l.strip())
    return src, lines


def make_corpus(folder: Path, text_mb: float, lines):
    """Repeats `lines` into ~100 MB-of-text gzip files; returns text bytes written."""
    folder.mkdir(parents=True, exist_ok=True)
    per_line = [len(json.loads(l)["text"].encode()) for l in lines]
    target = int(text_mb * 1e6)
    written, file_no = 0, 0
    while written < target:
        path = folder / f"c4-{file_no:04d}.json.gz"
        chunk = 0
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as out:
            while chunk < 100e6 and written < target:
                for l, n in zip(lines, per_line):
                    out.write(l if l.endswith("\n") else l + "\n")
                    chunk += n
                    written += n
        file_no += 1
    return written


def measure(cmd, env=None):
    """Runs cmd; returns (wall s, cpu s of the child, peak RSS MiB of the child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    # A fresh python wrapper per run, so RUSAGE_CHILDREN's max RSS is this command's own.
    wrapper = [sys.executable, "-c", (
        "import resource, subprocess, sys, json;"
        "r = subprocess.run(sys.argv[1:]);"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': r.returncode, 'cpu': u.ru_utime + u.ru_stime, 'rss_kib': u.ru_maxrss}), file=sys.stderr)"
    )] + cmd
    proc = subprocess.run(wrapper, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    if stats["rc"] != 0:
        raise SystemExit(f"command failed ({stats['rc']}): {' '.join(cmd)}\n{proc.stderr}")
    return wall, stats["cpu"], stats["rss_kib"] / 1024


def run_once(text_mb, lines, jobs, label):
    corpus = WORK / f"corpus-{label}"
    if corpus.exists():
        shutil.rmtree(corpus)
    written = make_corpus(corpus, text_mb, lines)
    mb = written / 1e6
    pipeline = WORK / f"bench-{label}.toml"
    pipeline.write_text(f'[output]\nroot = "out-{label}"\n[stages.c4]\ntype = "c4"\ninputs = ["corpus-{label}/*.json.gz"]\n')
    out = WORK / f"out-{label}"
    if out.exists():
        shutil.rmtree(out)
    binary = ROOT / "target" / "release" / "llamaflow"
    ours = measure([str(binary), "--pipeline", str(pipeline), "--quiet", "--jobs", str(jobs), "run"])
    duck_out = WORK / f"duckdb-{label}.parquet"
    script = DUCKDB.format(threads=jobs, glob=str(corpus / "*.json.gz"), out=str(duck_out))
    duck = measure([sys.executable, "-c", script])
    rows = []
    for name, (wall, cpu, rss) in (("llamaflow", ours), ("duckdb", duck)):
        rows.append({"tool": name, "text_mb": round(mb, 1), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "mb_per_s": round(mb / wall, 1), "mb_per_cpu_s": round(mb / cpu, 1), "peak_rss_mib": round(rss)})
    shutil.rmtree(corpus)
    shutil.rmtree(out, ignore_errors=True)
    duck_out.unlink(missing_ok=True)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=1000, help="text megabytes in the base corpus")
    ap.add_argument("--scale", type=int, default=4, help="the second run's input is this many times larger")
    ap.add_argument("--jobs", type=int, default=os.cpu_count(), help="threads for both tools")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    src, lines = source_lines()
    print(f"source: {', '.join(str(s) for s in src)} ({len(lines)} documents); jobs={args.jobs}", flush=True)
    results = run_once(args.mb, lines, args.jobs, "1x") + run_once(args.mb * args.scale, lines, args.jobs, f"{args.scale}x")
    print(f"{'tool':<10} {'text MB':>9} {'wall s':>8} {'cpu s':>8} {'MB/s':>8} {'MB/s/core':>10} {'peak RSS MiB':>13}")
    for r in results:
        print(f"{r['tool']:<10} {r['text_mb']:>9} {r['wall_s']:>8} {r['cpu_s']:>8} {r['mb_per_s']:>8} {r['mb_per_cpu_s']:>10} {r['peak_rss_mib']:>13}")
    ours = [r for r in results if r["tool"] == "llamaflow"]
    duck = [r for r in results if r["tool"] == "duckdb"]
    print(f"per-core ratio llamaflow/duckdb: {ours[0]['mb_per_cpu_s'] / duck[0]['mb_per_cpu_s']:.2f} (1x), "
          f"{ours[1]['mb_per_cpu_s'] / duck[1]['mb_per_cpu_s']:.2f} ({args.scale}x)")
    print(f"peak RSS growth at {args.scale}x input: llamaflow {ours[1]['peak_rss_mib'] / ours[0]['peak_rss_mib']:.2f}x, "
          f"duckdb {duck[1]['peak_rss_mib'] / duck[0]['peak_rss_mib']:.2f}x")


if __name__ == "__main__":
    main()
