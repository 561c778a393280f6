#!/usr/bin/env python3
"""Benchmark: the `c4_filter` stage next to datatrove's C4QualityFilter, same files, same run.

    python3 bench/c4_filter.py [--copies 10] [--jobs 2] [--bin target/release/llamaflow]
                               [--datatrove-python /tmp/venv-bench/bin/python]

Corpus: the real C4 excerpt (the team's shared `c4-train.00000-of-01024.head1000.json.gz`
when ../shared is there, else the bundled samples/c4) repeated --copies times
(each copy's URLs get a `#k` suffix so pages stay distinct), as --jobs x 2
gzip JSON-lines files in bench/work/c4_filter/c4/.

Timed, each with c4_ingest.py's `measure` (wall, CPU seconds user+sys, peak RSS):
  - floor: `zcat` of the files to /dev/null (decompression alone);
  - llamaflow, filter: `run --stages clean --no-deps --force`, the `c4_filter`
    stage over the `c4` stage's Parquet (ingested once, untimed);
  - llamaflow, ingest + filter: `run --stages clean --force` (JSON lines to
    Parquet, then the filter: the same work as datatrove's pipeline);
  - datatrove 0.10.1: JsonlReader -> C4QualityFilter() -> JsonlWriter, --jobs
    tasks and workers (its sentence splitter is spaCy's, which runs offline).
Reported: MB of text per CPU second and the ratio to datatrove.

Agreement (untimed): each tool decides on the same pages, the 1,000 real C4
pages and the 10 real CommonCrawl pages after cc_net of the shared samples
(`dolma-ccnet-documents-000.json.gz`; LLaMA's CommonCrawl path, not yet C4-filtered): the
share of pages where both keep or both drop, and of the pages both keep, the
share whose cleaned text is identical. datatrove runs in-process there
(C4QualityFilter.filter on each Document).

Needs: `cargo build --release`; in the datatrove venv:
`pip install 'datatrove[io,processing]==0.10.1' spacy lxml_html_clean`.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, _HERE)
from c4_ingest import measure, source_lines  # noqa: E402  (the same harness and source text)

ROOT = Path(_HERE).parent
WORK = ROOT / "bench" / "work" / "c4_filter"
SHARED_CCNET = ROOT.parent / "shared" / "samples" / "c4" / "dolma-ccnet-documents-000.json.gz"

PIPELINE = """[output]
root = "out"
[stages.c4]
type = "c4"
inputs = ["c4/*.json.gz"]
[stages.clean]
type = "c4_filter"
inputs = ["c4"]
columns = "c4"
"""

DATATROVE_PIPELINE = r"""
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import C4QualityFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
folder, out, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3])
LocalPipelineExecutor(pipeline=[JsonlReader(folder, glob_pattern="*.json.gz", id_key="url"), C4QualityFilter(),
                                JsonlWriter(out)],
                      tasks=jobs, workers=jobs, logging_dir=f"{out}/logs", skip_completed=False,
                      start_method="fork").run()
"""

# In-process decisions: argv = JSON-lines file (text, url); prints {url, kept, text} per page.
DATATROVE_DECISIONS = r"""
import gzip, json, sys
from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter
f = C4QualityFilter()
with gzip.open(sys.argv[1], "rt", encoding="utf-8") as lines:
    for line in lines:
        rec = json.loads(line)
        doc = Document(text=rec["text"], id=rec["url"])
        verdict = f.filter(doc)
        kept = verdict is True
        print(json.dumps({"url": rec["url"], "kept": kept, "text": doc.text if kept else None}))
"""


def write_copies(lines, folder: Path, copies: int, n_files: int) -> int:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    outs = [gzip.open(folder / f"c4-{k:04d}.json.gz", "wt", encoding="utf-8", compresslevel=6) for k in range(n_files)]
    text_bytes, n = 0, 0
    for k in range(copies):
        for line in lines:
            rec = json.loads(line)
            rec["url"] = f"{rec['url']}#{k}"
            outs[n % n_files].write(json.dumps(rec, ensure_ascii=False) + "\n")
            text_bytes += len(rec["text"].encode())
            n += 1
    for out in outs:
        out.close()
    return text_bytes


def ours_decisions(args, pages_file: Path, work: Path):
    """{url: cleaned text or None} from the llamaflow binary on one JSON-lines file."""
    import pyarrow.parquet as pq
    shutil.rmtree(work, ignore_errors=True)
    (work / "c4").mkdir(parents=True)
    shutil.copy(pages_file, work / "c4" / "pages.json.gz")
    (work / "llamaflow.toml").write_text(PIPELINE)
    subprocess.run([str(args.bin), "--pipeline", str(work / "llamaflow.toml"), "--quiet", "run"], check=True,
                   stdout=subprocess.DEVNULL)
    kept = {}
    for path in sorted((work / "out" / "datasets" / "clean").rglob("*.parquet")):
        t = pq.read_table(path, columns=["url", "text"])
        kept.update(zip(t.column("url").to_pylist(), t.column("text").to_pylist()))
    with gzip.open(pages_file, "rt", encoding="utf-8") as f:
        urls = [json.loads(line)["url"] for line in f if line.strip()]
    return {u: kept.get(u) for u in urls}


def theirs_decisions(args, pages_file: Path):
    out = subprocess.run([args.datatrove_python, "-c", DATATROVE_DECISIONS, str(pages_file)], check=True,
                         capture_output=True, text=True).stdout
    return {r["url"]: r["text"] for r in map(json.loads, out.splitlines())}


def agreement(ours, theirs):
    both = [u for u in ours if u in theirs]
    same = sum((ours[u] is None) == (theirs[u] is None) for u in both)
    both_kept = [u for u in both if ours[u] is not None and theirs[u] is not None]
    identical = sum(ours[u] == theirs[u] for u in both_kept)
    return {"pages": len(both), "same_decision": same, "agreement": round(same / max(1, len(both)), 4),
            "kept_by_us": sum(ours[u] is not None for u in both), "kept_by_datatrove": sum(theirs[u] is not None for u in both),
            "both_kept": len(both_kept), "identical_text": identical}


def ccnet_pages(folder: Path):
    """The cc_net sample as C4-style JSON lines (text, url, timestamp)."""
    path = folder / "ccnet.json.gz"
    with gzip.open(SHARED_CCNET, "rt", encoding="utf-8") as f, gzip.open(path, "wt", encoding="utf-8") as out:
        for line in f:
            rec = json.loads(line)
            url = rec.get("metadata", {}).get("url") or rec["id"]
            out.write(json.dumps({"text": rec["text"], "url": url, "timestamp": "2019-04-25T12:00:00Z"}) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=10, help="times the C4 excerpt is repeated")
    ap.add_argument("--jobs", type=int, default=2, help="llamaflow --jobs; datatrove tasks and workers")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llamaflow")
    ap.add_argument("--datatrove-python", default="/tmp/venv-bench/bin/python", help="a python with datatrove 0.10.1")
    args = ap.parse_args()
    args.bin = args.bin.resolve()
    WORK.mkdir(parents=True, exist_ok=True)
    os.chdir(WORK)
    src, lines = source_lines()
    n_files = 2 * args.jobs
    text_mb = write_copies(lines, WORK / "c4", args.copies, n_files) / 1e6
    print(f"source: {', '.join(str(s) for s in src)} ({len(lines)} pages) x {args.copies}: {text_mb:.1f} MB of text "
          f"in {n_files} files; machine: {os.cpu_count()} cores; jobs={args.jobs}", flush=True)

    (WORK / "llamaflow.toml").write_text(PIPELINE)
    base = [str(args.bin), "--pipeline", str(WORK / "llamaflow.toml"), "--quiet", "--jobs", str(args.jobs)]
    shutil.rmtree(WORK / "out", ignore_errors=True)
    subprocess.run(base + ["run", "--stages", "c4"], check=True, stdout=subprocess.DEVNULL)
    files = sorted(str(p) for p in (WORK / "c4").glob("*.json.gz"))
    results = {
        "floor (zcat)": measure(["sh", "-c", "zcat \"$@\" > /dev/null", "zcat"] + files),
        "llamaflow c4_filter": measure(base + ["run", "--stages", "clean", "--no-deps", "--force"]),
        "llamaflow c4 + c4_filter": measure(base + ["run", "--stages", "clean", "--force"]),
    }
    shutil.rmtree(WORK / "datatrove", ignore_errors=True)
    results["datatrove C4QualityFilter"] = measure([args.datatrove_python, "-c", DATATROVE_PIPELINE, str(WORK / "c4"),
                                                    str(WORK / "datatrove"), str(args.jobs)])
    peer = text_mb / results["datatrove C4QualityFilter"][1]
    print("\n| run | wall s | CPU s | MB/CPU-s | peak RSS MiB | per core vs datatrove |")
    print("|---|---:|---:|---:|---:|---:|")
    rows = []
    for name, (wall, cpu, rss) in results.items():
        per_cpu = text_mb / cpu
        rows.append({"run": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "mb_per_cpu_s": round(per_cpu, 2),
                     "peak_rss_mib": round(rss), "vs_datatrove": round(per_cpu / peer, 1)})
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {per_cpu:.2f} | {rss:.0f} | {per_cpu / peer:.1f}x |")

    scores = {}
    c4_pages = WORK / "agree-c4.json.gz"
    with gzip.open(c4_pages, "wt", encoding="utf-8") as f:
        f.writelines(line if line.endswith("\n") else line + "\n" for line in lines)
    sets = [("C4 (released, already filtered)", c4_pages)]
    if SHARED_CCNET.exists():
        sets.append(("CommonCrawl after cc_net (dolma sample)", ccnet_pages(WORK)))
    print("\n| pages | n | same decision | kept by us | kept by datatrove | both kept | identical text |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, path in sets:
        a = agreement(ours_decisions(args, path, WORK / "agree"), theirs_decisions(args, path))
        scores[name] = a
        print(f"| {name} | {a['pages']} | {a['same_decision']} ({a['agreement']:.1%}) | {a['kept_by_us']} | "
              f"{a['kept_by_datatrove']} | {a['both_kept']} | {a['identical_text']} |")
    print("\n" + json.dumps({"cores": os.cpu_count(), "jobs": args.jobs, "text_mb": round(text_mb, 1), "speed": rows,
                             "agreement": scores}))


if __name__ == "__main__":
    main()
