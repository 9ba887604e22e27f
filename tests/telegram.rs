//! The real teloxide bot against the fake Bot API (and the fake OpenAI server, real
//! Redis and SQLite): polling and webhook mode, private chats and groups, streaming
//! edits, flood control, long answers, formatting fallback and ordering.

mod common;

use std::time::Duration;

use common::telegram::*;
use common::*;
use gptbot::app::{AppError, Serving};
use gptbot::core::event::{Platform, UserId};
use gptbot::platform::telegram::TelegramError;
use serde_json::{Value, json};

struct Bot {
    t: TestApp,
    tg: FakeTelegram,
    handle: Serving,
    _stop: tokio_util::sync::DropGuard,
}

async fn spawn_bot(options: Options) -> Bot {
    let tg = FakeTelegram::start().await;
    tg.set_webhook_state("https://old.example.test/hook");
    let t = spawn_app_with(options.telegram(&tg)).await;
    let (stop, rx) = stopper();
    // Booted as `gptbot run` boots it.
    let handle = t
        .app
        .start(rx)
        .await
        .expect("the bot starts against the fake")
        .platform(Platform::Telegram)
        .cloned()
        .expect("Telegram is configured");
    Bot {
        t,
        tg,
        handle,
        _stop: stop,
    }
}

fn fast() -> Options {
    Options::default().with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "100ms")
}

fn is_final_html(c: &Call) -> bool {
    c.body["parse_mode"] == "HTML"
}

/// Waits until the last message the bot has in `chat` reads `text` (final, as HTML).
async fn wait_answer(tg: &FakeTelegram, chat: i64, text: &str) {
    let text = text.to_string();
    tg.wait_until(15, &format!("answer {text:?} in chat {chat}"), |calls| {
        calls.iter().any(|c| {
            (c.method == "sendmessage" || c.method == "editmessagetext")
                && c.body["chat_id"].as_i64() == Some(chat)
                && is_final_html(c)
                && c.body["text"].as_str() == Some(text.as_str())
        })
    })
    .await;
}

#[tokio::test]
async fn polling_registers_the_menu_and_answers_render_as_html() {
    let b = spawn_bot(fast()).await;
    assert_eq!(b.handle.username, BOT_USERNAME);
    let commands = b.tg.calls_of("setMyCommands");
    assert_eq!(commands.len(), 1);
    let names: Vec<&str> = commands[0].body["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    for name in ["start", "help", "reset", "quota", "system"] {
        assert!(names.contains(&name), "{name} not registered: {names:?}");
    }
    assert!(
        !b.tg.calls_of("deleteWebhook").is_empty(),
        "polling must remove any webhook"
    );

    // Markdown in the answer arrives as Telegram's HTML.
    b.tg.push_message(private_chat(42), user_json(42, "Ann"), "and *more*", None);
    wait_answer(&b.tg, 42, "Echo: and <i>more</i>").await;

    // Commands work through Telegram too.
    b.tg.push_message(private_chat(42), user_json(42, "Ann"), "/quota", None);
    b.tg.wait_until(10, "quota answer", |calls| {
        calls.iter().any(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("remaining"))
        })
    })
    .await;
}

#[tokio::test]
async fn groups_are_answered_only_when_the_bot_is_addressed() {
    let b = spawn_bot(fast()).await;
    let chat = -100_123;
    let ann = user_json(1, "Ann");
    let bob = user_json(2, "Bob");
    b.tg.push_message(
        group_chat(chat),
        ann.clone(),
        "just chatting among us",
        None,
    );
    b.tg.push_message(group_chat(chat), ann.clone(), "/reset@someotherbot", None);
    let mut other_bot = user_json(3, "Helper");
    other_bot["is_bot"] = json!(true);
    b.tg.push_message(
        group_chat(chat),
        other_bot,
        &format!("@{BOT_USERNAME} ping"),
        None,
    );
    let asked = b.tg.push_message(
        group_chat(chat),
        ann.clone(),
        &format!("@{BOT_USERNAME} what is rust"),
        None,
    );
    wait_answer(&b.tg, chat, "Echo: what is rust").await;
    let answer_id =
        b.tg.calls_of("sendMessage").last().unwrap().body["reply_parameters"]["message_id"]
            .as_i64()
            .unwrap();
    assert_eq!(answer_id, asked, "the answer must reply to the question");

    // A reply to one of the bot's messages, and a command addressed to it.
    let bot_message = b.tg.calls_of("sendMessage").len() as i64; // any id works for the fake
    b.tg.push_message(
        group_chat(chat),
        bob.clone(),
        "tell me more",
        Some(bot_message),
    );
    b.tg.wait_until(15, "the reply answered", |calls| {
        calls.iter().any(|c| {
            is_final_html(c)
                && c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("tell me more"))
        })
    })
    .await;
    // It carries the message it replies to as context.
    let asked_with_context = b.t.openai.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .clone();
    assert_eq!(
        asked_with_context,
        "(Replying to this message from you (the assistant):)\n> an earlier answer\n\ntell me more"
    );
    b.tg.push_message(
        group_chat(chat),
        bob.clone(),
        &format!("/ask@{BOT_USERNAME} and why"),
        None,
    );
    wait_answer(&b.tg, chat, "Echo: and why").await;

    // Mention offsets are UTF-16 based; text before the mention must survive intact.
    b.tg.push_message(
        group_chat(chat),
        ann.clone(),
        &format!("🦀 @{BOT_USERNAME} ржавчина?"),
        None,
    );
    wait_answer(&b.tg, chat, "Echo: 🦀 ржавчина?").await;

    let requests = b.t.openai.requests();
    assert_eq!(requests.len(), 4, "unaddressed messages reached the model");
    // Bob's history in this group is his own: Ann's question is not in it.
    let bobs_last = requests[2]["messages"].as_array().unwrap();
    assert_eq!(bobs_last.last().unwrap()["content"], "and why");
    assert!(bobs_last.iter().all(|m| m["content"] != "what is rust"));
    assert_eq!(bobs_last.len(), 4, "{bobs_last:?}");
}

#[tokio::test]
async fn formatting_telegram_rejects_falls_back_to_plain_text() {
    let b = spawn_bot(fast()).await;
    b.t.openai
        .script([Behavior::text(&["**Bold** claim"], (10, 3))]);
    b.tg.reject_html_next(1);
    b.tg.push_message(private_chat(5), user_json(5, "Ed"), "format this", None);
    // The final text as HTML (rejected), then the same text as plain text. (Typing
    // actions are not counted: whether one goes out before a fast answer is a race.)
    b.tg.wait_until(10, "the plain-text fallback", |calls| {
        let writes: Vec<&Call> = calls
            .iter()
            .filter(|c| c.body["chat_id"] == 5)
            .filter(|c| c.method == "sendmessage" || c.method == "editmessagetext")
            .collect();
        writes.iter().any(|c| is_final_html(c))
            && writes.last().is_some_and(|c| {
                c.body["text"] == "**Bold** claim"
                    && c.body.get("parse_mode").is_none()
                    && !is_final_html(c)
            })
            && writes.len() >= 2
    })
    .await;
    assert_eq!(b.tg.texts_in(5).last().unwrap(), "**Bold** claim");
    let writes = b.tg.writes_to(5);
    let html_tries = writes.iter().filter(|c| is_final_html(c)).count();
    assert_eq!(html_tries, 1, "the HTML attempt was made once and rejected");

    // Without the rejection the same answer is rendered.
    b.t.openai
        .script([Behavior::text(&["**Bold** claim"], (10, 3))]);
    b.tg.push_message(private_chat(5), user_json(5, "Ed"), "again", None);
    wait_answer(&b.tg, 5, "<b>Bold</b> claim").await;
}

#[tokio::test]
async fn photos_and_edits_get_a_polite_answer_and_cost_nothing() {
    let b = spawn_bot(fast()).await;
    b.tg.push_raw_message(json!({
        "date": 1_764_000_000, "chat": private_chat(11), "from": user_json(11, "Flo"),
        "photo": [{"file_id": "AgAD", "file_unique_id": "AQAD", "width": 90, "height": 90, "file_size": 1000}],
        "caption": "what is this?"
    }));
    // The default model does not see images (issue 13: a polite refusal, no charge).
    b.tg.wait_until(10, "the polite answer", |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"] == 11
                && c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("cannot see images"))
        })
    })
    .await;
    b.tg.push_raw_message(json!({
        "date": 1_764_000_000, "chat": private_chat(11), "from": user_json(11, "Flo"),
        "video": {"file_id": "BAAD", "file_unique_id": "BQAD", "width": 90, "height": 90, "duration": 3}
    }));
    b.tg.wait_until(10, "the polite answer", |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"] == 11
                && c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("only answer text"))
        })
    })
    .await;

    let sent =
        b.tg.push_message(private_chat(11), user_json(11, "Flo"), "/start", None);
    b.tg.push_edit(private_chat(11), user_json(11, "Flo"), sent, "/start again");
    b.tg.wait_until(10, "the answer to the edit", |calls| {
        calls.iter().any(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.contains("an edited message"))
        })
    })
    .await;
    assert_eq!(b.t.openai.request_count(), 0);
    let balance =
        b.t.app
            .quota
            .balance(&UserId::new(Platform::Telegram, "11"))
            .await
            .unwrap();
    assert_eq!((balance.used, balance.reserved), (0, 0));
}

#[tokio::test]
async fn different_chats_are_answered_concurrently() {
    let b = spawn_bot(fast()).await;
    b.t.openai.set_echo_delay(Duration::from_millis(200));
    b.tg.push_message(
        private_chat(31),
        user_json(31, "Hal"),
        "alpha beta gamma",
        None,
    );
    b.tg.push_message(
        private_chat(32),
        user_json(32, "Ida"),
        "one two three",
        None,
    );
    wait_answer(&b.tg, 31, "Echo: alpha beta gamma").await;
    wait_answer(&b.tg, 32, "Echo: one two three").await;
    let first_send = |chat: i64| b.tg.writes_to(chat)[0].at;
    let last_write = |chat: i64| b.tg.writes_to(chat).last().unwrap().at;
    assert!(
        first_send(32) < last_write(31) && first_send(31) < last_write(32),
        "chats were serialized"
    );
}

#[tokio::test]
async fn webhook_mode_accepts_signed_updates_and_refuses_unsigned_ones() {
    let b = spawn_bot(
        fast()
            .with("GPTBOT__TELEGRAM__MODE", "webhook")
            .with("GPTBOT__TELEGRAM__LISTEN", "127.0.0.1:0")
            .with(
                "GPTBOT__TELEGRAM__WEBHOOK_URL",
                "https://bot.example.test/tg-hook",
            )
            .with("GPTBOT__TELEGRAM__WEBHOOK_SECRET", "s3cret-Token_1"),
    )
    .await;
    let set = b.tg.calls_of("setWebhook");
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].body["url"], "https://bot.example.test/tg-hook");
    assert_eq!(set[0].body["secret_token"], "s3cret-Token_1");
    assert!(
        b.tg.calls_of("getUpdates").is_empty(),
        "webhook mode must not poll"
    );

    let addr = b.handle.webhook_addr.unwrap();
    let url = format!("http://{addr}/tg-hook");
    let http = reqwest::Client::new();
    let post = |update: Value, secret: Option<&'static str>| {
        let mut request = http.post(&url).json(&update);
        if let Some(secret) = secret {
            request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
        }
        request.send()
    };
    let unsigned =
        b.tg.webhook_update(private_chat(61), user_json(61, "Kim"), "unsigned hello");
    assert_eq!(post(unsigned, None).await.unwrap().status(), 401);
    let forged =
        b.tg.webhook_update(private_chat(61), user_json(61, "Kim"), "forged hello");
    assert_eq!(post(forged, Some("wrong")).await.unwrap().status(), 401);
    let signed =
        b.tg.webhook_update(private_chat(61), user_json(61, "Kim"), "signed hello");
    assert_eq!(
        post(signed, Some("s3cret-Token_1")).await.unwrap().status(),
        200
    );
    wait_answer(&b.tg, 61, "Echo: signed hello").await;
    assert_eq!(
        b.t.openai.request_count(),
        1,
        "an unsigned update was processed"
    );

    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_wrong_token_fails_at_start_with_a_clear_error() {
    let tg = FakeTelegram::start().await;
    let t = spawn_app_with(
        Options::default()
            .with("TELEGRAM_BOT_TOKEN", "999:not-the-right-one")
            .with("GPTBOT__TELEGRAM__API_URL", tg.api_url()),
    )
    .await;
    let (_stop, rx) = stopper();
    let err = t
        .app
        .start(rx)
        .await
        .err()
        .expect("a wrong token must not start");
    assert!(
        matches!(err, AppError::Telegram(TelegramError::BadToken(_))),
        "{err}"
    );
    assert_eq!(err.exit_code(), 2);
    assert!(
        !err.to_string().contains("not-the-right-one"),
        "the token leaked: {err}"
    );
}

#[tokio::test]
async fn admins_get_an_admin_menu() {
    let b = spawn_bot(fast().with("GPTBOT__ACCESS__ADMINS", "telegram:42")).await;
    let menus = b.tg.calls_of("setMyCommands");
    assert_eq!(menus.len(), 2, "a public menu and one for the admin");
    assert!(menus[0].body.get("scope").is_none());
    assert!(!menus[0].body["commands"].to_string().contains("\"grant\""));
    assert_eq!(
        menus[1].body["scope"],
        json!({"type": "chat", "chat_id": 42})
    );
    assert!(menus[1].body["commands"].to_string().contains("\"grant\""));
}

#[tokio::test]
async fn a_second_process_polling_the_same_token_stops_with_a_clear_error() {
    let b = spawn_bot(fast()).await;
    b.tg.wait_until(10, "the first poll", |calls| {
        calls.iter().any(|c| c.method == "getupdates")
    })
    .await;
    // A second bot on the same token and Bot API, as a second replica would be.
    let (_stop, rx) = stopper();
    let err =
        b.t.app
            .start(rx)
            .await
            .err()
            .expect("the newcomer must not start polling");
    assert!(
        matches!(err, AppError::Telegram(TelegramError::Conflict)),
        "{err}"
    );
    assert!(
        err.to_string().contains("telegram.mode = \"webhook\""),
        "{err}"
    );

    // The first bot keeps serving.
    b.tg.push_message(private_chat(88), user_json(88, "Max"), "still there?", None);
    wait_answer(&b.tg, 88, "Echo: still there?").await;
}

/// A rolling deploy: one replica stops, the others keep receiving updates. teloxide's
/// webhook listener deletes the webhook when it stops; gptbot never does, and a replica
/// that finds its URL already registered does not register it again.
#[tokio::test]
async fn a_replica_stopping_keeps_the_webhook_registered_for_the_others() {
    let tg = FakeTelegram::start().await;
    let options = || {
        Options::default()
            .with("TELEGRAM_BOT_TOKEN", TOKEN)
            .with("GPTBOT__TELEGRAM__API_URL", tg.api_url())
            .with("GPTBOT__TELEGRAM__MODE", "webhook")
            .with("GPTBOT__TELEGRAM__LISTEN", "127.0.0.1:0")
            .with(
                "GPTBOT__TELEGRAM__WEBHOOK_URL",
                "https://bot.example.test/tg-hook",
            )
            .with("GPTBOT__TELEGRAM__WEBHOOK_SECRET", "s3cret-Token_1")
    };
    let a = spawn_app_with(options()).await;
    let b = spawn_app_with(options()).await;
    let (stop_a, rx_a) = stopper();
    let (_stop_b, rx_b) = stopper();
    let running_a = a.app.start(rx_a).await.unwrap();
    let running_b = b.app.start(rx_b).await.unwrap();
    let addr_b = running_b
        .platform(Platform::Telegram)
        .unwrap()
        .webhook_addr
        .unwrap();
    assert_eq!(
        tg.calls_of("setWebhook").len(),
        1,
        "the second replica found the webhook registered"
    );

    // Replica A is shut down (SIGTERM in a rolling deploy).
    drop(stop_a);
    tokio::time::timeout(Duration::from_secs(20), running_a.wait())
        .await
        .expect("replica A stops")
        .unwrap();
    assert!(
        tg.calls_of("deleteWebhook").is_empty(),
        "a stopping replica unregistered the webhook"
    );

    // Telegram still posts to the webhook, and replica B answers.
    let update = tg.webhook_update(private_chat(71), user_json(71, "Lu"), "still there?");
    let status = common::telegram::post_update(
        &reqwest::Client::new(),
        &format!("http://{addr_b}/tg-hook"),
        "s3cret-Token_1",
        &update,
    )
    .await;
    assert_eq!(status, 200);
    wait_answer(&tg, 71, "Echo: still there?").await;
}
