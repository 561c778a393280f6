#!/usr/bin/env python3
"""Benchmark: the `commoncrawl` stage (CCNet's line dedup, length cut, language ID)
next to datatrove on the same WET files, same run.

    python3 bench/commoncrawl.py [--mb 1024] [--peer-mb 1024] [--jobs 2] [--memory-limit 512M]
                                 [--bin target/release/llamaflow]
                                 [--datatrove-python /tmp/venv-bench/bin/python]

Corpus: the bundled WET sample (samples/commoncrawl/*.warc.wet.gz, 31 real
pages) repeated until --mb MB of page text, as --jobs x 4 WET files (a gzip
member per record, as CommonCrawl writes them; each copy's URL gets `#k` and
its own record id). Repeats are what line dedup removes, so the stage runs
with line dedup on (the recipe) and off (the throughput of the rest).

Timed with c4_ingest.py's `measure` (wall, CPU seconds user+sys, peak RSS):
  - floor: `zcat` of the files to /dev/null (decompression alone);
  - llamaflow `commoncrawl`, line dedup on, then off (`run --force`; with
    --memory-limit, the line-dedup queries spill past it);
  - llamaflow `commoncrawl` + `c4_filter` on its output (C4's rules: the
    same rules datatrove applies below);
  - llamaflow `run --stages cc_quality` from nothing: `commoncrawl`, the
    sample's `wikipedia`, `quality_lm` (trained on it, cut-offs from 10,000
    pages), `ref_classifier` (a pass over every page) and `cc_quality`
    (every page scored by both), line dedup on and off;
  - datatrove 0.10.1: WarcReader -> C4QualityFilter -> JsonlWriter, --jobs
    tasks and workers, on the first files adding up to --peer-mb MB (all of
    them by default). datatrove has no CCNet line dedup, and its
    LanguageFilter downloads its model at run time, so it is left out.
Reported: MB of page text per CPU second, and the ratio to datatrove per core.

Needs: `cargo build --release`; a datatrove venv:
`pip install 'datatrove[io,processing]==0.10.1' spacy lxml_html_clean warcio`.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, _HERE)
from c4_ingest import measure  # noqa: E402  (the same harness)

ROOT = Path(_HERE).parent
WORK = ROOT / "bench" / "work" / "commoncrawl"

PIPELINE = """[output]
root = "out"
[stages.cc]
type = "commoncrawl"
inputs = ["wet/*.warc.wet.gz"]
line_dedup = {dedup}
[stages.cc_c4]
type = "c4_filter"
inputs = ["cc"]
columns = "commoncrawl"
[stages.wiki]
type = "wikipedia"
inputs = ["{samples}/wikipedia/*.xml*.bz2"]
[stages.quality_lm]
type = "quality_lm"
inputs = ["wiki", "cc"]
train_on = "wiki"
[stages.ref_classifier]
type = "ref_classifier"
inputs = ["wiki.refs", "wiki", "cc"]
refs = "wiki.refs"
wikipedia = "wiki"
[stages.cc_q]
type = "cc_quality"
inputs = ["cc", "quality_lm", "ref_classifier"]
"""

DATATROVE_PIPELINE = r"""
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import C4QualityFilter
from datatrove.pipeline.readers import WarcReader
from datatrove.pipeline.writers import JsonlWriter
folder, out, jobs, paths_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
LocalPipelineExecutor(pipeline=[WarcReader(folder, paths_file=paths_file), C4QualityFilter(), JsonlWriter(out)],
                      tasks=jobs, workers=jobs, logging_dir=f"{out}/logs", skip_completed=False,
                      start_method="fork").run()
"""


def sample_pages():
    """(url, date, text) of every conversion record of the bundled WET sample."""
    pages = []
    for path in sorted((ROOT / "samples" / "commoncrawl").glob("*.warc.wet.gz")):
        data = gzip.decompress(path.read_bytes())
        for chunk in data.split(b"WARC/1.0\r\n")[1:]:
            head, _, rest = chunk.partition(b"\r\n\r\n")
            fields = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
            if fields.get("WARC-Type") != "conversion":
                continue
            text = rest[: int(fields["Content-Length"])]
            pages.append((fields["WARC-Target-URI"], fields["WARC-Date"], text))
    return pages


def record(url, date, block):
    head = (f"WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: {url}\r\nWARC-Date: {date}\r\n"
            f"WARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, url)}>\r\n"
            f"Content-Type: text/plain\r\nContent-Length: {len(block)}\r\n\r\n").encode()
    return head + block + b"\r\n\r\n"


def write_corpus(folder: Path, mb: float, n_files: int):
    """Writes the WET files; returns [(path, text bytes)]."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pages = sample_pages()
    per_copy = sum(len(t) for _, _, t in pages)
    copies = max(1, int(mb * 1e6 / per_copy + 0.999))
    sizes = [0] * n_files
    files = [open(folder / f"CC-MAIN-bench-{i:05}.warc.wet.gz", "wb") for i in range(n_files)]
    for k in range(copies):
        i = k % n_files
        members = []
        for url, date, text in pages:
            members.append(gzip.compress(record(f"{url}#{k}", date, text), compresslevel=6, mtime=0))
            sizes[i] += len(text)
        files[i].write(b"".join(members))
    for f in files:
        f.close()
    return [(folder / f"CC-MAIN-bench-{i:05}.warc.wet.gz", sizes[i]) for i in range(n_files)], copies, len(pages)


def counts(out: Path, dataset: str):
    manifest = json.loads((out / "datasets" / dataset / "_manifest.json").read_text())
    return manifest["counts"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=1024, help="MB of page text in the corpus")
    ap.add_argument("--peer-mb", type=float, default=None, help="MB of it datatrove reads (default: all)")
    ap.add_argument("--jobs", type=int, default=2, help="llamaflow --jobs; datatrove tasks and workers")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llamaflow")
    ap.add_argument("--datatrove-python", default="/tmp/venv-bench/bin/python", help="a python with datatrove 0.10.1")
    ap.add_argument("--memory-limit", help="llamaflow --memory-limit (e.g. 512M); default: none")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    args.bin = args.bin.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)
    files, copies, n_pages = write_corpus(WORK / "wet", args.mb, 4 * args.jobs)
    text_mb = sum(s for _, s in files) / 1e6
    stored_mb = sum(p.stat().st_size for p, _ in files) / 1e6
    print(f"corpus: {n_pages} sample pages x {copies} copies = {text_mb:.0f} MB of text, {stored_mb:.0f} MB of WET "
          f"in {len(files)} files; machine: {os.cpu_count()} cores; jobs={args.jobs}", flush=True)

    results, kept = {}, {}
    paths = [str(p) for p, _ in files]
    results["floor (zcat)"] = (text_mb, measure(["sh", "-c", "zcat \"$@\" > /dev/null", "zcat"] + paths))
    for dedup in ("true", "false"):
        (WORK / "llamaflow.toml").write_text(PIPELINE.format(dedup=dedup, samples=ROOT / "samples"))
        base = [str(args.bin), "--pipeline", str(WORK / "llamaflow.toml"), "--quiet", "--jobs", str(args.jobs)]
        if args.memory_limit:
            base += ["--memory-limit", args.memory_limit]
        shutil.rmtree(WORK / "out", ignore_errors=True)
        name = f"llamaflow commoncrawl (line dedup {'on' if dedup == 'true' else 'off'})"
        results[name] = (text_mb, measure(base + ["run", "--stages", "cc", "--force"]))
        kept[name] = counts(WORK / "out", "cc")
        shutil.rmtree(WORK / "out", ignore_errors=True)
        name = f"llamaflow commoncrawl + cc_quality (line dedup {'on' if dedup == 'true' else 'off'})"
        results[name] = (text_mb, measure(base + ["run", "--stages", "cc_q"]))
        kept[name] = counts(WORK / "out", "cc_q")
        if dedup == "false":
            name = "llamaflow commoncrawl + c4_filter (line dedup off)"
            results[name] = (text_mb, measure(base + ["run", "--stages", "cc_c4", "--force"]))
            kept[name] = counts(WORK / "out", "cc_c4")

    peer_files, peer_mb = [], 0.0
    for path, size in files:
        if args.peer_mb is not None and peer_files and peer_mb >= args.peer_mb:
            break
        peer_files.append(path.name)
        peer_mb += size / 1e6
    shutil.rmtree(WORK / "datatrove", ignore_errors=True)
    paths_file = WORK / "peer.paths"
    paths_file.write_text("\n".join(peer_files) + "\n")
    results["datatrove WarcReader + C4QualityFilter"] = (
        peer_mb,
        measure([args.datatrove_python, "-c", DATATROVE_PIPELINE, str(WORK / "wet"), str(WORK / "datatrove"),
                 str(args.jobs), str(paths_file)]),
    )
    peer_name = "datatrove WarcReader + C4QualityFilter"
    peer = results[peer_name][0] / results[peer_name][1][1]
    print("\n| run | text MB | wall s | CPU s | MB/CPU-s | peak RSS MiB | per core vs datatrove |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name, (mb, (wall, cpu, rss)) in results.items():
        per_cpu = mb / cpu
        rows.append({"run": name, "text_mb": round(mb), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                     "mb_per_cpu_s": round(per_cpu, 2), "peak_rss_mib": round(rss),
                     "vs_datatrove": round(per_cpu / peer, 1)})
        print(f"| {name} | {mb:.0f} | {wall:.2f} | {cpu:.2f} | {per_cpu:.2f} | {rss:.0f} | {per_cpu / peer:.1f}x |")
    for name, c in kept.items():
        print(f"{name}: in {c['rows_in']}, kept {c['kept']}, filtered {c['filtered']}, quarantined {c['quarantined']}")
    figures = {"cores": os.cpu_count(), "jobs": args.jobs, "text_mb": round(text_mb), "speed": rows, "counts": kept}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
