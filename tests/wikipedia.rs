//! The `wikipedia` source on its samples (a real English dump excerpt, a
//! table-heavy one, and a German multistream excerpt written by the team),
//! and on broken and hostile dumps.

mod common;

use std::path::Path;

use common::*;

#[test]
fn wikipedia_samples_become_plain_text_articles_and_refs() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "wikipedia"]));
    assert!(out.status.success(), "{}", text(&out));

    let root = dir.path().join("out");
    let c = manifest(&root, "wikipedia")["counts"].clone();
    // enwiki excerpt: 206 pages; table excerpt: 5; dewiki: 4 (article, redirect, talk page, article).
    assert_eq!(c["rows_in"], 215, "{c}");
    assert_eq!(c["quarantined"], 0, "{c}");
    assert_eq!(c["filtered"]["namespace"], 2, "{c}");
    assert_eq!(c["filtered"]["redirect"], 100, "{c}");
    assert_eq!(c["kept"].as_u64().unwrap() + filtered_total(&c), 215, "{c}");

    let wiki = root.join("datasets/wikipedia");
    let rows = query(
        "SELECT lang, count(*), count(DISTINCT id), \
                sum(CASE WHEN n_chars = character_length(text) THEN 1 ELSE 0 END), \
                sum(CASE WHEN text LIKE '%{{%' OR text LIKE '%[[%' OR text LIKE '%<ref%' OR text LIKE '%''''%' THEN 1 ELSE 0 END) \
         FROM w GROUP BY lang ORDER BY lang",
        &[("w", &wiki)],
    );
    assert_eq!(rows, ["de|2|2|2|0", "en|111|111|111|0"], "no markup is left");

    let rhein = query(
        "SELECT url, page_id, text FROM w WHERE title = 'Rhein'",
        &[("w", &wiki)],
    );
    assert_eq!(
        rhein,
        [
            "wikipedia:de/Rhein|1001|Der Rhein ist ein Fluss in Mitteleuropa. Er entspringt in den Schweizer Alpen und \
          mündet in die Nordsee. Mit rund 1230 Kilometern gehört er zu den längsten Flüssen Europas.\n\n\
          Verlauf\n\nDer Fluss durchquert den Bodensee und bildet danach die Grenze zwischen Deutschland und der \
          Schweiz.\n\nMittelrhein\n\nZwischen Bingen und Bonn fließt der Rhein durch ein enges Tal.\n\n\
          Weblinks\n\nRhein-Portal"
        ]
    );

    let refs = root.join("datasets/wikipedia__refs");
    let cited = query(
        "SELECT r.kind, r.url FROM r JOIN w ON r.id = w.id WHERE w.title = 'Rhein' ORDER BY r.kind DESC",
        &[("w", &wiki), ("r", &refs)],
    );
    assert_eq!(
        cited,
        [
            "ref|https://www.example.org/rhein/laenge.html",
            "link|https://www.example.org/rhein"
        ]
    );
    let en_refs = query(
        "SELECT count(*) > 1000, sum(CASE WHEN url LIKE 'http%://%' OR url LIKE 'ftp://%' THEN 1 ELSE 0 END) = count(*) FROM r WHERE lang = 'en'",
        &[("r", &refs)],
    );
    assert_eq!(en_refs, ["true|true"]);

    // DuckDB reads both outputs as written.
    let script = format!(
        "import duckdb; print(duckdb.sql(\"SELECT (SELECT count(*) FROM '{0}/*.parquet'), (SELECT count(*) FROM '{1}/*.parquet' WHERE kind = 'ref')\").fetchall()[0])",
        wiki.display(),
        refs.display()
    );
    let py = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));
    let ref_count = query("SELECT count(*) FROM r WHERE kind = 'ref'", &[("r", &refs)]);
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        format!("({}, {})", c["kept"], ref_count[0])
    );
}

fn page(title: &str, id: u64, text: &str) -> String {
    format!(
        "<page><title>{title}</title><ns>0</ns><id>{id}</id><revision><id>1</id><text xml:space=\"preserve\">{text}</text></revision></page>\n"
    )
}

fn dump(pages: &str) -> String {
    format!("<mediawiki xml:lang=\"en\"><siteinfo><dbname>enwiki</dbname></siteinfo>\n{pages}</mediawiki>\n")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

#[test]
fn broken_and_hostile_dumps_are_quarantined_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();

    // A truncated bzip2 dump: the pages before the cut are kept.
    let sample = std::fs::read(
        dir.path()
            .join("wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"),
    )
    .unwrap();
    write(&bad, "truncated.xml.bz2", &sample[..sample.len() / 2]);
    // Malformed XML inside one page.
    let broken = "<page><title>B</title><ns>0</ns><id>2</id><revision><text>b</text></revision><!x></page>\n";
    write(
        &bad,
        "malformed.xml",
        dump(&(page("A", 1, "Alpha text.") + broken + &page("C", 3, "Gamma text."))).as_bytes(),
    );
    // Billion laughs, and an external entity pointing at a local file.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "TOP-SECRET-CONTENT").unwrap();
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE m [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>"
        .to_string()
        + &dump(&page("Bomb", 4, "&c;"));
    write(&bad, "bomb.xml", bomb.as_bytes());
    let xxe =
        format!("<!DOCTYPE m [<!ENTITY x SYSTEM \"file://{}\">]>", secret.display()) + &dump(&page("X", 5, "&x;"));
    write(&bad, "xxe.xml", xxe.as_bytes());
    // An undeclared entity, templates nested 500 deep, text that is not UTF-8, a page over the size cap.
    let deep = format!("{}x{}", "{{a|".repeat(500), "}}".repeat(500));
    let mut mixed = dump(
        &(page("Undeclared", 6, "&x;")
            + &page("Deep", 7, &deep)
            + &page("Latin1", 8, "caf\u{1}")
            + &page("Huge", 9, &"word ".repeat(400_000))
            + &page("Fine", 10, "Still here.")),
    )
    .into_bytes();
    let at = mixed.windows(4).position(|w| w == b"caf\x01").unwrap();
    mixed[at + 3] = 0xe9; // Latin-1 é
    write(&bad, "mixed.xml", &mixed);

    let toml = std::fs::read_to_string(&pipeline).unwrap()
        + "\n[stages.wiki_bad]\ntype = \"wikipedia\"\ninputs = [\"bad/*\"]\nmax_page_bytes = 1048576\n";
    std::fs::write(&pipeline, toml).unwrap();
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "wiki_bad"]));
    assert!(out.status.success(), "{}", text(&out));

    let root = dir.path().join("out");
    let c = manifest(&root, "wiki_bad")["counts"].clone();
    assert_eq!(
        c["rows_in"].as_u64().unwrap(),
        c["kept"].as_u64().unwrap() + filtered_total(&c) + c["quarantined"].as_u64().unwrap(),
        "{c}"
    );
    let q = root.join("datasets/wiki_bad__quarantine");
    let reasons = query(
        "SELECT regexp_replace(input_file, '^.*/', ''), reason FROM q ORDER BY input_file, input_offset",
        &[("q", &q)],
    );
    let has = |file: &str, words: &str| {
        reasons
            .iter()
            .any(|r| r.starts_with(&format!("{file}|")) && r.contains(words))
    };
    assert!(has("bomb.xml", "declares entities"), "{reasons:#?}");
    assert!(has("xxe.xml", "declares entities"), "{reasons:#?}");
    assert!(has("malformed.xml", "malformed XML"), "{reasons:#?}");
    assert!(has("truncated.xml.bz2", "bzip2"), "{reasons:#?}");
    assert!(has("mixed.xml", "undefined entity &x;"), "{reasons:#?}");
    assert!(has("mixed.xml", "nested deeper than 100"), "{reasons:#?}");
    assert!(has("mixed.xml", "invalid UTF-8"), "{reasons:#?}");
    assert!(has("mixed.xml", "larger than max_page_bytes"), "{reasons:#?}");
    assert_eq!(reasons.len(), 8, "{reasons:#?}");
    assert_eq!(c["quarantined"], 8, "{c}");

    let wiki = root.join("datasets/wiki_bad");
    let kept = query(
        "SELECT title FROM w WHERE input_file NOT LIKE '%truncated%' ORDER BY title",
        &[("w", &wiki)],
    );
    assert_eq!(kept, ["A", "C", "Fine"]);
    let truncated = query(
        "SELECT count(*) > 0 FROM w WHERE input_file LIKE '%truncated%'",
        &[("w", &wiki)],
    );
    assert_eq!(truncated, ["true"], "pages before the cut are kept");
    let leaked = query(
        "SELECT count(*) FROM w WHERE text LIKE '%TOP-SECRET%' OR text LIKE '%aaaaaaaaaa%'",
        &[("w", &wiki)],
    );
    assert_eq!(leaked, ["0"]);
    let leaked = query("SELECT count(*) FROM q WHERE excerpt LIKE '%TOP-SECRET%'", &[("q", &q)]);
    assert_eq!(leaked, ["0"], "the local file is never read");
}
