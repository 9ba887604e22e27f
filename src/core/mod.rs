//! The platform-neutral heart of gptbot: the incoming event and the command language,
//! and the ports the conversation talks through — [`adapter::ChatAdapter`] (replies),
//! [`model::ModelClient`] (completions), [`session::SessionStore`] (histories) and
//! [`clock::Clock`] (time). It imports nothing else of the crate; everything else
//! depends on it.

pub mod adapter;
pub mod admin;
pub mod budget;
pub mod clock;
pub mod command;
pub mod coordination;
pub mod error;
pub mod event;
pub mod health;
pub mod limiter;
pub mod metrics;
pub mod model;
pub mod pacing;
pub mod payments;
pub mod session;
pub mod text;
pub mod token;
pub mod tools;
