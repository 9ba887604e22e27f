//! The platform adapters: Telegram (teloxide), Discord (serenity) and the terminal. Each
//! turns its own updates into [`crate::core::event::IncomingEvent`]s and implements the
//! [`crate::core::adapter::ChatAdapter`] port for its replies.

pub mod capped;
pub mod console;
pub mod discord;
pub mod pacer;
pub mod telegram;
pub mod web;

/// Tidies a text a mention was cut out of: runs of spaces become one, lines are kept.
pub(crate) fn tidy_after_mention(text: &str) -> String {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}
