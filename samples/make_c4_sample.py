"""Rebuilds samples/c4/ from the cc_net documents shipped in the PyPI sdist dolma 1.2.1
(tests/data/provided/documents/000.json.gz; copied to the team's shared samples as
c4/dolma-ccnet-documents-000.json.gz). Each document is rewritten in C4's released
fields (text, timestamp, url) and the ten are split over two gzip files so the
sample pipeline has more than one unit of work.

    python3 samples/make_c4_sample.py ../shared/samples/c4/dolma-ccnet-documents-000.json.gz
"""
import gzip
import json
import sys

src = sys.argv[1]
docs = [json.loads(line) for line in gzip.open(src, "rt", encoding="utf-8")]
parts = [docs[: len(docs) // 2], docs[len(docs) // 2 :]]
for i, part in enumerate(parts):
    path = f"samples/c4/c4-sample.{i:05d}-of-{len(parts):05d}.json.gz"
    # mtime=0 keeps the gzip bytes reproducible.
    with gzip.GzipFile(path, "wb", mtime=0) as out:
        for d in part:
            rec = {"text": d["text"], "timestamp": d["created"], "url": d["id"]}
            out.write((json.dumps(rec, ensure_ascii=False) + "\n").encode("utf-8"))
    print(path, len(part))
