#!/usr/bin/env python3
"""Benchmark: the `wikipedia` stage next to the Python tools people use, same dump, same run.

    python3 bench/wikipedia_ingest.py [--mb 100] [--jobs N]

Repeats the pages of the bundled English dump excerpt (samples/wikipedia,
206 pages) into one multistream .xml.bz2 dump of ~MB megabytes of XML
(100 pages per bzip2 stream, as Wikimedia writes them), then measures:
  - llamaflow's `wikipedia` stage (bunzip2, XML, wikitext to text, refs, Parquet);
  - wikiextractor 3.1 (`--no-templates --json --processes 1`), the classic extractor;
  - mwparserfromhell 0.7 `strip_code()` over `xml.etree.iterparse`, what the HF
    `wikipedia` dataset script does (main namespace, no redirects, JSON lines out);
  - the floor: plain decompression (`bzip2 -dc > /dev/null`).
Reports XML MB per CPU second (per core) and peak RSS for each, and llamaflow's
ratio to each. Needs `cargo build --release` and
`pip install wikiextractor==3.1.0 mwparserfromhell==0.7.2`.
"""
import argparse
import bz2
import os
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from c4_ingest import measure  # noqa: E402  (same measuring harness)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work"
SAMPLE = ROOT / "samples" / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"

# What the HF `wikipedia` script does per page, minus its template and link
# filtering: namespace 0, no redirects, mwparserfromhell's strip_code().
MWPARSER = r"""
import bz2, json, sys, xml.etree.ElementTree as ET
import mwparserfromhell
src, dst = sys.argv[1], sys.argv[2]
ns = '{http://www.mediawiki.org/xml/export-0.10/}'
with bz2.open(src, 'rb') as f, open(dst, 'w') as out:
    for _, elem in ET.iterparse(f, events=('end',)):
        if elem.tag != ns + 'page':
            continue
        if elem.findtext(ns + 'ns') == '0' and elem.find(ns + 'redirect') is None:
            raw = elem.findtext(ns + 'revision/' + ns + 'text') or ''
            text = mwparserfromhell.parse(raw).strip_code().strip()
            out.write(json.dumps({'id': elem.findtext(ns + 'id'), 'title': elem.findtext(ns + 'title'), 'text': text}) + '\n')
        elem.clear()
"""


def make_dump(path: Path, xml_mb: float):
    xml = bz2.open(SAMPLE, "rt", encoding="utf-8").read()
    head = xml[: xml.index("<page>")]
    pages = re.findall(r"<page>.*?</page>\n", xml, flags=re.S)
    tail = "</mediawiki>\n"
    target, written, page_id = int(xml_mb * 1e6), 0, 0
    with open(path, "wb") as out:
        out.write(bz2.compress(head.encode()))
        while written < target:
            for i in range(0, len(pages), 100):
                chunk = []
                for p in pages[i : i + 100]:
                    page_id += 1
                    # Unique page ids, as in a real dump.
                    chunk.append(re.sub(r"<id>\d+</id>", f"<id>{page_id}</id>", p, count=1))
                data = "".join(chunk).encode()
                out.write(bz2.compress(data, 9))
                written += len(data)
        out.write(bz2.compress(tail.encode()))
    return written + len(head) + len(tail)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=100, help="megabytes of XML")
    ap.add_argument("--jobs", type=int, default=os.cpu_count())
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    corpus = WORK / "wiki-corpus"
    shutil.rmtree(corpus, ignore_errors=True)
    corpus.mkdir()
    dump = corpus / "enwiki-bench-pages-articles-multistream.xml.bz2"
    mb = make_dump(dump, args.mb) / 1e6
    pipeline = WORK / "bench-wikipedia.toml"
    pipeline.write_text('[output]\nroot = "out-wikipedia"\n[stages.wikipedia]\ntype = "wikipedia"\ninputs = ["wiki-corpus/*.xml.bz2"]\n')
    for d in ("out-wikipedia", "out-wikiextractor"):
        shutil.rmtree(WORK / d, ignore_errors=True)
    results = {
        "llamaflow wikipedia": measure([str(ROOT / "target" / "release" / "llamaflow"), "--pipeline", str(pipeline), "--quiet", "--jobs", str(args.jobs), "run"]),
        "wikiextractor 3.1": measure([sys.executable, "-m", "wikiextractor.WikiExtractor", str(dump), "--no-templates", "--json",
                                      "--processes", "1", "-q", "-o", str(WORK / "out-wikiextractor")]),
        "mwparserfromhell (HF)": measure([sys.executable, "-c", MWPARSER, str(dump), str(WORK / "out-mwparser.jsonl")]),
        "floor: bzip2 -dc": measure(["bash", "-c", "bzip2 -dc \"$1\" > /dev/null", "x", str(dump)]),
    }
    print(f"dump: {mb:.0f} MB of XML, {dump.stat().st_size / 1e6:.0f} MB bzip2; jobs={args.jobs}")
    print(f"{'what':<24} {'wall s':>8} {'cpu s':>8} {'MB/s':>8} {'MB/s/core':>10} {'peak RSS MiB':>13}")
    for name, (wall, cpu, rss) in results.items():
        print(f"{name:<24} {wall:>8.2f} {cpu:>8.2f} {mb / wall:>8.1f} {mb / cpu:>10.1f} {rss:>13.0f}")
    ours = mb / results["llamaflow wikipedia"][1]
    ratios = ", ".join(f"{ours / (mb / cpu):.2f}x {name}" for name, (_, cpu, _) in results.items() if name != "llamaflow wikipedia")
    print(f"llamaflow per core vs: {ratios}")
    shutil.rmtree(corpus)
    for d in ("out-wikipedia", "out-wikiextractor"):
        shutil.rmtree(WORK / d, ignore_errors=True)
    (WORK / "out-mwparser.jsonl").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
