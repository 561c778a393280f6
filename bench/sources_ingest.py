#!/usr/bin/env python3
"""Benchmark: the `books`, `arxiv` and `stackexchange` stages next to the floor,
plain decompression of the same files, same run.

    python3 bench/sources_ingest.py [--mb 100] [--jobs 2] [--sources books,arxiv,stackexchange]

No peer tool does these sources end to end (RedPajama's scripts are one-off
notebooks that fetch from the network), so the reference is the floor: the
time to only decompress the same input.

Inputs, each about --mb megabytes once decompressed, built in bench/work/sources/:
  - books: the bundled Gutenberg books (samples/books) copied to many
    `.txt.gz` files, plus one Books3-style `.tar.gz` holding as many again.
    Floor: `zcat` of every file.
  - arxiv: an arXiv-style bulk bundle (a `.tar` of per-paper `.gz` members)
    holding copies of the two bundled papers, half as gzipped `.tex`, half as
    gzipped project tarballs. Floor: `tar -xOf bundle | zcat` (every member
    decompressed; project tarballs stay tarballs).
  - stackexchange: one site's dump as the real layout, `SITE.7z` holding
    `Posts.xml`: the rows of the team's real StackExchange excerpt
    (../shared/samples/stackexchange, for benchmarks only) when it is there,
    else the bundled sample sites, repeated with fresh ids. Floor:
    `7z x -so SITE.7z Posts.xml` (needs p7zip-full).
Reported per source: decompressed MB, llamaflow wall and CPU seconds, MB per CPU
second (per core), peak RSS, the floor's figures, and llamaflow's CPU time as a
multiple of the floor's. Needs `cargo build --release`.
"""
import argparse
import gzip
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from c4_ingest import measure  # noqa: E402  (same measuring harness)

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / "work" / "sources"
SHARED_POSTS = ROOT.parent / "shared" / "samples" / "stackexchange" / "ai.meta.stackexchange.Posts.xml"


def tar_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def make_books(folder, mb):
    books = [gzip.decompress((ROOT / "samples" / "books" / n).read_bytes())
             for n in ("pg103-around-the-world-in-80-days.txt.gz", "lcet10.txt.gz")]
    per_copy = sum(len(b) for b in books)
    copies = max(1, int(mb * 1e6 / 2 / per_copy))
    for i in range(copies):
        for j, book in enumerate(books):
            (folder / f"book-{i:05d}-{j}.txt.gz").write_bytes(gzip.compress(book, compresslevel=6, mtime=0))
    with tarfile.open(folder / "books3-style.tar.gz", "w:gz", compresslevel=6) as tar:
        for i in range(copies):
            for j, book in enumerate(books):
                tar_member(tar, f"books3/book-{i:05d}-{j}.txt", book.decode("utf-8-sig").encode())
    return 2 * copies * per_copy, f"zcat {folder}/*.gz > /dev/null"


def make_arxiv(folder, mb):
    bundle = ROOT / "samples" / "arxiv" / "arXiv_src_sample.tar"
    with tarfile.open(bundle) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]
    raw = [gzip.decompress(data) for _, data in members]
    per_copy = sum(len(r) for r in raw)
    copies = max(1, int(mb * 1e6 / per_copy))
    path = folder / "arXiv_src_bench.tar"
    with tarfile.open(path, "w") as tar:
        for i in range(copies):
            for j, (_, data) in enumerate(members):
                tar_member(tar, f"2401/2401.{i * len(members) + j:05d}.gz", data)
    return copies * per_copy, f"tar -xOf {path} | zcat > /dev/null"


def make_stackexchange(folder, mb):
    if SHARED_POSTS.exists():
        sources = [SHARED_POSTS.read_text(encoding="utf-8-sig")]
    else:
        sources = [p.read_text(encoding="utf-8-sig") for p in sorted((ROOT / "samples" / "stackexchange").glob("*.Posts.xml"))]
    rows = [line for text in sources for line in text.splitlines() if line.lstrip().startswith("<row ")]
    per_copy = sum(len(r) + 1 for r in rows)
    copies = max(1, int(mb * 1e6 / per_copy))
    staging = folder / "staging"
    staging.mkdir()
    ids = re.compile(r'\b(Id|ParentId|AcceptedAnswerId)="(\d+)"')
    with open(staging / "Posts.xml", "w", encoding="utf-8") as out:
        out.write('<?xml version="1.0" encoding="utf-8"?>\n<posts>\n')
        for i in range(copies):
            shift = i * 10_000_000
            for r in rows:
                out.write(ids.sub(lambda m: f'{m.group(1)}="{int(m.group(2)) + shift}"', r))
                out.write("\n")
        out.write("</posts>\n")
    size = (staging / "Posts.xml").stat().st_size
    site = folder / "bench.stackexchange.com.7z"
    subprocess.run(["7z", "a", "-bd", "-mx=5", str(site), str(staging / "Posts.xml")], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.rmtree(staging)
    return size, f"7z x -so {site} Posts.xml > /dev/null"


MAKERS = {"books": make_books, "arxiv": make_arxiv, "stackexchange": make_stackexchange}
INPUTS = {"books": '"books/*.gz"', "arxiv": '"arxiv/*.tar"', "stackexchange": '"stackexchange/*.7z"'}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=100, help="decompressed MB per source")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--sources", default="books,arxiv,stackexchange")
    args = parser.parse_args()
    binary = ROOT / "target" / "release" / "llamaflow"
    if not binary.exists():
        raise SystemExit("build first: cargo build --release")
    if shutil.which("7z") is None and "stackexchange" in args.sources:
        raise SystemExit("the stackexchange floor needs 7z (apt-get install p7zip-full)")
    results = []
    for source in args.sources.split(","):
        folder = WORK / source
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        size, floor_cmd = MAKERS[source](folder, args.mb)
        pipeline = WORK / f"{source}.toml"
        pipeline.write_text(f'[output]\nroot = "out-{source}"\n[stages.{source}]\ntype = "{source}"\ninputs = [{INPUTS[source]}]\n')
        out = WORK / f"out-{source}"
        if out.exists():
            shutil.rmtree(out)
        ours = measure([str(binary), "--pipeline", str(pipeline), "--quiet", "--jobs", str(args.jobs), "run"])
        floor = measure(["bash", "-c", floor_cmd])
        mb = size / 1e6
        for tool, (wall, cpu, rss) in (("llamaflow", ours), ("floor", floor)):
            results.append({"source": source, "tool": tool, "mb": round(mb, 1), "wall_s": round(wall, 2),
                            "cpu_s": round(cpu, 2), "mb_per_cpu_s": round(mb / cpu, 1), "peak_rss_mib": round(rss)})
        results.append({"source": source, "tool": "llamaflow cpu / floor cpu", "ratio": round(ours[1] / floor[1], 2)})
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(folder)
    for r in results:
        print(r)


if __name__ == "__main__":
    main()
