//! Large message bodies on their way to the socket without a copy. A connection writes its
//! frames into one buffer (`Conn::wbuf`), which is cheapest for small frames; but copying
//! a 1 MiB body into it, only for the kernel to copy it again into the socket, was the
//! largest user-space cost of large deliveries (13 % of the broker's CPU with 1 MiB
//! messages). A body of at least `SPLICE_MIN` bytes is queued instead as the `Bytes` it
//! is stored in (a slice of a segment's mapping): what the buffer holds so far is frozen
//! into a chunk ahead of it, and the socket gets both with one vectored write.
//!
//! Invariant: every chunk goes out before anything in `wbuf` (the buffer is the tail).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncWrite;

use crate::protocol::frame::{FRAME_BODY, FRAME_END};

/// Bodies at least this large are queued, not copied (below it one copy is cheaper than
/// an extra iovec and chunk).
pub const SPLICE_MIN: usize = 16 * 1024;

/// Most chunks handed to one vectored write (well under any IOV_MAX).
const IOV_MAX_USED: usize = 64;

/// Output queued ahead of the connection's write buffer.
#[derive(Default)]
pub struct OutChunks {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl OutChunks {
    /// Bytes queued (not counting the write buffer behind them).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Appends body frames carrying `body` (split at `chunk` bytes) for `channel`: frame
    /// headers and ends go into `wbuf`, the body parts are queued as slices of `body`.
    pub fn body_frames(&mut self, wbuf: &mut BytesMut, channel: u16, body: &Bytes, chunk: usize) {
        debug_assert!(chunk > 0);
        let mut at = 0;
        while at < body.len() {
            let end = (at + chunk).min(body.len());
            wbuf.put_u8(FRAME_BODY);
            wbuf.put_u16(channel);
            wbuf.put_u32((end - at) as u32);
            self.push(wbuf.split().freeze());
            self.push(body.slice(at..end));
            wbuf.put_u8(FRAME_END);
            at = end;
        }
    }

    /// Marks `n` written bytes as sent: from the chunks first, then from `wbuf`.
    pub fn advance(&mut self, wbuf: &mut BytesMut, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                wbuf.advance(n);
                return;
            };
            let take = n.min(front.len());
            front.advance(take);
            self.len -= take;
            n -= take;
            if front.is_empty() {
                self.chunks.pop_front();
            }
        }
    }
}

/// Writes as much of the chunks and then `wbuf` as the socket takes in one call, calling
/// `on_full` whenever the socket has no room for it (the client, or the link to it, is not
/// taking what it is sent).
pub fn write_some<'a, W: AsyncWrite + Unpin>(
    wr: &'a mut W,
    chunks: &'a OutChunks,
    wbuf: &'a [u8],
    mut on_full: impl FnMut() + 'a,
) -> impl std::future::Future<Output = std::io::Result<usize>> + 'a {
    std::future::poll_fn(move |cx| {
        // tokio also answers Pending when the task has used up its budget of I/O polls
        // (128, then it must yield), however writable the socket is: that is not a full
        // socket.
        let had_budget = tokio::task::coop::has_budget_remaining();
        let polled = poll_write_some(cx, wr, chunks, wbuf);
        if polled.is_pending() && had_budget {
            on_full();
        }
        polled
    })
}

/// One vectored write of the chunks and `wbuf`.
///
/// The iovec array is built on the stack of each poll, not held across an await: an
/// `async fn` would keep it (1 KiB) in every connection's future, which 1,000 idle
/// connections showed as 1.5 MB more RSS.
fn poll_write_some<W: AsyncWrite + Unpin>(
    cx: &mut std::task::Context<'_>,
    wr: &mut W,
    chunks: &OutChunks,
    wbuf: &[u8],
) -> std::task::Poll<std::io::Result<usize>> {
    if chunks.is_empty() {
        return std::pin::Pin::new(wr).poll_write(cx, wbuf);
    }
    let mut iov = [IoSlice::new(&[]); IOV_MAX_USED];
    let mut used = 0;
    for (slot, chunk) in iov
        .iter_mut()
        .zip(chunks.chunks.iter().take(IOV_MAX_USED - 1))
    {
        *slot = IoSlice::new(chunk);
        used += 1;
    }
    if used == chunks.chunks.len() && !wbuf.is_empty() {
        iov[used] = IoSlice::new(wbuf);
        used += 1;
    }
    std::pin::Pin::new(wr).poll_write_vectored(cx, &iov[..used])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drains `chunks` then `wbuf` through `write_some` with a writer taking at most
    /// `step` bytes per call; returns what was written.
    fn drain(chunks: &mut OutChunks, wbuf: &mut BytesMut, step: usize) -> Vec<u8> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        while chunks.len() + wbuf.len() > 0 {
            let mut sink = Limited {
                taken: Vec::new(),
                step,
            };
            let n = rt
                .block_on(write_some(&mut sink, chunks, wbuf, || {}))
                .unwrap();
            assert_eq!(n, sink.taken.len());
            out.extend_from_slice(&sink.taken);
            chunks.advance(wbuf, n);
        }
        out
    }

    /// A writer that takes at most `step` bytes per call, vectored or not.
    struct Limited {
        taken: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Limited {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.taken.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = self.step;
            for b in bufs {
                let n = b.len().min(left);
                self.taken.extend_from_slice(&b[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(self.step - left))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_socket_whose_peer_does_not_read_is_noted_full_and_only_then() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut ours, _peer) = tokio::net::UnixStream::pair().unwrap();
            let (chunks, wbuf) = (OutChunks::default(), vec![7u8; 64 * 1024]);
            let full = std::cell::Cell::new(0);
            // Writes go through until the socket buffers are full; then one waits.
            for _ in 0..1000 {
                let write = write_some(&mut ours, &chunks, &wbuf, || full.set(full.get() + 1));
                let wait = std::time::Duration::from_millis(100);
                match tokio::time::timeout(wait, write).await {
                    Ok(written) => {
                        assert!(written.unwrap() > 0);
                        assert_eq!(full.get(), 0, "a write that went through is not noted");
                    }
                    Err(_) => break,
                }
            }
            assert!(
                full.get() > 0,
                "the write that waited noted the socket full"
            );
        });
    }

    #[test]
    fn queued_bodies_go_out_byte_for_byte_as_copied_frames_would() {
        let body = Bytes::from((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        for step in [1, 7, 4096, 1 << 20] {
            // Queued: a small frame before, the body frames, a small frame after.
            let mut chunks = OutChunks::default();
            let mut wbuf = BytesMut::new();
            crate::protocol::frame::write(&mut wbuf, 1, 3, b"before");
            chunks.body_frames(&mut wbuf, 3, &body, 30_000);
            crate::protocol::frame::write(&mut wbuf, 1, 3, b"after");
            let sent = drain(&mut chunks, &mut wbuf, step);
            // Copied, as every body was written before.
            let mut expected = BytesMut::new();
            crate::protocol::frame::write(&mut expected, 1, 3, b"before");
            for part in body.chunks(30_000) {
                crate::protocol::frame::write(&mut expected, FRAME_BODY, 3, part);
            }
            crate::protocol::frame::write(&mut expected, 1, 3, b"after");
            assert_eq!(sent, &expected[..], "read {step} bytes at a time");
            assert!(chunks.is_empty() && wbuf.is_empty());
        }
    }
}
