//! Showing an error with its whole cause chain, so a log line says why ("settling 300
//! tokens for telegram:5: … : no such table: quota_ledger") and not only what failed.

use std::fmt;

/// Input that cannot be used — a malformed id, amount or name — and why, in words for
/// whoever typed it. What every pure parser of the crate fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Displays `error` and each of its sources, joined by `: `.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The whole cause chain of `error`, for log fields: `error = %chain(&e)`.
pub fn chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Chain<'a> {
    Chain(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("settling 300 tokens")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_cause_is_shown() {
        let e = Outer(std::io::Error::other("disk I/O error"));
        assert_eq!(chain(&e).to_string(), "settling 300 tokens: disk I/O error");
    }
}
