//! A download buffer that stops at a size: the bytes are counted as they stream, so a
//! platform's (or a forger's) size claim decides nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Collects a download and fails the write that would take it past `limit` bytes.
pub struct Capped {
    bytes: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Capped {
    /// A buffer for at most `limit` bytes; `expected` (what the platform said) only
    /// sizes the first allocation, never past the limit.
    pub fn new(limit: u64, expected: u64) -> Capped {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let start = usize::try_from(expected)
            .unwrap_or(0)
            .min(limit)
            .min(1 << 20);
        Capped {
            bytes: Vec::with_capacity(start),
            limit,
            over: false,
        }
    }

    /// Whether the stream went past the limit (the download was cut there).
    pub fn over(&self) -> bool {
        self.over
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl tokio::io::AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            self.over = true;
            return Poll::Ready(Err(io::Error::other("the file is larger than allowed")));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn writes_stop_at_the_limit_whatever_was_announced() {
        let mut capped = Capped::new(10, 3);
        capped.write_all(b"12345").await.unwrap();
        assert!(capped.write_all(b"678901").await.is_err());
        assert!(capped.over());
        assert_eq!(capped.into_bytes(), b"12345");
        // A huge announced size does not allocate it.
        assert!(Capped::new(10, u64::MAX).bytes.capacity() <= 10);
    }
}
