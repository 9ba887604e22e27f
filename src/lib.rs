//! gptbot: an LLM chat bot for Telegram, Discord, the web and the terminal, with exact
//! token quotas (SQLite or PostgreSQL ledger), history that survives restarts (Redis
//! sessions with sliding expiry) and streaming answers from any OpenAI-compatible server.
//!
//! Dependencies point inwards: [`core`] (events, commands, the admin language and the
//! ports) imports nothing of the crate; [`chat`] (the conversation) uses core and the
//! services ([`quota`], [`access`], [`admin`], [`llm`] token counting); the adapters in
//! [`platform`] use chat and core, and serve HTTP through [`ops::http`]; [`app`] wires
//! everything under one cancellation tree and [`cli`] only parses arguments and renders.
//! [`config`] is a leaf: it imports nothing of the crate.

pub mod access;
pub mod accounts;
pub mod admin;
pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod coord;
pub mod core;
pub mod db;
pub mod llm;
pub mod ops;
pub mod platform;
pub mod quota;
pub mod session;
pub mod telemetry;
pub mod tools;
