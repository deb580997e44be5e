//! Shared pieces of the TLS tests: a throwaway researcher service, a tonic
//! TLS server on 127.0.0.1, and a bounded-await helper.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use fedroute::proto::researcher_service_client::ResearcherServiceClient;
use fedroute::proto::researcher_service_server::{ResearcherService, ResearcherServiceServer};
use fedroute::proto::{Empty, FeedbackMessage, TaskRequest, TaskResponse, TaskResult};
use fedroute::tls::{authorize_node, peer_node_id, server_tls_config, ServerIdentity};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

/// Upper bound of every await in these tests.
pub const LIMIT: Duration = Duration::from_secs(20);
/// The metadata key the test service answers the client's node id with.
pub const PEER_NODE: &str = "x-peer-node";
/// The metadata key a client claims a node id with (checked by `authorize_node`).
pub const CLAIM_NODE: &str = "x-claim-node";

/// Awaits `f` at most [`LIMIT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    crate::within_for(LIMIT, what, f).await
}

/// A throwaway researcher service: `Feedback` answers with the node id of
/// the client certificate (or "-") in the response metadata (and checks a
/// claimed node id with `authorize_node`); `GetTaskUnary` is a long poll
/// that never yields.
pub struct Probe;

type TaskStream = Pin<Box<dyn Stream<Item = Result<TaskResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ResearcherService for Probe {
    type GetTaskStream = TaskStream;
    type GetTaskUnaryStream = TaskStream;

    async fn get_task(
        &self,
        _request: Request<Streaming<TaskRequest>>,
    ) -> Result<Response<TaskStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    /// A long poll that never yields a task.
    async fn get_task_unary(
        &self,
        _request: Request<TaskRequest>,
    ) -> Result<Response<TaskStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }

    async fn reply_task(
        &self,
        _request: Request<Streaming<TaskResult>>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented("not in this test"))
    }

    async fn feedback(&self, request: Request<FeedbackMessage>) -> Result<Response<Empty>, Status> {
        if let Some(claimed) = request.metadata().get(CLAIM_NODE) {
            let claimed = claimed.to_str().unwrap_or("").to_string();
            authorize_node(&request, &claimed, true)
                .map_err(|e| Status::permission_denied(e.to_string()))?;
        }
        let who = match peer_node_id(&request) {
            None => "-".to_string(),
            Some(Ok(id)) => id,
            Some(Err(e)) => return Err(Status::unauthenticated(e.to_string())),
        };
        let mut response = Response::new(Empty {});
        response.metadata_mut().insert(
            PEER_NODE,
            who.parse().map_err(|_| Status::internal("bad node id"))?,
        );
        Ok(response)
    }
}

/// A tonic server with `tls` on 127.0.0.1:0; dropping it stops the server.
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
}

impl TestServer {
    pub async fn start(identity: &ServerIdentity, client_ca: Option<&Path>) -> TestServer {
        TestServer::start_on(0, identity, client_ca).await
    }

    /// Starts on a given port (0: any free port).
    pub async fn start_on(
        port: u16,
        identity: &ServerIdentity,
        client_ca: Option<&Path>,
    ) -> TestServer {
        TestServer::start_on_host("127.0.0.1", port, identity, client_ca).await
    }

    /// Starts on a given loopback address and port.
    pub async fn start_on_host(
        host: &str,
        port: u16,
        identity: &ServerIdentity,
        client_ca: Option<&Path>,
    ) -> TestServer {
        let tls = server_tls_config(identity, client_ca).expect("server TLS config");
        let listener = within("bind", TcpListener::bind((host, port)))
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        // TCP_NODELAY on accepted sockets (see nodelay_incoming).
        let incoming = nodelay_incoming(listener);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::builder()
            .tls_config(tls)
            .expect("tonic accepts the TLS config")
            .add_service(ResearcherServiceServer::new(Probe))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            });
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(tokio::spawn(server)),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            within("server shutdown", task)
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// One `Feedback` call; returns the node id the server saw.
pub async fn probe(channel: Channel) -> Result<String, Status> {
    probe_request(channel, Request::new(FeedbackMessage::default())).await
}

/// One `Feedback` call claiming to come from node `claimed`.
pub async fn probe_as(channel: Channel, claimed: &str) -> Result<String, Status> {
    let mut request = Request::new(FeedbackMessage::default());
    request
        .metadata_mut()
        .insert(CLAIM_NODE, claimed.parse().expect("ASCII node id"));
    probe_request(channel, request).await
}

async fn probe_request(
    channel: Channel,
    request: Request<FeedbackMessage>,
) -> Result<String, Status> {
    let mut client = ResearcherServiceClient::new(channel);
    let response = within("Feedback RPC", client.feedback(request)).await?;
    Ok(response
        .metadata()
        .get(PEER_NODE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string())
}

/// The accepted-connection stream to hand to tonic's
/// `serve_with_incoming(_shutdown)` for a listener bound by the caller (port
/// 0 in tests): TCP_NODELAY on every accepted socket. A plain
/// `TcpListenerStream` leaves Nagle on, and the first RPC of every new
/// connection then waits for the peer's delayed ACK: measured on loopback,
/// connect + first RPC took 45 ms instead of 8 ms (later RPCs on the
/// connection were unaffected, about 0.7 ms). Client certificates stay readable with
/// `Request::peer_certs` / `fedroute::tls::peer_node_id`.
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Connects to `addr` with `config`, completes the TLS handshake and reads
/// the first byte the server sends: what Fed-BioMed's node probe looks at.
/// A server that serves the connection sends its HTTP/2 SETTINGS at once
/// (`Ok`); one that refuses the client certificate fails the handshake or
/// the read with an alert (`Err`; classify it with [`tls_failure_of`]).
/// Bounded by [`LIMIT`].
pub async fn first_byte_after_handshake(
    addr: SocketAddr,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<u8> {
    use tokio::io::AsyncReadExt as _;
    within("TLS handshake and first byte", async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let name = rustls_pki_types::ServerName::from(addr.ip());
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        let mut byte = [0u8; 1];
        match tls.read(&mut byte).await? {
            0 => Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the server closed the connection without a byte",
            )),
            _ => Ok(byte[0]),
        }
    })
    .await
}

/// Why a TLS handshake failed, as far as a caller needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsFailure {
    /// We refused the server's certificate (not the pinned one, not signed
    /// by the CA, wrong host name): with trust on first use, fetch it again
    /// and compare researcher ids.
    ServerCertificateRefused,
    /// The server refused our client certificate, or required one we did not
    /// present (mutual TLS). With TLS 1.3 this shows at the first RPC.
    ClientCertificateRefused,
    /// Any other TLS error (protocol, cipher, peer misbehaviour).
    Other(String),
}

/// Looks through an error and its sources (a `fedroute::tls::TlsError`, a tonic
/// `Status` or transport error, an `io::Error` from tokio-rustls) for a
/// rustls error and classifies it; `None` when no TLS error is inside.
///
/// rustls reports an alert received after the handshake (how a server
/// refuses a client certificate under TLS 1.3) as an `io::Error` holding
/// only its text, so that case is recognised by rustls' wording
/// ("received fatal alert: CertificateRequired"); the tests pin it.
pub fn tls_failure_of(err: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(rustls_error) = e.downcast_ref::<rustls::Error>() {
            return Some(classify(rustls_error));
        }
        if current.and_then(|c| c.source()).is_none() {
            if let Some(failure) = classify_text(&e.to_string()) {
                return Some(failure);
            }
        }
        // std's io::Error::source() skips the error it wraps: look inside.
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(rustls_error) = inner.downcast_ref::<rustls::Error>() {
                    return Some(classify(rustls_error));
                }
                current = Some(inner);
                continue;
            }
        }
        current = e.source();
    }
    None
}

/// Classifies rustls' own wording of an alert received from the peer.
fn classify_text(text: &str) -> Option<TlsFailure> {
    const ALERT: &str = "received fatal alert: ";
    let alert = &text[text.find(ALERT)? + ALERT.len()..];
    let name = alert.split(|c: char| !c.is_alphanumeric()).next()?;
    Some(match name {
        "CertificateRequired"
        | "BadCertificate"
        | "UnknownCA"
        | "CertificateExpired"
        | "CertificateRevoked"
        | "CertificateUnknown"
        | "UnsupportedCertificate"
        | "AccessDenied" => TlsFailure::ClientCertificateRefused,
        _ => TlsFailure::Other(alert.to_string()),
    })
}

fn classify(e: &rustls::Error) -> TlsFailure {
    use rustls::AlertDescription as A;
    match e {
        rustls::Error::InvalidCertificate(_) => TlsFailure::ServerCertificateRefused,
        rustls::Error::AlertReceived(
            A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::AccessDenied,
        ) => TlsFailure::ClientCertificateRefused,
        other => TlsFailure::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_inside_io_errors_are_classified() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        assert_eq!(
            tls_failure_of(&io),
            Some(TlsFailure::ServerCertificateRefused)
        );
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        assert_eq!(
            tls_failure_of(&alert),
            Some(TlsFailure::ClientCertificateRefused)
        );
    }

    #[test]
    fn alert_text_is_classified() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: CertificateRequired",
        );
        assert_eq!(
            tls_failure_of(&io),
            Some(TlsFailure::ClientCertificateRefused)
        );
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "received fatal alert: HandshakeFailure",
        );
        assert!(matches!(tls_failure_of(&io), Some(TlsFailure::Other(_))));
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(tls_failure_of(&plain), None);
    }
}
