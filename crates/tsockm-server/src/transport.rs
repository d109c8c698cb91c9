//! [`Transport`]: the seam between a connection's code and the byte stream
//! under it, so that plain TCP and TLS are served by the same code.
//!
//! It is a small trait of our own rather than `AsyncRead + AsyncWrite`
//! because the connection code needs two things those do not give: to wait
//! until input *may* be ready without holding a read buffer (an idle peer
//! then holds none), and to read and write through a shared reference, so
//! that one task runs both halves with no lock and no second task per peer.
//! The `try_*` methods never wait: they give `WouldBlock` when the stream
//! has nothing to give or no room to take, after which the matching
//! `poll_*_ready` waits for the next chance.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

/// A connected byte stream the server reads and writes.
pub trait Transport: Send + Sync + 'static {
    /// Resolves when input may be ready (possibly spuriously).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Reads what is available into `buf`'s spare capacity; `Ok(0)` at the
    /// end of the input, `WouldBlock` when nothing is ready.
    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Resolves when output may be accepted (possibly spuriously).
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Writes as much of `bufs` as the stream takes now; `WouldBlock` when
    /// it takes nothing.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Pushes out what the transport itself buffered (TLS records); plain
    /// TCP has nothing to push.
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Ends the output (FIN, after a TLS close_notify).
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Transport for TcpStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Polled directly (this task is the socket's only reader), so the
        // task keeps no waiter node, unlike `readable()`.
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    fn poll_flush(&self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_shutdown(Pin::new(self), cx)
    }
}
