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
    ammonia::Builder::default()
        .link_rel(Some("noopener noreferrer nofollow"))
        .clean(&raw)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
