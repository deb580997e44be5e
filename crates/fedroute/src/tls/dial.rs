//! One TCP connection plus TLS handshake, shared by certificate fetching and
//! the channel connector. The TCP connection is direct, or a tunnel through
//! an HTTP proxy (`CONNECT`, see [`crate::proxy`]) with TLS inside it.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{TlsError, ALPN_H2};
use crate::proxy::{self, Proxy};

/// The TLS server name for a host: an IP address, or a DNS name.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadHostName {
        host: host.to_string(),
    })
}

/// TCP connect (directly, or a tunnel through `proxy`) + TLS handshake,
/// without a time limit (callers bound it; a proxy's own answer is bounded
/// by [`Proxy::handshake_timeout`]).
pub(crate) async fn dial(
    host: &str,
    port: u16,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    nodelay: bool,
    proxy: Option<&Proxy>,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let tcp = connect_tcp(host, port, proxy).await?;
    if nodelay {
        if let Err(e) = tcp.set_nodelay(true) {
            log::debug!("TLS: could not set TCP_NODELAY towards {host}:{port}: {e}");
        }
    }
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|source| TlsError::Handshake {
            host: host.to_string(),
            port,
            source,
        })?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
        log::debug!("TLS: {host}:{port} did not negotiate ALPN h2; speaking HTTP/2 anyway");
    }
    Ok(tls)
}

/// A TCP connection to `host:port`: direct, or a tunnel through `proxy`.
pub(crate) async fn connect_tcp(
    host: &str,
    port: u16,
    proxy: Option<&Proxy>,
) -> Result<TcpStream, TlsError> {
    if let Some(proxy) = proxy {
        return Ok(proxy::tunnel::open(proxy, host, port).await?);
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    TcpStream::connect((bare, port))
        .await
        .map_err(|source| TlsError::Connect {
            host: host.to_string(),
            port,
            source,
        })
}

/// The leaf certificate the server presented on a finished handshake.
pub(crate) fn peer_leaf(
    tls: &TlsStream<TcpStream>,
    host: &str,
    port: u16,
) -> Result<CertificateDer<'static>, TlsError> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| leaf.clone().into_owned())
        .ok_or_else(|| TlsError::NoPeerCertificate {
            host: host.to_string(),
            port,
        })
}
