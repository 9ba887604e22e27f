//! The real teloxide bot against the fake Bot API (and the fake OpenAI server, real
//! Redis and SQLite): polling and webhook mode, private chats and groups, streaming
//! edits, flood control, long answers, formatting fallback and ordering.

mod common;

use std::time::Duration;

use common::telegram::*;
use common::*;
use gptbot::app::AppError;
use gptbot::core::event::{Platform, UserId};
use gptbot::platform::telegram::{TelegramError, TelegramHandle};
use serde_json::{Value, json};

struct Bot {
    t: TestApp,
    tg: FakeTelegram,
    handle: TelegramHandle,
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
        .telegram
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
async fn a_private_conversation_streams_with_typing_and_keeps_history() {
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

    b.tg.push_message(private_chat(42), user_json(42, "Ann"), "hello bot", None);
    wait_answer(&b.tg, 42, "Echo: hello bot").await;
    let typing = b.tg.calls_of("sendChatAction");
    assert!(
        typing
            .iter()
            .any(|c| c.body["chat_id"] == 42 && c.body["action"] == "typing")
    );

    b.tg.push_message(private_chat(42), user_json(42, "Ann"), "and *more*", None);
    wait_answer(&b.tg, 42, "Echo: and <i>more</i>").await;
    let requests = b.t.openai.requests();
    assert_eq!(requests.len(), 2);
    let messages = requests[1]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[1]["content"], "hello bot");
    assert_eq!(messages[2]["content"], "Echo: hello bot");

    // Quota and history are keyed by the Telegram user. The final text is delivered
    // while the books are written, so the second settle may land just after it.
    let user = UserId::new(Platform::Telegram, "42");
    let balance = common::ledger::settled(&b.t.app.quota, &user, 2).await;
    assert_eq!(balance.requests, 2);
    assert!(balance.used > 0);

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
async fn a_6000_character_answer_is_split_with_code_blocks_balanced() {
    let b = spawn_bot(fast()).await;
    let mut answer = String::from("Here is a long walk-through.\n\n");
    for i in 0..35 {
        answer.push_str(&format!(
            "Paragraph {i}: {}\n\n",
            "lorem ipsum dolor sit amet ".repeat(4)
        ));
    }
    answer.push_str("```python\n");
    for i in 0..60 {
        answer.push_str(&format!("print('line {i} of the program < 10 & done')\n"));
    }
    answer.push_str("```\n\nThat is **all**.");
    assert!(answer.chars().count() > 6000);
    let pieces: Vec<String> = answer
        .as_bytes()
        .chunks(250)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    b.t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(5),
        usage: Some((30, 1800)),
    }]);
    b.tg.push_message(
        private_chat(9),
        user_json(9, "Di"),
        "explain at length",
        None,
    );
    b.tg.wait_until(20, "the end of the long answer", |calls| {
        calls.iter().any(|c| {
            is_final_html(c)
                && c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("That is <b>all</b>."))
        })
    })
    .await;

    let texts = b.tg.texts_in(9);
    assert!(texts.len() >= 2, "{} messages", texts.len());
    let mut visible = String::new();
    for (i, html) in texts.iter().enumerate() {
        let shown =
            check_html(html).unwrap_or_else(|e| panic!("message {i} is not valid HTML: {e}"));
        assert!(
            shown.encode_utf16().count() <= 4096,
            "message {i} is too long"
        );
        assert_eq!(
            html.matches("<pre").count(),
            html.matches("</pre>").count(),
            "message {i}"
        );
        visible.push_str(&shown);
    }
    for i in [0, 34] {
        assert!(visible.contains(&format!("Paragraph {i}:")));
    }
    for i in [0, 30, 59] {
        assert!(
            visible.contains(&format!("print('line {i} of the program < 10 & done')")),
            "line {i} lost"
        );
    }
    // Every message but the first was sent as a new message after the previous filled up.
    assert_eq!(b.tg.calls_of("sendMessage").len(), texts.len());
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
async fn a_second_message_gets_a_notice_and_cancel_stops_the_answer() {
    let b = spawn_bot(fast()).await;
    let pieces: Vec<String> = (0..40).map(|i| format!("part{i} ")).collect();
    b.t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(150),
        usage: Some((10, 40)),
    }]);
    b.tg.push_message(
        private_chat(21),
        user_json(21, "Gus"),
        "tell me a long story",
        None,
    );
    b.tg.wait_until(10, "the first part", |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"] == 21 && c.body["text"].as_str().is_some_and(|t| t.contains("part2"))
        })
    })
    .await;
    b.tg.push_message(
        private_chat(21),
        user_json(21, "Gus"),
        "and another thing",
        None,
    );
    wait_answer(
        &b.tg,
        21,
        "Still answering your previous message — send /cancel to stop it.",
    )
    .await;
    b.tg.push_message(private_chat(21), user_json(21, "Gus"), "/cancel", None);
    wait_answer(&b.tg, 21, "Stopped.").await;
    b.tg.wait_until(10, "the stopped answer", |calls| {
        calls.iter().any(|c| {
            c.body["text"]
                .as_str()
                .is_some_and(|t| t.ends_with("(stopped)"))
                && c.body["parse_mode"] == "HTML"
        })
    })
    .await;
    assert_eq!(
        b.t.openai.request_count(),
        1,
        "the second message reached the model"
    );

    // Only what was used is charged; the partial answer is in the history.
    let user = UserId::new(Platform::Telegram, "21");
    let key = gptbot::core::event::SessionKey {
        platform: Platform::Telegram,
        chat: "21".into(),
        user: "21".into(),
    };
    let session = b.t.app.sessions.load(&key).await.unwrap();
    assert_eq!(session.turns.len(), 2);
    let partial = &session.turns[1].content;
    assert!(partial.starts_with("part0 part1 part2"));
    assert!(!partial.contains("part39"));
    // Charged: the prompt and the partial answer, as counted locally (no usage came).
    let counter = gptbot::llm::tokens::TokenCounter::for_model("gpt-4o-mini");
    let system = &b.t.app.settings.bot.system_prompt;
    let fitting = gptbot::chat::context::Fitting {
        system,
        system_tokens: counter.count(system).await,
        history: &[],
        user: "tell me a long story",
        user_tokens: counter.count("tell me a long story").await,
        overhead: counter.overhead(),
        max_tokens: 100,
    };
    let prompt = gptbot::chat::context::build_prompt(&fitting, 16384).unwrap();
    let balance = b.t.app.quota.balance(&user).await.unwrap();
    assert_eq!(balance.reserved, 0);
    assert_eq!(
        balance.used,
        i64::from(prompt.tokens + counter.count(partial).await)
    );

    // Different chats are answered concurrently.
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
async fn streaming_edits_never_exceed_the_configured_rate() {
    let b = spawn_bot(Options::default().with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "1500ms")).await;
    let pieces: Vec<String> = (0..100).map(|i| format!("t{i} ")).collect();
    b.t.openai.script([Behavior::Stream {
        pieces: pieces.clone(),
        delay: Duration::from_millis(30),
        usage: Some((10, 100)),
    }]);
    b.tg.push_message(private_chat(51), user_json(51, "Jo"), "stream", None);
    wait_answer(&b.tg, 51, pieces.concat().trim_end()).await;
    let writes = b.tg.writes_to(51);
    assert!(writes.len() >= 3, "{} writes", writes.len());
    // Drafts keep the interval (the final text does not wait for it).
    let drafts: Vec<_> = writes.iter().filter(|c| !is_final_html(c)).collect();
    for pair in drafts.windows(2) {
        let gap = pair[1].at - pair[0].at;
        // Measured at the fake, so allow for a little network jitter.
        assert!(
            gap >= Duration::from_millis(1480),
            "two drafts {gap:?} apart"
        );
    }
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
async fn admins_get_an_admin_menu_and_their_commands_work() {
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

    b.tg.push_message(
        private_chat(42),
        user_json(42, "Ann"),
        "/grant 43 100",
        None,
    );
    wait_answer(
        &b.tg,
        42,
        "Granted 100 tokens to telegram:43: 20100 remaining of 20100 granted.",
    )
    .await;
    b.tg.push_message(
        private_chat(43),
        user_json(43, "Bo"),
        "/grant 43 1000000",
        None,
    );
    wait_answer(
        &b.tg,
        43,
        "Not allowed: that command is for the bot's admins.",
    )
    .await;
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
    let addr_b = running_b.telegram.as_ref().unwrap().webhook_addr.unwrap();
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
    let status = reqwest::Client::new()
        .post(format!("http://{addr_b}/tg-hook"))
        .header("X-Telegram-Bot-Api-Secret-Token", "s3cret-Token_1")
        .json(&update)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    wait_answer(&tg, 71, "Echo: still there?").await;
}
