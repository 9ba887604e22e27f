//! Group membership in the fake Bot API: `getChatMember` answers as Telegram does, with
//! the member's `status` — `creator` for the group's owner, `administrator` (with its
//! rights) for those the test promotes, `member` for everyone else — and 400 for a chat
//! or user id that is not one.

use std::collections::{HashMap, HashSet};

use axum::response::Response;
use serde_json::{Value, json};

use super::telegram::{FakeTelegram, error, ok, user_json};

#[derive(Default)]
pub struct Members {
    owners: HashMap<i64, i64>,
    admins: HashMap<i64, HashSet<i64>>,
}

impl FakeTelegram {
    /// `user` owns group `chat` (status `creator`).
    pub fn set_owner(&self, chat: i64, user: i64) {
        self.state.lock().unwrap().members.owners.insert(chat, user);
    }

    /// `user` is one of group `chat`'s administrators.
    pub fn promote(&self, chat: i64, user: i64) {
        let mut s = self.state.lock().unwrap();
        s.members.admins.entry(chat).or_default().insert(user);
    }
}

pub(super) fn call(fake: &FakeTelegram, body: &Value) -> Response {
    let (Some(chat), Some(user)) = (as_id(&body["chat_id"]), as_id(&body["user_id"])) else {
        return error(400, "Bad Request: chat not found", None);
    };
    let s = fake.state.lock().unwrap();
    let who = user_json(user, &format!("User{user}"));
    if s.members.owners.get(&chat) == Some(&user) {
        return ok(json!({"status": "creator", "user": who, "is_anonymous": false}));
    }
    if s.members
        .admins
        .get(&chat)
        .is_some_and(|a| a.contains(&user))
    {
        return ok(json!({
            "status": "administrator", "user": who, "can_be_edited": false,
            "is_anonymous": false, "can_manage_chat": true, "can_delete_messages": true,
            "can_manage_video_chats": true, "can_restrict_members": true,
            "can_promote_members": false, "can_change_info": true, "can_invite_users": true,
            "can_post_stories": false, "can_edit_stories": false, "can_delete_stories": false,
            "can_pin_messages": true, "can_manage_topics": false
        }));
    }
    ok(json!({"status": "member", "user": who}))
}

/// A chat or user id as the Bot API takes it: a number, or a number in a string.
fn as_id(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}
