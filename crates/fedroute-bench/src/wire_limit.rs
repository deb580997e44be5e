//! Workload 6, the wire limits: plain tonic over the same TLS loopback
//! set-up fedroute uses (a `fedroute::tls` server configuration and pinned
//! client configuration, the same HTTP/2 windows and message limits, the
//! generated `ResearcherService` stubs), with no fedroute logic at all.
//!
//! The bare service implements the four RPCs as the simplest possible
//! probes:
//! - `Feedback` (unary): answers `Empty` at once -> the plain unary RPC rate;
//! - `GetTask` (bidirectional): answers every `TaskRequest` with one empty
//!   `TaskResponse` -> the ping-pong rate on one open stream;
//! - `GetTaskUnary` (server streaming): streams `TaskRequest.node` parsed as
//!   a byte count, in `wire::CHUNK_SIZE` frames sliced from a prepared
//!   buffer (no copy) -> bytes down;
//! - `ReplyTask` (client streaming): swallows the frames and answers
//!   `Empty` -> bytes up.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

use super::BenchError;
use fedroute::node::ControllerConfig;
use fedroute::proto::researcher_service_client::ResearcherServiceClient;
use fedroute::proto::researcher_service_server::{ResearcherService, ResearcherServiceServer};
use fedroute::proto::{Empty, FeedbackMessage, TaskRequest, TaskResponse, TaskResult};
use fedroute::researcher::Limits;
use fedroute::tls;
use fedroute::wire::{self, GRPC_MAX_MESSAGE_BYTES};

/// Bound on any single probe call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The bare service (see the module docs).
#[derive(Clone)]
struct Bare {
    blob: Bytes,
}

#[tonic::async_trait]
impl ResearcherService for Bare {
    type GetTaskStream = BoxStream<TaskResponse>;
    type GetTaskUnaryStream = BoxStream<TaskResponse>;

    async fn get_task(
        &self,
        request: Request<Streaming<TaskRequest>>,
    ) -> Result<Response<Self::GetTaskStream>, Status> {
        let inbound = request.into_inner();
        let out = inbound.map(|r| {
            r.map(|_| TaskResponse {
                size: 1,
                iteration: 1,
                bytes: Bytes::new(),
            })
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn get_task_unary(
        &self,
        request: Request<TaskRequest>,
    ) -> Result<Response<Self::GetTaskUnaryStream>, Status> {
        let n: usize = request
            .into_inner()
            .node
            .parse()
            .map_err(|_| Status::invalid_argument("node must be a byte count"))?;
        if n > self.blob.len() {
            return Err(Status::out_of_range(format!(
                "asked for {n} bytes, the probe has {}",
                self.blob.len()
            )));
        }
        let frames = wire::Frame::split(self.blob.slice(0..n)).map(|f| {
            Ok(TaskResponse {
                size: f.size,
                iteration: f.iteration,
                bytes: f.bytes,
            })
        });
        Ok(Response::new(Box::pin(futures::stream::iter(frames))))
    }

    async fn reply_task(
        &self,
        request: Request<Streaming<TaskResult>>,
    ) -> Result<Response<Empty>, Status> {
        let mut inbound = request.into_inner();
        while inbound.message().await?.is_some() {}
        Ok(Response::new(Empty {}))
    }

    async fn feedback(
        &self,
        _request: Request<FeedbackMessage>,
    ) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }
}

/// A bare tonic server and a client connected to it over TLS on 127.0.0.1,
/// both on the current runtime.
pub struct WireRig {
    client: ResearcherServiceClient<Channel>,
    blob: Bytes,
    /// Where the server listens.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl WireRig {
    /// Starts the bare server and connects the client. `max_bytes` is the
    /// largest transfer [`WireRig::down`] and [`WireRig::up`] will be asked for.
    pub async fn start(max_bytes: usize) -> Result<WireRig, BenchError> {
        tls::install_crypto_provider();
        let identity = tls::generate_researcher_identity(None, "127.0.0.1")?;
        let blob = Bytes::from(vec![0x5au8; max_bytes]);
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse().map_err(|_| BenchError::Setup {
            what: "parsing the loopback address".into(),
        })?)
        .map_err(|e| BenchError::Setup {
            what: format!("binding the wire-limit server: {e}"),
        })?
        .with_nodelay(Some(true));
        let addr = incoming.local_addr().map_err(|e| BenchError::Setup {
            what: format!("reading the wire-limit server address: {e}"),
        })?;
        let service = ResearcherServiceServer::new(Bare { blob: blob.clone() })
            .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(GRPC_MAX_MESSAGE_BYTES);
        let router = Server::builder()
            // The researcher server's HTTP/2 windows.
            .initial_stream_window_size(Limits::STREAM_WINDOW)
            .initial_connection_window_size(Limits::CONNECTION_WINDOW)
            .tls_config(tls::server_tls_config(&identity, None)?)
            .map_err(|e| BenchError::Setup {
                what: format!("wire-limit server TLS: {e}"),
            })?
            .add_service(service);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        }));
        let config = tls::pinned_client_config(identity.cert_der.clone(), None)?;
        // A node's channel, HTTP/2 windows included.
        let opts = ControllerConfig::default().channel;
        let channel = tls::connect_channel("127.0.0.1", addr.port(), config, &opts).await?;
        let client = ResearcherServiceClient::new(channel)
            .max_decoding_message_size(GRPC_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(GRPC_MAX_MESSAGE_BYTES);
        Ok(WireRig {
            client,
            blob,
            addr,
            stop: Some(stop),
        })
    }

    /// `n` sequential unary RPCs; returns the time taken.
    pub async fn unary(&self, n: u64) -> Result<Duration, BenchError> {
        let mut client = self.client.clone();
        let start = Instant::now();
        for _ in 0..n {
            bounded("unary probe", client.feedback(FeedbackMessage::default())).await??;
        }
        Ok(start.elapsed())
    }

    /// `n` sequential request/response pairs on one open bidirectional
    /// stream; returns the time taken (the stream is opened before timing).
    pub async fn ping_pong(&self, n: u64) -> Result<Duration, BenchError> {
        let mut client = self.client.clone();
        let (tx, rx) = mpsc::channel::<TaskRequest>(1);
        let send = |tx: &mpsc::Sender<TaskRequest>| {
            let tx = tx.clone();
            async move {
                tx.send(TaskRequest::default())
                    .await
                    .map_err(|_| BenchError::Failed {
                        what: "the ping-pong stream closed".into(),
                    })
            }
        };
        send(&tx).await?;
        let mut inbound = bounded("opening the ping-pong stream", async {
            client.get_task(ReceiverStream::new(rx)).await
        })
        .await??
        .into_inner();
        bounded("first pong", inbound.message()).await??;
        let start = Instant::now();
        for _ in 0..n {
            send(&tx).await?;
            match bounded("pong", inbound.message()).await?? {
                Some(_) => {}
                None => {
                    return Err(BenchError::Failed {
                        what: "the ping-pong stream ended early".into(),
                    })
                }
            }
        }
        let elapsed = start.elapsed();
        drop(tx);
        Ok(elapsed)
    }

    /// Streams `bytes` from server to client (one server-streaming call).
    pub async fn down(&self, bytes: usize) -> Result<Duration, BenchError> {
        let mut client = self.client.clone();
        let start = Instant::now();
        let mut inbound = bounded(
            "opening the download",
            client.get_task_unary(TaskRequest {
                node: bytes.to_string(),
                protocol_version: String::new(),
            }),
        )
        .await??
        .into_inner();
        let mut got = 0usize;
        while let Some(frame) = bounded("download frame", inbound.message()).await?? {
            got += frame.bytes.len();
        }
        let elapsed = start.elapsed();
        if got != bytes {
            return Err(BenchError::Failed {
                what: format!("downloaded {got} bytes, expected {bytes}"),
            });
        }
        Ok(elapsed)
    }

    /// Streams `bytes` from client to server (one client-streaming call).
    pub async fn up(&self, bytes: usize) -> Result<Duration, BenchError> {
        let mut client = self.client.clone();
        let payload = self.blob.slice(0..bytes.min(self.blob.len()));
        let start = Instant::now();
        let frames = wire::Frame::split(payload).map(|f| TaskResult {
            size: f.size,
            iteration: f.iteration,
            bytes: f.bytes,
        });
        bounded("upload", client.reply_task(futures::stream::iter(frames))).await??;
        Ok(start.elapsed())
    }

    /// Stops the server.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Drop for WireRig {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn bounded<F: std::future::Future>(what: &str, f: F) -> Result<F::Output, BenchError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| BenchError::Timeout {
            what: what.to_string(),
            after: CALL_TIMEOUT,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_rt::test]
    async fn probes_work_over_real_tls() {
        tokio::time::timeout(Duration::from_secs(60), async {
            let mut rig = WireRig::start(wire::CHUNK_SIZE + 10).await.unwrap();
            assert!(rig.unary(5).await.unwrap() > Duration::ZERO);
            assert!(rig.ping_pong(5).await.unwrap() > Duration::ZERO);
            // Two frames each way.
            rig.down(wire::CHUNK_SIZE + 10).await.unwrap();
            rig.up(wire::CHUNK_SIZE + 10).await.unwrap();
            // More than the probe holds is refused, not a panic.
            assert!(rig.down(wire::CHUNK_SIZE + 11).await.is_err());
            rig.stop();
        })
        .await
        .unwrap();
    }
}
