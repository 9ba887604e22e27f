//! Implementations of the coordination port ([`crate::core::coordination`]): Redis, shared
//! by every replica that points at it.

pub mod budgets;
pub mod permits;
pub mod redis;
