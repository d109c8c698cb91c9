//! One client connection: a reader that decodes frames into registry
//! commands, and a writer that drains this connection's [`Outbox`].
//!
//! Both halves run in one task over the same stream (by reference, through
//! the [`Transport`] seam, so no locking and no second task per peer, and
//! plain TCP and TLS share this code). The reader holds no buffer while the
//! peer is idle; the writer sends everything queued with vectored writes. A
//! connection never decides anything about peers: it only moves bytes, and
//! it never waits on anything but its own socket and the registry's queue.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::future::poll_fn;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, timeout};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tsockm_proto::FrameCodec;

use crate::doorman::{Slot, Ticket};
use crate::outbox::{Backlog, Outbox};
use crate::registry::{Command, ConnId, NewConnection, RegistryHandle};
use crate::stats::Stats;
use crate::transport::Transport;

/// Bytes reserved for a read from a quiet peer. Reads that fill the buffer
/// double it, up to [`READ_CHUNK_MAX_BYTES`]; the buffer is released
/// whenever it is empty, so an idle peer holds none.
pub const READ_CHUNK_MIN_BYTES: usize = 512;

/// Largest read reserved for a busy peer.
pub const READ_CHUNK_MAX_BYTES: usize = 64 * 1024;

/// Most buffers handed to one vectored write.
pub const MAX_IOVECS: usize = 512;

/// Largest batch vector a writer keeps between batches.
pub const KEPT_BATCH_CAPACITY: usize = 0;

/// How long a closing connection may take to write what is left for it.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// How long, after the last frame is written, unread input is drained so the
/// close is a clean FIN rather than a reset that could destroy that frame.
pub const CLOSE_DRAIN: Duration = Duration::from_millis(500);

/// What a connection needs from the server.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    /// Where decoded frames go.
    pub registry: RegistryHandle,
    /// Traffic counters.
    pub stats: Arc<Stats>,
    /// Frames waiting in all outboxes, and what each may hold.
    pub backlog: Arc<Backlog>,
    /// Longest frame in bytes.
    pub max_frame_bytes: usize,
    /// Cancelled once the registry has stopped: a TLS handshake still under
    /// way is then given up. (A session's task learns of the end from its
    /// outbox, which the registry closes.)
    pub shutdown: CancellationToken,
}

/// What the door hands on with an accepted connection.
#[derive(Debug)]
pub struct Accepted {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The server's number for this connection.
    pub conn: ConnId,
    /// When it was accepted: the handshake deadline counts from here.
    pub accepted_at: Instant,
    /// Its place among the unregistered connections (the doorman's count).
    pub ticket: Ticket,
    /// Its place among all connections (`--max-peers`' slots), held until
    /// the connection's task ends.
    pub slot: Slot,
}

/// Serves one accepted connection until it ends.
///
/// `accepted` comes boxed and `cx` shared: each is then one pointer in the
/// task instead of 80 and 64 bytes for the connection's whole life.
///
/// This future is every connection's task for its whole life, so its size
/// is memory per idle peer: keep large buffers out of its locals. It is an
/// `async` block rather than an `async fn` because an `async fn` keeps its
/// arguments twice (as captured and as locals); the block uses them in
/// place.
#[allow(clippy::manual_async_fn)]
pub fn serve<T: Transport>(
    mut stream: T,
    accepted: Box<Accepted>,
    cx: Arc<ConnectionContext>,
) -> impl Future<Output = ()> + Send {
    async move {
        // Out of its box at once, and the box freed (a box moved out of
        // is freed only where its variable ends: here, the block's end).
        // Only `conn` and `slot` stay in the task.
        let Accepted {
            addr,
            conn,
            accepted_at,
            ticket,
            slot,
        } = {
            let accepted = accepted;
            *accepted
        };
        let outbox = Arc::new(Outbox::with_backlog(cx.backlog.clone()));
        let new = NewConnection::new(conn, addr, outbox.clone(), accepted_at, ticket);
        if cx.registry.send(Command::Connect(new)).await.is_err() {
            return; // Shutting down.
        }
        let wrote_to_the_end = exchange(&stream, conn, &cx, &outbox).await;
        if !wrote_to_the_end {
            // A write failed while the peer was online: tell the registry
            // (it ignores connections it already closed).
            let _ = cx
                .registry
                .send(Command::Disconnected {
                    conn,
                    input_ended: false,
                })
                .await;
        }
        close_gracefully(&mut stream).await;
        // The slot is given back only now, with the socket closed.
        drop(slot);
    }
}

/// Runs the reader and the writer until the connection is done. Returns
/// `false` if the writer failed (the registry may not know yet).
async fn exchange<T: Transport>(
    stream: &T,
    conn: ConnId,
    cx: &ConnectionContext,
    outbox: &Outbox,
) -> bool {
    let writer = write_frames(stream, outbox, &cx.stats);
    tokio::pin!(writer);
    {
        // The reader lives in this block only, so that its state and the
        // linger's timer below share their place in every task.
        let reader = read_frames(stream, conn, cx, outbox);
        tokio::pin!(reader);
        let mut reading = true;
        loop {
            tokio::select! {
                written = &mut writer => return written.is_ok(),
                // Closed by the registry, which at shutdown closes every
                // outbox after a last frame (and a connection it never took
                // in is closed when its announcement is dropped).
                () = outbox.closed() => break,
                // EOF or a read error, already told to the registry, which
                // decides what becomes of the peer and closes the outbox;
                // the writer goes on until then.
                registry_open = &mut reader, if reading => {
                    reading = false;
                    if !registry_open {
                        // The registry has stopped (shutdown): nothing more
                        // will be queued, but what it queued last (COMM_END)
                        // must still be written.
                        outbox.close(None);
                        break;
                    }
                }
            }
        }
    }
    // The writer gets a bounded time to write what is left.
    let _ = timeout(CLOSE_LINGER, writer.as_mut()).await;
    true
}

/// Reads until EOF or error, sending each decoded item to the registry, then
/// tells the registry the connection ended. Returns whether the registry is
/// still there.
///
/// One function rather than a loop nested in another `async fn`: a nested
/// state machine would keep its own copy of the arguments in every idle
/// connection's task.
async fn read_frames<T: Transport>(
    stream: &T,
    conn: ConnId,
    cx: &ConnectionContext,
    outbox: &Outbox,
) -> bool {
    // `true` at EOF, `false` after a read or decode error.
    let input_ended = {
        let mut codec = FrameCodec::with_max_frame_bytes(cx.max_frame_bytes);
        let mut buf = BytesMut::new();
        let mut chunk = READ_CHUNK_MIN_BYTES;
        'reading: loop {
            if poll_fn(|cx| stream.poll_read_ready(cx)).await.is_err() {
                break false;
            }
            if buf.capacity() - buf.len() < chunk / 2 {
                buf.reserve(chunk);
            }
            let spare = buf.capacity() - buf.len();
            let n = match stream.try_read_buf(&mut buf) {
                Ok(0) => break true,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Readiness was stale (a new socket starts "ready"):
                    // hold no buffer while waiting.
                    if buf.is_empty() {
                        buf = BytesMut::new();
                    }
                    continue;
                }
                Err(_) => break false,
            };
            // A busy peer gets bigger reads; a quiet one goes back to small
            // ones.
            chunk = if n == spare {
                (chunk * 2).min(READ_CHUNK_MAX_BYTES)
            } else {
                READ_CHUNK_MIN_BYTES
            };
            Stats::add(&cx.stats.bytes_in, n as u64);
            let unconsumed = buf.len();
            loop {
                // Take a place in the registry's queue before decoding, so
                // no decoded frame is held across the wait (it keeps the
                // task small).
                let Ok(place) = cx.registry.reserve().await else {
                    return false;
                };
                match codec.decode(&mut buf) {
                    Ok(Some(item)) => place.send(Command::Frame { conn, item }),
                    Ok(None) => break,
                    Err(_) => break 'reading false,
                }
            }
            if buf.len() < unconsumed {
                // A line ended (a frame, a blank or a bad one) or an
                // over-long one was cut: a sign of life. Bytes of an
                // unfinished line are not, or a peer could stay alive by
                // trickling a partial frame.
                outbox.touch();
            }
            if buf.is_empty() {
                // Let an idle connection hold no read buffer at all.
                buf = BytesMut::new();
            }
        }
    };
    match cx.registry.reserve().await {
        Ok(place) => {
            place.send(Command::Disconnected { conn, input_ended });
            true
        }
        Err(_) => false,
    }
}

/// Writes everything the outbox is given until it is closed and drained.
///
/// Frames leave the outbox only once written in full, so if the registry
/// takes the queue back meanwhile (a resume elsewhere, a cut-off), it gets
/// every frame this socket has not had. The writer then finishes only the
/// frame it is part-way through, so the stream stays whole, and goes on
/// with what is queued now (the closing frame).
async fn write_frames<T: Transport>(stream: &T, outbox: &Outbox, stats: &Stats) -> io::Result<()> {
    let mut batch = Vec::new();
    while let Some(lease) = outbox.next_batch(&mut batch, MAX_IOVECS).await {
        let mut at = Position {
            frame: 0,
            offset: lease.offset,
        };
        // `None` once the frames were taken back; then only the frame under
        // way is finished (up to `end`), so the stream stays whole.
        let mut lease = Some(lease);
        let mut end = batch.len();
        while at.frame < end {
            let still_ours = || lease.as_ref().is_none_or(|lease| outbox.holds(lease));
            let written =
                poll_fn(|cx| poll_write_some(stream, cx, &batch[..end], at, &still_ours)).await?;
            let next = match written {
                Some(n) => {
                    Stats::add(&stats.bytes_out, n as u64);
                    at.advanced(&batch, n)
                }
                None => at,
            };
            if let Some(held) = &lease
                && (written.is_none() || !outbox.written(held, next.frame - at.frame, next.offset))
            {
                lease = None;
                end = next.frame + usize::from(next.offset > 0);
            }
            at = next;
        }
        // Whatever the transport buffered itself (TLS records) goes out
        // before the writer waits for more.
        poll_fn(|cx| stream.poll_flush(cx)).await?;
        batch.clear();
        if batch.capacity() > KEPT_BATCH_CAPACITY {
            // A burst grew it; do not keep it for an idle peer.
            batch = Vec::new();
        }
    }
    Ok(())
}

/// Where a writer is in its batch: which frame, and how many of its bytes
/// are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    frame: usize,
    offset: usize,
}

impl Position {
    /// The position `n` written bytes further on.
    fn advanced(self, batch: &[Bytes], mut n: usize) -> Position {
        let Position {
            mut frame,
            mut offset,
        } = self;
        while n > 0 && frame < batch.len() {
            let left = batch[frame].len() - offset;
            if n < left {
                offset += n;
                n = 0;
            } else {
                n -= left;
                frame += 1;
                offset = 0;
            }
        }
        Position { frame, offset }
    }
}

/// One vectored write of `batch` from `at` once the socket takes
/// something; ready with the number of bytes written, or `None` if
/// `still_ours` says no once the socket is ready (the frames were taken
/// back meanwhile). A poll function rather than an `async fn`, so the
/// writer's future holds no second state machine for it.
fn poll_write_some<T: Transport>(
    stream: &T,
    cx: &mut Context<'_>,
    batch: &[Bytes],
    at: Position,
    still_ours: &impl Fn() -> bool,
) -> Poll<io::Result<Option<usize>>> {
    loop {
        ready!(stream.poll_write_ready(cx))?;
        if !still_ours() {
            return Poll::Ready(Ok(None));
        }
        let result = {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut n_slices = 0;
            for (slot, (k, bytes)) in slices
                .iter_mut()
                .zip(batch.iter().enumerate().skip(at.frame))
            {
                let from = if k == at.frame { at.offset } else { 0 };
                *slot = IoSlice::new(&bytes[from..]);
                n_slices += 1;
            }
            stream.try_write_vectored(&slices[..n_slices])
        };
        return Poll::Ready(match result {
            Ok(0) => Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => Ok(Some(n)),
            // Readiness was stale: poll again, which registers the waker.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => Err(e),
        });
    }
}

/// Writes one frame to a connection turned away at the door, then closes
/// it; the write gets [`CLOSE_LINGER`] at most.
pub async fn turn_away<T: Transport>(mut stream: T, frame: Bytes) {
    let wrote = timeout(CLOSE_LINGER, async {
        let mut at = 0;
        while at < frame.len() {
            poll_fn(|cx| stream.poll_write_ready(cx)).await?;
            match stream.try_write_vectored(&[IoSlice::new(&frame[at..])]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        poll_fn(|cx| stream.poll_flush(cx)).await
    })
    .await;
    if matches!(wrote, Ok(Ok(()))) {
        close_gracefully(&mut stream).await;
    }
}

/// Sends FIN, then reads and discards whatever the peer still sends for a
/// moment, so unread input does not turn the close into a reset.
pub(crate) async fn close_gracefully<T: Transport>(stream: &mut T) {
    if poll_fn(|cx| stream.poll_shutdown(cx)).await.is_err() {
        return;
    }
    let stream = &*stream;
    let _ = timeout(CLOSE_DRAIN, async {
        // On the heap: a buffer here would make every connection's task
        // that much larger for its whole life.
        let mut sink = BytesMut::with_capacity(1024);
        loop {
            if poll_fn(|cx| stream.poll_read_ready(cx)).await.is_err() {
                return;
            }
            sink.clear();
            match stream.try_read_buf(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn returns, without calling it.
    fn future_size<A, B, C, F: Future>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every connection's task is this future (plus the task tracker's 8
    /// bytes) for its whole life, so its size is memory per idle peer.
    /// tokio's task cell adds about 100 bytes and is a multiple of 128
    /// bytes: up to about 650 bytes of future the cell is 768 bytes, one
    /// byte more and it is 896. Printed for the record (`cargo test -p
    /// tsockm-server serve_future -- --nocapture`); the bound catches a
    /// careless large local.
    #[test]
    fn serve_future_for_tcp_stays_small() {
        let size = future_size(serve::<tokio::net::TcpStream>);
        println!("serve::<TcpStream> future: {size} bytes");
        assert!(size <= 640, "serve::<TcpStream> future is {size} bytes");
        // For comparison only: TLS connections carry rustls's session.
        let tls = future_size(serve::<crate::tls_transport::TlsTransport>);
        println!("serve::<TlsTransport> future: {tls} bytes");
    }

    #[test]
    fn positions_advance_across_frames_and_partial_writes() {
        let batch = [Bytes::from_static(b"abc"), Bytes::from_static(b"defg")];
        let start = Position {
            frame: 0,
            offset: 0,
        };
        let p = start.advanced(&batch, 2);
        assert_eq!(
            p,
            Position {
                frame: 0,
                offset: 2
            }
        );
        let p = p.advanced(&batch, 1);
        assert_eq!(
            p,
            Position {
                frame: 1,
                offset: 0
            }
        );
        let p = p.advanced(&batch, 3);
        assert_eq!(
            p,
            Position {
                frame: 1,
                offset: 3
            }
        );
        assert_eq!(
            p.advanced(&batch, 1),
            Position {
                frame: 2,
                offset: 0
            }
        );
        assert_eq!(
            start.advanced(&batch, 7),
            Position {
                frame: 2,
                offset: 0
            }
        );
    }
}
