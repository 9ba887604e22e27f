//! Model clients and token counting: [`openai::OpenAiClient`] implements the
//! [`crate::core::model::ModelClient`] port for any OpenAI-compatible server, and
//! [`tokens::TokenCounter`] counts tokens locally for context trimming and reservations.

pub mod audio;
pub mod bpe;
mod chunk;
pub mod duration;
pub mod errors;
pub mod openai;
pub mod probe;
pub mod sse;
pub mod think;
pub mod tokens;
pub mod transport;
