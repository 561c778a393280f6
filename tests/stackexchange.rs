//! The `stackexchange` source on its samples (three small sites in the dump's
//! real Posts.xml schema, text written for llamaflow), as plain XML and as
//! `.7z` archives made here, the site selection, and hostile dumps: a
//! truncated `.7z`, malformed XML, an entity bomb, unparsable scores, answers
//! whose question is missing.

mod common;

use std::path::Path;

use common::*;

fn run_pipeline(dir: &Path, stage: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("llamaflow.toml"), format!("[output]\nroot = \"out\"\n{stage}")).unwrap();
    let p = dir.join("llamaflow.toml");
    let out = run(llamaflow().args(["--pipeline", p.to_str().unwrap(), "--quiet", "run"]));
    assert!(out.status.success(), "{}", text(&out));
    dir.join("out")
}

/// The dump's layout: `SITE.7z` holding `Posts.xml` (and other tables).
fn write_7z(posts_xml: &[u8], dest: &Path) {
    let staging = tempfile::tempdir().unwrap();
    std::fs::write(staging.path().join("Posts.xml"), posts_xml).unwrap();
    std::fs::write(staging.path().join("Tags.xml"), "<tags>\n</tags>\n").unwrap();
    sevenz_rust2::compress_to_path(staging.path(), dest).unwrap();
}

const BREAD: &str = "Q: Why does my bread not rise?\n\
I followed a simple recipe but the dough stays flat after two hours.\n\n\
What I used:\n\n\
* 500 g flour\n\
* 7 g dry yeast\n\
* 350 ml hot water\n\n\
A: Two things to check:\n\n\
* the yeast is not past its date;\n\
* the room is warm enough (about 24 °C).\n\n\
Proof the yeast in a cup first.\n\n\
A: Hot water kills yeast. Keep the water below 45 °C; lukewarm is enough.\n\n\
A: Add more sugar.";

#[test]
fn the_largest_sites_become_one_document_per_question_with_answers_by_score() {
    let dir = tempfile::tempdir().unwrap();
    copy_samples(dir.path());
    let root = run_pipeline(
        dir.path(),
        "[stages.stackexchange]\ntype = \"stackexchange\"\ninputs = [\"stackexchange/*.Posts.xml\"]\ntop_sites = 2\n",
    );
    let c = manifest(&root, "stackexchange")["counts"].clone();
    // cooking: 4 questions, 5 answers, 2 tag-wiki posts; gardening: 3 and 3; bicycles (2 posts) is the smallest.
    assert_eq!(c["rows_in"], 19, "{c}");
    assert_eq!(c["kept"], 7, "{c}");
    assert_eq!(c["filtered"]["answer"], 8, "{c}");
    assert_eq!(c["filtered"]["post_type"], 2, "{c}");
    assert_eq!(c["filtered"]["site_not_selected"], 2, "{c}");
    assert_eq!(c["quarantined"], 0, "{c}");

    let se = root.join("datasets/stackexchange");
    let sites = query(
        "SELECT site, count(*), sum(answers) FROM s GROUP BY site ORDER BY site",
        &[("s", &se)],
    );
    assert_eq!(
        sites,
        ["cooking.stackexchange.com|4|5", "gardening.stackexchange.com|3|3"]
    );
    // Answers by score as numbers: 10, 9, -1 (as strings, "9" would come before "10").
    let bread = query(
        "SELECT url, question_id, score, text FROM s WHERE site LIKE 'cooking%' AND question_id = 1",
        &[("s", &se)],
    );
    assert_eq!(
        bread,
        [format!("https://cooking.stackexchange.com/questions/1|1|14|{BREAD}")]
    );
    let code = query("SELECT text FROM s WHERE question_id = 9", &[("s", &se)]);
    assert!(
        code[0].contains("def cups_to_grams(cups, density):\n    return cups * 236.6 * density\n"),
        "code blocks are kept verbatim: {code:?}"
    );

    // The same site as the dump's .7z gives the same documents; `sites` picks it by name.
    let d7 = dir.path().join("from7z");
    std::fs::create_dir_all(d7.join("se")).unwrap();
    let cooking = std::fs::read(dir.path().join("stackexchange/cooking.stackexchange.com.Posts.xml")).unwrap();
    write_7z(&cooking, &d7.join("se/cooking.stackexchange.com.7z"));
    write_7z(&cooking, &d7.join("se/other.stackexchange.com.7z"));
    let root7 = run_pipeline(
        &d7,
        "[stages.stackexchange]\ntype = \"stackexchange\"\ninputs = [\"se/*.7z\"]\nsites = [\"cooking.stackexchange.com\"]\n",
    );
    let texts7 = query(
        "SELECT question_id, text FROM s ORDER BY question_id",
        &[("s", &root7.join("datasets/stackexchange"))],
    );
    let texts = query(
        "SELECT question_id, text FROM s WHERE site = 'cooking.stackexchange.com' ORDER BY question_id",
        &[("s", &se)],
    );
    assert_eq!(texts7, texts);
}

#[test]
fn broken_dumps_are_quarantined_and_counts_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("se")).unwrap();
    let head = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<posts>\n";
    let q = |id: u32, score: &str| {
        format!(
            "  <row Id=\"{id}\" PostTypeId=\"1\" Score=\"{score}\" Title=\"Question {id}\" Body=\"&lt;p&gt;Body {id}&lt;/p&gt;\" />\n"
        )
    };
    let a = |id: u32, parent: u32, score: &str| {
        format!(
            "  <row Id=\"{id}\" PostTypeId=\"2\" ParentId=\"{parent}\" Score=\"{score}\" Body=\"&lt;p&gt;Answer {id}&lt;/p&gt;\" />\n"
        )
    };
    // Unparsable scores and an answer whose question is not in the dump.
    let scores = format!(
        "{head}{}{}{}{}{}</posts>\n",
        q(1, "3"),
        a(2, 1, "12a"),
        a(3, 1, "1"),
        a(4, 99, "5"),
        q(5, "")
    );
    std::fs::write(d.join("se/scores.stackexchange.com.Posts.xml"), scores).unwrap();
    // Malformed XML after one good question.
    let malformed = format!(
        "{head}{}  <row Id=\"7\" PostTypeId=\"1\" Score=\"1\" Title=\"x\" Body=\"unterminated />\n  <row <<< />\n</posts>\n",
        q(6, "2")
    );
    std::fs::write(d.join("se/malformed.stackexchange.com.Posts.xml"), malformed).unwrap();
    // An entity bomb: entities are never expanded.
    let mut bomb = String::from(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE posts [\n<!ENTITY a \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\">\n",
    );
    for (i, prev) in ["b", "c", "d", "e", "f", "g", "h", "i", "j"]
        .iter()
        .zip(["a", "b", "c", "d", "e", "f", "g", "h", "i"])
    {
        bomb.push_str(&format!("<!ENTITY {i} \"{}\">\n", format!("&{prev};").repeat(10)));
    }
    bomb.push_str("]>\n<posts>\n");
    bomb.push_str(&q(1, "1"));
    bomb.push_str("  <row Id=\"2\" PostTypeId=\"1\" Score=\"1\" Title=\"boom\" Body=\"&j;\" />\n</posts>\n");
    std::fs::write(d.join("se/bomb.stackexchange.com.Posts.xml"), bomb).unwrap();
    // A .7z cut short.
    write_7z(format!("{head}{}</posts>\n", q(1, "1")).as_bytes(), &d.join("whole.7z"));
    let whole = std::fs::read(d.join("whole.7z")).unwrap();
    std::fs::write(d.join("se/truncated.stackexchange.com.7z"), &whole[..whole.len() / 2]).unwrap();

    let root = run_pipeline(
        d,
        "[stages.stackexchange]\ntype = \"stackexchange\"\ninputs = [\"se/*\"]\n",
    );
    let c = manifest(&root, "stackexchange")["counts"].clone();
    let total = c["kept"].as_u64().unwrap() + filtered_total(&c) + c["quarantined"].as_u64().unwrap();
    assert_eq!(total, c["rows_in"].as_u64().unwrap(), "{c}");

    let se = root.join("datasets/stackexchange");
    let kept = query(
        "SELECT site, question_id, text FROM s ORDER BY site, question_id",
        &[("s", &se)],
    );
    assert_eq!(
        kept,
        [
            "bomb.stackexchange.com|1|Q: Question 1\nBody 1",
            "malformed.stackexchange.com|6|Q: Question 6\nBody 6",
            "scores.stackexchange.com|1|Q: Question 1\nBody 1\n\nA: Answer 3",
        ]
    );
    let reasons = query(
        "SELECT input_file, reason FROM q ORDER BY input_file, input_offset",
        &[("q", &root.join("datasets/stackexchange__quarantine"))],
    )
    .join("\n");
    for expected in [
        "se/bomb.stackexchange.com.Posts.xml|",
        "se/malformed.stackexchange.com.Posts.xml|Posts.xml:",
        "se/scores.stackexchange.com.Posts.xml|unparsable score \"12a\"",
        "se/scores.stackexchange.com.Posts.xml|unparsable score \"\"",
        "se/scores.stackexchange.com.Posts.xml|answer 4 to question 99, which is not in the dump",
        "se/truncated.stackexchange.com.7z|",
    ] {
        assert!(reasons.contains(expected), "{expected} missing from\n{reasons}");
    }
}
