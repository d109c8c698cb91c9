//! [`TlsTransport`]: the [`Transport`] seam over TLS, so that
//! `connection::serve` serves TLS streams with the same code as TCP.
//!
//! The TCP socket is shared by reference as on plain TCP (its `try_*`
//! methods take `&self`); only rustls's session sits behind a
//! `std::sync::Mutex`, locked inside one `try_*` or `poll_*` call and never
//! across an `.await`. Nothing here waits: rustls reads from and writes to
//! the socket through [`NoWait`], which gives `WouldBlock` where a blocking
//! socket would wait.
//!
//! Readiness stays honest, so no loop spins: a `poll_*_ready` resolves
//! early only when rustls itself holds something (plaintext, the peer's
//! close, records to send); otherwise it waits on the socket, and a `try_*`
//! that cannot progress has met `WouldBlock` from the socket, which clears
//! the socket's readiness.

use std::io::{self, BufRead, IoSlice, Read, Write};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_rustls::rustls::ServerConnection;

use crate::transport::Transport;

/// Records read from the socket in one `try_read_buf` before it gives up
/// for now without plaintext (a peer sending only empty or handshake
/// records cannot hold the task; it is polled again at once).
const MAX_RECORD_READS: usize = 16;

/// Spare capacity reserved if a read is offered none, so that `Ok(0)`
/// always means the end of the input.
const MIN_READ_SPARE_BYTES: usize = 512;

/// A TLS session over an accepted TCP socket, after its handshake.
pub(crate) struct TlsTransport {
    tcp: TcpStream,
    session: Mutex<ServerConnection>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTransport")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl TlsTransport {
    /// Takes over a stream whose handshake is done. What the handshake
    /// read past its end (the client's first frames) stays in the session
    /// and is read first.
    pub(crate) fn new(stream: tokio_rustls::server::TlsStream<TcpStream>) -> TlsTransport {
        let (tcp, session) = stream.into_inner();
        TlsTransport {
            tcp,
            session: Mutex::new(session),
        }
    }

    fn session(&self) -> MutexGuard<'_, ServerConnection> {
        // Only this connection's task locks it, within one call; a panic
        // there ends the task and the transport with it, so no one would
        // see the poison.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Transport for TlsTransport {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.session().reader().into_first_chunk() {
            // Nothing decrypted and the input goes on: wait for the socket.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            // Plaintext, the peer's close_notify, or the end of the socket:
            // each is there to be read now.
            _ => return Poll::Ready(Ok(())),
        }
        self.tcp.poll_read_ready(cx)
    }

    fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(MIN_READ_SPARE_BYTES);
        }
        let mut session = self.session();
        for _ in 0..MAX_RECORD_READS {
            match take_plaintext(&mut session, buf) {
                Ok(n) => return Ok(n),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without a close_notify. Truncation cannot
                // forge a frame (an unfinished line is dropped), so this is
                // an end of input like any other.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) => return Err(error),
            }
            // `WouldBlock` from the socket ends the call and leaves the
            // socket not ready, so `poll_read_ready` waits.
            session.read_tls(&mut NoWait(&self.tcp))?;
            if let Err(error) = session.process_new_packets() {
                // rustls queued an alert saying why; it goes if it can.
                let _ = send_queued(&mut session, &self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            // A record that asks for an answer (a TLS 1.3 key update) is
            // answered now if the socket takes it, else with the next write.
            send_queued(&mut session, &self.tcp)?;
        }
        // The socket is still readable, so this is a spurious `WouldBlock`:
        // `poll_read_ready` resolves at once, after other tasks had a turn.
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.session().wants_write() {
            // Nothing waiting to go out: rustls takes plaintext now.
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_write_ready(cx)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut session = self.session();
        // Records already made go first, which makes room for more.
        send_queued(&mut session, &self.tcp)?;
        let n = session.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // rustls's send buffer is full and the socket took nothing (its
            // readiness is cleared): `poll_write_ready` waits for it.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        send_queued(&mut session, &self.tcp)?;
        Ok(n)
    }

    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if send_queued(&mut self.session(), &self.tcp)? {
                return Poll::Ready(Ok(()));
            }
            ready!(self.tcp.poll_write_ready(cx))?;
        }
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued once: rustls ignores later calls.
        self.session
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .send_close_notify();
        ready!(self.poll_flush(cx))?;
        AsyncWrite::poll_shutdown(Pin::new(&mut self.tcp), cx)
    }
}

/// Moves decrypted input from the session into `buf`'s spare capacity:
/// `Ok(n)` with `n > 0`; `Ok(0)` after the peer's close_notify; else the
/// session's `WouldBlock` (nothing yet) or `UnexpectedEof` (the socket
/// ended without close_notify).
fn take_plaintext(session: &mut ServerConnection, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut reader = session.reader();
    let mut n = 0;
    while n < spare {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(error) if n == 0 => return Err(error),
            // What was taken is given now; the rest is reported next time.
            Err(_) => break,
        };
        if chunk.is_empty() {
            break; // close_notify
        }
        let take = chunk.len().min(spare - n);
        buf.extend_from_slice(&chunk[..take]);
        reader.consume(take);
        n += take;
    }
    Ok(n)
}

/// Writes the records the session has queued (data, alerts, handshake
/// answers) until none is left, `Ok(true)`, or the socket is full,
/// `Ok(false)`.
fn send_queued(session: &mut ServerConnection, tcp: &TcpStream) -> io::Result<bool> {
    while session.wants_write() {
        match session.write_tls(&mut NoWait(tcp)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// The socket as the blocking-style `Read` and `Write` rustls takes, but
/// never waiting: `WouldBlock` when it has nothing or takes nothing (which
/// also clears its readiness for the next poll).
struct NoWait<'a>(&'a TcpStream);

impl Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::task::Waker;

    use rustls_pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
    use tokio_rustls::{TlsAcceptor, TlsConnector, client};

    use super::*;

    /// A server-side transport and the client talking to it, over loopback.
    async fn pair() -> (TlsTransport, client::TlsStream<TcpStream>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("make a certificate");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![made.cert.der().clone()], key)
            .expect("server config");
        let mut roots = RootCertStore::empty();
        roots.add(made.cert.der().clone()).expect("trust it");
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let accept = async {
            let (tcp, _) = listener.accept().await.expect("accept");
            let tls = TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .expect("server handshake");
            TlsTransport::new(tls)
        };
        let connect = async {
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let name = "localhost".try_into().expect("a name");
            TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .expect("client handshake")
        };
        tokio::join!(accept, connect)
    }

    fn poll_now<T>(poll: impl FnOnce(&mut Context<'_>) -> Poll<T>) -> Poll<T> {
        poll(&mut Context::from_waker(Waker::noop()))
    }

    /// Waits for input and reads it into a buffer of `capacity` bytes.
    async fn read_some(transport: &TlsTransport, capacity: usize) -> io::Result<BytesMut> {
        loop {
            poll_fn(|cx| transport.poll_read_ready(cx)).await?;
            let mut buf = BytesMut::with_capacity(capacity);
            match transport.try_read_buf(&mut buf) {
                Ok(_) => return Ok(buf),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Drains the socket itself, so that its readiness is cleared.
    fn drain_socket(transport: &TlsTransport) {
        let mut session = transport.session();
        loop {
            match session.read_tls(&mut NoWait(&transport.tcp)) {
                Ok(0) => panic!("unexpected end of the socket"),
                Ok(_) => {
                    session.process_new_packets().expect("valid records");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn buffered_plaintext_is_ready_and_an_empty_session_waits() {
        let (transport, mut client) = pair().await;
        client.write_all(b"hello\n").await.expect("send");
        client.flush().await.expect("flush");
        let first = read_some(&transport, 2).await.expect("read");
        assert_eq!(&first[..], b"he");
        // Everything is out of the socket now; the rest is in rustls, and
        // readiness must say so although the socket has nothing.
        drain_socket(&transport);
        assert!(poll_now(|cx| transport.poll_read_ready(cx)).is_ready());
        let rest = read_some(&transport, 64).await.expect("read");
        assert_eq!(&rest[..], b"llo\n");
        // Nothing left anywhere: no readiness, and a read would block.
        let mut buf = BytesMut::with_capacity(64);
        let read = transport.try_read_buf(&mut buf);
        assert_eq!(read.map_err(|e| e.kind()), Err(io::ErrorKind::WouldBlock));
        assert!(poll_now(|cx| transport.poll_read_ready(cx)).is_pending());
        // And with nothing queued to send, writing is possible at once.
        assert!(poll_now(|cx| transport.poll_write_ready(cx)).is_ready());
    }

    #[tokio::test]
    async fn a_full_socket_makes_writes_wait_and_everything_arrives() {
        const TOTAL: usize = 8 << 20;
        let (mut transport, mut client) = pair().await;
        let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        let mut at = 0;
        // The client does not read: the writer must meet `WouldBlock`, and
        // then not be ready.
        loop {
            match transport.try_write_vectored(&[IoSlice::new(&data[at..])]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("write failed: {e}"),
            }
            assert!(at < TOTAL, "8 MiB went out with nobody reading");
        }
        assert!(poll_now(|cx| transport.poll_write_ready(cx)).is_pending());
        assert!(poll_now(|cx| transport.poll_flush(cx)).is_pending());

        let reader = tokio::spawn(async move {
            let mut got = vec![0; TOTAL];
            client.read_exact(&mut got).await.expect("read it all");
            let mut end = [0; 1];
            // The server's close_notify: a clean end, not an error.
            let n = client.read(&mut end).await.expect("a clean end");
            (got, n)
        });
        while at < TOTAL {
            poll_fn(|cx| transport.poll_write_ready(cx))
                .await
                .expect("ready");
            match transport.try_write_vectored(&[IoSlice::new(&data[at..])]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write failed: {e}"),
            }
        }
        poll_fn(|cx| transport.poll_flush(cx)).await.expect("flush");
        poll_fn(|cx| transport.poll_shutdown(cx))
            .await
            .expect("shutdown");
        let (got, n) = reader.await.expect("the reader");
        assert!(got == data, "the data changed on the way");
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn the_end_of_input_with_or_without_close_notify() {
        let (transport, mut client) = pair().await;
        client.write_all(b"bye\n").await.expect("send");
        client.shutdown().await.expect("close_notify and FIN");
        let mut all = BytesMut::new();
        loop {
            let got = read_some(&transport, 64).await.expect("read");
            if got.is_empty() {
                break;
            }
            all.extend_from_slice(&got);
        }
        assert_eq!(&all[..], b"bye\n");
        // Still the end when asked again (the connection drains after it).
        assert!(poll_now(|cx| transport.poll_read_ready(cx)).is_ready());
        assert!(read_some(&transport, 64).await.expect("read").is_empty());

        // FIN without close_notify (a client dropped with unread input
        // would reset instead: the server's session tickets are unread).
        let (transport, mut client) = pair().await;
        client.write_all(b"cut\n").await.expect("send");
        client.flush().await.expect("flush");
        client.get_mut().0.shutdown().await.expect("FIN");
        let got = read_some(&transport, 64).await.expect("read");
        assert_eq!(&got[..], b"cut\n");
        assert!(read_some(&transport, 64).await.expect("read").is_empty());
    }

    #[tokio::test]
    async fn a_forged_record_is_an_error() {
        let (transport, mut client) = pair().await;
        let tcp = client.get_mut().0;
        tcp.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])
            .await
            .expect("write a header");
        tcp.write_all(&[0x55; 0x20]).await.expect("write a body");
        let error = read_some(&transport, 64).await.expect_err("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }
}
