//! Inline keyboard presses → [`IncomingEvent`]s. A button of ours carries a command
//! (`/model gpt-4o`) as its callback data; pressing it is that command, sent by whoever
//! pressed it, in the chat (and forum topic) of the message the button is under.
//! Pure: no I/O.

use teloxide::types::{CallbackQuery, Me};

use crate::core::event::{ChatKind, Content, IncomingEvent, Platform, Sender};

/// The press as an event, or `None` for a press on a message we cannot see any more, or
/// data that is not one of our commands.
pub fn callback_event(query: &CallbackQuery, me: &Me) -> Option<IncomingEvent> {
    let message = query.message.as_ref()?;
    let data = query.data.as_deref()?;
    let content = match Content::from_typed(data, Some(me.username()))? {
        command @ Content::Command(_) => command,
        _ => return None,
    };
    let chat = message.chat();
    let chat_kind = if chat.is_private() {
        ChatKind::Direct
    } else {
        ChatKind::Group
    };
    let thread = message
        .regular_message()
        .filter(|m| m.is_topic_message)
        .and_then(|m| m.thread_id);
    Some(IncomingEvent {
        platform: Platform::Telegram,
        chat_id: chat.id.0.to_string(),
        chat_kind,
        group: (chat_kind == ChatKind::Group).then(|| chat.id.0.to_string()),
        sender: Sender {
            id: query.from.id.0.to_string(),
            display_name: query.from.first_name.clone(),
            is_bot: query.from.is_bot,
        },
        message_id: message.id().0.to_string(),
        content,
        // The button is under the bot's own message: it is addressed to the bot.
        mentioned: true,
        reply_to_bot: true,
        thread: thread.map(|t| t.0.0.to_string()),
        quoted: None,
        attachments: Vec::new(),
        bot_thread: false,
        sender_manages_group: false,
    })
}
