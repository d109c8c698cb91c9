//! TLS for the session (contract section 13): [`Tls`], what a session
//! trusts when it checks a server's certificate (the platform's roots, or a
//! private CA read from a PEM file), loaded once and shared by every
//! connection and reconnection; the connection under the frames, `Stream`
//! (plain TCP, or TLS over TCP); and the handshake's failures in plain words.
//!
//! rustls with the ring provider, as the server uses; TLS 1.2 and 1.3. The
//! name checked is the host part of the address being connected to (an IP
//! address is checked as an IP address SAN), the same rules for every
//! address.
//!
//! What this file must never do: turn verification off or accept a name
//! other than the one connected to; quote a PEM file's lines in an error;
//! make a plain TCP session pay for TLS (its stream is the bare socket).

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, InvalidMessage, RootCertStore};
use tokio_util::either::Either;

use crate::TlsError;

/// How long a session that ends waits to hand its TLS `close_notify` to
/// the socket before it closes it anyway.
const CLOSE_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// What a session trusts when it speaks TLS: set [`Config::tls`] to one.
///
/// Made once ([`Tls::platform_roots`] or [`Tls::ca_file`], which read
/// files) and cheap to clone: every connection of the session, to each of
/// its addresses, uses the same settings (and can resume a TLS session
/// with a server it spoke to before).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use tsockm_client::{Config, Session, Tls};
///
/// let config = Config {
///     tls: Some(Tls::ca_file("ca.pem")?),
///     ..Config::new("chat.lan:6969", "alice")
/// };
/// let (_session, _events) = Session::connect(config).await?;
/// # Ok(())
/// # }
/// ```
///
/// [`Config::tls`]: crate::Config::tls
#[derive(Clone)]
pub struct Tls {
    /// rustls's client settings, with the roots.
    connector: TlsConnector,
    /// Where the roots came from, for `Debug`.
    roots: Roots,
}

/// Where a [`Tls`]'s roots came from.
#[derive(Clone)]
enum Roots {
    /// The platform's store (on Linux the system's CA bundle, or
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    Platform { n_certs: usize },
    /// A private CA's PEM file.
    CaFile { path: PathBuf, n_certs: usize },
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // rustls's settings are left out: the roots' origin says it all.
        let mut out = f.debug_struct("Tls");
        match &self.roots {
            Roots::Platform { n_certs } => {
                out.field("roots", &"platform").field("n_certs", n_certs)
            }
            Roots::CaFile { path, n_certs } => out.field("roots", path).field("n_certs", n_certs),
        };
        out.finish_non_exhaustive()
    }
}

impl Tls {
    /// Trusts the platform's root certificates: the system's store (on
    /// Linux its CA bundle, e.g. `/etc/ssl/certs/ca-certificates.crt`; the
    /// files named by `SSL_CERT_FILE` or `SSL_CERT_DIR` instead when either
    /// is set). It is what a certificate from a public CA, such as Let's
    /// Encrypt, needs.
    ///
    /// Reads the store now (a few hundred kilobytes): make one and reuse it.
    pub fn platform_roots() -> Result<Tls, TlsError> {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(%error, "part of the platform's certificate store was not read");
        }
        let mut roots = RootCertStore::empty();
        let (n_certs, n_bad) = roots.add_parsable_certificates(found.certs);
        if n_bad > 0 {
            tracing::debug!(
                n_bad,
                "unusable certificates in the platform's store skipped"
            );
        }
        if n_certs == 0 {
            let reason = match found.errors.first() {
                Some(error) => error.to_string(),
                None => "the store is empty".to_owned(),
            };
            return Err(TlsError::NoPlatformRoots { reason });
        }
        Ok(Tls {
            connector: connector(roots)?,
            roots: Roots::Platform { n_certs },
        })
    }

    /// Trusts only the CA certificates in the PEM file at `path` (a private
    /// CA; a self-signed server certificate works too). Any other section
    /// in the file (a key, say) is ignored and never quoted.
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Tls, TlsError> {
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|error| pem_error(path, error))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| pem_error(path, error))?;
        if certs.is_empty() {
            return Err(TlsError::CaEmpty {
                path: path.to_owned(),
            });
        }
        let mut roots = RootCertStore::empty();
        let n_certs = certs.len();
        for cert in certs {
            roots.add(cert).map_err(|error| TlsError::CaRefused {
                path: path.to_owned(),
                reason: match &error {
                    rustls::Error::InvalidCertificate(error) => certificate_words(error),
                    other => other.to_string(),
                },
            })?;
        }
        Ok(Tls {
            connector: connector(roots)?,
            roots: Roots::CaFile {
                path: path.to_owned(),
                n_certs,
            },
        })
    }

    /// Runs the handshake on `tcp`, checking the certificate against the
    /// host part of `addr`.
    pub(crate) async fn handshake(
        &self,
        tcp: TcpStream,
        addr: &str,
    ) -> Result<Stream, HandshakeFailure> {
        let name = server_name(addr)?;
        let host = name.to_str().into_owned();
        match self.connector.connect(name, tcp).await {
            Ok(tls) => Ok(Either::Right(Box::new(tls))),
            Err(error) => Err(handshake_failure(&error, &host)),
        }
    }
}

/// rustls's client settings trusting `roots`: TLS 1.2 and 1.3, the ring
/// provider, no client certificate.
fn connector(roots: RootCertStore) -> Result<TlsConnector, TlsError> {
    // The provider is named, not taken from the process default, so another
    // crate enabling a second provider cannot make this fail.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Setup {
            reason: error.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The name a server's certificate must be for: the host part of
/// `host:port` (`[::1]:6969` gives `::1`), a DNS name or an IP address.
fn server_name(addr: &str) -> Result<ServerName<'static>, HandshakeFailure> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned()).map_err(|_| {
        HandshakeFailure::Other(format!(
            "`{host}` is not a host name or IP address a certificate can be for"
        ))
    })
}

/// Why a TLS handshake failed, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// The server's certificate does not verify (the reason).
    Certificate(String),
    /// Anything else: not TLS, refused, closed (the reason).
    Other(String),
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeFailure::Certificate(reason) => {
                write!(f, "the server's certificate does not verify: {reason}")
            }
            HandshakeFailure::Other(reason) => write!(f, "no TLS: {reason}"),
        }
    }
}

/// A failed handshake's error (rustls's, inside tokio-rustls's `io::Error`)
/// in words; `host` is the name the certificate was checked against.
fn handshake_failure(error: &io::Error, host: &str) -> HandshakeFailure {
    let Some(tls_error) = rustls_error(error) else {
        return HandshakeFailure::Other(match error.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the server closed the connection during the handshake".to_owned()
            }
            _ => error.to_string(),
        });
    };
    match tls_error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            HandshakeFailure::Certificate(format!("it is not valid for {host}"))
        }
        rustls::Error::InvalidCertificate(error) => {
            HandshakeFailure::Certificate(certificate_words(error))
        }
        rustls::Error::InvalidMessage(
            InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
        ) => HandshakeFailure::Other("the server does not speak TLS (a plain TCP server?)".into()),
        rustls::Error::AlertReceived(alert) => {
            HandshakeFailure::Other(format!("the server refused the handshake ({alert:?})"))
        }
        other => HandshakeFailure::Other(other.to_string()),
    }
}

/// The rustls error an I/O error from tokio-rustls carries, if any.
fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What is wrong with a certificate, in words a user can act on.
fn certificate_words(error: &CertificateError) -> String {
    match error {
        CertificateError::UnknownIssuer => {
            "it is not signed by a CA this client trusts (unknown issuer)".to_owned()
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let expected = expected.to_str();
            if presented.is_empty() {
                format!("it is not valid for {expected}: it names no host")
            } else {
                let names: Vec<&str> = presented.iter().map(|n| presented_name(n)).collect();
                format!(
                    "it is not valid for {expected}, only for {}",
                    names.join(", ")
                )
            }
        }
        CertificateError::Expired => "it has expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("it expired on {}", time_words(*not_after))
        }
        CertificateError::NotValidYet => "it is not valid yet".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!("it is not valid before {}", time_words(*not_before))
        }
        CertificateError::Revoked => "it has been revoked".to_owned(),
        CertificateError::BadSignature => {
            "its issuer's signature does not verify (a different CA with the same name?)".to_owned()
        }
        CertificateError::BadEncoding => "it is not a well-formed certificate".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "it is not meant for a TLS server (its extended key usage)".to_owned()
        }
        other => other.to_string(),
    }
}

/// A name a certificate is for, as rustls reports it (`DnsName("chat.lan")`,
/// `IpAddress(192.168.1.10)`), as a person writes it (`chat.lan`,
/// `192.168.1.10`); any other form as it comes.
fn presented_name(name: &str) -> &str {
    name.strip_prefix("DnsName(\"")
        .and_then(|n| n.strip_suffix("\")"))
        .or_else(|| {
            name.strip_prefix("IpAddress(")
                .and_then(|n| n.strip_suffix(')'))
        })
        .unwrap_or(name)
}

/// A certificate's time, in UTC.
fn time_words(time: UnixTime) -> String {
    i64::try_from(time.as_secs())
        .ok()
        .and_then(|secs| jiff::Timestamp::from_second(secs).ok())
        .map_or_else(
            || format!("{} s after 1970", time.as_secs()),
            |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// One line for a CA file that cannot be read. The PEM library's own texts
/// are not used: some quote a line of the file.
fn pem_error(path: &Path, error: pem::Error) -> TlsError {
    let path = path.to_owned();
    let problem = match error {
        pem::Error::Io(source) => return TlsError::CaUnreadable { path, source },
        pem::Error::NoItemsFound => return TlsError::CaEmpty { path },
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it cannot be parsed",
    };
    TlsError::CaNotPem { path, problem }
}

/// The bytes under a session's frames: the bare socket (left), or TLS over
/// it (right; boxed, as rustls's state is large). tokio-util's `Either`
/// reads and writes whichever it holds.
pub(crate) type Stream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// The server's socket address.
pub(crate) fn peer_addr(stream: &Stream) -> io::Result<SocketAddr> {
    match stream {
        Either::Left(tcp) => tcp.peer_addr(),
        Either::Right(tls) => tls.get_ref().0.peer_addr(),
    }
}

/// Ends the stream politely before it is dropped: over TLS, sends
/// `close_notify` (waiting at most [`CLOSE_NOTIFY_WAIT`]); plain TCP is
/// simply dropped, as it always was.
pub(crate) async fn close(stream: &mut Stream) {
    if let Either::Right(tls) = stream {
        let _ = tokio::time::timeout(CLOSE_NOTIFY_WAIT, tls.shutdown()).await;
    }
}

/// A read or write error on an established connection, in words: a TLS
/// connection closed without `close_notify` reads as closed, as a plain
/// TCP one does; other TLS errors in rustls's words.
pub(crate) fn io_words(error: &io::Error) -> String {
    match rustls_error(error) {
        Some(tls_error) => format!("TLS: {tls_error}"),
        None if error.kind() == io::ErrorKind::UnexpectedEof => {
            "the server closed the connection".to_owned()
        }
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host_part_of_the_address() {
        let cases = [
            ("127.0.0.1:6969", "127.0.0.1"),
            ("[::1]:6969", "::1"),
            ("chat.example.org:6969", "chat.example.org"),
            ("localhost:1", "localhost"),
        ];
        for (addr, host) in cases {
            let name = server_name(addr).expect("a valid name");
            assert_eq!(name.to_str(), host, "{addr}");
        }
        assert!(matches!(
            server_name("127.0.0.1:6969"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:6969"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("chat.lan:6969"),
            Ok(ServerName::DnsName(_))
        ));
        let refused = server_name("not a host!:6969").expect_err("refused");
        assert_eq!(
            refused.to_string(),
            "no TLS: `not a host!` is not a host name or IP address a certificate can be for"
        );
    }

    #[test]
    fn a_ca_file_loads_and_its_debug_shows_no_certificate() {
        let pki = tsockm_testkit::TestPki::new();
        let path = pki.dir().join("ca.pem");
        std::fs::write(&path, &pki.ca_pem).expect("write the CA");
        let tls = Tls::ca_file(&path).expect("a good CA file");
        let debug = format!("{tls:?}");
        assert!(debug.contains("ca.pem"), "{debug}");
        assert!(debug.contains("n_certs: 1"), "{debug}");
        assert!(!debug.contains("BEGIN"), "{debug}");
    }

    #[test]
    fn each_bad_ca_file_is_named_in_one_line() {
        let pki = tsockm_testkit::TestPki::new();
        let dir = pki.dir();
        let missing = dir.join("missing.pem");
        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").expect("write");
        let broken = dir.join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("write");
        let not_der = dir.join("not-der.pem");
        std::fs::write(
            &not_der,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let key_text = std::fs::read_to_string(&pki.key_path).expect("read the key");

        let cases = [
            (&missing, "cannot read the CA file"),
            (&garbage, "holds no certificate"),
            // A key is not a certificate, and is never quoted.
            (&pki.key_path, "holds no certificate"),
            (&broken, "is not valid PEM: a section has no END line"),
            (&not_der, "cannot be trusted as a CA"),
        ];
        for (path, expected) in cases {
            let error = Tls::ca_file(path).expect_err("refused").to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(!error.contains('\n'), "{error}");
            assert!(!error.contains(&key_text[40..80]), "{error}");
        }
    }

    #[test]
    fn certificate_failures_read_as_plain_words() {
        let wrapped = |error: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, error);
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                HandshakeFailure::Certificate(
                    "it is not signed by a CA this client trusts (unknown issuer)".into(),
                ),
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                HandshakeFailure::Certificate("it is not valid for chat.lan".into()),
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("chat.lan").expect("a name"),
                    presented: vec![
                        "DnsName(\"localhost\")".into(),
                        "IpAddress(127.0.0.1)".into(),
                        "URI(\"x\")".into(),
                    ],
                }),
                HandshakeFailure::Certificate(
                    "it is not valid for chat.lan, only for localhost, 127.0.0.1, URI(\"x\")"
                        .into(),
                ),
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                    time: UnixTime::since_unix_epoch(Duration::from_secs(1_800_000_000)),
                    not_after: UnixTime::since_unix_epoch(Duration::from_secs(1_700_000_000)),
                }),
                HandshakeFailure::Certificate("it expired on 2023-11-14 22:13:20 UTC".into()),
            ),
            (
                rustls::Error::InvalidMessage(InvalidMessage::InvalidContentType),
                HandshakeFailure::Other(
                    "the server does not speak TLS (a plain TCP server?)".into(),
                ),
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(handshake_failure(&wrapped(error), "chat.lan"), expected);
        }
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        assert_eq!(
            handshake_failure(&eof, "chat.lan"),
            HandshakeFailure::Other("the server closed the connection during the handshake".into())
        );
    }

    #[test]
    fn a_tls_connection_closed_without_close_notify_reads_as_closed() {
        let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed connection");
        assert_eq!(io_words(&eof), "the server closed the connection");
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(io_words(&reset), reset.to_string());
    }
}
