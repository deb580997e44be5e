//! tonic channels over our own TCP + rustls connector.
//!
//! Channels are built with [`tonic::transport::Endpoint::connect_with_connector`]
//! and a URI `http://host:port`: TLS is done by the connector (so the
//! verifier is ours: pinned DER, or WebPki with a CA bundle), and tonic only
//! sees an already encrypted byte stream. The first connection is made
//! eagerly by us, so a failure comes back as a precise [`TlsError`] and the
//! peer's certificate is known; later reconnects (tonic reconnects lazily)
//! dial again through the same connector and verifier.
//!
//! With [`ChannelOptions::proxy`], every connection (the first and the
//! reconnects) is a tunnel through that HTTP proxy, TLS inside it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::dial::{connect_tcp, dial, peer_leaf, server_name};
use super::verify::LeafSlot;
use super::TlsError;
use crate::proxy::Proxy;
use crate::ErrorChain;

/// Options of a channel opened by [`connect_channel`]: start from
/// `Default` and assign the fields to change (see [`crate::config`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ChannelOptions {
    /// Limit for TCP connect + TLS handshake + HTTP/2 handshake, for the first
    /// connection and every reconnect. Default: 10 s.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive ping interval; at least [`ChannelOptions::MIN_KEEPALIVE_INTERVAL`].
    /// Default: 60 s (as Fed-BioMed nodes).
    pub keepalive_interval: Duration,
    /// How long to wait for a keepalive ping's answer before the connection
    /// is considered dead. Default: 20 s.
    pub keepalive_timeout: Duration,
    /// Send keepalive pings while no RPC is open. Default: true.
    pub keep_alive_while_idle: bool,
    /// Set TCP_NODELAY on the socket. Default: true.
    pub tcp_nodelay: bool,
    /// HTTP/2 initial stream window size; `None` keeps hyper's default.
    /// Default: `None`.
    pub initial_stream_window_size: Option<u32>,
    /// HTTP/2 initial connection window size; `None` keeps hyper's default.
    /// Default: `None`.
    pub initial_connection_window_size: Option<u32>,
    /// Dial through this HTTP proxy (`CONNECT`; TLS runs inside the
    /// tunnel, end to end); `None` dials directly. In a node's
    /// `ControllerConfig::channel` it is the proxy of every link whose
    /// [`ResearcherEndpoint::proxy`](crate::node::ResearcherEndpoint::proxy)
    /// is `None`. The library reads no environment variable for it (see
    /// [`Proxy::from_env`]). Default: `None`.
    pub proxy: Option<Proxy>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            keepalive_interval: Self::DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: Self::DEFAULT_KEEPALIVE_TIMEOUT,
            keep_alive_while_idle: true,
            tcp_nodelay: true,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
            proxy: None,
        }
    }
}

impl ChannelOptions {
    /// Default of [`ChannelOptions::connect_timeout`] (10 s).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default of [`ChannelOptions::keepalive_interval`] (60 s, as
    /// Fed-BioMed nodes); also the researcher's (`researcher::Timeouts`).
    pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
    /// Default of [`ChannelOptions::keepalive_timeout`] (20 s); the
    /// researcher's server waits as long for its pings' answers.
    pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
    /// The smallest HTTP/2 keepalive interval fedroute accepts: Fed-BioMed's
    /// Python server refuses pings closer than about 1.8 s apart.
    pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

    /// Checks the options (keepalive interval not below the minimum).
    pub fn validate(&self) -> Result<(), TlsError> {
        if self.keepalive_interval < Self::MIN_KEEPALIVE_INTERVAL {
            return Err(TlsError::KeepaliveTooShort {
                interval: self.keepalive_interval,
                minimum: Self::MIN_KEEPALIVE_INTERVAL,
            });
        }
        Ok(())
    }
}

/// Opens a tonic channel to `host:port` over TLS with `config` (from
/// [`pinned_client_config`](super::pinned_client_config) or
/// [`ca_client_config`](super::ca_client_config)): eager connect bounded by
/// the connect timeout, HTTP/2 keepalive as in `opts`. Message size limits
/// belong on the generated clients built from the channel.
///
/// A refused server certificate fails here ([`TlsError::Handshake`]). A
/// server that refuses *our* client certificate (mutual TLS) does so after
/// the TLS 1.3 handshake has finished on our side, so that shows at the first
/// RPC, as a `Status` whose source chain holds rustls' alert.
/// When the connection drops, tonic reconnects lazily through the same
/// connector and verifier (a pinned channel never reaches a server with
/// another certificate).
pub async fn connect_channel(
    host: &str,
    port: u16,
    config: Arc<ClientConfig>,
    opts: &ChannelOptions,
) -> Result<Channel, TlsError> {
    connect_channel_with_peer(host, port, config, opts)
        .await
        .map(|connected| connected.channel)
}

/// A channel with the certificate the server presented when it was opened.
#[derive(Clone, Debug)]
pub struct ConnectedChannel {
    /// The channel (cheap to clone).
    pub channel: Channel,
    /// The leaf certificate seen on the first connection.
    pub peer_certificate: CertificateDer<'static>,
    latest: LeafSlot,
}

impl ConnectedChannel {
    /// The leaf certificate seen on the most recent (re)connection.
    pub fn latest_peer_certificate(&self) -> CertificateDer<'static> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| self.peer_certificate.clone())
    }
}

/// [`connect_channel`], also returning the server's leaf certificate (for
/// example to read the researcher id with a CA-bundle policy).
pub async fn connect_channel_with_peer(
    host: &str,
    port: u16,
    config: Arc<ClientConfig>,
    opts: &ChannelOptions,
) -> Result<ConnectedChannel, TlsError> {
    opts.validate()?;
    super::install_crypto_provider();
    let name = server_name(host)?;
    let (uri_text, uri) = channel_uri(host, port)?;
    let timeout_error = || TlsError::Timeout {
        what: "connecting",
        host: host.to_string(),
        port,
        after: opts.connect_timeout,
    };

    // First connection, made here so that failures are precise.
    let tls = tokio::time::timeout(
        opts.connect_timeout,
        dial(
            host,
            port,
            name.clone(),
            Arc::clone(&config),
            opts.tcp_nodelay,
            opts.proxy.as_ref(),
        ),
    )
    .await
    .map_err(|_| timeout_error())??;
    let peer_certificate = peer_leaf(&tls, host, port)?;
    let latest: LeafSlot = Arc::new(Mutex::new(Some(peer_certificate.clone())));

    let connector = TlsConnector {
        host: host.to_string(),
        port,
        name,
        config,
        nodelay: opts.tcp_nodelay,
        proxy: opts.proxy.clone(),
        first: Arc::new(Mutex::new(Some(tls))),
        latest: Arc::clone(&latest),
    };
    let channel = tokio::time::timeout(
        opts.connect_timeout,
        endpoint(uri, opts).connect_with_connector(connector),
    )
    .await
    .map_err(|_| timeout_error())?
    .map_err(|e| TlsError::Channel {
        uri: uri_text.clone(),
        reason: ErrorChain(&e).to_string(),
    })?;
    Ok(ConnectedChannel {
        channel,
        peer_certificate,
        latest,
    })
}

/// A **plaintext** channel (no TLS: no privacy, no researcher identity) to
/// `host:port`, with the same options as [`connect_channel`]. Only for
/// explicitly insecure set-ups (`TrustPolicy::Plaintext`, `--insecure`):
/// it logs a warning every time it is used.
pub(crate) async fn connect_plaintext_channel(
    host: &str,
    port: u16,
    opts: &ChannelOptions,
) -> Result<Channel, TlsError> {
    opts.validate()?;
    let (uri_text, uri) = channel_uri(host, port)?;
    log::warn!("{host}:{port}: connecting WITHOUT TLS (insecure mode): traffic is readable and the researcher is not authenticated");
    let connect = async {
        match &opts.proxy {
            None => endpoint(uri, opts).connect().await,
            Some(proxy) => {
                let connector = PlainConnector {
                    host: host.to_string(),
                    port,
                    nodelay: opts.tcp_nodelay,
                    proxy: proxy.clone(),
                };
                endpoint(uri, opts).connect_with_connector(connector).await
            }
        }
    };
    tokio::time::timeout(opts.connect_timeout, connect)
        .await
        .map_err(|_| TlsError::Timeout {
            what: "connecting",
            host: host.to_string(),
            port,
            after: opts.connect_timeout,
        })?
        .map_err(|e| TlsError::Channel {
            uri: uri_text,
            reason: ErrorChain(&e).to_string(),
        })
}

/// The `http://` URI tonic dials (TLS, when used, is in our connector).
fn channel_uri(host: &str, port: u16) -> Result<(String, Uri), TlsError> {
    let uri_text = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("http://[{ip}]:{port}"),
        _ => format!("http://{host}:{port}"),
    };
    let uri = uri_text.parse::<Uri>().map_err(|e| TlsError::Channel {
        uri: uri_text.clone(),
        reason: e.to_string(),
    })?;
    Ok((uri_text, uri))
}

/// A tonic endpoint for `uri` with `opts` applied.
fn endpoint(uri: Uri, opts: &ChannelOptions) -> Endpoint {
    let mut endpoint = Endpoint::from(uri)
        .connect_timeout(opts.connect_timeout)
        .http2_keep_alive_interval(opts.keepalive_interval)
        .keep_alive_timeout(opts.keepalive_timeout)
        .keep_alive_while_idle(opts.keep_alive_while_idle)
        .tcp_nodelay(opts.tcp_nodelay);
    if let Some(size) = opts.initial_stream_window_size {
        endpoint = endpoint.initial_stream_window_size(size);
    }
    if let Some(size) = opts.initial_connection_window_size {
        endpoint = endpoint.initial_connection_window_size(size);
    }
    endpoint
}

/// The connector tonic calls for every (re)connection: TCP + rustls. The
/// first call hands over the connection [`connect_channel_with_peer`] made.
#[derive(Clone)]
struct TlsConnector {
    host: String,
    port: u16,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    nodelay: bool,
    proxy: Option<Proxy>,
    first: Arc<Mutex<Option<TlsStream<TcpStream>>>>,
    latest: LeafSlot,
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TlsStream<TcpStream>>, TlsError>> + Send>>;

impl tower::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = TlsError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tls) = first {
            return Box::pin(async move { Ok(TokioIo::new(tls)) });
        }
        let this = self.clone();
        Box::pin(async move {
            log::debug!("TLS: reconnecting to {}:{}", this.host, this.port);
            let tls = dial(
                &this.host,
                this.port,
                this.name,
                this.config,
                this.nodelay,
                this.proxy.as_ref(),
            )
            .await?;
            let leaf = peer_leaf(&tls, &this.host, this.port)?;
            *this.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(leaf);
            Ok(TokioIo::new(tls))
        })
    }
}

/// The connector of a plaintext channel through a proxy: the tunnel,
/// nothing on it.
#[derive(Clone)]
struct PlainConnector {
    host: String,
    port: u16,
    nodelay: bool,
    proxy: Proxy,
}

type PlainFuture = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, TlsError>> + Send>>;

impl tower::Service<Uri> for PlainConnector {
    type Response = TokioIo<TcpStream>;
    type Error = TlsError;
    type Future = PlainFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = connect_tcp(&this.host, this.port, Some(&this.proxy)).await?;
            if this.nodelay {
                let _ = tcp.set_nodelay(true);
            }
            Ok(TokioIo::new(tcp))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_values() {
        let ChannelOptions {
            connect_timeout,
            keepalive_interval,
            keepalive_timeout,
            keep_alive_while_idle,
            tcp_nodelay,
            initial_stream_window_size,
            initial_connection_window_size,
            proxy,
        } = ChannelOptions::default();
        assert_eq!(connect_timeout, Duration::from_secs(10));
        assert_eq!(keepalive_interval, Duration::from_secs(60));
        assert_eq!(keepalive_timeout, Duration::from_secs(20));
        assert!(keep_alive_while_idle && tcp_nodelay);
        assert_eq!(initial_stream_window_size, None);
        assert_eq!(initial_connection_window_size, None);
        assert_eq!(proxy, None);
        assert_eq!(
            crate::config::fields_without_default(include_str!("channel.rs")),
            Vec::<String>::new()
        );
    }
}
