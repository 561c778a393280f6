#!/usr/bin/env python3
"""Benchmark: `llamaflow sql` next to DuckDB on the same Parquet files, same run.

    python3 bench/sql_vs_duckdb.py [--gb 2] [--bin target/release/llamaflow] [--jobs 2] [--repeat 3]

1. Copies the sample pipeline and its inputs to bench/work/sql/ (plus the team's
   real C4 excerpt `c4-train.00000-of-01024.head1000.json.gz` when ../shared
   is there, for realistic URLs) and runs it once with llamaflow (untimed).
2. Scales the output to --gb gigabytes of Parquet: the `dedup` dataset (the
   kept documents, text included) is repeated with a replica suffix on every id
   until it reaches the size; `tokenize` gets one row per replicated document;
   `dedup__removed` gets a planted exact twin for one document in ten (a
   fixed hash of the id), pointing at its kept document, as the dedup stage
   records it. Rows are written with pyarrow (snappy like llamaflow's own parts, 4096-row groups) into the
   dataset folders, replacing the sample's parts, so `llamaflow sql` opens them
   as it opens any output root.
3. Times three typical queries, each --repeat times after one untimed warm-up
   (the median is reported), with the same thread count on both sides:
     q1  per-source documents and token sum (`tokenize`)
     q2  top 100 hosts by documents (`dedup`; DuckDB has no url_host, so both
         sides also run the same regular expression, and llamaflow once more
         with its `url_host` UDF)
     q3  removed documents joined to their kept twins, with the twins' text
         length per source (`dedup__removed` JOIN `dedup`)
   llamaflow: the real CLI, `llamaflow --jobs N sql --format csv -c Q`, a
   process per query (its start-up and catalog opening included, and also
   reported on their own as `SELECT 1`). DuckDB: the `duckdb` Python package
   in this process (`SET threads = N`), views over `read_parquet` of the same
   files, `fetchall()`; no process start-up on its side.
   Both sides' results are compared row for row.
Needs: `cargo build --release`, `pip install duckdb==2.0.0 pyarrow` (tests/requirements.txt).
"""
import argparse
import csv
import hashlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(os.path.dirname(os.path.realpath(__file__))).parent
WORK = ROOT / "bench" / "work" / "sql"
SHARED_C4 = ROOT.parent / "shared" / "samples" / "c4" / "c4-train.00000-of-01024.head1000.json.gz"

HOST_REGEX = "^[A-Za-z][A-Za-z0-9+.-]*://([^/?#:@]+)"

QUERIES = {
    "q1 per-source count and token sum": {
        "llamaflow": "SELECT source, count(*) AS documents, sum(tokens) AS tokens FROM tokenize GROUP BY source ORDER BY source",
        "duckdb": "SELECT source, count(*) AS documents, sum(tokens) AS tokens FROM tokenize GROUP BY source ORDER BY source",
    },
    "q2 top-100 hosts (same regex both sides)": {
        "llamaflow": f"SELECT lower(regexp_match(url, '{HOST_REGEX}')[1]) AS host, count(*) AS documents FROM dedup "
        "GROUP BY host HAVING host IS NOT NULL ORDER BY documents DESC, host LIMIT 100",
        "duckdb": f"SELECT lower(nullif(regexp_extract(url, '{HOST_REGEX}', 1), '')) AS host, count(*) AS documents FROM dedup "
        "GROUP BY host HAVING host IS NOT NULL ORDER BY documents DESC, host LIMIT 100",
    },
    "q2' top-100 hosts (llamaflow's url_host UDF)": {
        "llamaflow": "SELECT url_host(url) AS host, count(*) AS documents FROM dedup "
        "GROUP BY host HAVING host IS NOT NULL ORDER BY documents DESC, host LIMIT 100",
        "duckdb": f"SELECT lower(nullif(regexp_extract(url, '{HOST_REGEX}', 1), '')) AS host, count(*) AS documents FROM dedup "
        "GROUP BY host HAVING host IS NOT NULL ORDER BY documents DESC, host LIMIT 100",
    },
    "q3 removed joined to kept twins": {
        "llamaflow": "SELECT k.source, r.rule, count(*) AS removed, sum(length(k.text)) AS kept_chars "
        "FROM dedup__removed r JOIN dedup k ON r.kept_id = k.id GROUP BY k.source, r.rule ORDER BY k.source, r.rule",
        "duckdb": "SELECT k.source, r.rule, count(*) AS removed, sum(length(k.text)) AS kept_chars "
        "FROM dedup__removed r JOIN dedup k ON r.kept_id = k.id GROUP BY k.source, r.rule ORDER BY k.source, r.rule",
    },
}


def run_sample_pipeline(binary: Path) -> Path:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir(parents=True)
    samples = ROOT / "samples"
    for entry in samples.iterdir():
        if entry.is_dir() and entry.name != "out":
            shutil.copytree(entry, WORK / entry.name)
    shutil.copy(samples / "llamaflow.toml", WORK / "llamaflow.toml")
    if SHARED_C4.exists():
        shutil.copy(SHARED_C4, WORK / "c4" / SHARED_C4.name)
    pipeline = WORK / "llamaflow.toml"
    subprocess.run([str(binary), "--pipeline", str(pipeline), "--quiet", "run"], check=True, stdout=subprocess.DEVNULL)
    return pipeline


def parts(dataset: Path):
    return sorted(dataset.glob("*.parquet"))


def replace_parts(dataset: Path, tables):
    """Writes `tables` (an iterable) as the dataset's Parquet files, removing the old parts."""
    old = parts(dataset)
    written = []
    for i, table in enumerate(tables):
        path = dataset / f"part-bench-{i:05d}.parquet"
        pq.write_table(table, path, compression="snappy", row_group_size=4096)
        written.append(path)
    for path in old:
        path.unlink()
    return written


def planted(ids):
    """One document in ten gets a removed twin (a fixed hash of the id)."""
    return [hashlib.blake2b(i.encode(), digest_size=2).digest()[0] % 10 == 0 for i in ids]


def scale(pipeline: Path, gb: float):
    datasets = pipeline.parent / "out" / "datasets"
    dedup = pq.read_table(parts(datasets / "dedup"))
    tokenize = pq.read_table(parts(datasets / "tokenize"))
    removed_schema = pq.read_schema(parts(datasets / "dedup__removed")[0]) if parts(datasets / "dedup__removed") else None
    one = sum(p.stat().st_size for p in parts(datasets / "dedup"))
    # A little over the target: the other datasets and Parquet footers are not in `one`'s ratio.
    replicas = max(1, int(gb * 1.03e9 / one) + 1)
    per_file = max(1, replicas // 16)
    print(f"scaling: dedup {dedup.num_rows} documents, {one / 1e6:.1f} MB -> {replicas} replicas", file=sys.stderr)

    def suffixed(table, column, r):
        return table.set_column(
            table.schema.get_field_index(column), column, pc.binary_join_element_wise(table[column], pa.scalar(f"~{r}"), "")
        )

    def dedup_files():
        for start in range(0, replicas, per_file):
            yield pa.concat_tables(suffixed(dedup, "id", r) for r in range(start, min(replicas, start + per_file)))

    def tokenize_files():
        for start in range(0, replicas, per_file):
            yield pa.concat_tables(suffixed(tokenize, "id", r) for r in range(start, min(replicas, start + per_file)))

    def removed_files():
        ids = dedup["id"].to_pylist()
        for start in range(0, replicas, per_file):
            kept = [f"{i}~{r}" for r in range(start, min(replicas, start + per_file)) for i in ids]
            kept = [k for k, p in zip(kept, planted(kept)) if p]
            table = pa.table(
                {
                    "id": [k + "~twin" for k in kept],
                    "kept_id": kept,
                    "similarity": [1.0] * len(kept),
                    "rule": ["exact"] * len(kept),
                }
            )
            yield table.cast(removed_schema) if removed_schema is not None else table

    replace_parts(datasets / "dedup", dedup_files())
    replace_parts(datasets / "tokenize", tokenize_files())
    replace_parts(datasets / "dedup__removed", removed_files())
    sizes = {d: sum(p.stat().st_size for p in parts(datasets / d)) for d in ["dedup", "tokenize", "dedup__removed"]}
    rows = {d: pq.ParquetDataset(parts(datasets / d)).read(columns=["id"]).num_rows for d in sizes}
    return datasets, sizes, rows


def llamaflow_query(binary, pipeline, jobs, sql):
    start = time.perf_counter()
    out = subprocess.run(
        [str(binary), "--pipeline", str(pipeline), "--jobs", str(jobs), "sql", "--format", "csv", "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    rows = list(csv.reader(io.StringIO(out.stdout)))[1:]
    return seconds, rows


def duckdb_query(con, sql):
    start = time.perf_counter()
    rows = con.execute(sql).fetchall()
    return time.perf_counter() - start, rows


def normalized(rows):
    return [[("" if v is None else str(v)) for v in row] for row in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llamaflow")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    pipeline = run_sample_pipeline(args.bin)
    datasets, sizes, rows = scale(pipeline, args.gb)
    total = sum(sizes.values())
    print(f"corpus: {total / 1e9:.2f} GB of Parquet; " + ", ".join(f"{d} {rows[d]} rows {sizes[d] / 1e9:.2f} GB" for d in sizes))

    con = duckdb.connect()
    con.execute(f"SET threads = {args.jobs}")
    for d in sizes:
        con.execute(f"CREATE VIEW {d} AS SELECT * FROM read_parquet('{datasets / d}/*.parquet')")

    startup = statistics.median(llamaflow_query(args.bin, pipeline, args.jobs, "SELECT 1")[0] for _ in range(args.repeat))
    print(f"llamaflow start-up and catalog (SELECT 1): {startup:.3f} s")
    print(f"{'query':46} {'llamaflow s':>12} {'less start-up':>14} {'duckdb s':>10} {'ratio':>7}  results")
    for name, sql in QUERIES.items():
        llamaflow_query(args.bin, pipeline, args.jobs, sql["llamaflow"])
        duckdb_query(con, sql["duckdb"])
        ours = [llamaflow_query(args.bin, pipeline, args.jobs, sql["llamaflow"]) for _ in range(args.repeat)]
        theirs = [duckdb_query(con, sql["duckdb"]) for _ in range(args.repeat)]
        t_ours = statistics.median(t for t, _ in ours)
        t_theirs = statistics.median(t for t, _ in theirs)
        same = normalized(ours[0][1]) == normalized(theirs[0][1])
        print(
            f"{name:46} {t_ours:12.3f} {t_ours - startup:14.3f} {t_theirs:10.3f} {t_ours / t_theirs:6.2f}x  "
            f"{len(ours[0][1])} rows, {'identical' if same else 'DIFFERENT'}"
        )
        if not same:
            print(f"  llamaflow: {ours[0][1][:3]}\n  duckdb:    {normalized(theirs[0][1])[:3]}")


if __name__ == "__main__":
    main()
