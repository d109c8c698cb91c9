//! TLS for tests: [`TestPki`], a certificate authority and a server
//! certificate made at run time (no key is ever committed), written as PEM
//! files the server loads; and the client side's rustls setup that trusts
//! that CA.
//!
//! The chain is shaped like a public CA's: a root, an intermediate, and a
//! server certificate for `localhost` and `127.0.0.1`. The server is given
//! `fullchain.pem` (server certificate, then intermediate) and
//! `privkey.pem`, as Let's Encrypt names them; clients trust the root only.

use std::path::PathBuf;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, SupportedProtocolVersion};
use tsockm_server::{Config, TlsFiles};

use crate::server::test_config;

/// The names the test server certificate is valid for.
pub const TEST_SERVER_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// A CA and a server certificate, made for one test, as PEM files in a
/// temporary directory that lives as long as this value.
#[derive(Debug)]
pub struct TestPki {
    /// The root CA certificate, PEM: what a client is told to trust.
    pub ca_pem: String,
    /// The chain file: the server certificate, then the intermediate.
    pub cert_path: PathBuf,
    /// The server certificate's private key (PKCS#8).
    pub key_path: PathBuf,
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Makes a root CA, an intermediate CA and a server certificate for
    /// [`TEST_SERVER_NAMES`], and writes `fullchain.pem` and `privkey.pem`.
    pub fn new() -> TestPki {
        let (root_params, root_key) = ca_params("TsockM test root CA");
        let root_cert = root_params.self_signed(&root_key).expect("sign the root");
        let root = Issuer::new(root_params, root_key);

        let (mid_params, mid_key) = ca_params("TsockM test intermediate CA");
        let mid_cert = mid_params
            .signed_by(&mid_key, &root)
            .expect("sign the intermediate");
        let mid = Issuer::new(mid_params, mid_key);

        let names: Vec<String> = TEST_SERVER_NAMES.iter().map(|&n| n.to_owned()).collect();
        let mut leaf = CertificateParams::new(names).expect("server certificate parameters");
        leaf.distinguished_name
            .push(DnType::CommonName, TEST_SERVER_NAMES[0]);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().expect("a server key");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &mid)
            .expect("sign the server certificate");

        let dir = tempfile::tempdir().expect("a temporary directory");
        let cert_path = dir.path().join("fullchain.pem");
        let key_path = dir.path().join("privkey.pem");
        std::fs::write(&cert_path, leaf_cert.pem() + &mid_cert.pem()).expect("write fullchain.pem");
        std::fs::write(&key_path, leaf_key.serialize_pem()).expect("write privkey.pem");
        TestPki {
            ca_pem: root_cert.pem(),
            cert_path,
            key_path,
            dir,
        }
    }

    /// The files for [`Config::tls`].
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.cert_path.clone(),
            key: self.key_path.clone(),
        }
    }

    /// [`test_config`] with TLS on.
    pub fn config(&self) -> Config {
        Config {
            tls: Some(self.tls_files()),
            ..test_config()
        }
    }

    /// The temporary directory the files are in (for a test's own files).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// Parameters and key for a CA that may sign certificates.
fn ca_params(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    (params, KeyPair::generate().expect("a CA key"))
}

/// A connector that trusts `ca_pem` only, for the given TLS versions (all
/// that rustls offers when empty), and the server name to check.
pub(crate) fn connector(
    ca_pem: &str,
    server_name: &str,
    versions: &[&'static SupportedProtocolVersion],
) -> (TlsConnector, ServerName<'static>) {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("the CA is valid PEM"))
            .expect("the CA certificate is accepted");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(versions)
    }
    .expect("the TLS versions are supported");
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    let name = ServerName::try_from(server_name.to_owned()).expect("a valid server name");
    (TlsConnector::from(Arc::new(config)), name)
}
