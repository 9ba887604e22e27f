//! Telegram albums: several photos or files sent together arrive as separate messages
//! sharing a `media_group_id`, a few milliseconds apart, the caption on one of them. They
//! are gathered until the album has been quiet for a moment and answered once, as one
//! message with all its attachments — not once per picture.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::core::event::{Content, IncomingEvent};

/// How long after an album's last part it is taken as complete (Telegram sends the
/// parts back to back; a client on a slow link may space them out a little).
const QUIET: Duration = Duration::from_millis(800);
/// An album is answered at the latest this long after its first part.
const MAX_WAIT: Duration = Duration::from_secs(4);

/// Albums being gathered, by media group id.
#[derive(Default)]
pub struct Albums {
    parts: Mutex<HashMap<String, (IncomingEvent, Instant)>>,
}

impl Albums {
    /// Adds a part; true when it is the album's first, whose handler then waits for the
    /// rest with [`Albums::collect`] (the others return at once).
    pub fn add(&self, group: &str, event: IncomingEvent) -> bool {
        let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
        match parts.get_mut(group) {
            Some((album, last)) => {
                merge(album, event);
                *last = Instant::now();
                false
            }
            None => {
                parts.insert(group.to_string(), (event, Instant::now()));
                true
            }
        }
    }

    /// The whole album, once no part came for [`QUIET`] (or [`MAX_WAIT`] passed) — or
    /// what has come of it when `closed` resolves (shutdown: no more parts will be taken).
    pub async fn collect(
        &self,
        group: &str,
        closed: impl std::future::Future<Output = ()>,
    ) -> Option<IncomingEvent> {
        let started = Instant::now();
        tokio::pin!(closed);
        loop {
            let quiet_at = {
                let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
                let (_, last) = parts.get(group)?;
                let quiet_at = (*last + QUIET).min(started + MAX_WAIT);
                if Instant::now() >= quiet_at {
                    return parts.remove(group).map(|(album, _)| album);
                }
                quiet_at
            };
            tokio::select! {
                () = tokio::time::sleep_until(quiet_at) => {}
                () = &mut closed => {
                    let mut parts = self.parts.lock().unwrap_or_else(|p| p.into_inner());
                    return parts.remove(group).map(|(album, _)| album);
                }
            }
        }
    }
}

/// Folds a later part into the album: its attachments, and its caption if the album
/// has none yet (Telegram puts the caption on one part).
fn merge(album: &mut IncomingEvent, part: IncomingEvent) {
    album.attachments.extend(part.attachments);
    if let (Content::Text(text), Content::Text(more)) = (&mut album.content, part.content) {
        let more = more.trim();
        if text.trim().is_empty() {
            *text = more.to_string();
        } else if !more.is_empty() {
            text.push('\n');
            text.push_str(more);
        }
    }
    album.mentioned |= part.mentioned;
    album.reply_to_bot |= part.reply_to_bot;
    if album.quoted.is_none() {
        album.quoted = part.quoted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::event::{Attachment, ChatKind, Platform, Sender};

    fn part(caption: &str, file: &str) -> IncomingEvent {
        IncomingEvent {
            platform: Platform::Telegram,
            chat_id: "1".into(),
            chat_kind: ChatKind::Direct,
            group: None,
            sender: Sender {
                id: "1".into(),
                display_name: "Ann".into(),
                is_bot: false,
            },
            message_id: file.into(),
            content: Content::Text(caption.into()),
            mentioned: false,
            reply_to_bot: false,
            thread: None,
            quoted: None,
            attachments: vec![Attachment {
                id: file.into(),
                name: format!("{file}.jpg"),
                mime: Some("image/jpeg".into()),
                size: Some(10),
                image: Some((10, 10)),
                audio_seconds: None,
            }],
            bot_thread: false,
            sender_manages_group: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_album_is_answered_once_with_every_part_and_the_caption() {
        let albums = Albums::default();
        assert!(albums.add("g", part("", "a")));
        assert!(!albums.add("g", part("compare these", "b")));
        assert!(!albums.add("g", part("", "c")));
        let album = albums.collect("g", std::future::pending()).await.unwrap();
        assert_eq!(album.content, Content::Text("compare these".into()));
        let files: Vec<&str> = album.attachments.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(files, ["a", "b", "c"]);
        assert_eq!(album.message_id, "a");
        assert!(
            albums.collect("g", std::future::pending()).await.is_none(),
            "taken once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_part_arriving_later_extends_the_wait_up_to_a_limit() {
        let albums = std::sync::Arc::new(Albums::default());
        assert!(albums.add("g", part("", "a")));
        let feeder = albums.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                feeder.add("g", part("", &format!("p{i}")));
            }
        });
        let started = Instant::now();
        let album = albums.collect("g", std::future::pending()).await.unwrap();
        assert_eq!(started.elapsed(), MAX_WAIT, "never waits past the limit");
        assert!(album.attachments.len() > 2);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_hands_over_what_has_come_at_once() {
        let albums = Albums::default();
        assert!(albums.add("g", part("these two?", "a")));
        let closed = tokio::time::sleep(Duration::from_millis(100));
        let started = Instant::now();
        let album = albums.collect("g", closed).await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::from_millis(100),
            "not the quiet wait"
        );
        assert_eq!(album.attachments.len(), 1);
        assert_eq!(album.content, Content::Text("these two?".into()));
        assert!(
            albums.collect("g", std::future::pending()).await.is_none(),
            "taken once"
        );
    }
}
