//! AMQPS: loading the certificate, key and client CA into a rustls server configuration
//! (ring provider; TLS 1.3 and 1.2), and serving one accepted socket: the TLS handshake
//! in the connection's own task (bounded by the handshake timeout, so a slow client never
//! holds up accepts), then `connection::serve` over the TLS stream with what the client
//! certificate says (`subject.rs`: the SASL EXTERNAL user name).
//!
//! Like `server.rs`, this wires layers together: it imports `connection` and `config`.

mod subject;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::config::{LoginFrom, TlsConfig, TlsVerify};
use crate::connection::{self, ServerContext, Stream, Transport};

pub use subject::login_name;

/// A loaded TLS setup, shared by every AMQPS connection.
pub struct TlsAcceptor {
    acceptor: tokio_rustls::TlsAcceptor,
    login_from: LoginFrom,
}

impl TlsAcceptor {
    /// The rustls acceptor, for the management API's HTTPS listener.
    pub fn rustls(&self) -> tokio_rustls::TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads and checks the files `config` names. Every error names the flag and file.
    pub fn load(config: &TlsConfig) -> Result<TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs = read_certs("--tls-cert", &config.cert)?;
        let key = PrivateKeyDer::from_pem_file(&config.key).map_err(|e| {
            format!(
                "--tls-key {}: no usable private key (PEM: PKCS#8, RSA or EC): {e}",
                config.key.display()
            )
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS: {e}"))?;
        let builder = match (config.verify, &config.ca) {
            (TlsVerify::None, _) => builder.with_no_client_auth(),
            (verify, ca) => {
                let ca = ca
                    .as_deref()
                    .ok_or("--tls-verify peer|required needs --tls-ca")?;
                let mut roots = RootCertStore::empty();
                for cert in read_certs("--tls-ca", ca)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let verifier = match verify {
                    TlsVerify::Peer => verifier.allow_unauthenticated(),
                    _ => verifier,
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("--tls-ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let server = builder.with_single_cert(certs, key).map_err(|e| {
            format!(
                "--tls-cert {} / --tls-key {}: {e}",
                config.cert.display(),
                config.key.display()
            )
        })?;
        Ok(TlsAcceptor {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            login_from: config.login_from,
        })
    }
}

/// Every certificate in a PEM file; none at all is an error.
fn read_certs(flag: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bad = |e: &dyn std::fmt::Display| format!("{flag} {}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(&e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no PEM certificate in the file"));
    }
    Ok(certs)
}

/// Serves one accepted AMQPS socket: the TLS handshake, then the AMQP connection.
pub async fn serve(
    tls: Arc<TlsAcceptor>,
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ServerContext>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let handshake = tls.acceptor.accept(stream);
    let stream = match tokio::time::timeout(ctx.limits.handshake_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::info!(%peer, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let (_, session) = stream.get_ref();
    let external = match session.peer_certificates().and_then(|c| c.first()) {
        // Only a verified certificate gets this far: rustls has checked it against the CA.
        Some(cert) => login_name(cert, tls.login_from).ok_or(connection::EXTERNAL_NO_NAME),
        None => Err(connection::EXTERNAL_NO_CERT),
    };
    tracing::debug!(
        %peer,
        version = ?session.protocol_version(),
        cipher = ?session.negotiated_cipher_suite().map(|s| s.suite()),
        client_cert = external.as_deref().unwrap_or(""),
        "TLS established"
    );
    let session_info = (
        session
            .protocol_version()
            .map(|v| format!("{v:?}").to_ascii_lowercase().replace('_', "."))
            .unwrap_or_default(),
        session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default(),
    );
    let transport = Transport::Tls {
        external,
        session: session_info,
    };
    connection::serve(stream, (peer, local), transport, ctx).await;
}

/// TLS has one state machine for both directions, so its halves share it.
impl Stream for TlsStream<TcpStream> {
    type Read<'a> = tokio::io::ReadHalf<&'a mut TlsStream<TcpStream>>;
    type Write<'a> = tokio::io::WriteHalf<&'a mut TlsStream<TcpStream>>;
    fn halves(&mut self) -> (Self::Read<'_>, Self::Write<'_>) {
        tokio::io::split(self)
    }
}
