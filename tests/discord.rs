//! The real serenity client against the fake Discord (REST + WebSocket gateway), with the
//! fake OpenAI server, real Redis and SQLite: slash commands with deferral, DMs, guild
//! mentions, streaming edits, follow-ups, 429s and a gateway resume.

mod common;

use std::time::Duration;

use common::discord::*;
use common::*;
use gptbot::core::event::UserId;
use serde_json::json;

const DM: &str = "3000000000000000011";
const CHANNEL: &str = "3000000000000000021";

fn fast() -> Options {
    Options::default().with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms")
}

fn ann() -> serde_json::Value {
    user("4000000000000000001", "ann")
}

/// Waits until some message the bot wrote reads `text`.
async fn wait_text(dc: &FakeDiscord, text: &str) {
    dc.wait_text(15, text, |t| t == text).await;
}

#[tokio::test]
async fn connects_identifies_and_registers_the_slash_commands() {
    let b = spawn_bot(fast()).await;
    assert_eq!(b.handle.username, "gptbot");
    let identify =
        b.dc.gateway_frames()
            .into_iter()
            .find(|f| f["op"] == 2)
            .unwrap();
    assert_eq!(identify["d"]["token"], format!("Bot {TOKEN}"));
    let intents = identify["d"]["intents"].as_u64().unwrap();
    for (bit, name) in [
        (1 << 9, "GUILD_MESSAGES"),
        (1 << 12, "DIRECT_MESSAGES"),
        (1 << 15, "MESSAGE_CONTENT"),
    ] {
        assert!(intents & bit != 0, "{name} intent missing");
    }
    b.dc.wait_until(10, "command registration", |calls| {
        calls.iter().any(|c| {
            c.method == "PUT"
                && c.path
                    .ends_with(&format!("/applications/{BOT_ID}/commands"))
        })
    })
    .await;
    let put = b.dc.calls_matching("PUT", "/commands").remove(0);
    let names: Vec<&str> = put
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "chat", "reset", "cancel", "retry", "link", "unlink", "quota", "system", "model",
            "usage", "budget", "grant", "setquota", "stats", "allow", "deny"
        ]
    );
    for command in put.body.as_array().unwrap() {
        let admin_only = command["default_member_permissions"] == "8";
        assert_eq!(
            admin_only,
            names[11..].contains(&command["name"].as_str().unwrap()),
            "{command}"
        );
    }
    let chat = &put.body[0];
    assert_eq!(chat["options"][0]["name"], "prompt");
    assert_eq!(chat["options"][0]["required"], true);
}

#[tokio::test]
async fn guild_ids_register_commands_per_guild_instantly() {
    let b = spawn_bot(fast().with(
        "GPTBOT__DISCORD__GUILD_IDS",
        format!("{GUILD},5000000000000000002"),
    ))
    .await;
    b.dc.wait_until(10, "guild command registration", |calls| {
        calls
            .iter()
            .any(|c| c.method == "PUT" && c.path.ends_with(&format!("/guilds/{GUILD}/commands")))
    })
    .await;
    b.dc.wait_until(10, "the second guild", |calls| {
        calls
            .iter()
            .any(|c| c.method == "PUT" && c.path.contains("/guilds/5000000000000000002/commands"))
    })
    .await;
    let puts = b.dc.calls_matching("PUT", "/commands");
    assert!(
        puts.iter().all(|c| c.path.contains("/guilds/")),
        "registered globally too"
    );
}

#[tokio::test]
async fn chat_is_deferred_before_any_token_then_streamed_into_the_response() {
    let b = spawn_bot(fast()).await;
    b.t.openai.script([Behavior::Stream {
        pieces: vec!["The ".into(), "answer ".into(), "is 42.".into()],
        delay: Duration::from_millis(300),
        usage: Some((20, 6)),
    }]);
    let token = b.dc.slash(
        "chat",
        json!([{"name": "prompt", "type": 3, "value": "what is it?"}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    wait_text(&b.dc, "The answer is 42.").await;

    let callbacks = b.dc.calls_matching("POST", "/callback");
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].body["type"], 5, "not a deferred response");
    assert!(
        callbacks[0].body["data"]["flags"].is_null(),
        "/chat must not be ephemeral"
    );
    let edits = b.dc.calls_matching(
        "PATCH",
        &format!("/webhooks/{BOT_ID}/{token}/messages/@original"),
    );
    assert!(
        edits.len() >= 2,
        "the answer was not streamed: {} edits",
        edits.len()
    );
    // Deferred first; the first text came only after the model's first token (300 ms).
    assert!(callbacks[0].at < edits[0].at);
    assert!(edits[0].at - callbacks[0].at >= Duration::from_millis(250));
    for edit in &edits {
        assert_eq!(
            edit.body["allowed_mentions"]["parse"],
            json!([]),
            "mentions not neutralised"
        );
    }
    let request = &b.t.openai.requests()[0];
    assert_eq!(
        request["messages"].as_array().unwrap().last().unwrap()["content"],
        "what is it?"
    );
}

#[tokio::test]
async fn guild_messages_need_a_mention_or_a_reply_and_bots_are_ignored() {
    let b = spawn_bot(fast()).await;
    b.dc.send_message(CHANNEL, ann(), "talking among ourselves", Some(GUILD));
    let mut other_bot = user("4000000000000000009", "otherbot");
    other_bot["bot"] = json!(true);
    b.dc.send_message(
        CHANNEL,
        other_bot,
        &format!("<@{BOT_ID}> beep"),
        Some(GUILD),
    );
    let asked = b.dc.send_message(
        CHANNEL,
        ann(),
        &format!("<@{BOT_ID}> what is serenity"),
        Some(GUILD),
    );
    wait_text(&b.dc, "Echo: what is serenity").await;
    let post =
        b.dc.calls_matching("POST", &format!("/channels/{CHANNEL}/messages"))
            .remove(0);
    assert_eq!(post.body["message_reference"]["message_id"], asked.as_str());

    b.dc.send_reply(
        CHANNEL,
        user("4000000000000000002", "bob"),
        "go on",
        Some(GUILD),
        "9000000000000000500",
    );
    // A reply carries the message it replies to as context.
    b.dc.wait_text(15, "the reply answered with its context", |t| {
        t.starts_with("Echo: (Replying to this message from you (the assistant):)")
            && t.contains("> an earlier answer")
            && t.ends_with("go on")
    })
    .await;
    assert_eq!(
        b.t.openai.request_count(),
        2,
        "an unaddressed message reached the model"
    );
    // Bob's history in the channel is his own.
    assert_eq!(
        b.t.openai.requests()[1]["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn a_3500_character_answer_fills_the_response_then_a_follow_up() {
    let b = spawn_bot(fast()).await;
    let mut answer = String::from("Intro paragraph.\n\n```rust\n");
    for i in 0..90 {
        answer.push_str(&format!("let value_{i} = compute({i}); // step {i}\n"));
    }
    answer.push_str("```\n\nDone.");
    assert!(answer.chars().count() > 3500);
    let pieces: Vec<String> = answer
        .as_bytes()
        .chunks(300)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    b.t.openai.script([Behavior::Stream {
        pieces,
        delay: Duration::from_millis(5),
        usage: Some((20, 1200)),
    }]);
    let token = b.dc.slash(
        "chat",
        json!([{"name": "prompt", "type": 3, "value": "code"}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    b.dc.wait_until(15, "the follow-up's final text", |_| {
        b.dc.texts().last().is_some_and(|t| t.ends_with("Done."))
    })
    .await;
    let texts = b.dc.texts();
    assert!(texts.len() >= 2, "{texts:#?}");
    for t in &texts {
        assert!(t.chars().count() <= 2000);
        assert_eq!(t.matches("```").count() % 2, 0, "unbalanced fences in {t}");
    }
    assert!(
        texts[1].starts_with("```rust\n"),
        "the follow-up does not reopen the code block"
    );
    assert!(
        !b.dc
            .calls_matching("POST", &format!("/webhooks/{BOT_ID}/{token}"))
            .is_empty()
    );
    for i in [0, 45, 89] {
        assert!(
            texts
                .iter()
                .any(|t| t.contains(&format!("let value_{i} = compute({i});")))
        );
    }
}

#[tokio::test]
async fn quota_reset_and_system_answers_are_ephemeral() {
    let b = spawn_bot(fast()).await;
    let token = b.dc.slash("quota", json!([]), CHANNEL, ann(), Some(GUILD));
    b.dc.wait_until(10, "the /quota answer", |calls| {
        calls
            .iter()
            .any(|c| c.path.contains(&token) && c.method == "PATCH")
    })
    .await;
    let callback = b.dc.calls_matching("POST", "/callback").remove(0);
    assert_eq!(callback.body["type"], 5);
    assert_eq!(
        callback.body["data"]["flags"], 64,
        "/quota must be ephemeral"
    );
    let answer = b.dc.calls_matching("PATCH", &token).remove(0);
    assert!(
        answer.body["content"]
            .as_str()
            .unwrap()
            .contains("20000 remaining"),
        "{}",
        answer.body
    );

    assert_eq!(
        system_prompt_seen_by_the_model(&b, "Answer in haiku.").await,
        "Answer in haiku."
    );
    assert_eq!(
        b.t.openai.request_count(),
        1,
        "/quota or /system reached the model"
    );
}

/// Sets `/system prompt:<prompt>`, asks `/chat hi`, and returns the system message of
/// the model request that answered it.
async fn system_prompt_seen_by_the_model(b: &Bot, prompt: &str) -> serde_json::Value {
    b.dc.slash(
        "system",
        json!([{"name": "prompt", "type": 3, "value": prompt}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    b.dc.wait_until(10, "the /system answer", |_| {
        b.dc.texts()
            .iter()
            .any(|t| t.starts_with("System prompt set"))
    })
    .await;
    let before = b.t.openai.request_count();
    b.dc.slash(
        "chat",
        json!([{"name": "prompt", "type": 3, "value": "hi"}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    b.dc.wait_until(15, "the /chat answer", |_| {
        b.dc.texts().iter().filter(|t| *t == "Echo: hi").count() > 0
            && b.t.openai.request_count() > before
    })
    .await;
    b.t.openai.requests()[before]["messages"][0]["content"].clone()
}

#[tokio::test]
async fn a_dropped_gateway_connection_is_resumed_and_the_bot_keeps_serving() {
    let b = spawn_bot(fast()).await;
    b.dc.send_message(DM, ann(), "before", None);
    wait_text(&b.dc, "Echo: before").await;
    b.dc.drop_gateway(4000);
    b.dc.wait_gateway(20, "RESUME", |frames| frames.iter().any(|f| f["op"] == 6))
        .await;
    let resume =
        b.dc.gateway_frames()
            .into_iter()
            .find(|f| f["op"] == 6)
            .unwrap();
    assert_eq!(resume["d"]["session_id"], "fake-session-1");
    assert!(resume["d"]["seq"].as_u64().unwrap() >= 2);
    assert_eq!(b.dc.connections(), 2);
    // Once the shard has taken RESUMED (connected again), talk to it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.handle.probe.check().await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shard did not resume"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.dc.send_message(DM, ann(), "after", None);
    wait_text(&b.dc, "Echo: after").await;
}

#[tokio::test]
async fn admin_slash_answers_are_ephemeral() {
    let b = spawn_bot(fast().with("GPTBOT__ACCESS__ADMINS", "discord:4000000000000000001")).await;
    let token = b.dc.slash(
        "grant",
        json!([{"name": "user", "type": 3, "value": "4000000000000000002"}, {"name": "tokens", "type": 4, "value": 300}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    wait_text(
        &b.dc,
        "Granted 300 tokens to discord:4000000000000000002: 20300 remaining of 20300 granted.",
    )
    .await;
    let callback = b.dc.calls_matching("POST", "/callback").remove(0);
    assert_eq!(
        callback.body["data"]["flags"], 64,
        "admin answers must be ephemeral"
    );
    assert!(!b.dc.calls_matching("PATCH", &token).is_empty());
}

#[tokio::test]
async fn a_shard_range_runs_only_those_shards() {
    let b = spawn_bot(fast().with("GPTBOT__DISCORD__SHARDS", "0-1/4")).await;
    // serenity waits 5 s between two shard starts (Discord's identify rate limit).
    b.dc.wait_gateway(20, "two IDENTIFYs", |frames| {
        frames.iter().filter(|f| f["op"] == 2).count() == 2
    })
    .await;
    let shards: Vec<serde_json::Value> =
        b.dc.gateway_frames()
            .into_iter()
            .filter(|f| f["op"] == 2)
            .map(|f| f["d"]["shard"].clone())
            .collect();
    assert_eq!(shards, vec![json!([0, 4]), json!([1, 4])]);
}

/// Slash options are typed values, not text the core parses again: a value with spaces
/// (a reason, a system prompt) arrives whole, and a user value reaches the user lookup.
#[tokio::test]
async fn slash_option_values_with_spaces_arrive_whole() {
    let b = spawn_bot(fast().with("GPTBOT__ACCESS__ADMINS", "discord:4000000000000000001")).await;
    b.dc.slash(
        "grant",
        json!([
            {"name": "user", "type": 3, "value": " 4000000000000000002 "},
            {"name": "tokens", "type": 4, "value": 300},
            {"name": "reason", "type": 3, "value": "welcome bonus for the beta"}
        ]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    wait_text(
        &b.dc,
        "Granted 300 tokens to discord:4000000000000000002: 20300 remaining of 20300 granted. Reason: welcome bonus for the beta.",
    )
    .await;

    b.dc.slash(
        "usage",
        json!([{"name": "user", "type": 3, "value": "discord 4000000000000000002"}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    wait_text(
        &b.dc,
        "Could not do that: `discord 4000000000000000002` is not a user id",
    )
    .await;

    assert_eq!(
        system_prompt_seen_by_the_model(&b, "reset   your tone: be formal").await,
        "reset   your tone: be formal",
        "the prompt arrives as typed, spaces and all"
    );
}

/// A global 429 pauses every route — other channels too — for exactly `retry_after`.
#[tokio::test]
async fn a_global_429_pauses_every_route() {
    let b = spawn_bot(fast()).await;
    b.t.openai.set_echo_delay(Duration::from_millis(60));
    b.dc.rate_limit_next_global("PATCH", "/api/v10/channels/", 1.5);
    let other_dm = "3000000000000000099";
    let words = "one two three four five six seven eight nine ten eleven twelve";
    b.dc.send_message(DM, ann(), words, None);
    b.dc.send_message(other_dm, user("4000000000000000002", "bob"), words, None);
    b.dc.wait_text(20, "both answers", |_| {
        b.dc.texts()
            .iter()
            .filter(|t| **t == format!("Echo: {words}"))
            .count()
            == 2
    })
    .await;
    let writes: Vec<_> =
        b.dc.calls()
            .into_iter()
            .filter(|c| c.path.contains("/messages"))
            .collect();
    let refused = writes
        .iter()
        .find(|c| c.method == "PATCH")
        .expect("an edit was refused")
        .at;
    for c in &writes {
        let after = c.at.saturating_duration_since(refused);
        assert!(
            c.at <= refused + Duration::from_millis(50) || after >= Duration::from_millis(1500),
            "{} {} went out {after:?} into a global pause of 1.5 s",
            c.method,
            c.path
        );
    }
}

/// `/retry` as a slash command answers the last question anew in the channel (not
/// ephemerally, like `/chat`), and the new answer replaces the old one in the history.
#[tokio::test]
async fn retry_is_a_slash_command_answered_in_the_channel() {
    let b = spawn_bot(fast()).await;
    b.t.openai.script([
        Behavior::text(&["Blue."], (20, 2)),
        Behavior::text(&["The sky ", "is blue."], (20, 4)),
    ]);
    b.dc.slash(
        "chat",
        json!([{"name": "prompt", "type": 3, "value": "sky colour?"}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    wait_text(&b.dc, "Blue.").await;
    let token = b.dc.slash("retry", json!([]), CHANNEL, ann(), Some(GUILD));
    wait_text(&b.dc, "The sky is blue.").await;
    let callback =
        b.dc.calls_matching("POST", "/callback")
            .into_iter()
            .find(|c| c.path.contains(&token))
            .expect("the /retry interaction was deferred");
    assert!(
        callback.body["data"]["flags"].is_null(),
        "/retry must not be ephemeral"
    );
    let requests = b.t.openai.requests();
    assert_eq!(requests.len(), 2);
    let last = requests[1]["messages"].as_array().unwrap();
    assert_eq!(
        last.len(),
        2,
        "system + the question, without the old answer"
    );
    assert_eq!(last[1]["content"], "sky colour?");
    let ann_id = UserId::parse("discord:4000000000000000001").unwrap();
    let balance = common::ledger::settled(&b.t.app.quota, &ann_id, 2).await;
    assert_eq!(balance.requests, 2);
    common::ledger::assert_books(&b.t.app.quota, &ann_id).await;
}

/// Everyone's own `/usage` and `/buy` are slash commands (not hidden as admins' are):
/// `/usage` without a user shows one's chart; `/buy` names the packs and, with no Telegram
/// account linked, says how to pay with Stars.
#[tokio::test]
async fn usage_and_buy_are_everyones_slash_commands() {
    let b = spawn_bot(fast().file(
        "[payments]\nenabled = true\n[[payments.packs]]\nname = \"small\"\nstars = 50\ntokens = 100000\n",
    ))
    .await;
    b.dc.wait_until(10, "command registration", |calls| {
        calls
            .iter()
            .any(|c| c.method == "PUT" && c.path.ends_with("/commands"))
    })
    .await;
    let put = b.dc.calls_matching("PUT", "/commands").remove(0);
    let buy = put
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "buy")
        .expect("/buy registered")
        .clone();
    assert_eq!(buy["options"][0]["choices"][0]["value"], "small");
    assert!(buy["default_member_permissions"].is_null(), "{buy}");

    b.dc.slash("usage", json!([]), CHANNEL, ann(), Some(GUILD));
    b.dc.wait_text(15, "the usage chart", |t| {
        t.starts_with("Your tokens, last 14 days (UTC):")
    })
    .await;
    b.dc.slash(
        "buy",
        json!([{"name": "pack", "type": 3, "value": "small"}]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    b.dc.wait_text(15, "how to buy", |t| {
        t.starts_with("Packs are paid with Telegram Stars")
    })
    .await;
    assert_eq!(b.t.openai.request_count(), 0);
}

/// `/budget` is everyone's slash command for the server's wallet: a member is refused, a
/// member who manages the server (the interaction's permissions) moves tokens in from
/// their balance, a bot admin grants, and the wallet pays for a member's question.
#[tokio::test]
async fn budget_is_a_slash_command_for_the_servers_wallet() {
    let b = spawn_bot(fast().with("GPTBOT__ACCESS__ADMINS", "discord:4000000000000000001")).await;
    let bob = user("4000000000000000002", "bob");
    b.dc.slash(
        "budget",
        json!([
            {"name": "action", "type": 3, "value": "add"},
            {"name": "value", "type": 3, "value": "5000"}
        ]),
        CHANNEL,
        bob.clone(),
        Some(GUILD),
    );
    b.dc.wait_text(15, "the refusal", |t| {
        t.starts_with("Only this group's admins")
    })
    .await;
    // A member who manages the server (as the interaction's permissions say) sets the
    // rules, and moves tokens from their own balance.
    let cat = user("4000000000000000003", "cat");
    b.dc.make_manager("4000000000000000003");
    b.dc.slash(
        "budget",
        json!([
            {"name": "action", "type": 3, "value": "member-limit"},
            {"name": "value", "type": 3, "value": "off"}
        ]),
        CHANNEL,
        cat.clone(),
        Some(GUILD),
    );
    wait_text(
        &b.dc,
        "Members may now spend any amount from this group's wallet.",
    )
    .await;
    b.dc.slash(
        "budget",
        json!([
            {"name": "action", "type": 3, "value": "add"},
            {"name": "value", "type": 3, "value": "1000"}
        ]),
        CHANNEL,
        cat,
        Some(GUILD),
    );
    wait_text(
        &b.dc,
        "Added 1000 tokens from your balance to this group's wallet. It holds 1000 tokens.",
    )
    .await;
    b.dc.slash(
        "budget",
        json!([
            {"name": "action", "type": 3, "value": "add"},
            {"name": "value", "type": 3, "value": "5000"}
        ]),
        CHANNEL,
        ann(),
        Some(GUILD),
    );
    wait_text(
        &b.dc,
        "Added 5000 tokens to this group's wallet. It holds 6000 tokens.",
    )
    .await;
    let wallet = gptbot::quota::QuotaService::wallet_account(
        gptbot::core::event::Platform::Discord,
        GUILD,
        None,
    );
    b.dc.slash(
        "chat",
        json!([{"name": "prompt", "type": 3, "value": "hello from bob"}]),
        CHANNEL,
        bob,
        Some(GUILD),
    );
    let paid = common::ledger::settled(&b.t.app.quota, &wallet, 1).await;
    assert!(paid.used > 0, "the wallet paid: {paid:?}");
    let bob = UserId::parse("discord:4000000000000000002").unwrap();
    assert_eq!(b.t.app.quota.balance(&bob).await.unwrap().used, 0);
    common::ledger::assert_books(&b.t.app.quota, &wallet).await;
    common::ledger::assert_books(&b.t.app.quota, &bob).await;
}
