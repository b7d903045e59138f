//! TLS (rustls with the `ring` provider, classical key exchange): a certificate chain and its
//! private key from PEM files, TLS 1.2 and 1.3 with rustls's safe defaults,
//! ALPN `h2` then `http/1.1` (so a client that offers HTTP/2 gets it). The
//! files can be read again ([`Tls::reload`], on SIGHUP): connections opened
//! afterwards use the new certificate, open ones keep theirs.
//!
//! The listener (`listener.rs`) does the handshake on the connection's own
//! task, within the header timeout, and counts the connection against the
//! cap from its first byte.

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the certificate or key could not be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate {}: {reason}", path.display())]
    Certificate { path: PathBuf, reason: String },
    #[error("cannot read the TLS private key {}: {reason}", path.display())]
    Key { path: PathBuf, reason: String },
    #[error("the TLS certificate {} and key {} cannot serve: {reason}", cert.display(), key.display())]
    Config { cert: PathBuf, key: PathBuf, reason: String },
}

/// The server's TLS settings, swappable.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    config: ArcSwap<rustls::ServerConfig>,
}

/// ALPN protocols offered, best first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

impl Tls {
    /// Reads `cert` (PEM, the chain: the server's certificate first) and
    /// `key` (PEM: PKCS#8, PKCS#1 or SEC1) and checks they go together.
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, TlsError> {
        let config = server_config(cert, key)?;
        Ok(Tls { cert: cert.to_owned(), key: key.to_owned(), config: ArcSwap::from_pointee(config) })
    }

    /// Reads the files again; on an error the settings in force stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.config.store(Arc::new(server_config(&self.cert, &self.key)?));
        Ok(())
    }

    /// The certificate file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// An acceptor with the settings in force now.
    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.load_full())
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let cert_error = |reason: String| TlsError::Certificate { path: cert.to_owned(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no PEM certificate in it".into()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key { path: key.to_owned(), reason: e.to_string() })?;
    // The provider is named, not taken from the process default: which one
    // a build has depends on the features other crates enable. ring, not
    // aws-lc-rs (a C build of minutes on this project's 2 cores): rustls
    // 0.23.48 deprecates ring's provider for lacking post-quantum key
    // exchange (X25519MLKEM768); the classical groups (X25519, P-256,
    // P-384) are what it offers.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config_error = |e: rustls::Error| TlsError::Config { cert: cert.to_owned(), key: key.to_owned(), reason: e.to_string() };
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(config_error)?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let e = Tls::load(&missing, &missing).unwrap_err().to_string();
        assert!(e.contains("certificate") && e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem").unwrap();
        let e = Tls::load(&empty, &empty).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate") && e.contains("empty.pem"), "{e}");

        let a = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key, other_key) = (dir.path().join("c.pem"), dir.path().join("k.pem"), dir.path().join("k2.pem"));
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, a.signing_key.serialize_pem()).unwrap();
        std::fs::write(&other_key, b.signing_key.serialize_pem()).unwrap();
        let tls = Tls::load(&cert, &key).unwrap();
        let e = Tls::load(&cert, &empty).unwrap_err().to_string();
        assert!(e.contains("private key") && e.contains("empty.pem"), "{e}");
        let e = Tls::load(&cert, &other_key).unwrap_err().to_string();
        assert!(e.contains("cannot serve"), "a key of another certificate: {e}");
        // A failed reload keeps the settings in force.
        std::fs::write(&key, "gone").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.config.load().alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
    }
}
