//! Exact tiktoken counts — o200k_base (GPT-4o, GPT-4.1, the o-series, GPT-5) and
//! cl100k_base (GPT-4, GPT-3.5) — from compact vocabularies: the tokens' bytes stay in
//! the binary (written by `build.rs` from tiktoken-rs's own tables) and one
//! open-addressing index of ranks points into them. Why not tiktoken-rs's `CoreBPE`: it
//! holds a vocabulary as two hash maps of separately allocated byte vectors (~45 MiB
//! resident for o200k, two thirds of the bot's memory) and embeds every encoding as
//! base64 text (7.4 MB of the binary). This holds ~3 MiB and counts the same (tested
//! token for token against tiktoken-rs).

use std::hash::Hasher;
use std::sync::OnceLock;

use fancy_regex::Regex;

/// Every ordinary token's bytes in rank order, each after its u16 length.
static O200K: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/o200k_base.bin"));
static CL100K: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/cl100k_base.bin"));

/// o200k_base's pre-tokenizing pattern (tiktoken-rs's `O200K_BASE_PAT_STR`).
pub const O200K_PATTERN: &str = concat!(
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
    "|",
    r#"\p{N}{1,3}"#,
    "|",
    r#" ?[^\s\p{L}\p{N}]+[\r\n/]*"#,
    "|",
    r#"\s*[\r\n]+"#,
    "|",
    r#"\s+(?!\S)"#,
    "|",
    r#"\s+"#
);

/// cl100k_base's pre-tokenizing pattern (as tiktoken-rs writes it).
pub const CL100K_PATTERN: &str = "'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}++|\\p{N}{1,3}+| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*+|\\s++$|\\s*[\\r\\n]|\\s+(?!\\S)|\\s";

pub struct CompactBpe {
    /// The vocabulary: every ordinary token's bytes after its u16 length.
    blob: &'static [u8],
    /// Where each rank's bytes start in [`BLOB`] (the length is in the two bytes before).
    starts: Vec<u32>,
    /// Open addressing: rank + 1, or 0 for an empty slot.
    index: Vec<u32>,
    mask: usize,
    pattern: Regex,
}

fn hash(bytes: &[u8]) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    h.write(bytes);
    h.finish() as usize
}

impl CompactBpe {
    /// The o200k_base counter, built once.
    pub fn o200k() -> &'static CompactBpe {
        static BPE: OnceLock<CompactBpe> = OnceLock::new();
        BPE.get_or_init(|| CompactBpe::build(O200K, O200K_PATTERN))
    }

    /// The cl100k_base counter, built once (only when a model uses it).
    pub fn cl100k() -> &'static CompactBpe {
        static BPE: OnceLock<CompactBpe> = OnceLock::new();
        BPE.get_or_init(|| CompactBpe::build(CL100K, CL100K_PATTERN))
    }

    fn build(blob: &'static [u8], pattern: &str) -> CompactBpe {
        let mut starts = Vec::with_capacity(200_000);
        let mut at = 0usize;
        while at + 2 <= blob.len() {
            let len = u16::from_le_bytes([blob[at], blob[at + 1]]) as usize;
            starts.push((at + 2) as u32);
            at += 2 + len;
        }
        let slots = (starts.len() * 2).next_power_of_two();
        let mut bpe = CompactBpe {
            blob,
            starts,
            index: vec![0; slots],
            mask: slots - 1,
            pattern: Regex::new(pattern).expect("tiktoken's patterns compile"),
        };
        for rank in 0..bpe.starts.len() {
            let token = bpe.token(rank);
            if token.is_empty() {
                continue;
            }
            let mut slot = hash(token) & bpe.mask;
            while bpe.index[slot] != 0 {
                slot = (slot + 1) & bpe.mask;
            }
            bpe.index[slot] = rank as u32 + 1;
        }
        bpe
    }

    fn token(&self, rank: usize) -> &'static [u8] {
        let start = self.starts[rank] as usize;
        let len = u16::from_le_bytes([self.blob[start - 2], self.blob[start - 1]]) as usize;
        &self.blob[start..start + len]
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        let mut slot = hash(bytes) & self.mask;
        loop {
            match self.index[slot] {
                0 => return None,
                r if self.token(r as usize - 1) == bytes => return Some(r - 1),
                _ => slot = (slot + 1) & self.mask,
            }
        }
    }

    /// Tokens of `text` as tiktoken's `encode_ordinary` counts them.
    pub fn count(&self, text: &str) -> usize {
        let mut n = 0;
        for piece in self.pattern.find_iter(text) {
            // A pattern that cannot run to its end (backtracking limit) counts the rest
            // as bytes: never fewer tokens than the text can have.
            let Ok(piece) = piece else {
                return n + text.len();
            };
            n += self.piece(piece.as_str().as_bytes());
        }
        n
    }

    /// Byte-pair merging of one pre-tokenized piece: repeatedly join the adjacent pair
    /// whose joined bytes have the lowest rank, until no pair is a token.
    fn piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return 1;
        }
        // Boundaries between parts, and the rank of each part joined with the next.
        let mut bounds: Vec<usize> = (0..=piece.len()).collect();
        let pair = |bounds: &[usize], i: usize| -> u32 {
            if i + 2 < bounds.len() {
                self.rank(&piece[bounds[i]..bounds[i + 2]])
                    .unwrap_or(u32::MAX)
            } else {
                u32::MAX
            }
        };
        let mut ranks: Vec<u32> = (0..bounds.len()).map(|i| pair(&bounds, i)).collect();
        loop {
            let (best, &lowest) = ranks
                .iter()
                .enumerate()
                .min_by_key(|(_, r)| **r)
                .expect("at least one boundary");
            if lowest == u32::MAX {
                break;
            }
            bounds.remove(best + 1);
            ranks.remove(best + 1);
            ranks[best] = pair(&bounds, best);
            if best > 0 {
                ranks[best - 1] = pair(&bounds, best - 1);
            }
        }
        bounds.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token for token the same counts as tiktoken-rs, on text of every kind the bot
    /// sees: prose in several scripts, code, numbers, whitespace runs, emoji, Markdown.
    /// Both encodings, each beside tiktoken-rs's own.
    fn pairs() -> [(&'static CompactBpe, &'static tiktoken_rs::CoreBPE); 2] {
        [
            (CompactBpe::o200k(), tiktoken_rs::o200k_base_singleton()),
            (CompactBpe::cl100k(), tiktoken_rs::cl100k_base_singleton()),
        ]
    }

    #[test]
    fn the_o200k_pattern_is_tiktokens() {
        assert_eq!(O200K_PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
    }

    #[test]
    fn counts_exactly_as_tiktoken_does() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "Hello, world!".into(),
            "What's the capital of France? It's Paris — isn't it?".into(),
            "fn main() {\n    let x: Vec<u32> = (0..10).collect();\n    println!(\"{x:?}\");\n}\n"
                .into(),
            "1234567890 3.14159 -42 1e10 0xDEADBEEF 2026-12-01T10:27:37Z".into(),
            "   leading and trailing spaces   \n\n\n\ttabs\t\tand\r\nCRLF  ".into(),
            "Привет, как дела? Ünïcödé façade naïve coöperate".into(),
            "日本語のテキストと中文文本，还有한국어 텍스트。".into(),
            "مرحبا بالعالم — שלום עולם — नमस्ते दुनिया".into(),
            "emoji 😀👍🏽👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and symbols ∑∫√∞ ≠ ≤".into(),
            "**bold** _italic_ `code` [link](https://example.com/a?b=c&d=e#f)\n> quote\n- item"
                .into(),
            "<|endoftext|> is not special in ordinary text".into(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".into(),
            "I'm you're we've they'll she'd IT'S DON'T".into(),
        ];
        samples.push("The quick brown fox jumps over the lazy dog. ".repeat(40));
        samples.push((0..300).map(|i| format!("{i} ")).collect());
        samples.push("x".repeat(5000));
        for (compact, tiktoken) in pairs() {
            for text in &samples {
                assert_eq!(
                    compact.count(text),
                    tiktoken.encode_ordinary(text).len(),
                    "{text:?}"
                );
            }
        }
    }

    /// And on random mixtures of everything above.
    #[test]
    fn counts_random_text_exactly_as_tiktoken_does() {
        let alphabet: Vec<char> =
            "aeiou tnrsl THE 0123456789 \n\t\r.,;:!?'\"-_/()[]{}<>@#$%^&*+=~`|\\ éüßñ Жжщ 日本語中文 한국 ع ש 😀👍🏽 ∑√"
                .chars()
                .collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..400 {
            let len = (next() % 120) as usize;
            let text: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            for (compact, tiktoken) in pairs() {
                assert_eq!(
                    compact.count(&text),
                    tiktoken.encode_ordinary(&text).len(),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn the_whole_vocabulary_is_indexed() {
        assert!(CompactBpe::o200k().starts.len() > 190_000);
        assert!(CompactBpe::cl100k().starts.len() > 100_000);
        for (compact, _) in pairs() {
            for rank in [0usize, 1, 255, 1000, 90_000, compact.starts.len() - 1] {
                assert_eq!(compact.rank(compact.token(rank)), Some(rank as u32));
            }
        }
    }
}
