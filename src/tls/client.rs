//! The node (client) side: trust policies, rustls client configurations,
//! fetching a server certificate for trust on first use, and opening tonic
//! channels over our own TCP + rustls connector.
//!
//! Channels are built with [`tonic::transport::Endpoint::connect_with_connector`]
//! and a URI `http://host:port`: TLS is done by the connector (so the
//! verifier is ours: pinned DER, or WebPki with a CA bundle), and tonic only
//! sees an already encrypted byte stream. The first connection is made
//! eagerly by us, so a failure comes back as a precise [`TlsError`] and the
//! peer's certificate is known; later reconnects (tonic reconnects lazily)
//! dial again through the same connector and verifier.

use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::identity::{researcher_id_of, ClientIdentity};
use super::pem::load_certificates;
use super::verify::{AcceptAnyServerCert, LeafSlot, PinnedCertVerifier};
use super::{crypto_provider, error_chain, TlsError, ALPN_H2};

/// How a node decides to trust a researcher's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustPolicy {
    /// Fetch the server certificate on first contact and pin it (what
    /// Fed-BioMed does); the researcher id comes from its subject O=.
    TrustOnFirstUse,
    /// Trust exactly the certificate in this PEM file, whatever host name is dialled.
    PinnedCertificate(PathBuf),
    /// Trust certificates signed by a CA in this PEM bundle (host names are checked).
    CaBundle(PathBuf),
}

/// The smallest HTTP/2 keepalive interval fedroute accepts: Fed-BioMed's
/// Python server refuses pings closer than about 1.8 s apart.
pub const MIN_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Options of a channel opened by [`connect_channel`]. Chainable setters;
/// the defaults are documented on each field.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// Limit for TCP connect + TLS handshake + HTTP/2 handshake, for the first
    /// connection and every reconnect. Default 10 s.
    pub connect_timeout: Duration,
    /// HTTP/2 keepalive ping interval; at least [`MIN_KEEPALIVE_INTERVAL`].
    /// Default 60 s (as Fed-BioMed nodes).
    pub keepalive_interval: Duration,
    /// How long to wait for a keepalive ping's answer before the connection
    /// is considered dead. Default 20 s.
    pub keepalive_timeout: Duration,
    /// Send keepalive pings while no RPC is open. Default true.
    pub keep_alive_while_idle: bool,
    /// Set TCP_NODELAY on the socket. Default true.
    pub tcp_nodelay: bool,
    /// HTTP/2 initial stream window size; `None` keeps hyper's default.
    pub initial_stream_window_size: Option<u32>,
    /// HTTP/2 initial connection window size; `None` keeps hyper's default.
    pub initial_connection_window_size: Option<u32>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(60),
            keepalive_timeout: Duration::from_secs(20),
            keep_alive_while_idle: true,
            tcp_nodelay: true,
            initial_stream_window_size: None,
            initial_connection_window_size: None,
        }
    }
}

impl ChannelOptions {
    /// Sets [`ChannelOptions::connect_timeout`].
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }
    /// Sets [`ChannelOptions::keepalive_interval`].
    pub fn keepalive_interval(mut self, d: Duration) -> Self {
        self.keepalive_interval = d;
        self
    }
    /// Sets [`ChannelOptions::keepalive_timeout`].
    pub fn keepalive_timeout(mut self, d: Duration) -> Self {
        self.keepalive_timeout = d;
        self
    }
    /// Sets [`ChannelOptions::keep_alive_while_idle`].
    pub fn keep_alive_while_idle(mut self, on: bool) -> Self {
        self.keep_alive_while_idle = on;
        self
    }
    /// Sets [`ChannelOptions::tcp_nodelay`].
    pub fn tcp_nodelay(mut self, on: bool) -> Self {
        self.tcp_nodelay = on;
        self
    }
    /// Sets both HTTP/2 initial window sizes (stream, connection).
    pub fn window_sizes(mut self, stream: Option<u32>, connection: Option<u32>) -> Self {
        self.initial_stream_window_size = stream;
        self.initial_connection_window_size = connection;
        self
    }

    /// Checks the options (keepalive interval not below the minimum).
    pub fn validate(&self) -> Result<(), TlsError> {
        if self.keepalive_interval < MIN_KEEPALIVE_INTERVAL {
            return Err(TlsError::KeepaliveTooShort {
                interval: self.keepalive_interval,
                minimum: MIN_KEEPALIVE_INTERVAL,
            });
        }
        Ok(())
    }
}

/// A client configuration that accepts exactly `pinned` (DER equality, any
/// host name, handshake signature still checked), offers ALPN h2, and
/// presents `client` when the server asks for a certificate.
pub fn pinned_client_config(
    pinned: CertificateDer<'static>,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCertVerifier::new(pinned)));
    finish_client_config(builder, client)
}

/// A client configuration trusting the CAs of a PEM bundle (a normal WebPki
/// verifier: chain, validity dates and host name are checked), offering ALPN
/// h2 and presenting `client` when asked.
pub fn ca_client_config(
    ca: &Path,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let origin = ca.display().to_string();
    let roots = root_store(&load_certificates(ca)?, &origin)?;
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .map_err(|e| TlsError::Verifier {
            origin,
            reason: e.to_string(),
        })?;
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "client",
            source,
        })?
        .with_webpki_verifier(verifier);
    finish_client_config(builder, client)
}

/// A root store holding every certificate of a bundle; all must parse.
pub(crate) fn root_store(
    certs: &[CertificateDer<'static>],
    origin: &str,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        roots.add(cert.clone()).map_err(|e| TlsError::Verifier {
            origin: origin.to_string(),
            reason: format!(
                "certificate {} of the bundle is not a usable CA: {e}",
                i + 1
            ),
        })?;
    }
    Ok(roots)
}

/// An accept-anything configuration that records the leaf (trust on first use).
fn accept_any_client_config(
    seen: LeafSlot,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Config {
            what: "client",
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert::new(Some(seen))));
    finish_client_config(builder, client)
}

fn finish_client_config(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    client: Option<&ClientIdentity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.cert_chain().to_vec(), id.key())
            .map_err(|source| TlsError::Config {
                what: "client identity",
                source,
            })?,
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS server name for a host: an IP address, or a DNS name.
fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadHostName {
        host: host.to_string(),
    })
}

/// TCP connect + TLS handshake, without a time limit (callers bound it).
async fn dial(
    host: &str,
    port: u16,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    nodelay: bool,
) -> Result<TlsStream<TcpStream>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare, port))
        .await
        .map_err(|source| TlsError::Connect {
            host: host.to_string(),
            port,
            source,
        })?;
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

/// The leaf certificate the server presented on a finished handshake.
fn peer_leaf(
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

/// Fetches a server's leaf certificate without trusting it (trust on first
/// use): a TLS handshake with an accept-anything verifier (the handshake
/// signature is still checked), bounded by `timeout`.
pub async fn fetch_server_certificate(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<CertificateDer<'static>, TlsError> {
    fetch_server_certificate_with(host, port, timeout, None).await
}

/// [`fetch_server_certificate`] presenting a node identity, for servers that
/// require mutual TLS.
pub async fn fetch_server_certificate_with(
    host: &str,
    port: u16,
    timeout: Duration,
    client: Option<&ClientIdentity>,
) -> Result<CertificateDer<'static>, TlsError> {
    let seen = LeafSlot::default();
    let config = accept_any_client_config(Arc::clone(&seen), client)?;
    let name = server_name(host)?;
    let fetch = async {
        let mut tls = dial(host, port, name, config, true).await?;
        let leaf = match peer_leaf(&tls, host, port) {
            Ok(leaf) => leaf,
            Err(e) => seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .ok_or(e)?,
        };
        // Polite close; the certificate is all we wanted.
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
        Ok(leaf)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| TlsError::Timeout {
            what: "fetching the server certificate",
            host: host.to_string(),
            port,
            after: timeout,
        })?
}

/// A server certificate a node decided to trust, with the client
/// configuration that trusts it (see [`trusted_client_config`]).
#[derive(Clone, Debug)]
pub struct TrustedServer {
    /// The configuration to hand to [`connect_channel`].
    pub config: Arc<ClientConfig>,
    /// The trusted (pinned) certificate; `None` with a CA bundle, where it is
    /// only known after connecting ([`connect_channel_with_peer`]).
    pub certificate: Option<CertificateDer<'static>>,
    /// The researcher id from the certificate's subject O=, when known and present.
    pub researcher_id: Option<String>,
}

/// Applies a [`TrustPolicy`] for one endpoint: with trust on first use the
/// certificate is fetched (bounded by `timeout`) and pinned; with a pinned
/// file it is loaded; with a CA bundle a WebPki configuration is built.
pub async fn trusted_client_config(
    policy: &TrustPolicy,
    host: &str,
    port: u16,
    client: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<TrustedServer, TlsError> {
    match policy {
        TrustPolicy::TrustOnFirstUse => {
            let cert = fetch_server_certificate_with(host, port, timeout, client).await?;
            Ok(pinned_server(cert, client)?)
        }
        TrustPolicy::PinnedCertificate(path) => {
            let cert = load_certificates(path)?.swap_remove(0);
            Ok(pinned_server(cert, client)?)
        }
        TrustPolicy::CaBundle(path) => Ok(TrustedServer {
            config: ca_client_config(path, client)?,
            certificate: None,
            researcher_id: None,
        }),
    }
}

/// Trust on first use, again: after a pinned connection was refused (the
/// researcher came back with a new certificate), fetch the certificate anew
/// and pin it only when it carries the same researcher id (Fed-BioMed never
/// reconnects in that case; fedroute accepts it with a warning). A different
/// or missing id is [`TlsError::ResearcherIdChanged`]: a security error.
pub async fn retrust_on_first_use(
    host: &str,
    port: u16,
    expected_researcher_id: &str,
    client: Option<&ClientIdentity>,
    timeout: Duration,
) -> Result<TrustedServer, TlsError> {
    let cert = fetch_server_certificate_with(host, port, timeout, client).await?;
    let found = researcher_id_of(&cert).unwrap_or_default();
    if found != expected_researcher_id {
        log::error!(
            "TLS: {host}:{port} presents researcher id \"{found}\" instead of \"{expected_researcher_id}\""
        );
        return Err(TlsError::ResearcherIdChanged {
            host: host.to_string(),
            port,
            expected: expected_researcher_id.to_string(),
            found,
        });
    }
    log::warn!(
        "TLS: {host}:{port} presents a new certificate for the same researcher id \"{found}\"; pinning it"
    );
    pinned_server(cert, client)
}

fn pinned_server(
    cert: CertificateDer<'static>,
    client: Option<&ClientIdentity>,
) -> Result<TrustedServer, TlsError> {
    let researcher_id = match researcher_id_of(&cert) {
        Ok(id) => Some(id),
        Err(e) => {
            log::warn!("TLS: the trusted server certificate carries no researcher id: {e}");
            None
        }
    };
    Ok(TrustedServer {
        config: pinned_client_config(cert.clone(), client)?,
        certificate: Some(cert),
        researcher_id,
    })
}

/// Opens a tonic channel to `host:port` over TLS with `config` (from
/// [`pinned_client_config`] or [`ca_client_config`]): eager connect bounded
/// by the connect timeout, HTTP/2 keepalive as in `opts`. Message size limits
/// belong on the generated clients built from the channel.
///
/// A refused server certificate fails here ([`TlsError::Handshake`]). A
/// server that refuses *our* client certificate (mutual TLS) does so after
/// the TLS 1.3 handshake has finished on our side, so that shows at the first
/// RPC; [`tls_failure_of`](crate::tls::tls_failure_of) on the RPC's `Status`
/// tells it apart ([`TlsFailure::ClientCertificateRefused`](crate::tls::TlsFailure)).
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
    let uri_text = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("http://[{ip}]:{port}"),
        _ => format!("http://{host}:{port}"),
    };
    let uri = uri_text.parse::<Uri>().map_err(|e| TlsError::Channel {
        uri: uri_text.clone(),
        reason: e.to_string(),
    })?;
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
        first: Arc::new(Mutex::new(Some(tls))),
        latest: Arc::clone(&latest),
    };
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
    let channel = tokio::time::timeout(
        opts.connect_timeout,
        endpoint.connect_with_connector(connector),
    )
    .await
    .map_err(|_| timeout_error())?
    .map_err(|e| TlsError::Channel {
        uri: uri_text.clone(),
        reason: error_chain(&e),
    })?;
    Ok(ConnectedChannel {
        channel,
        peer_certificate,
        latest,
    })
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
            let tls = dial(&this.host, this.port, this.name, this.config, this.nodelay).await?;
            let leaf = peer_leaf(&tls, &this.host, this.port)?;
            *this.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(leaf);
            Ok(TokioIo::new(tls))
        })
    }
}
