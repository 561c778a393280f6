#!/usr/bin/env python3
"""Builds samples/commoncrawl/CC-MAIN-sample-0000{0,1}.warc.wet.gz: WET files as
CommonCrawl writes them (a warcinfo record, then one `conversion` record per
page, each record its own gzip member), from real pages:

- the HTML pages of the real WARC samples, as text by llamaflow's own WARC
  path: run a `commoncrawl` stage over the WARC files with line dedup, the
  length cut and language ID off, and pass its Parquet output as --warc-text;
- the 10 real CommonCrawl documents after cc_net from dolma's test data
  (text, URL, crawl date, cc_net's language);
- German text for language ID to drop: the `wikipedia` stage's German
  articles (the team's own text in samples/wikipedia), as de.wikipedia.org pages.

Record ids are UUIDs derived from the URL, so rebuilding gives the same bytes.

    python3 samples/make_wet_sample.py --warc-text /tmp/warc-text/datasets/cc_warc \
        --dolma ../shared/samples/c4/dolma-ccnet-documents-000.json.gz \
        --wikipedia samples/out/datasets/wikipedia --out samples/commoncrawl
"""

import argparse
import base64
import datetime
import gzip
import hashlib
import io
import json
import pathlib
import uuid

import pyarrow.dataset as ds

NAMESPACE = uuid.UUID("6f1d3c2e-7b0a-4e51-9c1d-2a9e5b7c8d10")


def record(headers, block):
    """One WARC record's bytes: headers, blank line, block, CRLF CRLF."""
    lines = ["WARC/1.0"] + [f"{k}: {v}" for k, v in headers] + [f"Content-Length: {len(block)}", "", ""]
    return "\r\n".join(lines).encode() + block + b"\r\n\r\n"


def member(data):
    """A gzip member with a fixed mtime, so rebuilding is byte-identical."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as f:
        f.write(data)
    return out.getvalue()


def digest(data):
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def conversion(page):
    block = page["text"].encode("utf-8")
    headers = [
        ("WARC-Type", "conversion"),
        ("WARC-Target-URI", page["url"]),
        ("WARC-Date", page["date"]),
        ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(NAMESPACE, page['url'])}>"),
        ("WARC-Refers-To", f"<urn:uuid:{uuid.uuid5(NAMESPACE, 'response ' + page['url'])}>"),
        ("WARC-Block-Digest", digest(block)),
    ]
    if page.get("lang"):
        headers.append(("WARC-Identified-Content-Language", page["lang"]))
    headers.append(("Content-Type", "text/plain"))
    return record(headers, block)


def warcinfo(name):
    fields = (
        "Software-Info: llamaflow samples/make_wet_sample.py\r\n"
        "isPartOf: CC-MAIN-sample\r\n"
        "description: real pages from registry packages, rewritten as WET conversion records\r\n"
    ).encode()
    headers = [
        ("WARC-Type", "warcinfo"),
        ("WARC-Date", "2024-05-31T01:16:46Z"),
        ("WARC-Filename", name),
        ("WARC-Record-ID", f"<urn:uuid:{uuid.uuid5(NAMESPACE, name)}>"),
        ("Content-Type", "application/warc-fields"),
    ]
    return record(headers, fields)


def iso(ts):
    return ts.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pages_from_warc_text(path):
    table = ds.dataset(path, format="parquet").to_table(columns=["url", "text", "timestamp"])
    for row in sorted(table.to_pylist(), key=lambda r: r["url"] or ""):
        if row["text"].strip():
            yield {"url": row["url"], "text": row["text"], "date": iso(row["timestamp"]), "lang": "eng"}


def pages_from_dolma(path):
    three = {"en": "eng", "de": "deu", "fr": "fra"}
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            lang = doc.get("metadata", {}).get("language")
            yield {"url": doc["id"], "text": doc["text"], "date": doc["created"], "lang": three.get(lang, lang)}


def pages_from_wikipedia(path):
    table = ds.dataset(path, format="parquet").to_table(columns=["url", "text"])
    for row in sorted(table.to_pylist(), key=lambda r: r["url"]):
        if row["url"].startswith("wikipedia:de/"):
            title = row["url"].split("/", 1)[1].replace(" ", "_")
            yield {"url": f"https://de.wikipedia.org/wiki/{title}", "text": row["text"], "date": "2024-05-18T02:00:00Z", "lang": "deu"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warc-text", required=True, help="Parquet folder of a commoncrawl stage run over the WARC samples")
    parser.add_argument("--dolma", required=True, help="dolma's tests/data/provided/documents/000.json.gz")
    parser.add_argument("--wikipedia", required=True, help="Parquet folder of the sample's wikipedia stage")
    parser.add_argument("--out", required=True, help="folder for the WET files")
    args = parser.parse_args()
    pages = list(pages_from_warc_text(args.warc_text)) + list(pages_from_dolma(args.dolma)) + list(pages_from_wikipedia(args.wikipedia))
    # Alternate pages between two files, so boilerplate repeats within each file and across them.
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for part in range(2):
        name = f"CC-MAIN-sample-{part:05}.warc.wet.gz"
        data = member(warcinfo(name)) + b"".join(member(conversion(p)) for p in pages[part::2])
        (out / name).write_bytes(data)
        print(f"{name}: {len(pages[part::2])} pages, {len(data)} bytes")


if __name__ == "__main__":
    main()
