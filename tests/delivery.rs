//! Delivery that keeps pace with Telegram: the real bot against the fake Bot API with
//! Telegram's flood rules switched on. Each test pins one defect of the old delivery
//! (teloxide's `Throttle` plus a fixed edit interval).

mod common;

use std::time::Duration;

use common::telegram::*;
use common::*;
use tokio::time::Instant;

struct Bot {
    t: TestApp,
    tg: FakeTelegram,
    _stop: tokio_util::sync::DropGuard,
}

/// The bot, booted as `gptbot run` boots it, against a fake that enforces the limits.
async fn spawn(options: Options) -> Bot {
    let tg = FakeTelegram::start().await;
    tg.enforce_flood_limits();
    let t = spawn_app_with(
        options
            .with("TELEGRAM_BOT_TOKEN", TOKEN)
            .with("GPTBOT__TELEGRAM__API_URL", tg.api_url())
            .with("GPTBOT__LIMITS__PER_USER_PER_MINUTE", 0),
    )
    .await;
    let (stop, rx) = stopper();
    t.app.start(rx).await.expect("the bot starts");
    Bot { t, tg, _stop: stop }
}

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

#[tokio::test]
async fn the_final_text_is_not_held_back_by_the_edit_interval() {
    let b = spawn(Options::default().with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "10s")).await;
    let pieces = words(20);
    b.t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(50),
        usage: Some((20, 20)),
    }]);
    let asked = Instant::now();
    b.tg.push_message(private_chat(1), user_json(1, "Ann"), "go", None);
    let done = b.tg.wait_final(1, pieces.concat().trim_end()).await;
    // The model needs about 1 s; the old code held the final edit until 10 s after the
    // first message.
    assert!(
        done - asked < Duration::from_secs(3),
        "the final text came {:?} after the question",
        done - asked
    );
    assert!(
        b.tg.flood_refusals().is_empty(),
        "{:?}",
        b.tg.flood_refusals()
    );
}

#[tokio::test]
async fn a_short_answer_is_one_message_without_edits() {
    let b = spawn(Options::default()).await;
    b.tg.push_message(private_chat(2), user_json(2, "Bo"), "hello there", None);
    b.tg.wait_final(2, "Echo: hello there").await;
    let writes = b.tg.delivered_to(2);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].method, "sendmessage");
}

#[tokio::test]
async fn twenty_one_quick_messages_in_a_private_chat_do_not_stall() {
    let b = spawn(Options::default()).await;
    let mut answered = Vec::new();
    for i in 0..21 {
        b.tg.push_message(private_chat(3), user_json(3, "Cy"), &format!("m{i}"), None);
        answered.push(b.tg.wait_final(3, &format!("Echo: m{i}")).await);
    }
    // One write a second with bursts of three: 21 answers take about 18 s. The old
    // Throttle capped private chats at 20 a minute: the 21st waited ~40 s.
    let longest = answered.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        longest < Duration::from_secs(3),
        "one answer waited {longest:?}"
    );
    assert!(
        b.tg.flood_refusals().is_empty(),
        "{:?}",
        b.tg.flood_refusals()
    );
    let texts = b.tg.texts_in(3);
    assert!(
        !texts.iter().any(|t| t.contains("Still answering")),
        "{texts:?}"
    );
}

#[tokio::test]
async fn a_429_for_one_chat_does_not_delay_another() {
    let b = spawn(Options::default()).await;
    b.tg.fail_next(
        "sendMessage",
        429,
        "Too Many Requests: retry after 5",
        Some(5),
    );
    let asked = Instant::now();
    b.tg.push_message(private_chat(4), user_json(4, "Di"), "first", None);
    b.tg.wait_until(10, "the refused send", |calls| {
        calls.iter().any(|c| c.method == "sendmessage")
    })
    .await;
    b.tg.push_message(private_chat(5), user_json(5, "Ed"), "second", None);
    let other = b.tg.wait_final(5, "Echo: second").await;
    assert!(
        other - asked < Duration::from_secs(3),
        "another chat waited {:?} for chat 4's flood pause",
        other - asked
    );
    let frozen = b.tg.wait_final(4, "Echo: first").await;
    let refused = b.tg.calls_of("sendMessage")[0].at;
    assert!(
        frozen - refused >= Duration::from_secs(5),
        "chat 4 was written to {:?} into its 5 s pause",
        frozen - refused
    );
}

#[tokio::test]
async fn streaming_writes_stay_within_telegrams_limits() {
    let b = spawn(Options::default().with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "300ms")).await;
    // Five users, three 2.4 s answers each, one after the other, in parallel.
    b.t.openai.set_echo_delay(Duration::from_millis(30));
    let users: Vec<i64> = (10..15).collect();
    let runs = users.iter().map(|&user| {
        let tg = b.tg.clone();
        async move {
            for round in 0..3 {
                let text = format!("{} round {round}", "tell me more ".repeat(20).trim_end());
                tg.push_message(private_chat(user), user_json(user, "U"), &text, None);
                tg.wait_final(user, &format!("Echo: {text}")).await;
            }
        }
    });
    futures::future::join_all(runs).await;
    assert!(
        b.tg.flood_refusals().is_empty(),
        "Telegram refused writes: {:?}",
        b.tg.flood_refusals()
    );
    for user in users {
        // A first message, a draft or two, the final text.
        let writes = b.tg.delivered_to(user).len();
        assert!(
            writes <= 3 * 4,
            "user {user}: {writes} writes for 3 answers"
        );
    }
}

#[tokio::test]
async fn draft_streaming_shows_a_draft_then_sends_the_answer_once() {
    let b = spawn(
        Options::default()
            .with("GPTBOT__TELEGRAM__DRAFT_STREAMING", "true")
            .with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "200ms"),
    )
    .await;
    let pieces = words(30);
    let answer = pieces.concat().trim_end().to_string();
    b.t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(50),
        usage: Some((20, 30)),
    }]);
    b.tg.push_message(private_chat(3), user_json(3, "Di"), "go", None);
    b.tg.wait_final(3, &answer).await;
    let drafts = b.tg.calls_of("sendMessageDraft");
    assert!(drafts.len() >= 2, "the answer grew as a draft: {drafts:#?}");
    let id = drafts[0].body["draft_id"].clone();
    assert!(id.as_u64().unwrap() > 0);
    let mut shown = String::new();
    for draft in &drafts {
        assert_eq!(draft.body["draft_id"], id, "one draft, animated");
        assert_eq!(draft.body["chat_id"], 3);
        let text = draft.body["text"].as_str().unwrap();
        assert!(
            text.starts_with(shown.as_str()),
            "drafts grow: {shown:?} → {text:?}"
        );
        shown = text.to_string();
    }
    // The chat itself gets one message: the complete answer, no edits.
    let writes = b.tg.delivered_to(3);
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].method, "sendmessage");

    // A group keeps edits: no drafts there.
    let before = b.tg.calls_of("sendMessageDraft").len();
    b.t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(50),
        usage: Some((20, 30)),
    }]);
    b.tg.push_message(
        group_chat(-100),
        user_json(4, "Ed"),
        "@gptbot_test_bot go",
        None,
    );
    b.tg.wait_final(-100, &answer).await;
    assert_eq!(b.tg.calls_of("sendMessageDraft").len(), before);
    assert!(
        b.tg.delivered_to(-100)
            .iter()
            .any(|c| c.method == "editmessagetext")
    );
    assert!(
        b.tg.flood_refusals().is_empty(),
        "{:?}",
        b.tg.flood_refusals()
    );
}

#[tokio::test]
async fn a_server_refusing_drafts_turns_them_off_and_answers_stream_with_edits() {
    let b = spawn(
        Options::default()
            .with("GPTBOT__TELEGRAM__DRAFT_STREAMING", "true")
            .with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "200ms"),
    )
    .await;
    b.tg.fail_next("sendMessageDraft", 404, "Not Found: method not found", None);
    let pieces = words(30);
    let answer = pieces.concat().trim_end().to_string();
    for _ in 0..2 {
        b.t.openai.script([Behavior::Stream {
            pieces: pieces.clone(),
            delay: Duration::from_millis(50),
            usage: Some((20, 30)),
        }]);
    }
    b.tg.push_message(private_chat(5), user_json(5, "Fi"), "go", None);
    b.tg.wait_final(5, &answer).await;
    let writes = b.tg.delivered_to(5);
    assert_eq!(writes[0].method, "sendmessage", "{writes:#?}");
    assert!(
        writes.iter().any(|c| c.method == "editmessagetext"),
        "{writes:#?}"
    );
    b.tg.push_message(private_chat(5), user_json(5, "Fi"), "again", None);
    eventually(
        30,
        "the second answer",
        || b.tg.delivered_to(5).len() > writes.len() + 1,
        String::new,
    )
    .await;
    assert_eq!(
        b.tg.calls_of("sendMessageDraft").len(),
        1,
        "tried once, then off for good"
    );
}
