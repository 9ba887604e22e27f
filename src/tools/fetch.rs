//! The built-in `fetch_url` tool: the text of a web page, fetched through the address
//! guard ([`super::guard`]), at most `tools.fetch_url.max_bytes` read, HTML turned into
//! text (scripts and styles dropped).

use std::sync::Arc;

use async_trait::async_trait;

use super::Tool;
use super::guard::{PublicOnly, check_url};
use crate::config::ToolSettings;
use crate::core::model::ToolSpec;
use crate::core::tools::{Offered, ToolError};

pub(super) struct FetchUrl {
    http: reqwest::Client,
    allowed: Arc<Vec<String>>,
    max_bytes: usize,
    price: i64,
}

impl FetchUrl {
    pub(super) fn from_settings(settings: &ToolSettings) -> Option<FetchUrl> {
        let fetch = &settings.fetch_url;
        if !fetch.enabled {
            return None;
        }
        let allowed = Arc::new(fetch.allowed_hosts.clone());
        let redirects_allowed = allowed.clone();
        // Each hop's address is checked: a name by the resolver, an address here.
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match check_url(attempt.url(), &redirects_allowed) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(why),
            }
        });
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly {
                allowed: allowed.clone(),
            }))
            .redirect(redirects)
            .no_proxy()
            .timeout(settings.timeout)
            .user_agent(concat!("gptbot/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(FetchUrl {
            http,
            allowed,
            max_bytes: fetch.max_bytes,
            price: fetch.price_per_call.unwrap_or(settings.price_per_call),
        })
    }
}

#[async_trait]
impl Tool for FetchUrl {
    fn offered(&self) -> Offered {
        Offered {
            spec: ToolSpec {
                name: "fetch_url".into(),
                description: "Fetch a web page (http or https) and return its text.".into(),
                parameters: serde_json::json!({
                    "type": "object",
                    "properties": {"url": {"type": "string", "description": "The page's address"}},
                    "required": ["url"],
                }),
            },
            price: self.price,
            label: "🌐 reading".into(),
        }
    }

    async fn run(&self, arguments: serde_json::Value) -> Result<String, ToolError> {
        let url = arguments["url"]
            .as_str()
            .ok_or_else(|| ToolError::BadArguments("`url` (a string) is required".into()))?;
        let url = reqwest::Url::parse(url.trim())
            .map_err(|e| ToolError::BadArguments(format!("not an address: {e}")))?;
        check_url(&url, &self.allowed).map_err(|e| ToolError::Failed(e.to_string()))?;
        let failed =
            |e: reqwest::Error| ToolError::Failed(crate::core::error::chain(&e).to_string());
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?;
        let kind = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/plain")
            .to_ascii_lowercase();
        let html = kind.contains("html");
        if !html && !kind.starts_with("text/") && !kind.contains("json") && !kind.contains("xml") {
            return Err(ToolError::Failed(format!("the page is {kind}, not text")));
        }
        let mut body = Vec::new();
        let mut cut = false;
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            let room = self.max_bytes - body.len();
            if chunk.len() > room {
                body.extend_from_slice(&chunk[..room]);
                cut = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        let mut text = if html {
            page_text(&text)
        } else {
            text.into_owned()
        };
        if cut {
            text.push_str(&format!(
                "\n[cut: only the first {} bytes were read]",
                self.max_bytes
            ));
        }
        Ok(text)
    }
}

/// The visible text of an HTML page: every tag dropped (scripts and styles with their
/// content), entities decoded, blank runs collapsed.
fn page_text(html: &str) -> String {
    let bare = ammonia::Builder::empty().clean(html).to_string();
    let decoded = bare
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&");
    let mut out = String::with_capacity(decoded.len());
    for line in decoded.lines().map(str::trim).filter(|l| !l.is_empty()) {
        out.push_str(&line.split_whitespace().collect::<Vec<_>>().join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_its_visible_text() {
        let text = page_text(
            "<html><head><style>p{color:red}</style><script>alert('x')</script><title>T</title></head>\n<body><h1>Hello &amp; welcome</h1>\n\n<p>One   two\n<b>three</b> &lt;4&gt;</p></body></html>",
        );
        assert!(
            !text.contains("alert") && !text.contains("color:red"),
            "{text}"
        );
        assert!(text.contains("Hello & welcome"), "{text}");
        assert!(text.contains("One two"), "{text}");
        assert!(text.contains("three <4>"), "{text}");
    }
}
