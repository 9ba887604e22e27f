//! One scenario, both platforms: a small trait the Telegram and Discord fakes implement
//! (a user's private chat with the bot), so a test body is written once and run on each
//! — what the bot promises a user does not depend on the platform.
#![allow(dead_code)]

use std::time::Duration;

use async_trait::async_trait;
use gptbot::core::event::{Platform, SessionKey, UserId};
use tokio::time::Instant;

use super::discord::FakeDiscord;
use super::telegram::{FakeTelegram, private_chat, user_json};
use super::{Options, TestApp, spawn_app_with, stopper};

/// A platform's fake with the bot started against it, seen from one user's private chat.
#[async_trait]
pub trait PrivateChat: Send + Sync + Sized {
    /// Boots the bot (as `gptbot run` does) against a fresh fake.
    async fn start(options: Options) -> (Self, TestApp, tokio_util::sync::DropGuard);
    /// The user, as the ledger knows them.
    fn user(&self) -> UserId;
    /// Their conversation's key in the session store.
    fn session(&self) -> SessionKey;
    /// The user writes `text` to the bot.
    fn say(&self, text: &str);
    /// Waits until the bot has sent the answer's first message; returns its id.
    async fn first_message(&self) -> String;
    /// Waits until the answer's message has been edited once; returns its id.
    async fn first_edit(&self) -> String;
    /// The message is deleted in the chat (by the user, a moderator).
    fn delete(&self, id: &str);
    /// The user blocks the bot: every write to the chat is refused.
    fn block(&self);
    /// The texts the chat shows now, oldest first.
    fn texts(&self) -> Vec<String>;
    /// Waits until the chat's last text is `text`.
    async fn wait_last(&self, text: &str);
    /// How long the platform makes a refused edit wait (Telegram says whole seconds,
    /// Discord fractions).
    const EDIT_PAUSE: Duration;
    /// The next edit of a message in the chat is refused with a 429 and `EDIT_PAUSE`.
    fn refuse_next_edit(&self);
    /// When each edit was asked for (refused or not), in order.
    fn edits(&self) -> Vec<Instant>;
    /// When each write to the chat (message or edit) was asked for, in order.
    fn writes(&self) -> Vec<Instant>;
    /// The key of the edit interval setting (`telegram.edit_interval`, …).
    const EDIT_INTERVAL: &'static str;
    /// "typing…" was shown in the chat.
    fn typing_shown(&self) -> bool;
    /// Writes the platform refused with a 429 (its limits are on).
    fn rate_limited(&self) -> usize;
    /// The most a message may show (Telegram 4096 UTF-16 units, Discord 2000 chars).
    const MAX_CHARS: usize;
    /// What a message as sent shows the user, if the platform would take it (Telegram:
    /// valid HTML with its `<pre>` blocks closed; Discord: its code fences closed).
    fn shown(raw: &str) -> Result<String, String>;
    /// Waits until the chat's last text ends with `end`.
    async fn wait_last_ending(&self, end: &str);
    /// The user runs a command with its arguments (Telegram: `/name a b` as a message;
    /// Discord: the slash command in the DM, strings and integers as typed options).
    fn command(&self, name: &str, args: &[(&str, serde_json::Value)]);
    /// The user, as `access.admins` names them.
    const ME: &'static str;
    /// Another user, as this platform's admin commands take them, and as the ledger
    /// knows them.
    const OTHER: &'static str;
    const OTHER_ACCOUNT: &'static str;
    /// A final message split into the quoted thinking of a reasoning model (as the
    /// platform shows it: Telegram an expandable quote, Discord small print) and the
    /// answer.
    fn thought_and_answer(raw: &str) -> (Option<String>, String);
    /// Waits until some text of the chat passes `test`.
    async fn wait_any(&self, what: &str, test: &(dyn for<'s> Fn(&'s str) -> bool + Sync));
}

const TG_USER: i64 = 9;

pub struct Telegram(pub FakeTelegram);

#[async_trait]
impl PrivateChat for Telegram {
    async fn start(options: Options) -> (Telegram, TestApp, tokio_util::sync::DropGuard) {
        let tg = FakeTelegram::start().await;
        tg.enforce_flood_limits();
        let t = spawn_app_with(
            options
                .telegram(&tg)
                .or_with("GPTBOT__TELEGRAM__EDIT_INTERVAL", "100ms"),
        )
        .await;
        let (stop, token) = stopper();
        t.app.start(token).await.expect("the bot starts");
        (Telegram(tg), t, stop)
    }

    fn user(&self) -> UserId {
        UserId::new(Platform::Telegram, TG_USER.to_string())
    }

    fn session(&self) -> SessionKey {
        SessionKey {
            platform: Platform::Telegram,
            chat: TG_USER.to_string(),
            user: TG_USER.to_string(),
        }
    }

    fn say(&self, text: &str) {
        self.0
            .push_message(private_chat(TG_USER), user_json(TG_USER, "Di"), text, None);
    }

    async fn first_message(&self) -> String {
        self.0
            .wait_until(10, "the answer's first message", |calls| {
                calls.iter().any(|c| c.method == "sendmessage")
            })
            .await;
        let sent = self.0.delivered_to(TG_USER);
        sent.first()
            .map(|c| c.body["text"].to_string())
            .unwrap_or_default()
    }

    async fn first_edit(&self) -> String {
        self.0
            .wait_until(10, "the answer's first edit", |calls| {
                calls.iter().any(|c| c.method == "editmessagetext")
            })
            .await;
        self.0.calls_of("editMessageText")[0].body["message_id"].to_string()
    }

    fn delete(&self, id: &str) {
        self.0
            .delete_message(TG_USER, id.parse().expect("a message id"));
    }

    fn block(&self) {
        self.0.block_bot(TG_USER);
    }

    fn texts(&self) -> Vec<String> {
        self.0.texts_in(TG_USER)
    }

    const EDIT_PAUSE: Duration = Duration::from_secs(1);

    fn refuse_next_edit(&self) {
        let secs = Self::EDIT_PAUSE.as_secs();
        self.0.fail_next(
            "editMessageText",
            429,
            &format!("Too Many Requests: retry after {secs}"),
            Some(secs),
        );
    }

    fn edits(&self) -> Vec<Instant> {
        self.0
            .calls_of("editMessageText")
            .iter()
            .map(|c| c.at)
            .collect()
    }

    fn writes(&self) -> Vec<Instant> {
        self.0.writes_to(TG_USER).iter().map(|c| c.at).collect()
    }

    const EDIT_INTERVAL: &'static str = "GPTBOT__TELEGRAM__EDIT_INTERVAL";

    fn typing_shown(&self) -> bool {
        self.0
            .calls_of("sendChatAction")
            .iter()
            .any(|c| c.body["chat_id"] == TG_USER && c.body["action"] == "typing")
    }

    fn rate_limited(&self) -> usize {
        self.0.flood_refusals().len()
    }

    const MAX_CHARS: usize = 4096;

    fn shown(raw: &str) -> Result<String, String> {
        let shown = super::telegram::check_html(raw)?;
        if raw.matches("<pre").count() != raw.matches("</pre>").count() {
            return Err("a <pre> block is left open".into());
        }
        Ok(shown)
    }

    fn command(&self, name: &str, args: &[(&str, serde_json::Value)]) {
        let mut text = format!("/{name}");
        for (_, value) in args {
            match value {
                serde_json::Value::String(s) => text.push_str(&format!(" {s}")),
                other => text.push_str(&format!(" {other}")),
            }
        }
        self.say(&text);
    }

    const ME: &'static str = "telegram:9";
    const OTHER: &'static str = "43";
    const OTHER_ACCOUNT: &'static str = "telegram:43";

    fn thought_and_answer(raw: &str) -> (Option<String>, String) {
        match raw
            .strip_prefix("<blockquote expandable>")
            .and_then(|rest| rest.split_once("</blockquote>"))
        {
            Some((thought, answer)) => (Some(thought.to_string()), answer.trim().to_string()),
            None => (None, raw.trim().to_string()),
        }
    }

    async fn wait_any(&self, what: &str, test: &(dyn for<'s> Fn(&'s str) -> bool + Sync)) {
        self.0
            .wait_until(15, what, |_| {
                let texts = self.0.texts_in(TG_USER);
                texts.iter().any(|t| test(t))
            })
            .await;
    }

    async fn wait_last_ending(&self, end: &str) {
        self.0
            .wait_until(20, &format!("the chat's last text ending {end:?}"), |_| {
                self.0
                    .texts_in(TG_USER)
                    .last()
                    .is_some_and(|t| t.trim_end().ends_with(end))
            })
            .await;
    }

    async fn wait_last(&self, text: &str) {
        self.0
            .wait_until(15, &format!("{text:?} last in the chat"), |_| {
                self.0.texts_in(TG_USER).last().map(|t| t.trim_end()) == Some(text.trim_end())
            })
            .await;
    }
}

const DC_USER: &str = "4000000000000000001";
const DC_DM: &str = "3000000000000000011";

pub struct Discord(pub FakeDiscord);

#[async_trait]
impl PrivateChat for Discord {
    async fn start(options: Options) -> (Discord, TestApp, tokio_util::sync::DropGuard) {
        let dc = FakeDiscord::start().await;
        dc.enforce_rate_limits();
        let t = spawn_app_with(
            options
                .with("DISCORD_TOKEN", super::discord::TOKEN)
                .with("GPTBOT__DISCORD__API_URL", dc.api_url())
                .or_with("GPTBOT__DISCORD__EDIT_INTERVAL", "100ms"),
        )
        .await;
        let (stop, token) = stopper();
        t.app.start(token).await.expect("the bot connects");
        (Discord(dc), t, stop)
    }

    fn user(&self) -> UserId {
        UserId::new(Platform::Discord, DC_USER)
    }

    fn session(&self) -> SessionKey {
        SessionKey {
            platform: Platform::Discord,
            chat: DC_DM.to_string(),
            user: DC_USER.to_string(),
        }
    }

    fn say(&self, text: &str) {
        self.0
            .send_message(DC_DM, super::discord::user(DC_USER, "ann"), text, None);
    }

    async fn first_message(&self) -> String {
        let created = format!("/channels/{DC_DM}/messages");
        self.0
            .wait_until(10, "the answer's first message", |calls| {
                calls
                    .iter()
                    .any(|c| c.method == "POST" && c.path.ends_with(&created))
            })
            .await;
        String::new()
    }

    async fn first_edit(&self) -> String {
        let edits = format!("/channels/{DC_DM}/messages/");
        self.0
            .wait_until(10, "the answer's first edit", |calls| {
                calls
                    .iter()
                    .any(|c| c.method == "PATCH" && c.path.contains(&edits))
            })
            .await;
        self.0.calls_matching("PATCH", &edits)[0]
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string()
    }

    fn delete(&self, id: &str) {
        self.0.delete_message(id);
    }

    fn block(&self) {
        self.0.close_channel(DC_DM);
    }

    fn texts(&self) -> Vec<String> {
        self.0.texts()
    }

    const EDIT_PAUSE: Duration = Duration::from_millis(2500);

    fn refuse_next_edit(&self) {
        self.0.rate_limit_next(
            "PATCH",
            &format!("/api/v10/channels/{DC_DM}/messages/"),
            Self::EDIT_PAUSE.as_secs_f64(),
        );
    }

    fn edits(&self) -> Vec<Instant> {
        self.0
            .calls_matching("PATCH", &format!("/channels/{DC_DM}/messages/"))
            .iter()
            .map(|c| c.at)
            .collect()
    }

    fn writes(&self) -> Vec<Instant> {
        let chat = format!("/channels/{DC_DM}/messages");
        self.0
            .calls()
            .iter()
            .filter(|c| c.method != "GET" && c.path.contains(&chat))
            .map(|c| c.at)
            .collect()
    }

    const EDIT_INTERVAL: &'static str = "GPTBOT__DISCORD__EDIT_INTERVAL";

    fn typing_shown(&self) -> bool {
        !self
            .0
            .calls_matching("POST", &format!("/channels/{DC_DM}/typing"))
            .is_empty()
    }

    fn rate_limited(&self) -> usize {
        self.0.rate_limit_refusals().len()
    }

    const MAX_CHARS: usize = 2000;

    fn shown(raw: &str) -> Result<String, String> {
        if !raw.matches("```").count().is_multiple_of(2) {
            return Err("a code fence is left open".into());
        }
        Ok(raw.to_string())
    }

    fn command(&self, name: &str, args: &[(&str, serde_json::Value)]) {
        let options: Vec<serde_json::Value> = args
            .iter()
            .map(|(option, value)| {
                let kind = if value.is_i64() { 4 } else { 3 };
                serde_json::json!({"name": option, "type": kind, "value": value})
            })
            .collect();
        self.0.slash(
            name,
            serde_json::Value::Array(options),
            DC_DM,
            super::discord::user(DC_USER, "ann"),
            None,
        );
    }

    const ME: &'static str = "discord:4000000000000000001";
    const OTHER: &'static str = "4000000000000000002";
    const OTHER_ACCOUNT: &'static str = "discord:4000000000000000002";

    fn thought_and_answer(raw: &str) -> (Option<String>, String) {
        let mut thought = Vec::new();
        let mut rest = raw;
        while let Some(line) = rest.strip_prefix("-# ") {
            let (first, after) = line.split_once('\n').unwrap_or((line, ""));
            thought.push(first);
            rest = after;
        }
        let thought = (!thought.is_empty()).then(|| thought.join("\n"));
        (thought, rest.trim().to_string())
    }

    async fn wait_any(&self, what: &str, test: &(dyn for<'s> Fn(&'s str) -> bool + Sync)) {
        self.0
            .wait_until(15, what, |_| {
                let texts = self.0.texts();
                texts.iter().any(|t| test(t))
            })
            .await;
    }

    async fn wait_last_ending(&self, end: &str) {
        self.0
            .wait_until(20, &format!("the chat's last text ending {end:?}"), |_| {
                self.0
                    .texts()
                    .last()
                    .is_some_and(|t| t.trim_end().ends_with(end))
            })
            .await;
    }

    async fn wait_last(&self, text: &str) {
        self.0
            .wait_text(15, &format!("{text:?} in the chat"), |t| {
                t.trim_end() == text.trim_end()
            })
            .await;
    }
}

/// Runs each named scenario (a generic `async fn` of the test file over [`PrivateChat`])
/// on Telegram and on Discord.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod telegram {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<$crate::common::chats::Telegram>().await
                }
            )*
        }
        mod discord {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name::<$crate::common::chats::Discord>().await
                }
            )*
        }
    };
}
