//! A connection whose writes stop making progress is closed.
//!
//! hyper's header read timeout only covers waiting for a request head, and the request timeout
//! ends at the response head. A client that asks for a large body (or pipelines many requests)
//! and then never reads, with a tiny receive window, would otherwise keep its connection, and
//! its slot under the connection cap, forever. So every write (and flush) that stays blocked
//! for `limit` fails with `TimedOut`, which ends the connection. Time spent with nothing to
//! write does not count: an event stream waiting for its next event is not stalled, one whose
//! client stopped reading is closed after `limit` like any other response.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

pub struct WriteStallTimeout<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is blocked; cleared by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteStallTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// `Ready(Err)` once the current stall has lasted `limit`; otherwise `Pending` with the
    /// timer armed so the task wakes up to find out.
    fn check_stall<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteStallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteStallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_blocked_for_the_limit_fails_and_progress_resets_it() {
        // A pipe with room for 4 bytes whose reader never reads.
        let (_reader, writer) = tokio::io::duplex(4);
        let mut writer = WriteStallTimeout::new(writer, Duration::from_secs(30));
        writer.write_all(b"abcd").await.expect("fits");
        let stalled = writer.write_all(b"efgh").await.expect_err("never read");
        assert_eq!(stalled.kind(), io::ErrorKind::TimedOut);

        // A slow reader that keeps making progress is not cut off.
        let (mut reader2, writer2) = tokio::io::duplex(4);
        let mut writer2 = WriteStallTimeout::new(writer2, Duration::from_secs(30));
        let slow = tokio::spawn(async move {
            let mut buf = [0u8; 4];
            for _ in 0..4 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                tokio::io::AsyncReadExt::read_exact(&mut reader2, &mut buf)
                    .await
                    .expect("read");
            }
        });
        writer2.write_all(&[0u8; 16]).await.expect("progress");
        slow.await.expect("reader");
    }
}
