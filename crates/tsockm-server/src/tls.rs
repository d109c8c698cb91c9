//! TLS on the listener (contract section 13): the certificate chain and key,
//! read once at bind ([`TlsError`] when they cannot be used), and the start
//! of every TLS connection: the handshake, within the handshake timeout
//! counted from accept, then the very `connection::serve` that plain TCP
//! uses, over a `TlsTransport` (`tls_transport.rs`).
//!
//! It must never log or keep the private key: the key goes from its file
//! straight into rustls, and the errors here name files, never contents.
//! Plain TCP never comes here (the accept loop spawns `serve::<TcpStream>`
//! as before), so it pays nothing for TLS.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::config::TlsFiles;
use crate::connection::{self, Accepted, ConnectionContext};
use crate::tls_transport::TlsTransport;

/// The first byte of every TLS connection: a ClientHello travels in a
/// record of content type 22 (handshake). A connection that starts with
/// anything else is not TLS (say `REQ::COMM::...` in clear) and is closed
/// without a byte sent to it.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Which of the two PEM files a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// `--tls-cert`: the certificate chain.
    Certificate,
    /// `--tls-key`: the private key.
    Key,
}

impl std::fmt::Display for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemFile::Certificate => "certificate",
            PemFile::Key => "key",
        })
    }
}

/// Why the TLS certificate or key cannot be used. Each says which file, in
/// one line, and never quotes the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be opened or read.
    #[error("cannot read the TLS {file} file {}: {source}", path.display())]
    Read {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file is not PEM, or its PEM is broken.
    #[error("the TLS {file} file {} is not valid PEM: {problem}", path.display())]
    BadPem {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// What is wrong, in a few words.
        problem: &'static str,
    },
    /// The file is PEM but holds nothing of the kind asked for.
    #[error("the TLS {file} file {} holds no {expected}", path.display())]
    Missing {
        /// Which file.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
    },
    /// rustls refused the pair: a key that does not match the first
    /// certificate, a key type it does not support, a malformed certificate.
    #[error(
        "cannot use the TLS key {} with the certificate {}: {}",
        key.display(),
        cert.display(),
        explain(source)
    )]
    Refused {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's reason.
        source: rustls::Error,
    },
}

/// rustls's reason for refusing a certificate and key, in the operator's
/// words where rustls's own are terse.
fn explain(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            "the key is not the one of the certificate (the first in its file)".to_owned()
        }
        other => other.to_string(),
    }
}

/// What a listener needs to speak TLS: the acceptor (the loaded
/// certificate) and the deadline its handshakes must meet.
#[derive(Clone)]
pub(crate) struct TlsListener {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The acceptor holds the private key: show nothing of it.
        f.debug_struct("TlsListener")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Reads the certificate chain and key, and sets up TLS 1.2 and 1.3
    /// with them (rustls's safe defaults, the ring provider).
    pub(crate) fn load(
        files: &TlsFiles,
        handshake_timeout: Duration,
    ) -> Result<TlsListener, TlsError> {
        let certs = read_certificates(&files.cert)?;
        let key = read_key(&files.key)?;
        let refused = |source| TlsError::Refused {
            cert: files.cert.clone(),
            key: files.key.clone(),
            source,
        };
        // The provider is named, not taken from the process default, so
        // another crate enabling a second provider cannot make this fail.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(refused)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(refused)?;
        Ok(TlsListener {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshake_timeout,
        })
    }

    /// Serves one accepted connection: the handshake, given until
    /// `accepted_at` plus the handshake timeout (the registry's timer for
    /// registration counts from the same instant), then the session as on
    /// plain TCP. A client that is not TLS, fails the handshake or is too
    /// slow is closed with nothing sent in clear. The door's `ticket` is
    /// held throughout: a handshaking connection counts as unregistered.
    pub(crate) async fn serve(
        self,
        tcp: TcpStream,
        accepted: Box<Accepted>,
        cx: Arc<ConnectionContext>,
    ) {
        let deadline = accepted.accepted_at + self.handshake_timeout;
        let handshake = timeout_at(deadline, self.handshake(tcp));
        let outcome = tokio::select! {
            outcome = handshake => outcome,
            // The registry has stopped: nobody would take this connection.
            () = cx.shutdown.cancelled() => return,
        };
        let tcp = match outcome {
            Ok(Ok(tls)) => {
                let transport = TlsTransport::new(tls);
                connection::serve(transport, accepted, cx).await;
                return;
            }
            Ok(Err(mut refused)) => {
                tracing::debug!(reason = %refused.reason, "TLS handshake failed");
                refused.tcp.take()
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                None
            }
        };
        if let Some(mut tcp) = tcp {
            connection::close_gracefully(&mut tcp).await;
        }
    }

    /// Checks that the client speaks TLS, then runs the handshake.
    async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::server::TlsStream<TcpStream>, Refused> {
        let mut first = [0u8; 1];
        match tcp.peek(&mut first).await {
            Ok(1) if first[0] == TLS_HANDSHAKE_RECORD => {}
            Ok(0) => return Err(Refused::closing(tcp, "closed before the handshake")),
            Ok(_) => return Err(Refused::closing(tcp, "not TLS")),
            Err(error) => return Err(Refused::gone(error)),
        }
        self.acceptor
            .accept(tcp)
            .into_fallible()
            .await
            .map_err(|(error, tcp)| Refused {
                reason: error.to_string(),
                tcp: Some(tcp),
            })
    }
}

/// A connection refused before its session: why, and the socket to close
/// (none once it failed).
struct Refused {
    reason: String,
    tcp: Option<TcpStream>,
}

impl Refused {
    fn closing(tcp: TcpStream, reason: &'static str) -> Refused {
        Refused {
            reason: reason.to_owned(),
            tcp: Some(tcp),
        }
    }

    fn gone(error: io::Error) -> Refused {
        Refused {
            reason: error.to_string(),
            tcp: None,
        }
    }
}

/// The certificate chain in `path`, in file order (the server's own first).
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = PemFile::Certificate;
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| pem_error(file, path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(file, path, error))?;
    if certs.is_empty() {
        return Err(TlsError::Missing {
            file,
            path: path.to_owned(),
            expected: "certificate (a PEM CERTIFICATE section)",
        });
    }
    Ok(certs)
}

/// The first private key in `path`.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| pem_error(PemFile::Key, path, error))
}

/// One line for a PEM failure. The library's own texts are not used: some
/// quote a line of the file, and the key file's lines are secret.
fn pem_error(file: PemFile, path: &Path, error: pem::Error) -> TlsError {
    let path = path.to_owned();
    let problem = match error {
        pem::Error::Io(source) => return TlsError::Read { file, path, source },
        pem::Error::NoItemsFound => {
            let expected = match file {
                PemFile::Certificate => "certificate (a PEM CERTIFICATE section)",
                PemFile::Key => {
                    "private key (PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY; \
                     an encrypted key must be decrypted first)"
                }
            };
            return TlsError::Missing {
                file,
                path,
                expected,
            };
        }
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it cannot be parsed",
    };
    TlsError::BadPem {
        file,
        path,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cert: &Path, key: &Path) -> Result<TlsListener, TlsError> {
        let files = TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        TlsListener::load(&files, Duration::from_secs(1))
    }

    /// A self-signed certificate and its key as PEM files in `dir`.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("make a certificate");
        let cert = dir.join(format!("{name}-cert.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
        (cert, key)
    }

    #[test]
    fn a_good_pair_loads() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert, key) = self_signed(dir.path(), "a");
        assert!(load(&cert, &key).is_ok());
    }

    #[test]
    fn each_bad_file_is_named_in_one_line() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (cert, key) = self_signed(dir.path(), "a");
        let (_, other_key) = self_signed(dir.path(), "b");
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not pem at all\n").expect("write");
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nAAAA\n").expect("write");
        let key_text = std::fs::read_to_string(&key).expect("read the key");

        let cases = [
            (
                &missing,
                &key,
                "cannot read the TLS certificate file",
                &missing,
            ),
            (&cert, &missing, "cannot read the TLS key file", &missing),
            (&garbage, &key, "holds no certificate", &garbage),
            (&key, &key, "holds no certificate", &key),
            (&cert, &garbage, "holds no private key", &garbage),
            (&cert, &cert, "holds no private key", &cert),
            (&broken, &key, "is not valid PEM", &broken),
            (
                &cert,
                &other_key,
                "is not the one of the certificate",
                &other_key,
            ),
        ];
        for (cert, key, expected, named) in cases {
            let error = load(cert, key).expect_err("refused").to_string();
            assert!(error.contains(expected), "{error}");
            assert!(error.contains(&named.display().to_string()), "{error}");
            assert!(!error.contains('\n'), "{error}");
            assert!(!error.contains(&key_text[30..60]), "{error}");
        }
    }
}
