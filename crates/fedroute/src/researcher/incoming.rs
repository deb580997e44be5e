//! The researcher's accept loop and its connections: bounded in number, in
//! idle time, and calm when the process runs out of file descriptors.
//!
//! - At most `max_connections` connections are served; further ones wait
//!   in the kernel's accept queue until one closes.
//! - Accepting fails with EMFILE / ENFILE (no file descriptor left),
//!   ENOBUFS or ENOMEM while the condition lasts: the loop then waits,
//!   10 ms at first and doubling up to 1 s, instead of retrying at once
//!   (which spins a core at 100%), and logs once when it starts and once
//!   when it accepts again.
//! - Every accepted connection is a [`GuardedTcp`]: it closes itself when
//!   it opened no call within `idle_timeout` of being accepted, so a client
//!   that never starts HTTP/2 (or completes TLS, or opens a stream) cannot
//!   hold a slot; and after calls, once it has had none open for
//!   `quiet_timeout` (a Fed-BioMed node keeps a second connection for its
//!   replies, quiet between them). The service marks each call on its
//!   connection ([`Connections::enter`]).
//! - With TLS ([`accept_tls`]), the handshakes run here, concurrently, each
//!   bounded by the handshake timeout and counted in `max_connections`;
//!   tonic then serves HTTP/2 over the finished TLS streams, whose
//!   connection info is tonic's own `TlsConnectInfo` (handlers read the
//!   remote address and the client certificates as usual). fedroute does
//!   TLS itself rather than through tonic's `ServerTlsConfig` because the
//!   latter cannot take a custom client-certificate verifier (registered
//!   node certificates, re-read at each handshake). A finished handshake
//!   goes straight to HTTP/2, whose server sends its SETTINGS without
//!   waiting for the client, as gRPC-core's does: Fed-BioMed's node probe
//!   reads that byte as "no client certificate required"; under mutual
//!   TLS a connection without an acceptable certificate fails its
//!   handshake with an alert at once.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::log_limit::PeerLog;

/// First wait after an accept failed for lack of resources.
pub(crate) const ACCEPT_RETRY_FIRST: Duration = Duration::from_millis(10);
/// Longest wait between accept attempts while resources lack.
pub(crate) const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);

/// What one connection is doing, shared between it and the calls on it.
#[derive(Debug)]
struct Activity {
    open_calls: AtomicUsize,
    /// Whether any call was opened on it.
    called: AtomicBool,
    /// When the last call ended (or the connection was accepted).
    quiet_since: Mutex<Instant>,
}

/// How long a connection may go without an open call.
#[derive(Clone, Copy, Debug)]
struct Timeouts {
    /// Before its first call.
    idle: Duration,
    /// After calls.
    quiet: Duration,
}

impl Activity {
    /// When the connection has been without a call for too long, if it has
    /// none open.
    fn idle_deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if self.open_calls.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = *self.quiet_since.lock().unwrap_or_else(|p| p.into_inner());
        let after = if self.called.load(Ordering::Acquire) {
            timeouts.quiet
        } else {
            timeouts.idle
        };
        Some(since + after)
    }
}

/// The open connections by remote address, for the service to mark calls.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    by_remote: Mutex<HashMap<SocketAddr, Arc<Activity>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Arc<Activity>>> {
        self.by_remote.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks a call open on the connection from `remote` until the guard
    /// is dropped (nothing when the connection is not known).
    pub(crate) fn enter(&self, remote: Option<SocketAddr>) -> CallGuard {
        let activity = remote.and_then(|r| self.lock().get(&r).cloned());
        if let Some(a) = &activity {
            a.called.store(true, Ordering::Release);
            a.open_calls.fetch_add(1, Ordering::AcqRel);
        }
        CallGuard { activity }
    }

    /// Connections open now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// A call open on a connection; see [`Connections::enter`].
#[derive(Debug)]
pub(crate) struct CallGuard {
    activity: Option<Arc<Activity>>,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(a) = &self.activity {
            *a.quiet_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            a.open_calls.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// An accepted connection that closes itself when idle (see the module
/// documentation). Its connection info is tonic's, so handlers still read
/// the remote address and client certificates as usual.
pub(crate) struct GuardedTcp {
    io: TcpStream,
    remote: Option<SocketAddr>,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    table: Arc<Connections>,
    _slot: OwnedSemaphorePermit,
}

impl GuardedTcp {
    /// Errors once the connection has been idle for too long; otherwise
    /// makes sure the timer wakes the reader at the next possible deadline.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            let Some(deadline) = self.activity.idle_deadline(self.timeouts) else {
                // A call is open: look again one idle period later (the
                // end of a call wakes nobody, the timer does).
                let now = Instant::now();
                if self.timer.deadline() <= now {
                    self.timer.as_mut().reset(now + self.timeouts.idle);
                }
                let _ = self.timer.as_mut().poll(cx);
                return Ok(());
            };
            if deadline <= Instant::now() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no call open for too long: connection closed",
                ));
            }
            if self.timer.deadline() != deadline {
                self.timer.as_mut().reset(deadline);
            }
            match self.timer.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) => continue,
            }
        }
    }
}

impl Drop for GuardedTcp {
    fn drop(&mut self) {
        if let Some(remote) = self.remote {
            let mut table = self.table.lock();
            if table
                .get(&remote)
                .is_some_and(|a| Arc::ptr_eq(a, &self.activity))
            {
                table.remove(&remote);
            }
        }
    }
}

impl AsyncRead for GuardedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check_idle(cx) {
            log::debug!("{}: {e}", display(this.remote));
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for GuardedTcp {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

fn display(remote: Option<SocketAddr>) -> String {
    remote.map_or_else(|| "a connection".to_string(), |r| r.to_string())
}

/// Whether an accept error means the process lacks resources (and will
/// keep failing until some are freed), rather than one bad connection.
pub(crate) fn lacks_resources(e: &io::Error) -> bool {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM on Linux.
    matches!(e.raw_os_error(), Some(24 | 23 | 105 | 12))
}

/// The settings of the accept loop.
#[derive(Clone, Debug)]
pub(crate) struct AcceptSettings {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub quiet_timeout: Duration,
}

struct AcceptLoop {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    settings: AcceptSettings,
    table: Arc<Connections>,
}

impl AcceptLoop {
    async fn next(&mut self) -> Option<GuardedTcp> {
        let slot = Arc::clone(&self.slots).acquire_owned().await.ok()?;
        let mut retry = ACCEPT_RETRY_FIRST;
        let mut starved = false;
        let (io, remote) = loop {
            match self.listener.accept().await {
                Ok((io, remote)) => break (io, remote),
                Err(e) if lacks_resources(&e) => {
                    if !starved {
                        log::warn!(
                            "cannot accept connections: {e}; retrying with back-off up to {ACCEPT_RETRY_MAX:?}"
                        );
                        starved = true;
                    }
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(ACCEPT_RETRY_MAX);
                }
                // One connection went wrong before it was accepted.
                Err(e) => log::debug!("accept failed: {e}"),
            }
        };
        if starved {
            log::info!("accepting connections again");
        }
        if let Err(e) = io.set_nodelay(true) {
            log::debug!("{remote}: cannot set TCP_NODELAY: {e}");
        }
        let activity = Arc::new(Activity {
            open_calls: AtomicUsize::new(0),
            called: AtomicBool::new(false),
            quiet_since: Mutex::new(Instant::now()),
        });
        self.table.lock().insert(remote, Arc::clone(&activity));
        Some(GuardedTcp {
            io,
            remote: Some(remote),
            timer: Box::pin(tokio::time::sleep(self.settings.idle_timeout)),
            timeouts: Timeouts {
                idle: self.settings.idle_timeout,
                quiet: self.settings.quiet_timeout,
            },
            activity,
            table: Arc::clone(&self.table),
            _slot: slot,
        })
    }
}

/// The stream of accepted connections to hand to tonic; see the module
/// documentation. It never yields an error.
pub(crate) fn accept(
    listener: TcpListener,
    settings: AcceptSettings,
    table: Arc<Connections>,
) -> impl Stream<Item = Result<GuardedTcp, io::Error>> {
    let state = AcceptLoop {
        listener,
        slots: Arc::new(Semaphore::new(settings.max_connections.max(1))),
        settings,
        table,
    };
    futures::stream::unfold(state, |mut state| async move {
        let io = state.next().await?;
        Some((Ok(io), state))
    })
}

/// What [`accept_tls`] needs besides the accept loop's settings.
pub(crate) struct TlsAccept {
    /// The rustls configuration (ALPN h2; the client verifier, if any).
    pub acceptor: TlsAcceptor,
    /// Longest a handshake may take.
    pub handshake_timeout: Duration,
    /// Where refused client certificates are logged, per address.
    pub peer_log: Arc<PeerLog>,
}

/// The stream of accepted connections whose TLS handshake succeeded, to
/// hand to tonic (see the module documentation). It never yields an error.
pub(crate) fn accept_tls(
    listener: TcpListener,
    settings: AcceptSettings,
    table: Arc<Connections>,
    tls: TlsAccept,
) -> impl Stream<Item = Result<TlsStream<GuardedTcp>, io::Error>> {
    TlsIncoming {
        tcp: Box::pin(accept(listener, settings, table)),
        tcp_done: false,
        handshakes: JoinSet::new(),
        tls: Arc::new(tls),
    }
}

type TcpIncoming = Pin<Box<dyn Stream<Item = Result<GuardedTcp, io::Error>> + Send>>;

/// Accepted connections, their handshakes in flight, and the finished ones.
struct TlsIncoming {
    tcp: TcpIncoming,
    tcp_done: bool,
    handshakes: JoinSet<Option<TlsStream<GuardedTcp>>>,
    tls: Arc<TlsAccept>,
}

impl Stream for TlsIncoming {
    type Item = Result<TlsStream<GuardedTcp>, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match this.handshakes.poll_join_next(cx) {
                Poll::Ready(Some(Ok(Some(io)))) => return Poll::Ready(Some(Ok(io))),
                // A failed handshake (already logged), or its task panicked.
                Poll::Ready(Some(_)) => continue,
                Poll::Ready(None) | Poll::Pending => {}
            }
            if !this.tcp_done {
                match this.tcp.as_mut().poll_next(cx) {
                    Poll::Ready(Some(Ok(conn))) => {
                        this.handshakes
                            .spawn(handshake(Arc::clone(&this.tls), conn));
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => this.tcp_done = true,
                    Poll::Pending => {}
                }
            }
            if this.tcp_done && this.handshakes.is_empty() {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
    }
}

/// One server handshake, bounded in time; `None` when it failed.
async fn handshake(tls: Arc<TlsAccept>, conn: GuardedTcp) -> Option<TlsStream<GuardedTcp>> {
    let remote = conn.remote;
    match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(conn)).await {
        Ok(Ok(io)) => Some(io),
        Ok(Err(e)) => {
            let refused = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
            if refused {
                // A certificate neither registered nor signed by the client CA.
                let peer =
                    remote.map_or_else(|| "an unknown address".to_string(), |r| r.ip().to_string());
                tls.peer_log.warn(&peer, "refused certificate", || {
                    format!(
                        "TLS: refused the client certificate of {}: {e}",
                        display(remote)
                    )
                });
            } else {
                log::debug!("{}: TLS handshake failed: {e}", display(remote));
            }
            None
        }
        Err(_) => {
            log::debug!(
                "{}: TLS handshake not done within {:?}; connection closed",
                display(remote),
                tls.handshake_timeout
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_told_apart_from_a_bad_connection() {
        for code in [24, 23, 105, 12] {
            assert!(lacks_resources(&io::Error::from_raw_os_error(code)));
        }
        assert!(!lacks_resources(&io::Error::from_raw_os_error(103))); // ECONNABORTED
        assert!(!lacks_resources(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closes_30_s_after_accepting_without_a_call_or_600_s_after_its_calls() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let table = Arc::new(Connections::default());
        let settings = AcceptSettings {
            max_connections: 4,
            idle_timeout: Duration::from_secs(30),
            quiet_timeout: Duration::from_secs(600),
        };
        let mut incoming = Box::pin(accept(listener, settings, Arc::clone(&table)));
        let _client = TcpStream::connect(addr).await.unwrap();
        let mut conn = futures::StreamExt::next(&mut incoming)
            .await
            .unwrap()
            .unwrap();
        let remote = conn.connect_info().remote_addr;
        assert_eq!(table.len(), 1);

        // A call keeps it open past the timeouts.
        let call = table.enter(remote);
        let mut buf = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_secs(700), conn.read(&mut buf)).await;
        assert!(read.is_err(), "still open while a call is");
        // After the call: 600 s of quiet close it.
        drop(call);
        let started = Instant::now();
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(600));
        drop(conn);
        assert_eq!(table.len(), 0);

        // A connection that never opens a call: closed 30 s after it was
        // accepted.
        let _client = TcpStream::connect(addr).await.unwrap();
        let mut conn = futures::StreamExt::next(&mut incoming)
            .await
            .unwrap()
            .unwrap();
        let started = Instant::now();
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }
}
