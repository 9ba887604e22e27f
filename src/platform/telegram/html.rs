//! Markdown (as models write it) to Telegram's HTML subset: bold, italic, underline,
//! strikethrough, inline code, `pre` with a language, links and blockquotes. Everything
//! else is rendered as text and escaped, so the result always parses — a real CommonMark
//! parser (pulldown-cmark), not regexes.

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};

/// Escapes text for Telegram HTML (it knows only these three entities, and `&quot;`).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    ["http://", "https://", "tg://", "mailto:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// How the conversation marks a quote of a reasoning model's thinking.
const THOUGHT: &str = "💭";

/// Renders Markdown to Telegram HTML.
pub fn render(markdown: &str) -> String {
    let options = Options::ENABLE_STRIKETHROUGH;
    let mut out = String::with_capacity(markdown.len() + 32);
    // One entry per open list: the next number for ordered lists.
    let mut lists: Vec<Option<u64>> = Vec::new();
    // Whether each open link was emitted as <a> (unsafe URLs are shown as plain text).
    let mut links: Vec<bool> = Vec::new();
    // How the open code block is closed.
    let mut code_close = "</pre>";

    for event in Parser::new_ext(markdown, options) {
        match event {
            Event::Start(tag) => match tag {
                Tag::Paragraph => {}
                Tag::Heading { .. } => out.push_str("<b>"),
                Tag::BlockQuote(_) => out.push_str("<blockquote>"),
                Tag::CodeBlock(kind) => match kind {
                    CodeBlockKind::Fenced(lang) if !lang.trim().is_empty() => {
                        let lang = lang.split_whitespace().next().unwrap_or("");
                        out.push_str(&format!("<pre><code class=\"language-{}\">", escape(lang)));
                        code_close = "</code></pre>";
                    }
                    _ => {
                        out.push_str("<pre>");
                        code_close = "</pre>";
                    }
                },
                Tag::List(start) => {
                    if !lists.is_empty() && !out.ends_with('\n') {
                        out.push('\n');
                    }
                    lists.push(start);
                }
                Tag::Item => {
                    let depth = lists.len().saturating_sub(1);
                    out.push_str(&"  ".repeat(depth));
                    match lists.last_mut() {
                        Some(Some(n)) => {
                            out.push_str(&format!("{n}. "));
                            *n += 1;
                        }
                        _ => out.push_str("• "),
                    }
                }
                Tag::Emphasis => out.push_str("<i>"),
                Tag::Strong => out.push_str("<b>"),
                Tag::Strikethrough => out.push_str("<s>"),
                Tag::Link { dest_url, .. } => {
                    let ok = safe_url(&dest_url);
                    if ok {
                        out.push_str(&format!("<a href=\"{}\">", escape(&dest_url)));
                    }
                    links.push(ok);
                }
                Tag::Image { .. } => {}
                _ => {}
            },
            Event::End(tag) => match tag {
                TagEnd::Paragraph => out.push_str("\n\n"),
                TagEnd::Heading(level) => {
                    out.push_str("</b>");
                    out.push_str(if level == HeadingLevel::H1 {
                        "\n\n"
                    } else {
                        "\n"
                    });
                }
                TagEnd::BlockQuote(_) => {
                    trim_end_in_place(&mut out);
                    out.push_str("</blockquote>\n\n");
                }
                TagEnd::CodeBlock => {
                    if out.ends_with('\n') {
                        out.pop();
                    }
                    out.push_str(code_close);
                    out.push_str("\n\n");
                }
                TagEnd::List(_) => {
                    lists.pop();
                    if lists.is_empty() {
                        out.push('\n');
                    }
                }
                TagEnd::Item => {
                    trim_end_in_place(&mut out);
                    out.push('\n');
                }
                TagEnd::Emphasis => out.push_str("</i>"),
                TagEnd::Strong => out.push_str("</b>"),
                TagEnd::Strikethrough => out.push_str("</s>"),
                TagEnd::Link if links.pop().unwrap_or(false) => out.push_str("</a>"),
                _ => {}
            },
            Event::Text(text) => {
                // A reasoning model's thinking, quoted above its answer: expandable.
                if out == "<blockquote>" && text.starts_with(THOUGHT) {
                    out.insert_str("<blockquote".len(), " expandable");
                }
                out.push_str(&escape(&text))
            }
            Event::Code(code) => {
                out.push_str("<code>");
                out.push_str(&escape(&code));
                out.push_str("</code>");
            }
            Event::Html(html) | Event::InlineHtml(html) => out.push_str(&escape(&html)),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            // As long as the `---` it replaces, so rendering never lengthens a message.
            Event::Rule => out.push_str("———\n\n"),
            Event::TaskListMarker(done) => out.push_str(if done { "☑ " } else { "☐ " }),
            Event::FootnoteReference(name) => out.push_str(&escape(&format!("[{name}]"))),
            Event::InlineMath(m) | Event::DisplayMath(m) => out.push_str(&escape(&m)),
        }
    }
    trim_end_in_place(&mut out);
    out
}

/// Length of what Telegram shows for `html` (tags removed, entities decoded), in UTF-16
/// code units as Telegram counts its 4096 limit.
pub fn visible_len_utf16(html: &str) -> usize {
    let mut len = 0;
    let mut in_tag = false;
    let mut chars = html.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if in_tag => {}
            '&' => {
                // &lt; &gt; &amp; &quot; each show as one character.
                for next in chars.by_ref() {
                    if next == ';' {
                        break;
                    }
                }
                len += 1;
            }
            c => len += c.len_utf16(),
        }
    }
    len
}

fn trim_end_in_place(s: &mut String) {
    let len = s.trim_end().len();
    s.truncate(len);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_leading_thought_quote_is_expandable_and_other_quotes_are_not() {
        assert_eq!(
            render("> 💭 Thought for 3 s\n> a < b\n\nFour."),
            "<blockquote expandable>💭 Thought for 3 s\na &lt; b</blockquote>\n\nFour."
        );
        assert!(render("> 💭 quoted later\n\nx").starts_with("<blockquote expandable>"));
        assert_eq!(render("> a quote"), "<blockquote>a quote</blockquote>");
        assert!(!render("Intro\n\n> 💭 not first").contains("expandable"));
    }

    use super::*;

    #[test]
    fn inline_formatting() {
        assert_eq!(
            render("**bold** and *italic* and ~~gone~~ and `x < y`"),
            "<b>bold</b> and <i>italic</i> and <s>gone</s> and <code>x &lt; y</code>"
        );
    }

    #[test]
    fn code_blocks_keep_their_language_and_escape_content() {
        assert_eq!(
            render("Look:\n\n```rust\nfn main() { a && b < c }\n```\n"),
            "Look:\n\n<pre><code class=\"language-rust\">fn main() { a &amp;&amp; b &lt; c }</code></pre>"
        );
        assert_eq!(render("```\nplain\n```"), "<pre>plain</pre>");
    }

    #[test]
    fn links_headings_quotes_and_lists() {
        assert_eq!(
            render("[docs](https://example.com/?a=1&b=\"2\")"),
            "<a href=\"https://example.com/?a=1&amp;b=&quot;2&quot;\">docs</a>"
        );
        assert_eq!(render("[x](javascript:alert(1))"), "x");
        assert_eq!(render("# Title\n\ntext"), "<b>Title</b>\n\ntext");
        assert_eq!(
            render("> quoted\n> more"),
            "<blockquote>quoted\nmore</blockquote>"
        );
        assert_eq!(
            render("- one\n- two\n\n1. a\n2. b"),
            "• one\n• two\n\n1. a\n2. b"
        );
        assert_eq!(
            render("- outer\n  - inner\n- last"),
            "• outer\n  • inner\n• last"
        );
    }

    #[test]
    fn visible_length_counts_what_telegram_shows() {
        assert_eq!(visible_len_utf16("<b>ab</b> &lt;c&gt; 🦀"), 9);
        for md in [
            "- a\n- b",
            "---",
            "**x** `y` [z](https://e.com)",
            "# T\n\n> q",
            "1. a\n1. b",
        ] {
            let html = render(md);
            assert!(
                visible_len_utf16(&html) <= md.encode_utf16().count(),
                "{md:?} → {html:?}"
            );
        }
    }

    #[test]
    fn raw_html_and_stray_markup_are_escaped() {
        assert_eq!(
            render("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(
            render("a <b>not bold</b> & 1 < 2"),
            "a &lt;b&gt;not bold&lt;/b&gt; &amp; 1 &lt; 2"
        );
        // Unbalanced markers stay literal text.
        assert_eq!(render("**not closed"), "**not closed");
    }
}
