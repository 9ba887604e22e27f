//! Tools, end to end on Telegram and Discord: a model that may call tools asks for the
//! built-in `web_search` (a fake SearXNG on 127.0.0.1), the user sees the search run in
//! the answer's message, the answer uses its result, and the ledger holds each call's
//! price before it runs and settles it after, by name — refused when the balance does
//! not cover it, refunded when the tool fails. The books are asserted after each.

mod common;

use std::time::Duration;

use common::chats::PrivateChat;
use common::searxng::FakeSearxng;
use common::*;
use gptbot::quota::LedgerEntry;

fn with_search(searx: &FakeSearxng) -> Options {
    Options::default()
        .with("GPTBOT__MODEL__TOOLS", "true")
        .with("GPTBOT__TOOLS__WEB_SEARCH__SEARXNG_URL", searx.url())
        .with("GPTBOT__TOOLS__PRICE_PER_CALL", "100")
}

fn search(query: &str) -> Behavior {
    Behavior::ToolCalls {
        calls: vec![("web_search".into(), format!("{{\"query\": \"{query}\"}}"))],
        usage: Some((30, 12)),
    }
}

/// The answer after the tool, slow enough to start that the search's line is shown.
fn answer(text: &str) -> Behavior {
    Behavior::Stream {
        pieces: vec![text.to_string()],
        delay: Duration::from_millis(700),
        usage: Some((90, 8)),
    }
}

fn tool_entries(entries: &[LedgerEntry]) -> Vec<(String, i64)> {
    entries
        .iter()
        .filter(|e| e.note.as_deref() == Some("tool:web_search"))
        .map(|e| (e.kind.clone(), e.d_used))
        .collect()
}

async fn a_question_that_needs_a_search_is_answered_with_it_and_the_call_is_charged<
    P: PrivateChat,
>() {
    let searx = FakeSearxng::start().await;
    let (chat, t, _stop) = P::start(with_search(&searx)).await;
    t.openai
        .script([search("rust 2026 edition"), answer("Rust is great [1].")]);
    chat.say("what's new in rust?");
    chat.wait_any("the search shown while it runs", &|t| {
        t == "🔎 searching: rust 2026 edition"
    })
    .await;
    chat.wait_last("Rust is great [1].").await;
    assert_eq!(searx.queries(), ["rust 2026 edition"]);

    let requests = t.openai.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["tools"][0]["function"]["name"], "web_search");
    let messages = requests[1]["messages"].as_array().unwrap();
    let asked = &messages[messages.len() - 2];
    assert_eq!(asked["role"], "assistant");
    assert_eq!(asked["tool_calls"][0]["function"]["name"], "web_search");
    assert_eq!(
        asked["tool_calls"][0]["function"]["arguments"],
        "{\"query\": \"rust 2026 edition\"}"
    );
    let result = &messages[messages.len() - 1];
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "call_fake0");
    assert!(
        result["content"]
            .as_str()
            .unwrap()
            .contains("1. Rust Programming Language — https://www.rust-lang.org/"),
        "{result}"
    );

    // Both model rounds and the call, each its own settlement.
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
    assert_eq!(balance.used, 42 + 100 + 98);
    let entries = t.app.quota.history(&chat.user(), 100).await.unwrap();
    assert_eq!(
        tool_entries(&entries),
        [("reserve".to_string(), 0), ("settle".to_string(), 100)]
    );
    // The history keeps the exchange: the answer the user saw, and a bounded summary of
    // the call and its result, sent again with the next question.
    let turns = common::ledger::recorded(&t.app.sessions, &chat.session(), 2).await;
    assert_eq!(turns.len(), 2);
    assert_eq!(turns[1].content, "Rust is great [1].");
    let summary = turns[1].tools.clone().expect("the tools used are kept");
    assert!(
        summary.starts_with(
            "web_search({\"query\": \"rust 2026 edition\"}) → 1. Rust Programming Language"
        ),
        "{summary}"
    );
    assert!(summary.chars().count() < 700, "{summary}");
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    chat.say("and the blog?");
    chat.wait_last("Echo: and the blog?").await;
    let messages = t.openai.requests()[2]["messages"]
        .as_array()
        .unwrap()
        .clone();
    let earlier = messages[2]["content"].as_str().unwrap();
    assert!(
        earlier.starts_with("[Tools used for this answer: web_search(")
            && earlier.contains("https://blog.rust-lang.org/")
            && earlier.ends_with("]\n\nRust is great [1]."),
        "{earlier}"
    );
}

async fn a_call_the_balance_does_not_cover_is_refused_and_the_answer_comes_without_it<
    P: PrivateChat,
>() {
    let searx = FakeSearxng::start().await;
    let (chat, t, _stop) =
        P::start(with_search(&searx).with("GPTBOT__TOOLS__WEB_SEARCH__PRICE_PER_CALL", "1000000"))
            .await;
    t.openai
        .script([search("anything"), answer("I could not search, but…")]);
    chat.say("search something");
    chat.wait_last("I could not search, but…").await;
    assert!(searx.queries().is_empty(), "a refused call ran");
    let requests = t.openai.requests();
    let messages = requests[1]["messages"].as_array().unwrap();
    let result = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(
        result.starts_with("Error: this call was refused"),
        "{result}"
    );
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    assert_eq!(balance.used, 42 + 98, "only the model rounds are charged");
    let entries = t.app.quota.history(&chat.user(), 100).await.unwrap();
    assert!(tool_entries(&entries).is_empty());
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

async fn a_failing_tool_gives_the_model_an_error_and_is_refunded<P: PrivateChat>() {
    let searx = FakeSearxng::start().await;
    searx.fail();
    let (chat, t, _stop) =
        P::start(with_search(&searx).with("GPTBOT__TOOLS__MAX_ROUNDS", "1")).await;
    t.openai
        .script([search("news"), answer("The search failed.")]);
    chat.say("news?");
    chat.wait_last("The search failed.").await;
    let requests = t.openai.requests();
    // After max_rounds the model is asked without tools, so it answers.
    assert!(requests[1].get("tools").is_none(), "{}", requests[1]);
    let result = t.openai.last_message_of(1);
    assert!(result.starts_with("Error: the tool failed"), "{result}");
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    assert_eq!(balance.used, 42 + 98);
    let entries = t.app.quota.history(&chat.user(), 100).await.unwrap();
    assert_eq!(
        tool_entries(&entries),
        [("reserve".to_string(), 0), ("refund".to_string(), 0)]
    );
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// A page to read, on 127.0.0.1: the number of times it was asked for.
async fn page_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/page",
        axum::routing::get(move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                axum::response::Html(
                    "<html><head><script>steal()</script></head><body><h1>Release notes</h1><p>Version 2 &amp; more.</p></body></html>",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/page", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

/// `fetch_url` never reaches a private or local address (the bot's own network, the
/// cloud metadata address) unless the operator lists the host; a listed one is read as
/// text, its scripts dropped.
async fn fetch_url_reads_pages_but_never_a_private_address<P: PrivateChat>() {
    let (url, hits) = page_server().await;
    let fetch = |url: &str| Behavior::ToolCalls {
        calls: vec![("fetch_url".into(), format!("{{\"url\": \"{url}\"}}"))],
        usage: Some((30, 12)),
    };
    let enabled = || {
        Options::default()
            .with("GPTBOT__MODEL__TOOLS", "true")
            .with("GPTBOT__TOOLS__FETCH_URL__ENABLED", "true")
    };
    {
        let (chat, t, _stop) = P::start(enabled()).await;
        t.openai.script([fetch(&url), answer("Refused.")]);
        chat.say("read it");
        chat.wait_last("Refused.").await;
        let result = t.openai.last_message_of(1);
        assert!(
            result.contains("127.0.0.1 is a private or local address"),
            "{result}"
        );
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
        common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    }
    let (chat, t, _stop) =
        P::start(enabled().with("GPTBOT__TOOLS__FETCH_URL__ALLOWED_HOSTS", "127.0.0.1")).await;
    t.openai.script([fetch(&url), answer("Version 2.")]);
    chat.say("read it");
    chat.wait_last("Version 2.").await;
    let result = t.openai.last_message_of(1);
    assert!(
        result.contains("Release notes") && result.contains("Version 2 & more."),
        "{result}"
    );
    assert!(!result.contains("steal"), "{result}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
    assert_eq!(balance.used, 42 + 100 + 98);
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// `tools.access = "allowed"`: tools only for those an operator allowed them
/// (`/allow tools:<user>`, through the one admin service); a `deny` takes them back.
async fn tools_follow_the_access_rules<P: PrivateChat>() {
    use gptbot::admin::Operator;
    use gptbot::core::admin::{AdminCommand, Subject};
    let searx = FakeSearxng::start().await;
    let (chat, t, _stop) =
        P::start(with_search(&searx).with("GPTBOT__TOOLS__ACCESS", "allowed")).await;
    let offered = |i: usize| t.openai.requests()[i].get("tools").is_some();
    chat.say("one");
    chat.wait_last("Echo: one").await;
    assert!(!offered(0), "tools offered to a user nobody allowed them");
    let rule = |allowed: bool| AdminCommand::Rule {
        subject: Subject::parse(&format!("tools:{}", chat.user())).unwrap(),
        allowed,
    };
    let service = t.app.conversation.admin_service();
    service.apply(&Operator::cli(), rule(true)).await.unwrap();
    chat.say("two");
    chat.wait_last("Echo: two").await;
    assert!(offered(1), "tools not offered once allowed");
    service.apply(&Operator::cli(), rule(false)).await.unwrap();
    chat.say("three");
    chat.wait_last("Echo: three").await;
    assert!(!offered(2), "tools still offered once denied");
    common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// Without SearXNG, `web_search` runs on Brave Search or Tavily with an API key, each
/// spoken in its own shape; the key goes only where it belongs.
async fn web_search_works_with_a_brave_or_a_tavily_key<P: PrivateChat>() {
    let searx = FakeSearxng::start().await;
    let base = searx.url();
    for (key, url, answer_text, seen) in [
        ("BRAVE_API_KEY", "BRAVE_URL", "Brave result", "brave:rust"),
        (
            "TAVILY_API_KEY",
            "TAVILY_URL",
            "Tavily result",
            "tavily:rust",
        ),
    ] {
        let secret = if key.starts_with("BRAVE") {
            "brave-key"
        } else {
            "tavily-key"
        };
        let path = if key.starts_with("BRAVE") {
            "brave"
        } else {
            "tavily"
        };
        let (chat, t, _stop) = P::start(
            Options::default()
                .with("GPTBOT__MODEL__TOOLS", "true")
                .with(&format!("GPTBOT__TOOLS__WEB_SEARCH__{key}"), secret)
                .with(
                    &format!("GPTBOT__TOOLS__WEB_SEARCH__{url}"),
                    format!("{base}{path}"),
                ),
        )
        .await;
        t.openai.script([search("rust"), answer("Found it.")]);
        chat.say("search rust");
        chat.wait_last("Found it.").await;
        let result = t.openai.last_message_of(1);
        assert!(
            result.starts_with(&format!("1. {answer_text} — ")),
            "{result}"
        );
        assert!(
            searx.queries().contains(&seen.to_string()),
            "{:?}",
            searx.queries()
        );
        assert!(
            !format!("{:?}", t.app.settings).contains(secret),
            "the key is shown"
        );
        common::ledger::settled(&t.app.quota, &chat.user(), 3).await;
        common::ledger::assert_books(&t.app.quota, &chat.user()).await;
    }
}

/// A balance that pays for the first round and the call but not for asking the model
/// again with the result: the user is told, what ran is charged, nothing is kept as an
/// exchange, and /retry can ask the question again.
async fn a_balance_that_runs_out_between_rounds_stops_the_answer_cleanly<P: PrivateChat>() {
    let searx = FakeSearxng::start().await;
    let (chat, t, _stop) = P::start(
        with_search(&searx)
            .with("GPTBOT__QUOTA__DEFAULT_TOKENS", "300")
            .with("GPTBOT__TOOLS__PRICE_PER_CALL", "150"),
    )
    .await;
    t.openai.script([search("rust"), answer("never asked")]);
    chat.say("search rust");
    chat.wait_any("the quota notice", &|t| t.starts_with("Quota exhausted"))
        .await;
    assert_eq!(
        t.openai.request_count(),
        1,
        "the model was asked again unpaid"
    );
    let balance = common::ledger::settled(&t.app.quota, &chat.user(), 2).await;
    assert_eq!(balance.used, 42 + 150);
    let session = t.app.sessions.load(&chat.session()).await.unwrap();
    assert!(session.turns.is_empty());
    assert_eq!(session.unanswered.as_deref(), Some("search rust"));
    common::ledger::assert_books(&t.app.quota, &chat.user()).await;
}

/// /tools says what the model may call and what a call costs.
async fn tools_lists_what_is_on_offer_with_prices<P: PrivateChat>() {
    let searx = FakeSearxng::start().await;
    let (chat, _t, _stop) = P::start(with_search(&searx)).await;
    chat.command("tools", &[]);
    chat.wait_any("the list of tools", &|t| {
        t.contains("web_search — Search the web.")
            && t.contains("(100)")
            && t.contains("Models that use them: gpt-4o-mini")
    })
    .await;
}

on_both!(
    a_question_that_needs_a_search_is_answered_with_it_and_the_call_is_charged,
    a_call_the_balance_does_not_cover_is_refused_and_the_answer_comes_without_it,
    a_failing_tool_gives_the_model_an_error_and_is_refunded,
    tools_lists_what_is_on_offer_with_prices,
    fetch_url_reads_pages_but_never_a_private_address,
    tools_follow_the_access_rules,
    web_search_works_with_a_brave_or_a_tavily_key,
    a_balance_that_runs_out_between_rounds_stops_the_answer_cleanly,
);
