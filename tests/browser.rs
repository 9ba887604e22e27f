//! One real browser: headless Chromium over WebDriver against the web front (booted as
//! `gptbot run` boots it, with the fake model and a real redis-server). Log in, send a
//! message, watch the answer stream in, reload and find the history. The page's script
//! runs under the real Content-Security-Policy, so an inline script would fail here.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs them when it
//! runs as root). Without them this test fails and says so; set GPTBOT_SKIP_BROWSER=1 to
//! skip it knowingly.

mod common;

use std::time::Duration;

use common::web::*;
use common::webdriver::{Browser, locate};
use common::*;

#[tokio::test]
async fn log_in_send_see_the_answer_stream_in_and_find_it_after_a_reload() {
    let (browser, driver) = match locate() {
        Ok(found) => found,
        Err(why) if std::env::var("GPTBOT_SKIP_BROWSER").is_ok() => {
            eprintln!("SKIPPED (GPTBOT_SKIP_BROWSER is set): {why}");
            return;
        }
        Err(why) => panic!("{why}"),
    };
    let w = spawn_web(Options::default()).await;
    w.add_user("ann").await;
    // Ten pieces, 150 ms apart: the page must show the answer growing.
    let pieces: Vec<String> = (1..=10).map(|i| format!("part{i} ")).collect();
    w.t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(150),
        usage: Some((12, 10)),
    }]);

    let b = Browser::start(&browser, &driver).await;
    b.goto(&w.url("/")).await;
    assert!(b.url().await.ends_with("/login"), "sent to the login page");
    b.type_into("#username", "ann").await;
    b.type_into("#password", PASSWORD).await;
    b.click("input[type=submit]").await;
    for _ in 0..100 {
        if b.url().await == w.url("/") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(b.url().await, w.url("/"));

    b.type_into("textarea[name=text]", "hello from the browser")
        .await;
    b.click("#send button[type=submit]").await;
    // Watch the answer bubble while it streams.
    let full = pieces.concat().trim().to_string();
    let mut seen = Vec::new();
    for _ in 0..300 {
        let text = b
            .eval("const a = document.querySelectorAll('.msg.assistant'); return a.length ? a[a.length - 1].textContent : '';")
            .await
            .as_str()
            .unwrap_or("")
            .trim()
            .to_string();
        if seen.last() != Some(&text) {
            seen.push(text.clone());
        }
        if text == full {
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(seen.last(), Some(&full), "the answer arrived: {seen:?}");
    assert!(
        seen.iter()
            .any(|t| !t.is_empty() && t.len() < full.len() && full.starts_with(t.as_str())),
        "the answer streamed in parts: {seen:?}"
    );
    let user_bubble = b
        .eval("return document.querySelector('.msg.user').textContent;")
        .await;
    assert_eq!(user_bubble, "hello from the browser");
    // The balance in the header follows the charge.
    let user = web_user("ann");
    let balance = common::ledger::settled(&w.t.app.quota, &user, 1).await;
    let expected = format!("{} tokens left", balance.remaining);
    let mut shown = String::new();
    for _ in 0..50 {
        shown = b
            .eval("return document.getElementById('balance').textContent;")
            .await
            .as_str()
            .unwrap()
            .to_string();
        if shown == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, expected);

    // A reload shows the conversation from the session store.
    b.refresh().await;
    let log = b
        .eval("return Array.from(document.querySelectorAll('#log .msg')).map(m => m.className + ': ' + m.textContent.trim());")
        .await;
    assert_eq!(
        log,
        serde_json::json!([
            "msg user: hello from the browser",
            format!("msg assistant: {full}")
        ])
    );
    common::ledger::assert_books(&w.t.app.quota, &user).await;
}
