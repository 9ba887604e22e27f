//! Small text helpers every layer uses for what it shows: cutting a text short at a
//! character (never a byte) boundary.

/// `text` with at most `max_chars` characters, `…` added when something was cut.
pub fn ellipsis(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_characters_and_marks_the_cut() {
        assert_eq!(ellipsis("héllo", 10), "héllo");
        assert_eq!(ellipsis("héllo", 5), "héllo");
        assert_eq!(ellipsis("héllo", 2), "hé…");
        assert_eq!(ellipsis("", 0), "");
    }
}
