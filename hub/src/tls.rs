//! The hub's optional HTTPS listener (`sunlight-hub run --https ADDR --tls-cert PEM --tls-key PEM`):
//! boxes enroll and upload snapshots over the county network with the hub's server certificate
//! from the county CA (`sunlight-provision init` makes `hub/server.pem` and `hub/server.key` for
//! the hub hosts). TLS is tokio-rustls with the aws-lc-rs provider that rustls already uses for
//! MQTT; the same router serves plain HTTP (for a proxy on the same host) and HTTPS.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// A client has this long to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

/// The server's TLS settings from a certificate chain and its key, both PEM. Every error names the
/// file that is wrong.
/// The router as the hub's own `--https` listener serves it: every request is marked as arriving
/// over TLS (so the dashboard's cookies are `Secure`; a client cannot say otherwise here, since
/// the header is overwritten), and every answer tells browsers to use HTTPS only from now on
/// (HSTS, a year).
pub fn https_only(router: axum::Router) -> axum::Router {
    use axum::http::{HeaderValue, header};
    router.layer(axum::middleware::from_fn(
        |mut req: axum::extract::Request, next: axum::middleware::Next| async move {
            req.headers_mut()
                .insert("x-forwarded-proto", HeaderValue::from_static("https"));
            let mut res = next.run(req).await;
            res.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=31536000"),
            );
            res
        },
    ))
}

pub fn server_config(
    cert_path: &std::path::Path,
    key_path: &std::path::Path,
) -> Result<rustls::ServerConfig, String> {
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("reading {}: {e}", p.display()));
    let (cert_pem, key_pem) = (read(cert_path)?, read(key_path)?);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{} holds no certificate (give the hub's server certificate, e.g. hub/server.pem)",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} and {} do not make a server identity: {e}",
                cert_path.display(),
                key_path.display()
            )
        })
}

/// An HTTPS listener for `axum::serve`: accepts TCP connections and does each TLS handshake on a
/// task of its own (a slow or silent client delays nobody), handing over finished ones.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: rustls::ServerConfig) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let mut config = config;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (tx, ready) = tokio::sync::mpsc::channel(READY_QUEUE);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum's own listener does.
                        tracing::warn!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let (acceptor, ready) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                        Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accepting task is gone (only when the runtime stops): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
