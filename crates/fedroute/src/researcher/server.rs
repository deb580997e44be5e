//! [`start`]: builds the researcher's identity, binds the listening socket,
//! starts the [`Researcher`] actor and serves the gRPC service on the
//! current runtime (inside the actix `System`).

use std::net::SocketAddr;

use std::sync::Arc;

use actix::{Actor, Addr, Recipient};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;
use tonic::transport::Server;

use super::actor::{Researcher, ServerControl, SetServer, Shutdown};
use super::config::{Limits, ResearcherConfig};
use super::error::ResearcherError;
use super::events::ResearcherEvent;
use super::incoming::{self, AcceptSettings, Connections, TlsAccept};
use super::metered::Metered;
use super::service::{ResearcherGrpc, ServiceParts};
use crate::log_limit::PeerLog;
use crate::proto::researcher_service_server::ResearcherServiceServer;
use crate::store::DeliveryStore;
use crate::tls::{self, CertificateDer, ChannelOptions};
use crate::wire::{BufferPool, MessageDecoder, ReceiveBudget, GRPC_MAX_MESSAGE_BYTES};

/// A running researcher.
#[derive(Clone, Debug)]
pub struct ResearcherHandle {
    /// The actor to send [`super::SendToNode`], [`super::Request`],
    /// [`super::Broadcast`], [`super::Nodes`], [`super::Shutdown`] to.
    pub addr: Addr<Researcher>,
    /// The address the server listens on (the bound port when 0 was asked).
    pub local_addr: SocketAddr,
    /// The researcher id (the certificate's O=).
    pub researcher_id: String,
    /// The server certificate nodes will see (pin it on the client side).
    pub cert_der: CertificateDer<'static>,
    /// The bytes messages being received hold, shared with the server.
    receive_budget: ReceiveBudget,
}

impl ResearcherHandle {
    /// Bytes of partly received messages held right now, all nodes together
    /// (at most [`ReceiveLimits::budget_bytes`](crate::config::ReceiveLimits::budget_bytes)).
    pub fn receive_budget_in_use(&self) -> usize {
        self.receive_budget.in_use()
    }

    /// Shuts the researcher down (see [`Shutdown`]).
    pub async fn shutdown(&self) -> Result<(), ResearcherError> {
        Ok(self.addr.send(Shutdown).await?)
    }
}

/// Starts a researcher: identity (loaded or generated), TLS (mutual when
/// `client_ca` or `trusted_nodes` is set; plaintext only with `insecure`), the actor, and the
/// gRPC server on `config.listen.address`. Must run inside an actix `System`.
/// Handler events go to `events` when given.
///
/// ```
/// use std::time::Duration;
/// use fedroute::researcher::{self, Nodes, Request, ResearcherConfig, ResearcherError};
/// use fedroute::wire::{Envelope, PingRequest};
///
/// actix_rt::System::new().block_on(async {
///     let mut config = ResearcherConfig::default();
///     config.listen.address = "127.0.0.1:0".parse().unwrap();
///     let handle = researcher::start(config, None).await.unwrap();
///     assert_ne!(handle.local_addr.port(), 0);
///     assert!(handle.researcher_id.starts_with("RESEARCHER_"));
///
///     // No node has polled yet: requests are refused, not queued forever.
///     let ping = Envelope::from_typed(&PingRequest::new(handle.researcher_id.clone())).unwrap();
///     let answer = handle
///         .addr
///         .send(Request { node_id: "NODE_1".into(), message: ping, timeout: Duration::from_secs(5) })
///         .await
///         .unwrap();
///     assert!(matches!(answer, Err(ResearcherError::NodeUnknown { .. })));
///     assert!(handle.addr.send(Nodes).await.unwrap().is_empty());
///
///     handle.shutdown().await.unwrap();
/// });
/// ```
pub async fn start(
    config: ResearcherConfig,
    events: Option<Recipient<ResearcherEvent>>,
) -> Result<ResearcherHandle, ResearcherError> {
    config.validate()?;
    tls::install_crypto_provider();
    let host = config.listen.certificate_host();
    let identity = match (&config.listen.identity, &config.state_dir) {
        (Some((cert, key)), _) => tls::load_researcher_identity(cert, key)?,
        (None, Some(dir)) => tls::IdentityDir::new(dir)
            .load_or_generate(config.listen.researcher_id.as_deref(), &[host.as_str()])?,
        (None, None) => {
            tls::generate_researcher_identity(config.listen.researcher_id.as_deref(), &host)?
        }
    };

    let bind_error = |source| ResearcherError::Bind {
        addr: config.listen.address,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen.address).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(listener).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;

    let peer_log = Arc::new(PeerLog::new(config.peer_log_rate));
    let budget = ReceiveBudget::new(config.receive.budget_bytes);
    let budget_view = budget.clone();
    let connections = Arc::new(Connections::default());
    let store = match &config.state_dir {
        Some(dir) => Some(DeliveryStore::open(dir, 0).map_err(ResearcherError::Store)?),
        None => None,
    };
    let researcher = Researcher::new(&config, events.clone(), Arc::clone(&peer_log), store).start();
    let (cut, cut_rx) = tokio::sync::watch::channel(false);
    let service = ResearcherServiceServer::new(ResearcherGrpc::new(ServiceParts {
        researcher: researcher.clone(),
        events,
        shutdown: cut_rx,
        mutual_tls: config.listen.mutual_tls(),
        max_message_bytes: config.receive.max_message_bytes,
        stream_pipeline: config.nodes.stream_pipeline,
        buffers: BufferPool::new(config.receive.buffer_bytes),
        budget: budget.clone(),
        decoder: MessageDecoder::new(config.receive.decode_limits, config.receive.decode_threads),
        stall_timeout: config.receive.stall_timeout,
        peer_log: Arc::clone(&peer_log),
    }))
    .max_decoding_message_size(config.receive.max_frame_bytes)
    .max_encoding_message_size(GRPC_MAX_MESSAGE_BYTES);
    let accept_settings = AcceptSettings {
        max_connections: config.limits.max_connections,
        idle_timeout: config.timeouts.idle,
        quiet_timeout: config.timeouts.quiet,
    };
    // Built before serving, so that a bad file fails the start.
    let tls_config = if config.listen.insecure {
        log::warn!(
            "researcher on {local_addr} serves PLAINTEXT gRPC (insecure mode): for interop and debugging only"
        );
        None
    } else {
        Some(tls::researcher_server_config(
            &identity,
            config.listen.client_ca.as_deref(),
            config.listen.trusted_nodes.as_deref(),
        )?)
    };

    let mut builder = Server::builder()
        .initial_stream_window_size(Limits::STREAM_WINDOW)
        .initial_connection_window_size(Limits::CONNECTION_WINDOW)
        .max_concurrent_streams(Some(config.limits.max_streams_per_connection))
        .http2_keepalive_interval(Some(config.timeouts.keepalive_interval))
        .http2_keepalive_timeout(Some(ChannelOptions::DEFAULT_KEEPALIVE_TIMEOUT));
    let (stop, stopped) = oneshot::channel::<()>();
    let router = builder.add_service(Metered::new(
        service,
        budget,
        config.receive.stall_timeout,
        Arc::clone(&connections),
    ));
    let stopped = async {
        let _ = stopped.await;
    };
    // TLS happens in our accept loop (see `incoming`), not in tonic's.
    let done = match tls_config {
        None => tokio::spawn(router.serve_with_incoming_shutdown(
            incoming::accept(listener, accept_settings, Arc::clone(&connections)),
            stopped,
        )),
        Some(tls_config) => tokio::spawn(router.serve_with_incoming_shutdown(
            incoming::accept_tls(
                listener,
                accept_settings,
                Arc::clone(&connections),
                TlsAccept {
                    acceptor: TlsAcceptor::from(tls_config),
                    handshake_timeout: config.timeouts.handshake,
                    peer_log: Arc::clone(&peer_log),
                },
            ),
            stopped,
        )),
    };
    researcher
        .send(SetServer(ServerControl { stop, cut, done }))
        .await?;
    log::info!(
        "researcher {} listening on {local_addr}{}",
        identity.researcher_id,
        if config.listen.mutual_tls() {
            " (mutual TLS)"
        } else {
            ""
        }
    );
    Ok(ResearcherHandle {
        addr: researcher,
        local_addr,
        researcher_id: identity.researcher_id.clone(),
        cert_der: identity.cert_der.clone(),
        receive_budget: budget_view,
    })
}
