#!/usr/bin/env python3
"""Benchmark: our language identifier (`detect_language` / `language_score`,
whatlang 0.16 trigrams, through `llamaflow sql`) next to an offline Python peer
(py3langid, langid.py's model shipped in its wheel), on the same labelled rows.

    python3 bench/language_id.py [--work /tmp/langid] [--bin target/release/llamaflow]
                                 [--per-lang 300] [--repeat 3] [--json out.json] [--peer-only]

What it measures. The `commoncrawl` stage keeps a document when
detect_language(text) = 'en' AND language_score(text) >= 0.5 (CCNet's
threshold), so the headline is English as a binary decision at --threshold:
  precision  kept documents that really are English,
  recall     English documents that are kept,
  F1;
plus top-1 accuracy (predicted code == label, no threshold) overall and per
language, the most frequent confusions, and the time per document. Both sides
get the same rows in the same run and the same threshold (py3langid's
confidence: its normalized probability).
  ours  the real CLI, one query over the set:
          llamaflow --jobs 1 sql --format csv -c
            "SELECT id, detect_language(text), language_score(text) FROM labelled"
        Time: `SELECT id, detect_language(text) ...` (one identification a
        row) run --repeat times (median), minus the median of the same query
        with `length(text)` instead (process start-up, catalog and Parquet
        reading), divided by the rows.
  peer  py3langid in this process, `LanguageIdentifier(norm_probs=True)`,
        one `classify` a row, one thread; model loading not timed.

How the labelled set is made (cached under --work; --rebuild redoes it):
  1. `apt-get download` Debian's man pages: `manpages` (English, the Linux
     man-pages project) and the po4a translations manpages-de, -fr, -es, -it,
     -nl, -pl, -pt-br, -ro, -ru, -sv, -uk, -cs, -da, -hu (a package this
     Debian release lacks is skipped and reported); `dpkg-deb -x` each.
  2. Every gzipped roff page under usr/share/man/<lang>/man?/ (English:
     usr/share/man/man?/) is turned into plain text here, without groff:
     comment lines and requests are dropped, the text arguments of .SH, .SS,
     .B, .I, .BR, .IR (and the other font macros) and of .IP tags are kept,
     escapes (\\fB \\fR \\(em \\*(lq \\- \\e ...) are resolved or stripped, and
     no-fill, example, table and macro-definition blocks (.nf/.fi, .EX/.EE,
     .TS/.TE, .de/..) are dropped as mostly code; .SH, .SS, .PP, .TP, .IP and
     blank lines start paragraphs.
  3. Boilerplate goes: a paragraph found on 5 or more pages of a language
     (section headings, the translators' colophon, "display this help").
     So does, in a translated page, a paragraph left in English (po4a ships a
     page once most of it is translated): 15% or more of its words are
     English function words (the, and, of, which, ...): about 7,400
     paragraphs on Debian 12, most in es, pl, ru, it and cs, that would be
     English under another label. Then each page is cut at paragraph boundaries into documents of at most 2000
     characters (a longer paragraph is cut at a space); documents under 300
     characters are dropped.
  4. Per language, the distinct documents in sorted file order, of which
     --per-lang are taken evenly spaced (no seed), labelled by the folder in ISO 639-1
     (pt_BR -> pt); written to labelled.parquet (id, lang, text) and as the
     dataset `labelled` of a one-table output root, <work>/out.
Needs: `apt-get`, `dpkg-deb`, `pip install pyarrow py3langid==0.4.0` and a
`cargo build --release` that has the two UDFs (checked first; --peer-only
runs the peer alone).
"""
import argparse
import collections
import csv
import gzip
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(os.path.dirname(os.path.realpath(__file__))).parent

# Debian package -> (folder under usr/share/man, None for English; ISO 639-1 label).
PACKAGES = {
    "manpages": (None, "en"),
    "manpages-de": ("de", "de"),
    "manpages-fr": ("fr", "fr"),
    "manpages-es": ("es", "es"),
    "manpages-it": ("it", "it"),
    "manpages-nl": ("nl", "nl"),
    "manpages-pl": ("pl", "pl"),
    "manpages-pt-br": ("pt_BR", "pt"),
    "manpages-ro": ("ro", "ro"),
    "manpages-ru": ("ru", "ru"),
    "manpages-sv": ("sv", "sv"),
    "manpages-uk": ("uk", "uk"),
    "manpages-cs": ("cs", "cs"),
    "manpages-da": ("da", "da"),
    "manpages-hu": ("hu", "hu"),
}

MAX_CHARS = 2000
MIN_CHARS = 300
BOILERPLATE = 5  # a paragraph on this many pages of a language is dropped
# Function words of English that are no words of the other languages here:
# what tells a paragraph that the translators left in English.
ENGLISH_WORDS = set(
    "the and of to which that this with from are be will can not when has have been would "
    "should these those than its their there such only also any each may must by is it if or an".split()
)
WORD = re.compile(r"[^\W\d_]+")
PROBE = "The cat sat on the mat and looked out of the window at the birds."

# ---------------------------------------------------------------- roff to text

# \(xx and \[xx] special characters worth keeping; any other is dropped.
SPECIAL = {
    "em": "—", "en": "–", "hy": "-", "mi": "-", "aq": "'", "dq": '"', "lq": "“", "rq": "”",
    "oq": "‘", "cq": "’", "Fo": "«", "Fc": "»", "fo": "‹", "fc": "›", "bu": "•", "co": "©",
    "rg": "®", "tm": "™", "mu": "×", "di": "÷", "+-": "±", "<=": "≤", ">=": "≥", "!=": "≠",
    "->": "→", "<-": "←", "ti": "~", "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "ga": "`",
    "aa": "´", "de": "°", "sc": "§", "ps": "¶", "Eu": "€", "eu": "€", "r!": "¡", "r?": "¿",
}
# \*(xx predefined strings (man and groff's an-ext); any other is dropped.
STRINGS = {"lq": "“", "rq": "”", "R": "®", "Tm": "™", "S": ""}

ESCAPE = re.compile(
    r"""\\(?:
        "(?P<comment>.*)$                                   # \" comment to end of line
      | f(?:\[[^\]]*\]|\(..|.)                              # font: \fB \f(CW \f[B]
      | \((?P<special2>..)                                  # \(em
      | \[(?P<special>[^\]]*)\]                             # \[em] \[u00E9]
      | \*(?:\[(?P<str1>[^\]]*)\]|\((?P<str2>..)|(?P<str3>.))   # \*(lq \*[lq] \*R
      | s(?:[+-]?\d+|\(..|\[[^\]]*\])                       # size: \s-1 \s0
      | [hvwoNlLDbxXZRk]'[^']*'                             # escapes with a quoted argument
      | n(?:\[[^\]]*\]|\(..|.)                              # number registers
      | \$.                                                 # macro arguments
      | (?P<char>.)                                         # anything else
    )""",
    re.VERBOSE,
)
SIMPLE = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", ".": ".", "'": "´", "`": "`", "_": "_"}


def _escape(m):
    if m.group("comment") is not None:
        return ""
    name = m.group("special") or m.group("special2")
    if name is not None:
        if re.fullmatch(r"u[0-9A-Fa-f]{4,6}", name):
            return chr(int(name[1:], 16))
        return SPECIAL.get(name, "")
    name = m.group("str1") or m.group("str2") or m.group("str3")
    if name is not None:
        return STRINGS.get(name, "")
    c = m.group("char")
    if c is not None:
        return SIMPLE.get(c, "")  # \& \, \/ \| \^ \: \c \% and unknown ones vanish
    return ""


def unescape(line):
    """Resolves or strips roff's backslash escapes in one line."""
    return ESCAPE.sub(_escape, line)


def macro_args(rest):
    """Splits a request's arguments, honouring double quotes."""
    args, cur, quoted, i = [], "", False, 0
    while i < len(rest):
        ch = rest[i]
        if ch == "\\":  # an escape (\  is no separator); `\\` is `\` in copy mode
            nxt = rest[i + 1 : i + 2]
            cur += "\\" if nxt == "\\" else ch + nxt
            i += 2
            continue
        if ch == '"':
            if quoted and rest[i + 1 : i + 2] == '"':  # "" inside quotes
                cur += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch in " \t" and not quoted:
            if cur:
                args.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if cur:
        args.append(cur)
    return args


# Macros that start a paragraph; those whose arguments are kept, and how.
BREAKS = {"SH", "SS", "PP", "P", "LP", "TP", "TQ", "IP", "HP", "sp", "SY", "RS", "RE", "in"}
SPACED = {"SH", "SS", "B", "I", "SM", "SB"}  # arguments joined by spaces
ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}  # arguments joined without spaces
SKIP_BLOCKS = {"nf": "fi", "EX": "EE", "TS": "TE", "EQ": "EN", "PS": "PE", "de": ".", "de1": ".", "am": ".", "ig": "."}
BULLETS = {"•", "-", "*", "—", "–", ""}


def roff_to_paragraphs(source):
    """Plain-text paragraphs of one man page (see the module's docstring)."""
    paragraphs, current = [], []

    def flush():
        text = " ".join(" ".join(current).split())
        if text:
            paragraphs.append(text)
        current.clear()

    skip_until = None
    for raw in source.splitlines():
        if skip_until is not None:
            stripped = raw.strip()
            if skip_until == "." and stripped == "..":
                skip_until = None
            elif skip_until != "." and re.match(r"[.']\s*" + re.escape(skip_until) + r"\b", stripped):
                skip_until = None
            continue
        if raw.startswith((".\\\"", "'\\\"", '.\\"', "\\\"")):
            continue
        if raw.startswith((".", "'")):
            m = re.match(r"[.']\s*(\S*)\s*(.*)$", raw)
            name, rest = m.group(1), m.group(2)
            if name in SKIP_BLOCKS:
                flush()
                skip_until = SKIP_BLOCKS[name]
                continue
            if name in BREAKS:
                flush()
            if name == "so":  # a page that only points at another
                return []
            args = macro_args(rest)
            if name in SPACED:
                text = unescape(" ".join(args))
                if name in ("SH", "SS"):
                    if text:
                        current.append(text)
                        flush()
                    continue
                current.append(text)
            elif name in ALTERNATING:
                current.append(unescape("".join(args)))
            elif name == "IP" and args and unescape(args[0]).strip() not in BULLETS:
                current.append(unescape(args[0]))
            elif name in ("UE", "ME", "SY") and args:
                current.append(unescape(args[0]))
            continue
        if not raw.strip():
            flush()
            continue
        current.append(unescape(raw))
    flush()
    return paragraphs


def documents(paragraphs, max_chars=MAX_CHARS, min_chars=MIN_CHARS):
    """Paragraphs joined into documents of at most `max_chars` (a longer
    paragraph cut at a space); those under `min_chars` are dropped."""
    pieces = []
    for p in paragraphs:
        while len(p) > max_chars:
            cut = p.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            pieces.append(p[:cut].strip())
            p = p[cut:].strip()
        if p:
            pieces.append(p)
    docs, current, size = [], [], 0
    for p in pieces:
        if current and size + 2 + len(p) > max_chars:
            docs.append("\n\n".join(current))
            current, size = [], 0
        size += len(p) + (2 if current else 0)
        current.append(p)
    if current:
        docs.append("\n\n".join(current))
    return [d for d in docs if len(d) >= min_chars]


# ---------------------------------------------------------------- the set


def read_page(path):
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def download(work, packages):
    """Downloads and extracts each package; returns the missing ones."""
    debs, extract = work / "debs", work / "extract"
    debs.mkdir(parents=True, exist_ok=True)
    missing = []
    for pkg in packages:
        target = extract / pkg
        if (target / "usr").is_dir():
            continue
        found = sorted(debs.glob(f"{pkg}_*.deb"))
        if not found:
            r = subprocess.run(["apt-get", "download", pkg], cwd=debs, capture_output=True, text=True)
            found = sorted(debs.glob(f"{pkg}_*.deb"))
            if r.returncode != 0 or not found:
                print(f"  {pkg}: not in this Debian release ({r.stderr.strip().splitlines()[-1:]})", file=sys.stderr)
                missing.append(pkg)
                continue
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(target)], check=True)
    return missing


def untranslated(paragraph):
    """Whether a paragraph of a translated page was left in English: 15% or
    more of its words (two at least) are English function words. On this set
    the translated pages' paragraphs mostly fall either under 5% (translated)
    or at 25-40%, where the English pages' paragraphs are."""
    words = WORD.findall(paragraph.lower())
    hits = sum(w in ENGLISH_WORDS for w in words)
    return len(words) >= 4 and hits >= 2 and hits >= 0.15 * len(words)


def language_documents(work, pkg, folder, lang):
    """Every document of one package's pages, in sorted file order, and the
    count of untranslated paragraphs dropped."""
    base = work / "extract" / pkg / "usr" / "share" / "man"
    base = base / folder if folder else base
    pages = sorted(p for p in base.glob("man*/*") if p.is_file())
    paragraphs = [roff_to_paragraphs(read_page(page)) for page in pages]
    seen = collections.Counter(p for page in paragraphs for p in set(page))
    out, dropped = [], 0
    for page in paragraphs:
        kept = [p for p in page if seen[p] < BOILERPLATE]
        if lang != "en":
            dropped += sum(map(untranslated, kept))
            kept = [p for p in kept if not untranslated(p)]
        out.extend(documents(kept))
    # A page shipped twice (two sections, two names) gives its documents twice.
    return list(dict.fromkeys(out)), len(pages), dropped


def evenly(items, n):
    """`n` items spread evenly over the list (all of them when fewer)."""
    if len(items) <= n:
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def build_set(work, per_lang, rebuild):
    """Writes <work>/labelled.parquet and the output root <work>/out; returns
    the table and the missing packages."""
    parquet, meta_file = work / "labelled.parquet", work / "labelled.json"
    if parquet.exists() and meta_file.exists() and not rebuild:
        meta = json.loads(meta_file.read_text())
        if meta.get("per_lang") == per_lang:
            print(f"labelled set: cached {parquet}", file=sys.stderr)
            return pq.read_table(parquet), meta["missing"]
    print("labelled set: downloading and converting Debian's man pages", file=sys.stderr)
    missing = download(work, PACKAGES)
    ids, langs, texts = [], [], []
    for pkg, (folder, lang) in PACKAGES.items():
        if pkg in missing:
            continue
        docs, pages, dropped = language_documents(work, pkg, folder, lang)
        chosen = evenly(docs, per_lang)
        print(f"  {lang}: {pages} pages, {dropped} untranslated paragraphs dropped, "
              f"{len(docs)} documents, {len(chosen)} taken", file=sys.stderr)
        for d in chosen:
            ids.append(len(ids))
            langs.append(lang)
            texts.append(d)
    table = pa.table({"id": pa.array(ids, pa.int64()), "lang": langs, "text": texts})
    pq.write_table(table, parquet)
    meta_file.write_text(json.dumps({"per_lang": per_lang, "missing": missing}))
    return table, missing


def output_root(work, parquet):
    """A pipeline file with no stages whose output root holds `labelled`."""
    dataset = work / "out" / "datasets" / "labelled"
    if dataset.exists():
        shutil.rmtree(dataset)
    dataset.mkdir(parents=True)
    shutil.copy(parquet, dataset / "part-0.parquet")
    pipeline = work / "llamaflow.toml"
    pipeline.write_text('[output]\nroot = "out"\n')
    return pipeline


# ---------------------------------------------------------------- the two sides


def llamaflow_sql(binary, pipeline, query, jobs):
    cmd = [str(binary), "--pipeline", str(pipeline), "--jobs", str(jobs), "--quiet", "sql", "--format", "csv", "-c", query]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    return r, time.perf_counter() - t0


def check_udfs(binary, pipeline):
    """Fails clearly when the binary lacks the two UDFs."""
    if not Path(binary).exists():
        sys.exit(f"{binary} not found: run `cargo build --release` first")
    q = f"SELECT detect_language('{PROBE}') AS lang, language_score('{PROBE}') AS score"
    r, _ = llamaflow_sql(binary, pipeline, q, 1)
    if r.returncode != 0:
        if "detect_language" in r.stderr or "language_score" in r.stderr:
            sys.exit(f"{binary} has no detect_language/language_score UDF yet (rebuild it with "
                     f"`cargo build --release`, or run with --peer-only):\n{r.stderr.strip()}")
        sys.exit(f"`llamaflow sql` failed:\n{r.stderr.strip()}")
    row = next(csv.DictReader(io.StringIO(r.stdout)))
    if row["lang"] != "en":
        print(f"warning: the probe sentence came back as {row}", file=sys.stderr)


def run_ours(binary, pipeline, n, repeat, jobs):
    """Predictions and scores by id, and the seconds per document (one
    identification: the timed query calls detect_language alone)."""
    query = "SELECT id, detect_language(text) AS lang, language_score(text) AS score FROM labelled"
    r, _ = llamaflow_sql(binary, pipeline, query, jobs)  # also warms the page cache
    if r.returncode != 0:
        sys.exit(f"`llamaflow sql` failed:\n{r.stderr.strip()}")
    preds = {}
    for row in csv.DictReader(io.StringIO(r.stdout)):
        preds[int(row["id"])] = (row["lang"] or None, float(row["score"]) if row["score"] else 0.0)
    timed = "SELECT id, detect_language(text) AS lang FROM labelled"
    baseline = "SELECT id, length(text) AS chars FROM labelled"
    timings, base_timings = [], []
    for _ in range(repeat):
        for q, into in ((timed, timings), (baseline, base_timings)):
            r, t = llamaflow_sql(binary, pipeline, q, jobs)
            if r.returncode != 0:
                sys.exit(f"`llamaflow sql` failed:\n{r.stderr.strip()}")
            into.append(t)
    t, tb = statistics.median(timings), statistics.median(base_timings)
    return preds, {"query_s": t, "baseline_s": tb, "per_doc_s": max(t - tb, 0.0) / n}


def peer_identifier():
    try:
        import py3langid
        from py3langid.langid import MODEL_FILE, LanguageIdentifier
    except ImportError:
        sys.exit("the peer needs py3langid: python3 -m pip install py3langid==0.4.0")
    if hasattr(LanguageIdentifier, "from_model_file"):  # 0.3+
        ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    else:  # 0.2
        ident = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)
    version = getattr(py3langid, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version("py3langid")
    return ident, version


def run_peer(ident, ids, texts, repeat):
    preds, timings = {}, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for i, text in zip(ids, texts):
            lang, conf = ident.classify(text)
            preds[i] = (lang, float(conf))
        timings.append(time.perf_counter() - t0)
    return preds, {"per_doc_s": statistics.median(timings) / len(ids)}


# ---------------------------------------------------------------- metrics


def metrics(labels, preds, threshold):
    """English precision/recall/F1 at `threshold`, top-1 accuracy, per-language
    accuracy and confusions; `labels` and `preds` keyed by id."""
    tp = fp = fn = en_top1 = 0
    per = collections.defaultdict(lambda: [0, 0])
    confusions = collections.Counter()
    kept_as_en = collections.Counter()
    for i, label in labels.items():
        lang, score = preds[i]
        kept = lang == "en" and score >= threshold
        if kept and label == "en":
            tp += 1
        elif kept:
            fp += 1
            kept_as_en[label] += 1
        elif label == "en":
            fn += 1
        per[label][1] += 1
        if lang == label:
            per[label][0] += 1
            en_top1 += label == "en"
        else:
            confusions[(label, lang or "NULL")] += 1
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    n_en = per["en"][1]
    return {
        "en_precision": precision,
        "en_recall": recall,
        "en_f1": f1,
        "en_tp": tp,
        "en_fp": fp,
        "en_fn": fn,
        "en_top1_recall": en_top1 / n_en if n_en else 0.0,
        "accuracy": sum(c for c, _ in per.values()) / len(labels),
        "per_language": {k: c / n for k, (c, n) in sorted(per.items())},
        "false_english_by_language": dict(kept_as_en.most_common()),
        "confusions": [[a, b, n] for (a, b), n in confusions.most_common(12)],
    }


def print_table(sides, counts, threshold):
    names = list(sides)
    width = 24
    print(f"\n{'':32}" + "".join(f"{n:>{width}}" for n in names))

    def row(label, fmt):
        print(f"{label:32}" + "".join(f"{fmt(sides[n]):>{width}}" for n in names))

    row(f"English precision @{threshold}", lambda s: f"{s['en_precision']:.4f}  ({s['en_fp']} FP)")
    row(f"English recall @{threshold}", lambda s: f"{s['en_recall']:.4f}  ({s['en_fn']} FN)")
    row(f"English F1 @{threshold}", lambda s: f"{s['en_f1']:.4f}")
    row("English recall, top-1 only", lambda s: f"{s['en_top1_recall']:.4f}")
    row("top-1 accuracy, all", lambda s: f"{s['accuracy']:.4f}")
    row("time per document (µs)", lambda s: f"{s['per_doc_s'] * 1e6:.0f}")
    print(f"\n{'per-language top-1 accuracy':32}" + "".join(f"{n:>{width}}" for n in names))
    for lang, n in counts.items():
        row(f"  {lang} ({n})", lambda s: f"{s['per_language'].get(lang, 0):.3f}")
    for n in names:
        conf = ", ".join(f"{a}->{b} {k}" for a, b, k in sides[n]["confusions"][:8])
        print(f"\n{n} confusions: {conf or 'none'}")
        if sides[n]["false_english_by_language"]:
            print(f"{n} kept as English: {sides[n]['false_english_by_language']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=Path("/tmp/langid"), help="cache of packages and the set")
    ap.add_argument("--bin", type=Path, default=ROOT / "target" / "release" / "llamaflow")
    ap.add_argument("--per-lang", type=int, default=300, help="documents per language")
    ap.add_argument("--threshold", type=float, default=0.5, help="English kept at score >= this (CCNet: 0.5)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per side (median)")
    ap.add_argument("--jobs", type=int, default=1, help="llamaflow's --jobs (the peer is one thread)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the labelled set")
    ap.add_argument("--peer-only", action="store_true", help="skip llamaflow (a binary without the UDFs)")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args()

    ident, version = peer_identifier()  # fails early when py3langid is missing
    args.work.mkdir(parents=True, exist_ok=True)
    table, missing = build_set(args.work, args.per_lang, args.rebuild)
    ids = table.column("id").to_pylist()
    texts = table.column("text").to_pylist()
    labels = dict(zip(ids, table.column("lang").to_pylist()))
    counts = dict(collections.Counter(labels.values()))
    chars = sum(map(len, texts)) / len(texts)
    print(f"labelled set: {len(ids)} documents of {chars:.0f} characters on average, {counts}; "
          f"missing packages: {missing or 'none'}", file=sys.stderr)

    sides, versions = {}, {}
    if not args.peer_only:
        pipeline = output_root(args.work, args.work / "labelled.parquet")
        check_udfs(args.bin, pipeline)
        preds, timing = run_ours(args.bin, pipeline, len(ids), args.repeat, args.jobs)
        if len(preds) != len(ids):
            sys.exit(f"llamaflow returned {len(preds)} rows for {len(ids)} documents")
        sides["ours (whatlang)"] = {**metrics(labels, preds, args.threshold), **timing}
        versions["ours (whatlang)"] = "whatlang 0.16 via llamaflow sql"
    preds, timing = run_peer(ident, ids, texts, args.repeat)
    peer = f"peer (py3langid {version})"
    sides[peer] = {**metrics(labels, preds, args.threshold), **timing}
    versions[peer] = f"py3langid {version}, norm_probs=True"

    print_table(sides, counts, args.threshold)
    if args.json:
        args.json.write_text(json.dumps({
            "documents": len(ids),
            "mean_chars": chars,
            "per_language_documents": counts,
            "missing_packages": missing,
            "threshold": args.threshold,
            "jobs": args.jobs,
            "versions": versions,
            "sides": sides,
        }, indent=2, ensure_ascii=False))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
