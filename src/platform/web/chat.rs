//! The chat page and its one API call: `POST /api/send` hands the text (a message or a
//! command such as `/reset`, `/quota`, `/system …`, `/cancel`) to the conversation core
//! and answers with an event stream of the reply as it is written — each message's
//! Markdown rendered to safe HTML — then the balance. The answer runs to its end even if
//! the browser leaves, so the history and the ledger stay whole.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::auth::{Denied, set_cookie};
use super::{WebState, markdown, pages};
use crate::core::adapter::{
    AdapterError, Capabilities, ChatAdapter, LengthUnit, ReplyTarget, SentMessage, Stage,
};
use crate::core::error::chain;
use crate::core::event::{ChatKind, Content, IncomingEvent, Platform, Sender, UserId};

/// Longest message accepted from the box, in characters.
const MAX_TEXT_CHARS: usize = 16_000;

pub fn user_id(name: &str) -> UserId {
    UserId::new(Platform::Web, name)
}

/// What a web user sent, as the core takes it: a direct chat named after the user, so
/// the history, the quota and the in-flight slot are keyed as on every platform.
fn event(user: &str, content: Content, message_id: String) -> IncomingEvent {
    IncomingEvent {
        platform: Platform::Web,
        chat_id: user.to_string(),
        chat_kind: ChatKind::Direct,
        group: None,
        sender: Sender {
            id: user.to_string(),
            display_name: user.to_string(),
            is_bot: false,
        },
        message_id,
        content,
        mentioned: true,
        reply_to_bot: false,
        thread: None,
        quoted: None,
        attachments: Vec::new(),
        bot_thread: false,
        sender_manages_group: false,
    }
}

pub async fn page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let (id, login) = match state.login(&headers).await {
        Ok(found) => found,
        Err(denied) => return denied.into_response(),
    };
    let user = user_id(&login.user);
    let key = event(&login.user, Content::Text(String::new()), String::new()).session_key();
    let turns = match state.sessions.load(&key).await {
        Ok(session) => session.turns,
        Err(e) => {
            tracing::error!(error = %chain(&e), "could not load a web user's history");
            Vec::new()
        }
    };
    let balance = state.balance_text(&user).await;
    let admin = state.conversation.access().is_admin(&user);
    let usage = match state.quota.usage_by_day(&user, 14).await {
        Ok(days) => days,
        Err(e) => {
            tracing::warn!(error = %chain(&e), "could not read a web user's usage");
            Vec::new()
        }
    };
    let mut response = pages::chat(
        &state,
        pages::ChatView {
            user: &login.user,
            csrf: &login.csrf,
            balance,
            admin,
            turns: &turns,
            usage: &usage,
        },
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::SET_COOKIE,
        set_cookie(&state, Some(&id)),
    );
    response
}

#[derive(Deserialize)]
pub struct Send {
    text: String,
}

/// One write of the reply, as the page shows it.
struct Update {
    id: u64,
    text: String,
    done: bool,
}

pub async fn send(
    State(state): State<WebState>,
    headers: HeaderMap,
    Json(body): Json<Send>,
) -> Response {
    let (_, login) = match state.login_for_change(&headers, None).await {
        Ok(found) => found,
        Err(Denied::NotLoggedIn) => {
            return (axum::http::StatusCode::UNAUTHORIZED, "Please log in again.").into_response();
        }
        Err(denied) => return denied.into_response(),
    };
    let text = body.text.trim().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    if text.chars().count() > MAX_TEXT_CHARS {
        let _ = tx.send(Update {
            id: 0,
            text: format!("That message is too long: at most {MAX_TEXT_CHARS} characters, please."),
            done: true,
        });
    } else if let Some(content) = Content::from_typed(&text, None) {
        let seq = state.next_message.fetch_add(1, Ordering::Relaxed);
        let event = event(&login.user, content, seq.to_string());
        let conversation = state.conversation.clone();
        // Runs to its end even if the page goes away: the turn and the charge land.
        tokio::spawn(async move {
            let adapter = StreamAdapter {
                tx,
                next: AtomicU64::new(1),
            };
            conversation.handle(&event, &adapter).await;
        });
    }
    let user = user_id(&login.user);
    Sse::new(stream(state, user, rx))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The reply's writes as events, then the balance once the answer is done. A bounded
/// channel between: a slow reader slows nothing but its own stream.
fn stream(
    state: WebState,
    user: UserId,
    mut updates: mpsc::UnboundedReceiver<Update>,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> {
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        while let Some(update) = updates.recv().await {
            let payload = serde_json::json!({
                "id": update.id.to_string(),
                "html": markdown::render(&update.text),
                "final": update.done,
            });
            let event = Event::default().event("message").data(payload.to_string());
            // The page went away: keep draining, so the answer is not held up.
            let _ = tx.send(event).await;
        }
        let balance = state.balance_text(&user).await;
        let done = serde_json::json!({ "balance": balance });
        let _ = tx
            .send(Event::default().event("done").data(done.to_string()))
            .await;
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}

/// The reply's writes, handed to the event stream. Nothing fails here: a page that went
/// away just stops reading, and the answer still completes.
struct StreamAdapter {
    tx: mpsc::UnboundedSender<Update>,
    next: AtomicU64,
}

#[async_trait]
impl ChatAdapter for StreamAdapter {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            max_message_len: 60_000,
            length_unit: LengthUnit::Chars,
            min_edit_interval: Duration::from_millis(100),
            first_message_delay: Duration::ZERO,
        }
    }

    async fn send(
        &self,
        target: &ReplyTarget,
        text: &str,
        stage: Stage,
    ) -> Result<SentMessage, AdapterError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Update {
            id,
            text: text.to_string(),
            done: stage == Stage::Final,
        });
        Ok(SentMessage {
            chat_id: target.chat_id.clone(),
            message_id: id.to_string(),
        })
    }

    async fn edit(
        &self,
        message: &SentMessage,
        text: &str,
        stage: Stage,
    ) -> Result<(), AdapterError> {
        let _ = self.tx.send(Update {
            id: message.message_id.parse().unwrap_or(0),
            text: text.to_string(),
            done: stage == Stage::Final,
        });
        Ok(())
    }

    async fn typing(&self, _target: &ReplyTarget) -> Result<(), AdapterError> {
        Ok(())
    }

    /// Only the logged-in user sees the page, so a /link code may be shown.
    fn replies_are_private(&self) -> bool {
        true
    }
}
