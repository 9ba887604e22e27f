//! Telegram `Message` → [`IncomingEvent`]: who sent it, whether the bot was addressed
//! (@mention, a reply to the bot, a command), the text with the mention removed, and a
//! word for non-text content. Pure: no I/O.

use teloxide::types::{Me, Message, MessageEntityKind, MessageEntityRef};

use crate::core::event::{Attachment, ChatKind, Content, IncomingEvent, Platform, Quoted, Sender};

/// Builds the event, or `None` for messages with no human sender (channel posts,
/// service messages) and for commands addressed to another bot.
pub fn message_event(msg: &Message, me: &Me, edited: bool) -> Option<IncomingEvent> {
    let from = msg.from.as_ref()?;
    let chat_kind = if msg.chat.is_private() {
        ChatKind::Direct
    } else {
        ChatKind::Group
    };
    // A forum topic is a conversation of its own. Every message in a topic "replies"
    // to the topic's first message, which is no reply the user made.
    let thread = msg.is_topic_message.then_some(msg.thread_id).flatten();
    let replied = msg
        .reply_to_message()
        .filter(|r| thread.is_none_or(|t| t.0 != r.id));
    let reply_to_bot = replied
        .and_then(|r| r.from.as_ref())
        .is_some_and(|u| u.id == me.user.id);
    let quoted = replied.and_then(|r| {
        let author = match &r.from {
            Some(u) if u.id == me.user.id => "you (the assistant)".to_string(),
            Some(u) => u.first_name.clone(),
            None => "the chat".to_string(),
        };
        // The part the user quoted, if they picked one; else the whole message.
        let text = msg
            .quote()
            .map(|q| q.text.as_str())
            .or_else(|| r.text())
            .or_else(|| r.caption())?;
        Quoted::new(author, text)
    });

    let (text, entities) = match (msg.text(), msg.parse_entities()) {
        (Some(text), entities) => (Some(text), entities.unwrap_or_default()),
        (None, _) => (
            msg.caption(),
            msg.parse_caption_entities().unwrap_or_default(),
        ),
    };
    let (cleaned, mentioned) = match text {
        Some(text) => strip_mentions(text, &entities, me),
        None => (String::new(), false),
    };

    // A document is read into the prompt, a photo shown to the model; the caption is
    // the question.
    let document = msg.document().map(|d| {
        let mime = d.mime_type.as_ref().map(|m| m.essence_str().to_string());
        let is_image = mime.as_deref().is_some_and(|m| m.starts_with("image/"));
        Attachment {
            id: d.file.id.0.clone(),
            name: d.file_name.clone().unwrap_or_else(|| "document".into()),
            mime,
            size: announced_size(d.file.size),
            // Telegram does not say an image document's size in pixels.
            image: is_image.then_some((0, 0)),
            audio_seconds: None,
        }
    });
    // Telegram sends a photo in several sizes, smallest first: the largest is read.
    let photo = msg
        .photo()
        .and_then(|sizes| sizes.last())
        .map(|p| Attachment {
            id: p.file.id.0.clone(),
            name: "photo.jpg".into(),
            mime: Some("image/jpeg".into()),
            size: announced_size(p.file.size),
            image: Some((p.width, p.height)),
            audio_seconds: None,
        });
    // Voice notes and audio files are transcribed, then answered like text.
    let voice = msg.voice().map(|v| Attachment {
        id: v.file.id.0.clone(),
        name: "voice.ogg".into(),
        mime: v.mime_type.as_ref().map(|m| m.essence_str().to_string()),
        size: announced_size(v.file.size),
        image: None,
        audio_seconds: Some(v.duration.seconds()),
    });
    let audio = msg.audio().map(|a| Attachment {
        id: a.file.id.0.clone(),
        name: a.file_name.clone().unwrap_or_else(|| "audio.mp3".into()),
        mime: a.mime_type.as_ref().map(|m| m.essence_str().to_string()),
        size: announced_size(a.file.size),
        image: None,
        audio_seconds: Some(a.duration.seconds()),
    });
    let attachments: Vec<Attachment> = document
        .into_iter()
        .chain(photo)
        .chain(voice)
        .chain(audio)
        .collect();
    let content = if edited {
        Content::Unsupported("an edited message".into())
    } else if msg.text().is_some() {
        // Commands are parsed here, at the edge; `/cmd@otherbot` is not for us.
        Content::from_typed(&cleaned, Some(me.username()))?
    } else if !attachments.is_empty() {
        Content::Text(cleaned)
    } else {
        Content::Unsupported(describe(msg).into())
    };
    Some(IncomingEvent {
        platform: Platform::Telegram,
        chat_id: msg.chat.id.0.to_string(),
        chat_kind,
        group: (chat_kind == ChatKind::Group).then(|| msg.chat.id.0.to_string()),
        sender: Sender {
            id: from.id.0.to_string(),
            display_name: from.first_name.clone(),
            is_bot: from.is_bot,
        },
        message_id: msg.id.0.to_string(),
        content,
        mentioned,
        reply_to_bot,
        thread: thread.map(|t| t.0.0.to_string()),
        quoted,
        attachments,
        bot_thread: false,
        sender_manages_group: false,
    })
}

/// The size Telegram announced: teloxide reads a missing `file_size` as `u32::MAX`,
/// which means "not said" (getFile tells before the download), not "too large".
fn announced_size(size: u32) -> Option<u64> {
    (size != u32::MAX).then_some(u64::from(size))
}

/// Removes the bot's @mentions from `text` (keeping its lines, tidying the gaps) and
/// says whether the message was addressed to the bot: mentioned, or a command that is
/// not for another bot.
fn strip_mentions(text: &str, entities: &[MessageEntityRef<'_>], me: &Me) -> (String, bool) {
    let mut addressed = false;
    let mut out = String::with_capacity(text.len());
    let mut cut = 0;
    for entity in entities {
        let is_me = match entity.kind() {
            MessageEntityKind::Mention => entity
                .text()
                .trim_start_matches('@')
                .eq_ignore_ascii_case(me.username()),
            MessageEntityKind::TextMention { user } => user.id == me.user.id,
            MessageEntityKind::BotCommand => {
                let addressee = entity.text().split_once('@').map(|(_, to)| to);
                addressed |= addressee.is_none_or(|to| to.eq_ignore_ascii_case(me.username()));
                false
            }
            _ => false,
        };
        if is_me && entity.start() >= cut {
            addressed = true;
            out.push_str(&text[cut..entity.start()]);
            cut = entity.end();
        }
    }
    out.push_str(&text[cut..]);
    (crate::platform::tidy_after_mention(&out), addressed)
}

/// A word or two for what a non-text message carried.
fn describe(msg: &Message) -> &'static str {
    if msg.photo().is_some() {
        "a photo"
    } else if msg.sticker().is_some() {
        "a sticker"
    } else if msg.voice().is_some() {
        "a voice message"
    } else if msg.video_note().is_some() {
        "a video message"
    } else if msg.video().is_some() {
        "a video"
    } else if msg.audio().is_some() {
        "an audio file"
    } else if msg.animation().is_some() {
        "a GIF"
    } else if msg.document().is_some() {
        "a document"
    } else {
        "this kind of message"
    }
}
