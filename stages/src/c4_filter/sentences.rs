//! Sentence counting for C4's "at least 5 sentences" rule, rule-based and
//! English-centred, close to what C4's peers count with (datatrove: spaCy's
//! `sentencizer` after its English tokenizer; TFDS: NLTK punkt).
//!
//! A sentence ends at `!` or `?`, and at a period unless the period belongs
//! to its word: an abbreviation (`Mr.`, `e.g.`, `Inc.`), an initial (`J.`,
//! `U.S.`), a single lowercase letter (`a.`) or an ellipsis. Closing quotes
//! and brackets after the mark stay with its sentence, and so do further
//! marks (`?!`). `end.Next` (a lowercase letter, a period, a capital) is a
//! boundary inside a word, as spaCy's infix rule has it.

/// Abbreviations whose period does not end a sentence (spaCy's English list).
const ABBREVIATIONS: &[&str] = &[
    "Mt.", "Ak.", "Ala.", "Apr.", "Ariz.", "Ark.", "Aug.", "Calif.", "Colo.", "Conn.", "Dec.", "Del.", "Feb.", "Fla.",
    "Ga.", "Ia.", "Id.", "Ill.", "Ind.", "Jan.", "Jul.", "Jun.", "Kan.", "Kans.", "Ky.", "La.", "Mar.", "Mass.",
    "Mich.", "Minn.", "Miss.", "Neb.", "Nebr.", "Nev.", "Nov.", "Oct.", "Okla.", "Ore.", "Pa.", "Sep.", "Sept.",
    "Tenn.", "Va.", "Wash.", "Wis.", "a.m.", "p.m.", "Adm.", "Bros.", "co.", "Co.", "Corp.", "Dr.", "e.g.", "E.g.",
    "E.G.", "Gen.", "Gov.", "i.e.", "I.e.", "I.E.", "Inc.", "Jr.", "Ltd.", "Md.", "Messrs.", "Mo.", "Mont.", "Mr.",
    "Mrs.", "Ms.", "Ph.D.", "Prof.", "Rep.", "Rev.", "Sen.", "St.", "vs.", "v.s.",
];

/// Characters that may follow a sentence's final mark and still belong to it.
const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', ']', '}', '»'];

/// The number of sentences in `line` (0 for a line without words).
pub fn count_sentences(line: &str) -> usize {
    let mut sentences = 0;
    // Whether the next word starts a new sentence.
    let mut at_start = true;
    for word in line.split_whitespace() {
        if only_marks(word) {
            // A stray `.` or `?!` joins the sentence before it.
            if sentences == 0 {
                sentences = 1;
            }
            at_start = true;
            continue;
        }
        if at_start {
            sentences += 1;
        }
        sentences += inner_boundaries(word);
        at_start = ends_sentence(word);
    }
    sentences
}

fn only_marks(word: &str) -> bool {
    word.chars().all(|c| matches!(c, '.' | '!' | '?'))
}

/// Whether `word` ends its sentence.
fn ends_sentence(word: &str) -> bool {
    let core = word.trim_end_matches(CLOSERS);
    if core.ends_with(['!', '?']) {
        return true;
    }
    let Some(stem) = core.strip_suffix('.') else {
        return false;
    };
    if stem.ends_with('.') || ABBREVIATIONS.contains(&core) {
        return false;
    }
    let mut before = stem.chars().rev();
    match (before.next(), before.next()) {
        (None, _) => false,
        // `J.`, `U.S.`: an initial. `USA.` ends a sentence.
        (Some(a), b) if a.is_uppercase() => b.is_some_and(char::is_uppercase),
        // `a.` alone is a list letter; `data.` ends a sentence.
        (Some(a), b) if a.is_lowercase() => b.is_some_and(|b| b != '.'),
        _ => true,
    }
}

/// Boundaries inside a word: `end.Next` (lowercase, period, capital).
fn inner_boundaries(word: &str) -> usize {
    word.match_indices('.')
        .filter(|&(at, _)| {
            let before = word[..at].chars().next_back();
            let after = word[at + 1..].chars().next();
            before.is_some_and(char::is_lowercase) && after.is_some_and(char::is_uppercase)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_end_sentences_but_abbreviations_and_initials_do_not() {
        assert_eq!(count_sentences(""), 0);
        assert_eq!(count_sentences("One sentence without a mark"), 1);
        assert_eq!(count_sentences("It rained. Then it stopped! Did it? Yes."), 4);
        assert_eq!(
            count_sentences("Mr. Smith met Dr. Jones in St. Louis at 5 p.m. today."),
            1
        );
        assert_eq!(count_sentences("J. R. R. Tolkien lived in the U.S. for a while."), 1);
        assert_eq!(count_sentences("It was built in 1820. It burnt in 1901."), 2);
        assert_eq!(count_sentences("He waited... and waited. Nothing."), 2);
    }

    #[test]
    fn closers_and_repeated_marks_stay_with_their_sentence() {
        assert_eq!(count_sentences("He said \"stop.\" Then he left."), 2);
        assert_eq!(count_sentences("Really?! Yes (really.) Fine ."), 3);
        assert_eq!(count_sentences("It works in the USA. And elsewhere."), 2);
    }

    #[test]
    fn a_period_between_a_lowercase_letter_and_a_capital_is_a_boundary() {
        assert_eq!(count_sentences("It ended.Then another began."), 2);
        assert_eq!(count_sentences("See example.com for more."), 1);
    }
}
