//! Splitting a long answer into platform-sized messages: at paragraph, then line, then
//! word boundaries, never inside a character, with ``` code fences closed at the end of
//! one message and reopened (same language) at the start of the next.

use crate::core::adapter::LengthUnit;

const FENCE: &str = "```";
const CLOSE: &str = "\n```";

/// The first message split off a text that does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The message to show, fences balanced.
    pub text: String,
    /// Bytes of the input this message used up (including whitespace dropped at the cut).
    pub consumed: usize,
    /// The fence line (e.g. "```rust") to reopen at the start of the next message.
    pub carry: Option<String>,
}

/// What the message shows for `text` when it continues a code block opened by `carry`.
pub fn with_carry(carry: Option<&str>, text: &str) -> String {
    match carry {
        Some(fence) => format!("{fence}\n{text}"),
        None => text.to_string(),
    }
}

/// Splits the first message off `text` (continuing the code block `carry`, if any), or
/// returns `None` when everything fits in one message of `max` units.
pub fn split_first(text: &str, carry: Option<&str>, max: usize, unit: LengthUnit) -> Option<Piece> {
    let prefix = with_carry(carry, "");
    let prefix_len = unit.len(&prefix);
    if prefix_len + unit.len(text) <= max {
        return None;
    }
    // Cut with the whole budget; if that leaves a code block open, cut again leaving
    // room for the closing fence.
    let full = max.saturating_sub(prefix_len).max(1);
    let (mut cut, mut open) = cut_with_budget(text, carry, full, unit);
    if open.is_some() {
        (cut, open) = cut_with_budget(text, carry, full.saturating_sub(CLOSE.len()).max(1), unit);
    }
    let body = text[..cut].trim_end();
    let mut consumed = cut;
    let rest = &text[cut..];
    consumed += if open.is_some() {
        // Inside code, keep indentation: drop only the line break we split at.
        rest.len() - rest.strip_prefix('\n').unwrap_or(rest).len()
    } else {
        rest.len() - rest.trim_start().len()
    };
    let mut shown = format!("{prefix}{body}");
    if open.is_some() {
        shown.push_str(CLOSE);
    }
    Some(Piece {
        text: shown,
        consumed,
        carry: open,
    })
}

/// Where to cut `text` within `budget` units, and the code fence open at that point.
fn cut_with_budget(
    text: &str,
    carry: Option<&str>,
    budget: usize,
    unit: LengthUnit,
) -> (usize, Option<String>) {
    let limit = byte_limit(text, budget, unit);
    let window = &text[..limit];
    let floor = limit / 3;
    let cut = ["\n\n", "\n", " "]
        .iter()
        .filter_map(|sep| window.rfind(sep))
        .find(|&p| p > floor && !window[..p].trim().is_empty())
        .unwrap_or(limit);
    let mut open = carry.map(str::to_string);
    for line in text[..cut].trim_end().lines() {
        let line = line.trim();
        if line.starts_with(FENCE) {
            open = match open {
                Some(_) => None,
                None => Some(line.to_string()),
            };
        }
    }
    (cut, open)
}

/// Splits a whole text into messages of at most `max` units each.
pub fn split_message(text: &str, max: usize, unit: LengthUnit) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    let mut carry: Option<String> = None;
    while let Some(piece) = split_first(rest, carry.as_deref(), max, unit) {
        rest = &rest[piece.consumed..];
        carry = piece.carry;
        out.push(piece.text);
    }
    if !rest.trim().is_empty() || out.is_empty() {
        out.push(with_carry(carry.as_deref(), rest));
    }
    out
}

/// The largest char boundary `b` with `unit.len(&text[..b]) <= budget` (at least one
/// character, so splitting always makes progress).
fn byte_limit(text: &str, budget: usize, unit: LengthUnit) -> usize {
    let mut used = 0;
    for (i, c) in text.char_indices() {
        used += unit.char_len(c);
        if used > budget {
            return if i == 0 { c.len_utf8() } else { i };
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fences_balanced(s: &str) -> bool {
        s.lines().filter(|l| l.trim().starts_with(FENCE)).count() % 2 == 0
    }

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace()
            .filter(|w| !w.starts_with(FENCE))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn short_text_is_one_message() {
        assert_eq!(split_message("hi", 10, LengthUnit::Chars), vec!["hi"]);
        assert_eq!(split_message("", 10, LengthUnit::Chars), vec![""]);
    }

    #[test]
    fn prefers_paragraphs_then_lines_then_words() {
        let text = "first paragraph here.\n\nsecond paragraph is here.";
        assert_eq!(
            split_message(text, 30, LengthUnit::Chars),
            vec!["first paragraph here.", "second paragraph is here."]
        );
        let text = "line one is long\nline two is long too";
        assert_eq!(
            split_message(text, 24, LengthUnit::Chars),
            vec!["line one is long", "line two is long too"]
        );
        let parts = split_message("alpha beta gamma delta epsilon", 12, LengthUnit::Chars);
        assert!(
            parts
                .iter()
                .all(|p| !p.starts_with(' ') && !p.ends_with(' '))
        );
        assert_eq!(
            words(&parts.join(" ")),
            words("alpha beta gamma delta epsilon")
        );
    }

    #[test]
    fn multibyte_text_never_splits_inside_a_character() {
        let text = "Привет мир! 🦀🦀🦀 日本語のテキスト ".repeat(40);
        for unit in [LengthUnit::Chars, LengthUnit::Utf16] {
            for max in [7, 13, 50, 101] {
                let parts = split_message(&text, max, unit);
                for p in &parts {
                    assert!(unit.len(p) <= max, "{max}: {p:?} is {} long", unit.len(p));
                }
                assert_eq!(parts.concat().replace(' ', ""), text.replace(' ', ""));
            }
        }
        // A word with no spaces at all is hard-cut at char boundaries.
        let parts = split_message(&"ё".repeat(25), 10, LengthUnit::Chars);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts.concat(), "ё".repeat(25));
    }

    #[test]
    fn code_fences_stay_balanced_and_reopen_with_language() {
        let mut text = String::from("Here is the code:\n\n```rust\n");
        for i in 0..60 {
            text.push_str(&format!("    let x{i} = {i} * 2; // comment\n"));
        }
        text.push_str("```\n\nAnd that is all.");
        let parts = split_message(&text, 300, LengthUnit::Chars);
        assert!(parts.len() > 3);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.chars().count() <= 300);
            assert!(fences_balanced(p), "part {i} unbalanced:\n{p}");
            if i > 0 && i < parts.len() - 1 {
                assert!(p.starts_with("```rust\n"), "part {i} does not reopen:\n{p}");
            }
        }
        // Indentation inside the code survives the split.
        assert!(parts[1].lines().nth(1).unwrap().starts_with("    let"));
        assert_eq!(words(&parts.join("\n")), words(&text));
        assert!(parts.last().unwrap().ends_with("And that is all."));
    }
}
