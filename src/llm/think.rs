//! A reasoning model's thinking, told apart from its answer. Servers with a reasoning
//! parser send it as `reasoning_content` (DeepSeek, vLLM, llama.cpp) or `reasoning`
//! (OpenRouter, newer vLLM); servers without one put it inline, as `<think>…</think>` at
//! the start of `content`. [`InlineThink`] splits the inline form out of the streamed
//! content, whatever way the tags are cut into chunks, so the thinking never reaches the
//! user as text nor the history.

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// One piece of streamed content, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Thinking(String),
    Answer(String),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace yet: an opening tag may still come.
    #[default]
    Start,
    /// Inside `<think>`.
    Thinking,
    /// Just past `</think>`: the whitespace before the answer is dropped.
    Closed,
    /// The answer: passed through.
    Answer,
}

/// The splitter of one stream.
#[derive(Debug, Default)]
pub struct InlineThink {
    state: State,
    /// Text held back because it may be the start of a tag.
    held: String,
}

impl InlineThink {
    /// Past the start (no `<think>`, or after `</think>`): content is the answer as it
    /// comes, with nothing held back — the caller may pass it on without a copy.
    pub fn answering(&self) -> bool {
        self.state == State::Answer && self.held.is_empty()
    }

    /// Sorts the next chunk of `content`; text that may be part of a tag is held until
    /// the next chunk (or [`finish`](Self::finish)) tells.
    pub fn push(&mut self, chunk: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        self.held.push_str(chunk);
        loop {
            match self.state {
                State::Answer => {
                    if !self.held.is_empty() {
                        out.push(Piece::Answer(std::mem::take(&mut self.held)));
                    }
                    return out;
                }
                State::Start => {
                    let rest = self.held.trim_start();
                    if let Some(after) = rest.strip_prefix(OPEN) {
                        self.held = after.to_string();
                        self.state = State::Thinking;
                    } else if OPEN.starts_with(rest) {
                        // Empty, or a tag cut short: wait for more.
                        return out;
                    } else {
                        self.state = State::Answer;
                    }
                }
                State::Thinking => match self.held.find(CLOSE) {
                    Some(at) => {
                        if at > 0 {
                            out.push(Piece::Thinking(self.held[..at].to_string()));
                        }
                        self.held = self.held[at + CLOSE.len()..].to_string();
                        self.state = State::Closed;
                    }
                    None => {
                        // Keep back what could be the start of the closing tag.
                        let keep = partial_suffix(&self.held, CLOSE);
                        let cut = self.held.len() - keep;
                        if cut > 0 {
                            out.push(Piece::Thinking(self.held[..cut].to_string()));
                            self.held = self.held[cut..].to_string();
                        }
                        return out;
                    }
                },
                State::Closed => {
                    let rest = self.held.trim_start();
                    if rest.is_empty() {
                        self.held.clear();
                        return out;
                    }
                    self.held = rest.to_string();
                    self.state = State::Answer;
                }
            }
        }
    }

    /// The stream ended: what was held back is what it seemed to be.
    pub fn finish(&mut self) -> Option<Piece> {
        let held = std::mem::take(&mut self.held);
        match self.state {
            _ if held.is_empty() => None,
            State::Thinking => Some(Piece::Thinking(held)),
            State::Start | State::Answer => Some(Piece::Answer(held)),
            State::Closed => None,
        }
    }
}

/// The length of the longest end of `text` that is a proper start of `tag`.
fn partial_suffix(text: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| {
            text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(chunks: &[&str]) -> (String, String) {
        let mut split = InlineThink::default();
        let mut pieces: Vec<Piece> = chunks.iter().flat_map(|c| split.push(c)).collect();
        pieces.extend(split.finish());
        let (mut thinking, mut answer) = (String::new(), String::new());
        for p in pieces {
            match p {
                Piece::Thinking(t) => thinking.push_str(&t),
                Piece::Answer(a) => answer.push_str(&a),
            }
        }
        (thinking, answer)
    }

    #[test]
    fn an_inline_think_block_is_split_from_the_answer() {
        let (t, a) = run(&["<think>\nLet me see.", " 2+2=4\n</think>\n\nIt is **4**."]);
        assert_eq!(t, "\nLet me see. 2+2=4\n");
        assert_eq!(a, "It is **4**.");
    }

    #[test]
    fn tags_cut_anywhere_are_still_found() {
        let (t, a) = run(&["  <th", "ink>hm", "m</th", "in", "k>", "\n", "Yes."]);
        assert_eq!((t.as_str(), a.as_str()), ("hmm", "Yes."));
    }

    #[test]
    fn an_answer_without_a_tag_passes_through_as_is() {
        assert_eq!(
            run(&["Hello", " <think>not a tag here"]).1,
            "Hello <think>not a tag here"
        );
        assert_eq!(run(&["  indented"]).1, "  indented");
        assert_eq!(run(&["<", "b>bold</b>"]).1, "<b>bold</b>");
        assert_eq!(
            run(&["<thin"]).1,
            "<thin",
            "a cut-short tag at the end is text"
        );
    }

    #[test]
    fn thinking_that_never_closes_stays_thinking() {
        assert_eq!(
            run(&["<think>still going </thi"]),
            ("still going </thi".into(), String::new())
        );
    }

    proptest! {
        /// However the stream is cut into chunks, the split is the same.
        #[test]
        fn chunking_does_not_change_the_split(cuts in proptest::collection::vec(0usize..60, 0..8)) {
            let whole = "\n<think>a < b, so </thin is no tag</think>\n\nThe answer: a<b.";
            let mut at: Vec<usize> = cuts.into_iter().map(|c| c % whole.len()).collect();
            at.sort_unstable();
            at.dedup();
            let mut chunks = Vec::new();
            let mut from = 0;
            for c in at {
                chunks.push(&whole[from..c]);
                from = c;
            }
            chunks.push(&whole[from..]);
            prop_assert_eq!(run(&chunks), ("a < b, so </thin is no tag".to_string(), "The answer: a<b.".to_string()));
        }
    }
}
