//! TLS on the API port (`--tls-cert`, `--tls-key`): rustls with the `ring` provider, TLS 1.2
//! and 1.3, HTTP/1.1 (ALPN `http/1.1`).
//!
//! Handshakes run on their own tasks, with a deadline, and only finished ones reach the
//! HTTP server, so a client that opens a connection and stays silent cannot hold up others.

use std::io::BufReader;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const QUEUE: usize = 64;

/// Where the certificate chain and private key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A file holds nothing usable.
    #[error("{path}: {what}")]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate).
    #[error("the TLS certificate and key cannot be used: {0}")]
    Config(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Load the files into a TLS acceptor.
pub(crate) fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, TlsError> {
    let content = |path: &Path, what: &str| TlsError::Content {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let cert_pem = read(&files.cert)?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(cert_pem.as_slice()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(&files.cert, &format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(content(&files.cert, "no CERTIFICATE in the file"));
    }
    let key_pem = read(&files.key)?;
    let key = rustls_pemfile::private_key(&mut BufReader::new(key_pem.as_slice()))
        .map_err(|e| content(&files.key, &format!("not a PEM private key: {e}")))?
        .ok_or_else(|| content(&files.key, "no PRIVATE KEY in the file"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A listener that hands the HTTP server only connections whose TLS handshake finished.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accept on `listener`, handshaking with `acceptor`.
    pub(crate) fn new(listener: TcpListener, acceptor: TlsAcceptor) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(QUEUE);
        let accepting = tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, as axum does.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener {
            ready,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn files(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let c = dir.join("cert.pem");
        let k = dir.join("key.pem");
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        TlsFiles { cert: c, key: k }
    }

    #[test]
    fn loads_a_pair_and_refuses_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = pair.cert.pem();
        let key = pair.key_pair.serialize_pem();
        assert!(acceptor(&files(dir.path(), &cert, &key)).is_ok());

        let other = rcgen::generate_simple_self_signed(vec!["x".to_string()]).unwrap();
        let mismatched = acceptor(&files(dir.path(), &cert, &other.key_pair.serialize_pem()));
        assert!(mismatched.is_err());
        let e = acceptor(&files(dir.path(), "junk", &key)).err().unwrap();
        assert!(e.to_string().contains("CERTIFICATE"), "{e}");
        let e = acceptor(&files(dir.path(), &cert, "junk")).err().unwrap();
        assert!(e.to_string().contains("PRIVATE KEY"), "{e}");
        let e = acceptor(&TlsFiles {
            cert: dir.path().join("missing.pem"),
            key: dir.path().join("key.pem"),
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
