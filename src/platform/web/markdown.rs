//! A model's Markdown as safe HTML for the chat page: pulldown-cmark renders it, then
//! ammonia keeps only harmless tags and attributes (no scripts, no event handlers, no
//! `javascript:` links), so whatever a model or a user writes cannot run in the page.

use pulldown_cmark::{Options, Parser, html};

/// Markdown → sanitised HTML.
pub fn render(markdown: &str) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TABLES);
    let mut raw = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(markdown, options));
    let raw = thought_as_details(raw);
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&raw)
        .to_string()
}

/// A reasoning model's thinking, quoted above its answer (a first blockquote starting
/// with "💭"), as a closed `<details>` whose summary is the quote's first line.
fn thought_as_details(html: String) -> String {
    let Some(rest) = html.strip_prefix("<blockquote>\n<p>💭") else {
        return html;
    };
    let Some(end) = rest.find("</blockquote>") else {
        return html;
    };
    let (quote, after) = (&rest[..end], &rest[end + "</blockquote>".len()..]);
    let (summary, body) = quote.split_once('\n').unwrap_or((quote, ""));
    let summary = summary.trim_end_matches("</p>");
    let body = if body.trim().is_empty() {
        String::new()
    } else {
        format!("<p>{body}")
    };
    format!("<details><summary>💭{summary}</summary>{body}</details>{after}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_thought_quote_becomes_a_closed_details() {
        let html = render("> 💭 Thought for 2 s\n> step one\n> step two\n\nThe **answer**.");
        assert!(
            html.starts_with("<details><summary>💭 Thought for 2 s</summary>"),
            "{html}"
        );
        assert!(html.contains("step one"), "{html}");
        assert!(html.contains("</details>"), "{html}");
        assert!(html.contains("<strong>answer</strong>"), "{html}");
        assert!(!html.contains("<details open"), "{html}");
        assert!(render("> a quote").starts_with("<blockquote>"));
    }

    #[test]
    fn markdown_renders_and_anything_active_is_removed() {
        let html = render("**bold** and `code`\n\n```rust\nfn main() {}\n```");
        assert!(html.contains("<strong>bold</strong>"), "{html}");
        assert!(html.contains("<code>code</code>"), "{html}");
        assert!(html.contains("<pre><code"), "{html}");
        let html = render(
            "<script>alert(1)</script><img src=x onerror=alert(2)>\n\n[x](javascript:alert(3))",
        );
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("onerror"), "{html}");
        assert!(html.contains("<a"), "the link stays, harmless: {html}");
        assert!(!html.contains("href=\"javascript"), "{html}");
    }
}
