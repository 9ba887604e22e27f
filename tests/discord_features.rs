//! Discord threads (`discord.threads`) and attachments (images, voice messages, files),
//! through the real serenity client against the fake Discord, with the fake model.

mod common;

use common::discord::*;
use common::*;
use gptbot::core::event::{Platform, UserId};
use serde_json::{Value, json};

const CHANNEL: &str = "3000000000000000021";
const OTHER_CHANNEL: &str = "3000000000000000022";
const DM: &str = "3000000000000000011";
const ANN: &str = "4000000000000000001";
const BOB: &str = "4000000000000000002";

fn threads_on() -> Options {
    Options::default()
        .with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms")
        .with("GPTBOT__DISCORD__FIRST_MESSAGE_DELAY", "0ms")
        .with("GPTBOT__DISCORD__THREADS", "true")
}

fn ann() -> Value {
    user(ANN, "ann")
}

fn bob() -> Value {
    user(BOB, "bob")
}

fn discord(id: &str) -> UserId {
    UserId::new(Platform::Discord, id)
}

/// Waits until a message of the bot in `channel` reads `text` (posted so, or edited
/// to it while streaming).
async fn wait_post(dc: &FakeDiscord, channel: &str, text: &str) {
    let prefix = format!("/channels/{channel}/messages");
    dc.wait_until(15, &format!("{text:?} in {channel}"), |calls| {
        calls.iter().any(|c| {
            (c.method == "POST" || c.method == "PATCH")
                && c.path.contains(&prefix)
                && !c.path.ends_with("/threads")
                && c.body["content"] == text
        })
    })
    .await;
}

/// Ann asks `question` with `/chat` in the channel; returns the interaction's token and
/// the thread opened for it.
async fn ask_in_a_thread(dc: &FakeDiscord, question: &str) -> (String, Thread) {
    let token = dc.slash(
        "chat",
        json!([{"name": "prompt", "type": 3, "value": question}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    dc.wait_until(15, "a thread opened", |_| !dc.threads().is_empty())
        .await;
    (token, dc.threads().remove(0))
}

fn posts_in(dc: &FakeDiscord, channel: &str) -> Vec<Value> {
    dc.calls_matching("POST", &format!("/channels/{channel}/messages"))
        .into_iter()
        .filter(|c| c.path.ends_with("/messages"))
        .map(|c| c.body)
        .collect()
}

#[tokio::test]
async fn a_chat_command_opens_a_thread_and_members_continue_it_there_without_a_mention() {
    let b = spawn_bot(threads_on()).await;
    let (token, thread) = ask_in_a_thread(&b.dc, "What is a monad?\nIn short.").await;
    assert_eq!(thread.parent, CHANNEL);
    assert_eq!(thread.name, "What is a monad?", "named after the question");
    assert_eq!(thread.owner, BOT_ID);
    // The response shows the question; the thread hangs on it.
    let original = b.dc.calls_matching(
        "PATCH",
        &format!("/webhooks/{BOT_ID}/{token}/messages/@original"),
    );
    assert_eq!(
        original[0].body["content"],
        "**ann** asked: What is a monad?\nIn short."
    );
    assert_eq!(original[0].body["allowed_mentions"]["parse"], json!([]));
    wait_post(&b.dc, &thread.id, "Echo: What is a monad?\nIn short.").await;

    // Bob writes in the thread without a mention: answered there, with the thread's
    // conversation so far.
    b.dc.send_message(&thread.id, bob(), "And a functor?", Some(GUILD));
    wait_post(&b.dc, &thread.id, "Echo: And a functor?").await;
    let messages = b.t.openai.requests().last().unwrap()["messages"].clone();
    let contents: Vec<&str> = messages
        .as_array()
        .unwrap()
        .iter()
        .skip(1) // the system message
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        [
            "What is a monad?\nIn short.",
            "Echo: What is a monad?\nIn short.",
            "And a functor?"
        ]
    );
    // Answers in the thread follow the questions (no reply to the parent channel's
    // message).
    assert!(
        posts_in(&b.dc, &thread.id)
            .iter()
            .all(|p| p["message_reference"].is_null())
    );

    // Elsewhere a mention is still needed: an unaddressed message in the channel, or in
    // a thread a member opened, reaches no model and opens no thread.
    let members = b.dc.user_thread(CHANNEL, BOB);
    b.dc.send_message(CHANNEL, ann(), "just chatting", Some(GUILD));
    b.dc.send_message(&members, ann(), "among us", Some(GUILD));
    // Addressed in the member's thread: answered in place, no thread in a thread.
    b.dc.send_message(
        &members,
        ann(),
        &format!("<@{BOT_ID}> hello thread"),
        Some(GUILD),
    );
    wait_post(&b.dc, &members, "Echo: hello thread").await;
    assert_eq!(b.t.openai.request_count(), 3);
    assert_eq!(
        b.dc.threads().len(),
        2,
        "no thread opened by the bot in a thread"
    );

    // Each member pays for their own questions.
    for who in [ANN, BOB] {
        common::ledger::settled(&b.t.app.quota, &discord(who), 1).await;
        common::ledger::assert_books(&b.t.app.quota, &discord(who)).await;
    }
}

#[tokio::test]
async fn a_mention_opens_a_thread_on_the_message_and_without_permission_answers_in_the_channel() {
    let b = spawn_bot(threads_on()).await;
    let asked = b.dc.send_message(
        CHANNEL,
        ann(),
        &format!("<@{BOT_ID}> explain lifetimes"),
        Some(GUILD),
    );
    wait_post(&b.dc, &asked, "Echo: explain lifetimes").await;
    let thread = b.dc.threads().remove(0);
    assert_eq!(
        (
            thread.id.as_str(),
            thread.parent.as_str(),
            thread.name.as_str()
        ),
        (asked.as_str(), CHANNEL, "explain lifetimes"),
        "the thread starts from the question"
    );
    assert!(
        posts_in(&b.dc, CHANNEL).is_empty(),
        "nothing in the channel"
    );
    // The thread continues the question's conversation without a mention.
    b.dc.send_message(&thread.id, ann(), "more please", Some(GUILD));
    wait_post(&b.dc, &thread.id, "Echo: more please").await;
    assert_eq!(
        b.t.openai.requests()[1]["messages"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "system, question, answer, follow-up"
    );

    // A DM is never threaded.
    b.dc.send_message(DM, bob(), "private question", None);
    wait_post(&b.dc, DM, "Echo: private question").await;

    // Without the permission the question is answered in its channel, as a reply.
    b.dc.refuse_threads();
    let second = b.dc.send_message(
        OTHER_CHANNEL,
        bob(),
        &format!("<@{BOT_ID}> and borrowing?"),
        Some(GUILD),
    );
    wait_post(&b.dc, OTHER_CHANNEL, "Echo: and borrowing?").await;
    let reply = posts_in(&b.dc, OTHER_CHANNEL).remove(0);
    assert_eq!(reply["message_reference"]["message_id"], second.as_str());
    assert_eq!(b.dc.threads().len(), 1);
    common::ledger::settled(&b.t.app.quota, &discord(ANN), 2).await;
    common::ledger::assert_books(&b.t.app.quota, &discord(ANN)).await;
    common::ledger::assert_books(&b.t.app.quota, &discord(BOB)).await;
}

#[tokio::test]
async fn threads_stay_off_unless_enabled() {
    let b = spawn_bot(Options::default().with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms")).await;
    b.dc.send_message(
        CHANNEL,
        ann(),
        &format!("<@{BOT_ID}> no thread please"),
        Some(GUILD),
    );
    wait_post(&b.dc, CHANNEL, "Echo: no thread please").await;
    assert!(b.dc.threads().is_empty());
    assert!(
        b.dc.calls_matching("GET", "/channels/").is_empty(),
        "no channel lookups when threads are off"
    );
}

const CHOICES: &str = r#"
[model]
name = "eye"
transcription = "whisper-1"

[[model.available]]
name = "eye"
label = "Eye"
vision = true
"#;

#[tokio::test]
async fn discord_attachments_are_seen_heard_and_read() {
    let b = spawn_bot(
        Options::default()
            .file(CHOICES)
            .with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms")
            .with("GPTBOT__QUOTA__AUDIO_TOKENS_PER_SECOND", "5"),
    )
    .await;

    // An image with a caption: an image part for the vision model.
    let png = b"\x89PNG\r\n\x1a\nfake-image";
    let mut image = b.dc.attachment("cat.png", "image/png", png);
    image["width"] = json!(512);
    image["height"] = json!(512);
    b.dc.send_with_attachments(DM, ann(), "what animal?", None, vec![image], 0);
    wait_post(&b.dc, DM, "Echo: what animal?").await;
    let content = b.t.openai.requests().last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .clone();
    assert_eq!(content[0], json!({"type": "text", "text": "what animal?"}));
    assert_eq!(
        content[1]["image_url"]["url"],
        format!(
            "data:image/png;base64,{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png)
        )
    );

    // A voice message (flag IS_VOICE_MESSAGE, its length said): transcribed, answered
    // and charged with its seconds.
    b.t.openai.set_transcript("how tall is a giraffe");
    let mut voice =
        b.dc.attachment("voice-message.ogg", "audio/ogg", b"OggS-voice");
    voice["duration_secs"] = json!(3.2);
    voice["waveform"] = json!("AAAA");
    b.dc.send_with_attachments(DM, bob(), "", None, vec![voice], 1 << 13);
    b.dc.wait_text(15, "the transcript shown", |t| {
        t == "🎤 “how tall is a giraffe”"
    })
    .await;
    wait_post(&b.dc, DM, "Echo: how tall is a giraffe").await;
    let heard = b.t.openai.transcriptions();
    assert_eq!(heard.len(), 1);
    assert_eq!(heard[0]["file"], "voice-message.ogg");
    assert_eq!(heard[0]["file_bytes"], 10);
    let entries = b.t.app.quota.history(&discord(BOB), 100).await.unwrap();
    assert!(
        entries.iter().any(|e| e.kind == "settle"),
        "the voice answer was settled"
    );

    // A text file: read into the prompt with its name.
    let notes = b.dc.attachment(
        "notes.md",
        "text/markdown; charset=utf-8",
        b"# Plan\n- ship it",
    );
    b.dc.send_with_attachments(DM, ann(), "summarise", None, vec![notes], 0);
    b.dc.wait_text(15, "the file answered", |t| {
        t.starts_with("Echo: File: notes.md") && t.ends_with("summarise")
    })
    .await;
    let asked = b.t.openai.requests().last().unwrap()["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(asked.contains("File: notes.md"), "{asked}");
    assert!(asked.contains("- ship it"), "{asked}");
    assert_eq!(b.dc.downloads().len(), 3, "every attachment fetched once");
    for who in [ANN, BOB] {
        common::ledger::assert_books(&b.t.app.quota, &discord(who)).await;
    }
}

#[tokio::test]
async fn an_attachment_over_the_limit_is_refused_without_a_download_or_a_charge() {
    let b = spawn_bot(
        Options::default()
            .with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms")
            .with("GPTBOT__FILES__MAX_BYTES", "1000"),
    )
    .await;
    let big = b.dc.attachment("big.txt", "text/plain", &vec![b'a'; 5_000]);
    b.dc.send_with_attachments(DM, ann(), "read it", None, vec![big], 0);
    b.dc.wait_text(15, "refusal", |t| t.contains("big.txt is too large"))
        .await;
    assert!(b.dc.downloads().is_empty());
    assert_eq!(b.t.openai.request_count(), 0);
    let balance = b.t.app.quota.balance(&discord(ANN)).await.unwrap();
    assert_eq!((balance.used, balance.reserved), (0, 0));
}

#[tokio::test]
async fn a_channel_discord_will_not_describe_is_asked_about_once_and_answered_in_place() {
    let b = spawn_bot(threads_on()).await;
    b.dc.hide_channel(OTHER_CHANNEL);
    for text in ["one", "two", "three"] {
        b.dc.send_message(OTHER_CHANNEL, ann(), text, Some(GUILD));
    }
    b.dc.send_message(
        OTHER_CHANNEL,
        ann(),
        &format!("<@{BOT_ID}> still there?"),
        Some(GUILD),
    );
    wait_post(&b.dc, OTHER_CHANNEL, "Echo: still there?").await;
    assert_eq!(
        b.dc.calls_matching("GET", &format!("/channels/{OTHER_CHANNEL}"))
            .len(),
        1,
        "one lookup for four messages"
    );
    assert!(b.dc.threads().is_empty());
    assert_eq!(b.t.openai.request_count(), 1);
}

/// Slash commands used inside a thread the bot opened act on the thread's shared
/// conversation, as its messages do: `/retry` answers the thread's last question anew,
/// `/reset` forgets the thread's history (not some per-member history nobody uses).
#[tokio::test]
async fn slash_commands_in_a_bot_thread_act_on_the_threads_conversation() {
    let b = spawn_bot(threads_on()).await;
    let (_, thread) = ask_in_a_thread(&b.dc, "What is a monad?").await;
    wait_post(&b.dc, &thread.id, "Echo: What is a monad?").await;
    let shared = gptbot::core::event::SessionKey {
        platform: Platform::Discord,
        chat: thread.id.clone(),
        user: gptbot::core::event::SHARED_SESSION_USER.to_string(),
    };

    b.t.openai
        .script([Behavior::text(&["A monoid in ", "endofunctors."], (20, 4))]);
    b.dc.slash("retry", json!([]), &thread.id, bob(), Some(GUILD));
    b.dc.wait_text(15, "the retried answer", |t| {
        t == "A monoid in endofunctors."
    })
    .await;
    let asked = b.t.openai.requests().last().unwrap()["messages"].clone();
    let contents: Vec<&str> = asked
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        ["What is a monad?"],
        "the thread's question, asked anew"
    );
    let mut history = Vec::new();
    for _ in 0..250 {
        history = b.t.app.sessions.load(&shared).await.unwrap().turns;
        if history.len() == 2 && history[1].content == "A monoid in endofunctors." {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let texts: Vec<&str> = history.iter().map(|t| t.content.as_str()).collect();
    assert_eq!(texts, ["What is a monad?", "A monoid in endofunctors."]);

    b.dc.slash("reset", json!([]), &thread.id, ann(), Some(GUILD));
    b.dc.wait_text(15, "the /reset answer", |t| t.contains("history cleared"))
        .await;
    assert!(
        b.t.app
            .sessions
            .load(&shared)
            .await
            .unwrap()
            .turns
            .is_empty(),
        "the thread's history was not reset"
    );
    for who in [ANN, BOB] {
        common::ledger::settled(&b.t.app.quota, &discord(who), 1).await;
        common::ledger::assert_books(&b.t.app.quota, &discord(who)).await;
    }
}
