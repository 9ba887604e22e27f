//! The platform-neutral chat core: command parsing, the conversation flow, streaming
//! replies and message splitting.

pub mod commands;
pub mod conversation;
pub mod reply;
pub mod split;

pub use conversation::{Conversation, ConversationSettings, Outcome};
