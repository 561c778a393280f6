//! The `books` source on its samples (two real Project Gutenberg books, one
//! with modern START/END markers and one 1992 etext, and a Books3-style
//! archive holding a header-less copy of one of them), the books dedup preset
//! after it, and hostile inputs: other encodings, binary files, archives with
//! escaping paths and links, a truncated archive and a gzip bomb.

mod common;

use std::path::Path;

use common::*;

#[test]
fn gutenberg_and_books3_samples_become_books_and_the_copy_is_deduplicated() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = copy_samples(dir.path());
    let p = pipeline.to_str().unwrap();
    let out = run(llamaflow().args(["--pipeline", p, "--quiet", "run", "--stages", "books_dedup"]));
    assert!(out.status.success(), "{}", text(&out));

    let root = dir.path().join("out");
    let c = manifest(&root, "books")["counts"].clone();
    // Two Gutenberg files, and an archive with one book and one metadata file.
    assert_eq!(c["rows_in"], 4, "{c}");
    assert_eq!(c["kept"], 3, "{c}");
    assert_eq!(c["filtered"]["not_text"], 1, "{c}");
    assert_eq!(c["quarantined"], 0, "{c}");

    let books = root.join("datasets/books");
    let rows = query(
        "SELECT gutenberg_id, title, url, encoding, n_chars = character_length(text), \
                text LIKE '%Project Gutenberg%' OR text LIKE '%PROJECT GUTENBERG%', \
                substr(text, 1, 28) \
         FROM b ORDER BY title",
        &[("b", &books)],
    );
    assert_eq!(
        rows,
        [
            "103|Around the World in 80 Days|https://www.gutenberg.org/ebooks/103|UTF-8|true|false|AROUND THE WORLD IN EIGHTY D",
            "|Jules Verne - Around the World in Eighty Days||UTF-8|true|false|AROUND THE WORLD IN EIGHTY D",
            "|LOC WORKSHOP ON ELECTRONIC TEXTS||UTF-8|true|false|WORKSHOP ON ELECTRONIC TEXTS",
        ]
    );
    // The book ends where the book ends: no licence tail.
    let tails = query(
        "SELECT substr(text, length(text) - 40) FROM b WHERE gutenberg_id = 103",
        &[("b", &books)],
    );
    assert!(!tails[0].contains("END OF"), "{tails:?}");

    // The books preset keeps one of the two copies of Verne's book, the one
    // whose id sorts first (same source): here the Books3 copy, which lacks
    // the table of contents and sets chapter headings differently.
    let dedup = manifest(&root, "books_dedup")["counts"].clone();
    assert_eq!(
        (dedup["rows_in"].as_u64(), dedup["kept"].as_u64()),
        (Some(3), Some(2)),
        "{dedup}"
    );
    let removed = query(
        "SELECT r.rule, r.similarity > 0.9 AND r.similarity < 1.0, b.title FROM r JOIN b ON r.id = b.id",
        &[("r", &root.join("datasets/books_dedup__removed")), ("b", &books)],
    );
    assert_eq!(removed, ["near_duplicate|true|Around the World in 80 Days"]);
}

/// Writes a tar of (raw name, type, data) entries.
fn write_tar(path: &Path, entries: &[(&[u8], tar::EntryType, &[u8])]) {
    std::fs::write(path, tar_bytes(entries)).unwrap();
}

#[test]
fn hostile_and_foreign_books_are_decoded_or_quarantined_and_counts_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("work");
    std::fs::create_dir_all(d.join("books")).unwrap();

    // A Latin-1 book that says so, and a Windows-1252 one that does not.
    let mut latin1 = b"Title: Cr\xe8me br\xfbl\xe9e\r\nCharacter set encoding: ISO-8859-1\r\n\r\n".to_vec();
    latin1.extend_from_slice(
        b"*** START OF THIS PROJECT GUTENBERG EBOOK CREME ***\r\n\r\nLe caf\xe9 \xe9tait tr\xe8s bon.\r\n",
    );
    latin1.extend_from_slice(b"\r\n*** END OF THIS PROJECT GUTENBERG EBOOK CREME ***\r\nlicence text\r\n");
    std::fs::write(d.join("books/latin1.txt"), latin1).unwrap();
    std::fs::write(
        d.join("books/cp1252.txt"),
        b"\x93Quoted,\x94 she said. It was the kind of morning that makes a person want to stay in bed.\n",
    )
    .unwrap();
    // Not text at all.
    std::fs::write(
        d.join("books/binary.txt"),
        [0u8, 159, 146, 150, 0, 1, 2, 3, 255, 254, 0, 0].repeat(100),
    )
    .unwrap();
    // A gzip bomb: 64 MiB of zeros in a few kB, over the 1 MB book cap below.
    let bomb = gzip(&vec![b'a'; 64 << 20]);
    assert!(bomb.len() < 200_000);
    std::fs::write(d.join("books/bomb.txt.gz"), &bomb).unwrap();
    // An archive with one good book, a `../` entry, an absolute path and a link.
    write_tar(
        &d.join("books/hostile.tar"),
        &[
            (
                b"books3/good.txt",
                tar::EntryType::Regular,
                b"A good book, with enough words in it.",
            ),
            (b"books3/../../escape.txt", tar::EntryType::Regular, b"evil"),
            (b"/tmp/absolute.txt", tar::EntryType::Regular, b"evil"),
            (b"books3/link.txt", tar::EntryType::Symlink, b""),
        ],
    );
    // A gzip archive cut short: the first book survives, the rest is one quarantined record.
    let second_book: String = (0..5000).map(|i| format!("word{} ", i * 7919 % 10007)).collect();
    write_tar(
        &d.join("books/whole.tar"),
        &[
            (b"a.txt", tar::EntryType::Regular, "first book ".repeat(100).as_bytes()),
            (b"b.txt", tar::EntryType::Regular, second_book.as_bytes()),
        ],
    );
    let whole = gzip(&std::fs::read(d.join("books/whole.tar")).unwrap());
    std::fs::remove_file(d.join("books/whole.tar")).unwrap();
    std::fs::write(d.join("books/truncated.tar.gz"), &whole[..whole.len() * 3 / 4]).unwrap();

    std::fs::write(
        d.join("llamaflow.toml"),
        "[output]\nroot = \"out\"\n[stages.books]\ntype = \"books\"\ninputs = [\"books/*\"]\nmax_book_bytes = 1_000_000\n",
    )
    .unwrap();
    let p = d.join("llamaflow.toml");
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));

    let root = d.join("out");
    let c = manifest(&root, "books")["counts"].clone();
    assert_eq!(
        c["kept"].as_u64().unwrap() + filtered_total(&c) + c["quarantined"].as_u64().unwrap(),
        c["rows_in"].as_u64().unwrap(),
        "{c}"
    );
    let books = root.join("datasets/books");
    let kept = query("SELECT title, encoding, text FROM b ORDER BY title", &[("b", &books)]);
    let first_book = "first book ".repeat(100);
    let expected = [
        "Crème brûlée|windows-1252|Le café était très bon.".to_string(),
        format!("a|UTF-8|{}", first_book.trim_end()),
        "cp1252|windows-1252|“Quoted,” she said. It was the kind of morning that makes a person want to stay in bed."
            .to_string(),
        "good|UTF-8|A good book, with enough words in it.".to_string(),
    ];
    assert_eq!(kept, expected);
    let reasons = query(
        "SELECT input_file, reason FROM q ORDER BY input_file, input_offset",
        &[("q", &root.join("datasets/books__quarantine"))],
    );
    let joined = reasons.join("\n");
    for expected in [
        "books/binary.txt|",
        "books/bomb.txt.gz|book not read: more than 1000000 bytes",
        "books/hostile.tar|archive entry refused: a `..` path",
        "books/hostile.tar|archive entry refused: an absolute path",
        "books/hostile.tar|archive entry refused: a link",
        "books/truncated.tar.gz|",
    ] {
        assert!(joined.contains(expected), "{expected} missing from\n{joined}");
    }
    assert_eq!(reasons.len(), 6, "{joined}");
    assert!(!dir.path().join("escape.txt").exists() && !Path::new("/tmp/absolute.txt").exists());
}
