//! gptbot: an LLM chat bot for Telegram, Discord and the terminal, with exact token
//! quotas (SQLite ledger), history that survives restarts (Redis sessions with sliding
//! expiry) and streaming answers from any OpenAI-compatible server.

pub mod access;
pub mod app;
pub mod chat;
pub mod cli;
pub mod config;
pub mod db;
pub mod event;
pub mod llm;
pub mod platform;
pub mod quota;
pub mod session;
pub mod telemetry;
