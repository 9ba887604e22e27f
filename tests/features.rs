//! Issue 13's features through the real Telegram bot against the fake Bot API, the fake
//! model server, real Redis and SQLite: /model (with its inline keyboard) and the price
//! it charges, /persona, reply context, and forum topics as conversations of their own.

mod common;

use common::telegram::*;
use common::*;
use gptbot::core::event::{Platform, UserId};
use serde_json::{Value, json};

struct Bot {
    t: TestApp,
    tg: FakeTelegram,
    _stop: tokio_util::sync::DropGuard,
}

const CHOICES: &str = r#"
[model]
name = "small"

[[model.available]]
name = "small"
label = "Small"
price = 1.0

[[model.available]]
name = "big"
label = "Big"
price = 10.0
vision = true

[personas.pirate]
label = "Pirate"
prompt = "You are a pirate. Answer like one."
"#;

async fn spawn_bot(options: Options) -> Bot {
    let tg = FakeTelegram::start().await;
    let t = spawn_app_with(
        options
            .telegram(&tg)
            .with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "100ms")
            .with("GPTBOT__TELEGRAM__FIRST_MESSAGE_DELAY", "0ms"),
    )
    .await;
    let (stop, rx) = stopper();
    t.app.start(rx).await.expect("the bot starts");
    Bot { t, tg, _stop: stop }
}

/// Waits for a message of the bot in `chat` whose text contains `needle`; returns it.
async fn wait_text(tg: &FakeTelegram, chat: i64, needle: &str) -> Call {
    let what = format!("a message containing {needle:?} in chat {chat}");
    tg.wait_until(15, &what, |calls| {
        calls.iter().any(|c| {
            c.body["chat_id"].as_i64() == Some(chat)
                && c.body["text"].as_str().is_some_and(|t| t.contains(needle))
        })
    })
    .await;
    tg.calls()
        .into_iter()
        .rev()
        .find(|c| {
            c.body["chat_id"].as_i64() == Some(chat)
                && c.body["text"].as_str().is_some_and(|t| t.contains(needle))
        })
        .unwrap()
}

fn user(id: i64) -> UserId {
    UserId::new(Platform::Telegram, id.to_string())
}

fn system_message(request: &Value) -> String {
    request["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn a_model_picked_with_its_button_answers_and_is_charged_at_its_price() {
    let b = spawn_bot(Options::default().file(CHOICES)).await;
    // The menu offers what is configured.
    let menu = b.tg.calls_of("setMyCommands");
    let names: Vec<&str> = menu[0].body["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["command"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"model") && names.contains(&"persona"),
        "{names:?}"
    );

    b.tg.push_message(private_chat(51), user_json(51, "Ann"), "hello", None);
    wait_text(&b.tg, 51, "Echo: hello").await;
    let first = common::ledger::settled(&b.t.app.quota, &user(51), 1).await;

    b.tg.push_message(private_chat(51), user_json(51, "Ann"), "/model", None);
    let offer = wait_text(&b.tg, 51, "Choose with /model").await;
    let text = offer.body["text"].as_str().unwrap();
    assert!(text.contains("Small (small) ×1 ← current"), "{text}");
    assert!(text.contains("Big (big) ×10, reads images"), "{text}");
    let keyboard = &offer.body["reply_markup"]["inline_keyboard"];
    assert_eq!(
        keyboard,
        &json!([[{"text": "Big", "callback_data": "/model big"}]]),
        "a button for each model not in use"
    );

    // Pressing the button is the command.
    b.tg.push_callback(private_chat(51), user_json(51, "Ann"), 9_999, "/model big");
    wait_text(&b.tg, 51, "Model set to Big").await;
    assert_eq!(
        b.tg.calls_of("answerCallbackQuery").len(),
        1,
        "the press is acknowledged"
    );

    b.tg.push_message(private_chat(51), user_json(51, "Ann"), "hello again", None);
    wait_text(&b.tg, 51, "Echo: hello again").await;
    let requests = b.t.openai.requests();
    assert_eq!(requests[0]["model"], "small");
    assert_eq!(requests.last().unwrap()["model"], "big");

    // Ten ledger tokens per model token: the second answer's charge is ten times its
    // usage, and its ledger entries name the model.
    let after = common::ledger::settled(&b.t.app.quota, &user(51), 2).await;
    let charged = after.used - first.used;
    assert_eq!(charged % 10, 0, "charged {charged}");
    assert!(
        charged >= 10 * first.used / 2,
        "charged {charged}, first {}",
        first.used
    );
    let entries = b.t.app.quota.history(&user(51), 100).await.unwrap();
    let settles: Vec<(&str, Option<&str>)> = entries
        .iter()
        .filter(|e| e.kind == "settle" || e.kind == "reserve")
        .map(|e| (e.kind.as_str(), e.note.as_deref()))
        .collect();
    assert_eq!(
        settles,
        [
            ("reserve", Some("small")),
            ("settle", Some("small")),
            ("reserve", Some("big")),
            ("settle", Some("big")),
        ]
    );
    assert!(
        entries
            .iter()
            .all(|e| e.kind != "grant" || e.note.is_none())
    );
    common::ledger::assert_books(&b.t.app.quota, &user(51)).await;

    // A name that is not offered is refused, and the choice stays.
    b.tg.push_message(private_chat(51), user_json(51, "Ann"), "/model huge", None);
    wait_text(&b.tg, 51, "There is no model called").await;
    b.tg.push_message(private_chat(51), user_json(51, "Ann"), "/model", None);
    let offer = wait_text(&b.tg, 51, "Big (big) ×10, reads images ← current").await;
    assert_eq!(
        offer.body["reply_markup"]["inline_keyboard"],
        json!([[{"text": "Small", "callback_data": "/model small"}]])
    );
}

#[tokio::test]
async fn without_a_list_model_says_which_model_answers_and_help_hides_personas() {
    let b = spawn_bot(Options::default().with("GPTBOT__MODEL__NAME", "gpt-4o-mini")).await;
    b.tg.push_message(private_chat(52), user_json(52, "Bo"), "/model", None);
    wait_text(&b.tg, 52, "This chat is answered by gpt-4o-mini.").await;
    b.tg.push_message(private_chat(52), user_json(52, "Bo"), "/help", None);
    let help = wait_text(&b.tg, 52, "/model").await;
    let help = help.body["text"].as_str().unwrap();
    assert!(!help.contains("/persona"), "{help}");
    let menu = b.tg.calls_of("setMyCommands");
    assert!(
        menu[0].body["commands"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["command"] != "persona")
    );
}

#[tokio::test]
async fn a_persona_changes_the_system_message_and_own_system_text_still_wins() {
    let b = spawn_bot(Options::default().file(CHOICES)).await;
    b.tg.push_message(private_chat(53), user_json(53, "Cy"), "/persona", None);
    let offer = wait_text(&b.tg, 53, "Pirate (pirate)").await;
    assert_eq!(
        offer.body["reply_markup"]["inline_keyboard"],
        json!([[{"text": "Pirate", "callback_data": "/persona pirate"}]])
    );
    b.tg.push_message(
        private_chat(53),
        user_json(53, "Cy"),
        "/persona pirate",
        None,
    );
    wait_text(&b.tg, 53, "Persona set to Pirate").await;
    b.tg.push_message(private_chat(53), user_json(53, "Cy"), "ahoy", None);
    wait_text(&b.tg, 53, "Echo: ahoy").await;
    assert_eq!(
        system_message(&b.t.openai.requests()[0]),
        "You are a pirate. Answer like one."
    );

    b.tg.push_message(
        private_chat(53),
        user_json(53, "Cy"),
        "/system Be brief.",
        None,
    );
    wait_text(&b.tg, 53, "System prompt set").await;
    b.tg.push_message(private_chat(53), user_json(53, "Cy"), "again", None);
    wait_text(&b.tg, 53, "Echo: again").await;
    assert_eq!(system_message(&b.t.openai.requests()[1]), "Be brief.");

    b.tg.push_message(private_chat(53), user_json(53, "Cy"), "/system reset", None);
    wait_text(&b.tg, 53, "System prompt reset").await;
    b.tg.push_message(private_chat(53), user_json(53, "Cy"), "/persona off", None);
    wait_text(&b.tg, 53, "Persona off").await;
    b.tg.push_message(private_chat(53), user_json(53, "Cy"), "plain", None);
    wait_text(&b.tg, 53, "Echo: plain").await;
    let default = gptbot::config::Settings::load(None, &b.t.env)
        .unwrap()
        .bot
        .system_prompt;
    assert_eq!(system_message(&b.t.openai.requests()[2]), default);
}

#[tokio::test]
async fn a_reply_puts_the_quoted_message_into_the_request() {
    let b = spawn_bot(Options::default()).await;
    let quoted = "The mitochondria is the powerhouse of the cell.";
    b.tg.push_raw_message(json!({
        "date": 1_764_000_000, "chat": group_chat(-100_500), "from": user_json(54, "Di"),
        "text": format!("@{BOT_USERNAME} what does this mean?"),
        "entities": [{"type": "mention", "offset": 0, "length": BOT_USERNAME.len() + 1}],
        "reply_to_message": {
            "message_id": 77, "date": 1_764_000_000, "chat": group_chat(-100_500),
            "from": user_json(55, "Eve"), "text": quoted
        }
    }));
    wait_text(&b.tg, -100_500, "Echo:").await;
    let request = &b.t.openai.requests()[0];
    let messages = request["messages"].as_array().unwrap();
    let last = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(last.contains(&format!("> {quoted}")), "{last}");
    assert!(last.contains("from Eve"), "{last}");
    assert!(last.ends_with("what does this mean?"), "{last}");

    // A long message is quoted only in part.
    let long = "word ".repeat(1_000);
    b.tg.push_raw_message(json!({
        "date": 1_764_000_000, "chat": private_chat(56), "from": user_json(56, "Fay"),
        "text": "summarise",
        "reply_to_message": {
            "message_id": 78, "date": 1_764_000_000, "chat": private_chat(56),
            "from": user_json(56, "Fay"), "text": long
        }
    }));
    wait_text(&b.tg, 56, "summarise").await;
    let request = b.t.openai.requests().last().unwrap().clone();
    let last = request["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.chars().count() < 2_200,
        "{} chars",
        last.chars().count()
    );
    assert!(last.contains('…'));
}

#[tokio::test]
async fn two_topics_of_a_forum_keep_separate_histories_and_replies_stay_in_their_topic() {
    let b = spawn_bot(Options::default()).await;
    let forum = -100_900;
    let say = |topic: i64, text: &str| {
        // In a topic, a message that replies to nothing still "replies" to the topic's
        // first message: that is not a reply to quote.
        b.tg.push_raw_message(json!({
            "date": 1_764_000_000, "chat": forum_chat(forum), "from": user_json(57, "Gus"),
            "text": format!("/ask {text}"),
            "entities": [{"type": "bot_command", "offset": 0, "length": 4}],
            "message_thread_id": topic, "is_topic_message": true,
            "reply_to_message": {
                "message_id": topic, "date": 1_764_000_000, "chat": forum_chat(forum),
                "from": user_json(57, "Gus"),
                "forum_topic_created": {"name": format!("topic {topic}"), "icon_color": 7322096}
            }
        }));
    };
    say(10, "apples");
    wait_text(&b.tg, forum, "Echo: apples").await;
    say(20, "pears");
    wait_text(&b.tg, forum, "Echo: pears").await;
    say(10, "more apples");
    wait_text(&b.tg, forum, "Echo: more apples").await;

    let requests = b.t.openai.requests();
    let contents = |r: &Value| -> Vec<String> {
        r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .map(|m| m["content"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(contents(&requests[1]), ["pears"], "topic 20 starts fresh");
    assert_eq!(
        contents(&requests[2]),
        ["apples", "Echo: apples", "more apples"],
        "topic 10 continues its own history"
    );
    // Every reply (and typing) went to the topic its question came from.
    for call in b.tg.calls() {
        if matches!(call.method.as_str(), "sendmessage" | "sendchataction")
            && call.body["chat_id"].as_i64() == Some(forum)
        {
            assert!(
                call.body["message_thread_id"] == 10 || call.body["message_thread_id"] == 20,
                "{:?}",
                call.body
            );
        }
    }
    let topics: Vec<Value> =
        b.tg.calls_of("sendMessage")
            .iter()
            .filter(|c| c.body["chat_id"].as_i64() == Some(forum))
            .map(|c| c.body["message_thread_id"].clone())
            .collect();
    assert_eq!(
        topics,
        [json!(10), json!(20), json!(10)],
        "one answer per question, in its topic"
    );
}

/// A document message as Telegram sends it (the caption is the question).
fn document(
    chat: i64,
    user: i64,
    file_id: &str,
    name: &str,
    mime: &str,
    size: usize,
    caption: &str,
) -> Value {
    json!({
        "date": 1_764_000_000, "chat": private_chat(chat), "from": user_json(user, "Hal"),
        "document": {"file_id": file_id, "file_unique_id": format!("u-{file_id}"),
                     "file_name": name, "mime_type": mime, "file_size": size},
        "caption": caption
    })
}

fn last_user_content(t: &TestApp) -> String {
    let request = t.openai.requests().last().unwrap().clone();
    request["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_pdf_and_a_text_file_end_up_in_the_prompt_cut_at_the_limit() {
    let b = spawn_bot(Options::default().with("GPTBOT__FILES__MAX_CHARS", "300")).await;
    let pdf = std::fs::read("tests/fixtures/report.pdf").unwrap();
    b.tg.serve_file("pdf-1", &pdf);
    b.tg.push_raw_message(document(
        58,
        58,
        "pdf-1",
        "report.pdf",
        "application/pdf",
        pdf.len(),
        "How did revenue do?",
    ));
    wait_text(&b.tg, 58, "How did revenue do?").await;
    let asked = last_user_content(&b.t);
    assert!(asked.starts_with("File: report.pdf\n```\n"), "{asked}");
    assert!(
        asked.contains("Quarterly revenue grew by 12 percent in the PDF."),
        "{asked}"
    );
    assert!(asked.ends_with("How did revenue do?"), "{asked}");
    assert_eq!(b.tg.downloads(), ["documents/pdf-1.bin"]);

    let long: String = (0..200).map(|i| format!("line {i}\n")).collect();
    b.tg.serve_file("txt-1", long.as_bytes());
    b.tg.push_raw_message(document(
        58,
        58,
        "txt-1",
        "notes.txt",
        "text/plain",
        long.len(),
        "summarise",
    ));
    wait_text(&b.tg, 58, "summarise").await;
    let asked = last_user_content(&b.t);
    assert!(asked.contains("File: notes.txt"), "{asked}");
    assert!(
        asked.contains("line 0\n") && !asked.contains("line 199"),
        "{asked}"
    );
    assert!(
        asked.contains(&format!(
            "[… cut here: the file has {} characters, only the first 300 are included]",
            long.trim().chars().count()
        )),
        "{asked}"
    );
    // The file is part of the turn kept in the history.
    let turns = b.t.turns("58").await;
    assert!(turns.iter().any(|t| t.content.contains("File: notes.txt")));
    common::ledger::assert_books(&b.t.app.quota, &user(58)).await;
}

#[tokio::test]
async fn unsupported_and_oversized_files_get_a_sentence_and_cost_nothing() {
    let b = spawn_bot(Options::default().with("GPTBOT__FILES__MAX_BYTES", "1000")).await;
    b.tg.serve_file("xls-1", b"PK\x03\x04 spreadsheet");
    b.tg.push_raw_message(document(
        59,
        59,
        "xls-1",
        "sheet.xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        20,
        "what is in it",
    ));
    wait_text(&b.tg, 59, "sheet.xlsx is neither").await;
    b.tg.serve_file("big-1", &vec![b'a'; 5_000]);
    b.tg.push_raw_message(document(
        59,
        59,
        "big-1",
        "big.txt",
        "text/plain",
        5_000,
        "read",
    ));
    wait_text(&b.tg, 59, "big.txt is too large").await;
    // A size the message did not announce is checked against getFile's answer, before
    // the download.
    b.tg.serve_file("big-2", &vec![b'a'; 5_000]);
    let mut unannounced = document(59, 59, "big-2", "huge.txt", "text/plain", 0, "read");
    unannounced["document"]
        .as_object_mut()
        .unwrap()
        .remove("file_size");
    b.tg.push_raw_message(unannounced);
    wait_text(&b.tg, 59, "huge.txt is too large").await;
    b.tg.serve_file("bin-1", b"\x00\x01\x02binary");
    b.tg.push_raw_message(document(
        59,
        59,
        "bin-1",
        "data.json",
        "application/json",
        9,
        "parse",
    ));
    wait_text(&b.tg, 59, "I could not read data.json").await;
    assert_eq!(
        b.t.openai.request_count(),
        0,
        "no model call for an unreadable file"
    );
    assert!(
        b.tg.downloads()
            .iter()
            .all(|d| !d.contains("xls") && !d.contains("big")),
        "refused before the download"
    );
    let balance = b.t.app.quota.balance(&user(59)).await.unwrap();
    assert_eq!(
        (balance.used, balance.reserved, balance.requests),
        (0, 0, 0)
    );
    assert!(b.t.turns("59").await.is_empty());
}

/// A photo message as Telegram sends it: several sizes, smallest first.
fn photo(chat: i64, user: i64, caption: &str) -> Value {
    json!({
        "date": 1_764_000_000, "chat": private_chat(chat), "from": user_json(user, "Ida"),
        "photo": [
            {"file_id": "ph-small", "file_unique_id": "u-s", "width": 90, "height": 90, "file_size": 100},
            {"file_id": "ph-big", "file_unique_id": "u-b", "width": 1024, "height": 1024, "file_size": 12}
        ],
        "caption": caption
    })
}

#[tokio::test]
async fn a_photo_reaches_a_vision_model_as_an_image_part_and_others_refuse_it_for_free() {
    let b = spawn_bot(
        Options::default()
            .file(CHOICES)
            .with("GPTBOT__MODEL__IMAGE_DETAIL", "high"),
    )
    .await;
    let png = b"\x89PNG\r\n\x1a\nfake-image-bytes";
    b.tg.serve_file("ph-big", png);

    // The default model ("small") does not see images: a sentence, no call, no charge.
    b.tg.push_raw_message(photo(60, 60, "what is this?"));
    wait_text(
        &b.tg,
        60,
        "Small cannot see images. Pick one that can with /model (big)",
    )
    .await;
    assert_eq!(b.t.openai.request_count(), 0);
    assert!(
        b.tg.downloads().is_empty(),
        "nothing fetched for a model that cannot see"
    );
    let balance = b.t.app.quota.balance(&user(60)).await.unwrap();
    assert_eq!(
        (balance.used, balance.reserved, balance.requests),
        (0, 0, 0)
    );

    b.tg.push_message(private_chat(60), user_json(60, "Ida"), "/model big", None);
    wait_text(&b.tg, 60, "Model set to Big").await;
    b.tg.push_raw_message(photo(60, 60, "what is this?"));
    wait_text(&b.tg, 60, "Echo: what is this?").await;
    let request = b.t.openai.requests().last().unwrap().clone();
    assert_eq!(request["model"], "big");
    let content = &request["messages"].as_array().unwrap().last().unwrap()["content"];
    let expected_url = format!(
        "data:image/png;base64,{}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png)
    );
    assert_eq!(
        content,
        &json!([
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": expected_url, "detail": "high"}}
        ])
    );
    assert_eq!(
        b.tg.downloads(),
        ["documents/ph-big.bin"],
        "the largest size is read"
    );

    // The image's tokens (1024×1024 at high detail: 85 + 4 × 170 = 765) are held at the
    // model's price with the text and the longest answer.
    let entries = b.t.app.quota.history(&user(60), 100).await.unwrap();
    let reserved = entries
        .iter()
        .rev()
        .find(|e| e.kind == "reserve")
        .unwrap()
        .d_reserved;
    assert!(reserved >= 10 * (765 + 100), "reserved {reserved}");
    common::ledger::settled(&b.t.app.quota, &user(60), 1).await;
    common::ledger::assert_books(&b.t.app.quota, &user(60)).await;
    // The history keeps the text, marked, not the image.
    let turns = b.t.turns("60").await;
    assert_eq!(turns[0].content, "[an image] what is this?");
}

/// A voice note as Telegram sends it.
fn voice(chat: i64, user: i64, seconds: u32) -> Value {
    json!({
        "date": 1_764_000_000, "chat": private_chat(chat), "from": user_json(user, "Jo"),
        "voice": {"file_id": "vo-1", "file_unique_id": "u-vo", "duration": seconds,
                  "mime_type": "audio/ogg", "file_size": 11}
    })
}

#[tokio::test]
async fn a_voice_note_is_transcribed_shown_answered_and_charged_with_its_seconds() {
    let b = spawn_bot(
        Options::default()
            .with("GPTBOT__MODEL__TRANSCRIPTION", "whisper-1")
            .with("GPTBOT__QUOTA__AUDIO_TOKENS_PER_SECOND", "7"),
    )
    .await;
    b.t.openai.set_transcript("what is the capital of France");
    b.tg.serve_file("vo-1", b"OggS-voice");
    b.tg.push_raw_message(voice(61, 61, 12));
    wait_text(&b.tg, 61, "🎤 “what is the capital of France”").await;
    wait_text(&b.tg, 61, "Echo: what is the capital of France").await;

    let calls = b.t.openai.transcriptions();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["model"], "whisper-1");
    assert_eq!(calls[0]["file"], "voice.ogg");
    assert_eq!(calls[0]["file_bytes"], 10);
    assert_eq!(calls[0]["authorization"], "Bearer sk-test-secret-key");
    assert_eq!(
        last_user_content(&b.t),
        "what is the capital of France",
        "the transcript is asked like typed text"
    );

    // The answer's usage plus 12 s × 7 tokens.
    let balance = common::ledger::settled(&b.t.app.quota, &user(61), 1).await;
    // The same words typed by another user cost exactly 84 tokens less.
    b.tg.push_message(
        private_chat(63),
        user_json(63, "Kim"),
        "what is the capital of France",
        None,
    );
    wait_text(&b.tg, 63, "Echo: what is the capital of France").await;
    let typed = common::ledger::settled(&b.t.app.quota, &user(63), 1).await;
    assert_eq!(balance.used, typed.used + 12 * 7);
    common::ledger::assert_books(&b.t.app.quota, &user(61)).await;
}

#[tokio::test]
async fn voice_is_declined_politely_when_no_transcription_model_is_set() {
    let b = spawn_bot(Options::default()).await;
    b.tg.serve_file("vo-1", b"OggS-voice");
    b.tg.push_raw_message(voice(62, 62, 3));
    wait_text(&b.tg, 62, "Voice messages are not enabled").await;
    assert!(b.t.openai.transcriptions().is_empty());
    assert_eq!(b.t.openai.request_count(), 0);
    assert!(b.tg.downloads().is_empty());
    let balance = b.t.app.quota.balance(&user(62)).await.unwrap();
    assert_eq!((balance.used, balance.requests), (0, 0));
}

#[tokio::test]
async fn an_album_is_answered_once_with_all_its_pictures() {
    let b = spawn_bot(Options::default().file(CHOICES)).await;
    b.tg.push_message(private_chat(64), user_json(64, "Lu"), "/model big", None);
    wait_text(&b.tg, 64, "Model set to Big").await;
    let (one, two) = (b"\x89PNG\r\n\x1a\nfirst", b"\x89PNG\r\n\x1a\nsecond");
    b.tg.serve_file("al-1", one);
    b.tg.serve_file("al-2", two);
    // Telegram sends an album as messages sharing a media_group_id; the caption is on
    // one of them.
    for (file, caption) in [("al-1", "which is brighter?"), ("al-2", "")] {
        let mut part = json!({
            "date": 1_764_000_000, "chat": private_chat(64), "from": user_json(64, "Lu"),
            "media_group_id": "album-7",
            "photo": [{"file_id": file, "file_unique_id": format!("u-{file}"), "width": 512, "height": 512, "file_size": 20}]
        });
        if !caption.is_empty() {
            part["caption"] = json!(caption);
        }
        b.tg.push_raw_message(part);
    }
    wait_text(&b.tg, 64, "Echo: which is brighter?").await;
    // A second answer would show up within the album's 0.8 s gathering window.
    stays(
        std::time::Duration::from_millis(1500),
        "one answer for the album",
        || b.t.openai.request_count() == 1,
    )
    .await;
    let requests = b.t.openai.requests();
    let content = &requests[0]["messages"].as_array().unwrap().last().unwrap()["content"];
    let parts = content.as_array().unwrap();
    assert_eq!(parts.len(), 3, "the caption and both pictures: {content}");
    assert_eq!(
        parts[0],
        json!({"type": "text", "text": "which is brighter?"})
    );
    assert_eq!(
        b.t.turns("64").await[0].content,
        "[2 images] which is brighter?"
    );
    // The pictures are not kept: /retry says so instead of asking without them.
    b.tg.push_message(private_chat(64), user_json(64, "Lu"), "/retry", None);
    wait_text(&b.tg, 64, "came with pictures").await;
    assert_eq!(b.t.openai.request_count(), 1);
    common::ledger::settled(&b.t.app.quota, &user(64), 1).await;
    common::ledger::assert_books(&b.t.app.quota, &user(64)).await;
}

/// The history's texts once they are `expected` (the turn is recorded as its final text
/// goes out, so a test reading it right after may be a moment early).
async fn wait_turns(t: &TestApp, chat: &str, expected: &[&str]) {
    let mut seen = Vec::new();
    for _ in 0..250 {
        seen = t.turns(chat).await.into_iter().map(|t| t.content).collect();
        if seen == expected {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("history {seen:?}, expected {expected:?}");
}

/// The history once /retry has answered "capital of France?" anew.
const AFTER_RETRY: [&str; 4] = [
    "hello",
    "Echo: hello",
    "capital of France?",
    "It is Paris, on the Seine.",
];

/// /retry answers the conversation's last question anew: the model gets the history
/// without the old exchange, the new answer takes the old one's place, and each answer
/// is charged. A retry that fails leaves the history as it was and is refunded; with
/// nothing asked yet it is one sentence and no model call.
#[tokio::test]
async fn retry_answers_the_last_question_anew_in_place_of_the_old_answer() {
    let b = spawn_bot(Options::default()).await;
    let (chat, who) = (private_chat(71), user_json(71, "Rie"));
    b.tg.push_message(chat.clone(), who.clone(), "/retry", None);
    wait_text(&b.tg, 71, "nothing to answer again").await;
    assert_eq!(b.t.openai.request_count(), 0);

    b.tg.push_message(chat.clone(), who.clone(), "hello", None);
    wait_text(&b.tg, 71, "Echo: hello").await;
    b.t.openai.script([Behavior::text(&["Paris."], (30, 2))]);
    b.tg.push_message(chat.clone(), who.clone(), "capital of France?", None);
    wait_text(&b.tg, 71, "Paris.").await;
    b.t.openai
        .script([Behavior::text(&["It is ", "Paris, on the Seine."], (30, 6))]);
    b.tg.push_message(chat.clone(), who.clone(), "/retry", None);
    wait_text(&b.tg, 71, "It is Paris, on the Seine.").await;

    let requests = b.t.openai.requests();
    assert_eq!(requests.len(), 3);
    let tail: Vec<(&str, &str)> = requests[2]["messages"].as_array().unwrap()[1..]
        .iter()
        .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tail,
        [
            ("user", "hello"),
            ("assistant", "Echo: hello"),
            ("user", "capital of France?")
        ],
        "the old answer is left out of the prompt"
    );
    wait_turns(&b.t, "71", &AFTER_RETRY).await;

    // The server fails: the user is told, the old exchange stays, nothing is charged.
    b.t.openai
        .script(std::iter::repeat_n(Behavior::status(500), 3));
    b.tg.push_message(chat.clone(), who.clone(), "/retry", None);
    wait_text(&b.tg, 71, "unavailable").await;
    wait_turns(&b.t, "71", &AFTER_RETRY).await;
    let balance = common::ledger::settled(&b.t.app.quota, &user(71), 3).await;
    assert_eq!(
        balance.requests, 3,
        "three answers charged, the failed one not"
    );
    assert_eq!(balance.reserved, 0);
    common::ledger::assert_books(&b.t.app.quota, &user(71)).await;
}

/// A question that got no answer — the model server failed, or the quota ran out — is
/// what /retry asks (once the server is back, or tokens were granted), as a new
/// exchange after the last answered one; the failure itself cost nothing.
#[tokio::test]
async fn retry_after_a_failure_or_an_empty_quota_asks_the_unanswered_question() {
    let b = spawn_bot(Options::default()).await;
    let (chat, who) = (private_chat(72), user_json(72, "Uli"));
    b.tg.push_message(chat.clone(), who.clone(), "first", None);
    wait_text(&b.tg, 72, "Echo: first").await;

    b.t.openai
        .script(std::iter::repeat_n(Behavior::status(500), 3));
    b.tg.push_message(chat.clone(), who.clone(), "second", None);
    wait_text(
        &b.tg,
        72,
        "unavailable right now. Please try again later (/retry).",
    )
    .await;
    b.tg.push_message(chat.clone(), who.clone(), "/retry", None);
    wait_text(&b.tg, 72, "Echo: second").await;
    let asked = b.t.openai.requests().last().unwrap()["messages"].clone();
    assert_eq!(asked.as_array().unwrap().len(), 4, "{asked}");
    wait_turns(
        &b.t,
        "72",
        &["first", "Echo: first", "second", "Echo: second"],
    )
    .await;

    // Out of tokens: refused before the model; granted more, /retry asks it.
    let uli = user(72);
    let all_three = [
        "first",
        "Echo: first",
        "second",
        "Echo: second",
        "third",
        "Echo: third",
    ];
    b.t.app.quota.set_quota(&uli, Some(0)).await.unwrap();
    b.tg.push_message(chat.clone(), who.clone(), "third", None);
    wait_text(&b.tg, 72, "Quota exhausted").await;
    b.t.app.quota.set_quota(&uli, Some(20_000)).await.unwrap();
    b.tg.push_message(chat.clone(), who.clone(), "/retry", None);
    wait_text(&b.tg, 72, "Echo: third").await;
    wait_turns(&b.t, "72", &all_three).await;
    // Then /retry regenerates the last answer again, as usual.
    b.tg.push_message(chat.clone(), who.clone(), "/retry", None);
    b.tg.wait_until(15, "a second answer to \"third\"", |calls| {
        calls
            .iter()
            .filter(|c| {
                c.body["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Echo: third"))
            })
            .count()
            >= 2
    })
    .await;
    wait_turns(&b.t, "72", &all_three).await;
    let balance = common::ledger::settled(&b.t.app.quota, &uli, 4).await;
    assert_eq!(
        balance.requests, 4,
        "four answers charged; the failure and the refusal not"
    );
    common::ledger::assert_books(&b.t.app.quota, &uli).await;
}
