//! What a call holds before fedroute reads it, counted, and the calls of a
//! connection, marked.
//!
//! tonic collects the bytes of a frame (up to `max_frame_bytes`) from
//! HTTP/2 before the service sees it. A node that starts a large frame on
//! many streams and stops would make that memory grow outside the
//! reassembly budget, so [`Metered`] wraps the service: every call's
//! request body takes what it receives from the researcher's
//! [`ReceiveBudget`], beyond [`FREE_STREAM_BYTES`] per call, and the service
//! gives it back as it reads each message ([`StreamMeter::consumed_message`];
//! the body notes each message's size on the wire from its gRPC prefix, so
//! the accounting is exact whatever the peer put in the message). What
//! tonic keeps for the rest of the call, a buffer as large as its largest
//! message, stays counted until the call ends. When the
//! budget is spent the body waits for room, without reading more (HTTP/2
//! flow control then holds the sender back), for at most the stall timeout,
//! and only then fails the call with RESOURCE_EXHAUSTED (at once when
//! [`crate::wire::MAX_WAITING`] calls wait already). Small messages
//! never reach the budget, so they go through even when partial messages
//! have spent it. The body also notes when data last arrived
//! ([`StreamMeter::last_progress`]), so that a slow but moving stream is not
//! taken for a stalled one.
//!
//! Each call is also marked open on its connection (from its headers to the
//! end of its response), for the idle timeouts of `incoming`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;
use tower::Service;

use super::incoming::{CallGuard, Connections};
use crate::wire::{Hold, ReceiveBudget, WaitPlace};

/// Bytes of a call received and not yet read that do not count against the
/// budget (64 KiB): every small message fits.
pub(crate) const FREE_STREAM_BYTES: usize = 64 << 10;

/// Where the body is in the gRPC framing (a 5-byte prefix, then the
/// message).
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    remaining: usize,
    /// Size on the wire of the current message.
    current: usize,
}

impl Framing {
    /// Reads `data`, noting in `done` the wire size of each message it
    /// completes.
    fn read(&mut self, mut data: &[u8], done: &mut VecDeque<usize>) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(data.len());
                self.remaining -= take;
                data = &data[take..];
                if self.remaining == 0 {
                    done.push_back(self.current);
                }
                continue;
            }
            let take = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
            self.prefix_len += take;
            data = &data[take..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let len = u32::from_be_bytes([
                    self.prefix[1],
                    self.prefix[2],
                    self.prefix[3],
                    self.prefix[4],
                ]) as usize;
                self.current = 5 + len;
                self.remaining = len;
                if len == 0 {
                    done.push_back(5);
                }
            }
        }
    }
}

#[derive(Debug)]
struct MeterState {
    hold: Hold,
    unread: usize,
    /// The largest message of the call so far: tonic keeps a buffer that
    /// large for the call's next messages.
    largest: usize,
    framing: Framing,
    /// Wire sizes of the messages received and not read yet, in order.
    complete: VecDeque<usize>,
    last_progress: Instant,
}

impl MeterState {
    /// Takes what is owed from the budget; `Err(n)`: `n` more bytes do not fit.
    fn settle(&mut self) -> Result<(), usize> {
        let owed = self
            .unread
            .max(self.largest)
            .saturating_sub(FREE_STREAM_BYTES);
        let held = self.hold.bytes();
        if owed > held {
            let need = owed - held;
            self.hold.grow(need).map_err(|_| need)?;
        } else if held > owed {
            self.hold.release(held - owed);
        }
        Ok(())
    }
}

/// The bytes one call has received and the service has not read yet.
#[derive(Clone, Debug)]
pub(crate) struct StreamMeter {
    state: Arc<Mutex<MeterState>>,
    budget: ReceiveBudget,
}

impl StreamMeter {
    fn new(budget: &ReceiveBudget) -> StreamMeter {
        StreamMeter {
            state: Arc::new(Mutex::new(MeterState {
                hold: budget.hold(),
                unread: 0,
                largest: 0,
                framing: Framing::default(),
                complete: VecDeque::new(),
                last_progress: Instant::now(),
            })),
            budget: budget.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `data` arrived; `Err(n)`: the budget lacks `n` bytes for it.
    fn received(&self, data: &[u8]) -> Result<(), usize> {
        let mut s = self.lock();
        let s = &mut *s;
        s.unread = s.unread.saturating_add(data.len());
        s.framing.read(data, &mut s.complete);
        if let Some(&last) = s.complete.back() {
            s.largest = s.largest.max(last);
        }
        s.last_progress = Instant::now();
        s.settle()
    }

    /// Tries again to take what is owed.
    fn settle(&self) -> Result<(), usize> {
        self.lock().settle()
    }

    /// The service read the next message.
    pub(crate) fn consumed_message(&self) {
        let mut s = self.lock();
        let size = s.complete.pop_front().unwrap_or(0);
        s.unread = s.unread.saturating_sub(size);
        let _ = s.settle();
    }

    /// When data last arrived on the call.
    pub(crate) fn last_progress(&self) -> Instant {
        self.lock().last_progress
    }
}

/// The meter of `request`'s call, if the service is [`Metered`].
pub(crate) fn meter_of<T>(request: &tonic::Request<T>) -> Option<StreamMeter> {
    request.extensions().get::<StreamMeter>().cloned()
}

/// Waiting for the budget to have room for a frame already received.
struct Waiting {
    frame: Frame<bytes::Bytes>,
    place: WaitPlace,
    room: Pin<Box<dyn Future<Output = ()> + Send>>,
    deadline: Pin<Box<Sleep>>,
}

/// A request body that takes what it receives from the budget.
struct MeteredBody {
    inner: Body,
    meter: StreamMeter,
    /// How long to wait for room before failing the call.
    wait: Duration,
    waiting: Option<Waiting>,
}

/// RESOURCE_EXHAUSTED for a call that waited `wait` for `need` bytes.
fn refused(budget: &ReceiveBudget, need: usize, wait: Duration) -> Status {
    Status::resource_exhausted(format!(
        "call refused for now, send it again later: {need} more bytes do not fit the receive budget of {} bytes within {wait:?}",
        budget.limit()
    ))
}

impl HttpBody for MeteredBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        while let Some(w) = this.waiting.as_mut() {
            let need = match this.meter.settle() {
                Ok(()) => return Poll::Ready(this.waiting.take().map(|w| Ok(w.frame))),
                Err(need) => need,
            };
            if w.deadline.as_mut().poll(cx).is_ready() {
                this.waiting = None;
                return Poll::Ready(Some(Err(refused(&this.meter.budget, need, this.wait))));
            }
            match w.room.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // Room appeared: try again (others may take it first).
                Poll::Ready(()) => w.room = Box::pin(w.place.room_for(need)),
            }
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            other => return other,
        };
        let Some(data) = frame.data_ref() else {
            return Poll::Ready(Some(Ok(frame)));
        };
        match this.meter.received(data) {
            Ok(()) => Poll::Ready(Some(Ok(frame))),
            Err(need) => match this.meter.budget.wait_place() {
                Some(place) => {
                    this.waiting = Some(Waiting {
                        frame,
                        room: Box::pin(place.room_for(need)),
                        place,
                        deadline: Box::pin(tokio::time::sleep(this.wait)),
                    });
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(Some(Err(refused(&this.meter.budget, need, Duration::ZERO)))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its call marked open until it is done.
struct MarkedBody {
    inner: Body,
    _call: CallGuard,
}

impl HttpBody for MarkedBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The service `S` with every call metered and marked (see the module
/// documentation).
#[derive(Clone, Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    budget: ReceiveBudget,
    wait: Duration,
    connections: Arc<Connections>,
}

impl<S> Metered<S> {
    /// `inner`, its calls taking from `budget` (waiting at most `wait` for
    /// room) and marked on `connections`.
    pub(crate) fn new(
        inner: S,
        budget: ReceiveBudget,
        wait: Duration,
        connections: Arc<Connections>,
    ) -> Metered<S> {
        Metered {
            inner,
            budget,
            wait,
            connections,
        }
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

/// The remote address tonic noted for a request.
fn remote_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let ext = request.extensions();
    ext.get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            ext.get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|i| i.get_ref().remote_addr())
        })
}

impl<S> Service<http::Request<Body>> for Metered<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: std::marker::Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let call = self.connections.enter(remote_of(&request));
        let meter = StreamMeter::new(&self.budget);
        request.extensions_mut().insert(meter.clone());
        let wait = self.wait;
        let request = request.map(|inner| {
            Body::new(MeteredBody {
                inner,
                meter,
                wait,
                waiting: None,
            })
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| Body::new(MarkedBody { inner, _call: call })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` bytes of gRPC framing: a prefix and a message of `n - 5` bytes.
    fn message(n: usize) -> Vec<u8> {
        let mut v = vec![0u8];
        v.extend_from_slice(&((n - 5) as u32).to_be_bytes());
        v.resize(n, 7);
        v
    }

    #[test]
    fn unread_bytes_beyond_the_free_part_are_charged_until_read() {
        let budget = ReceiveBudget::new(1 << 20);
        let meter = StreamMeter::new(&budget);
        let first = message(FREE_STREAM_BYTES);
        meter.received(&first).unwrap();
        assert_eq!(budget.in_use(), 0);
        // A second message of 1000 bytes, in two pieces.
        let second = message(1000);
        meter.received(&second[..3]).unwrap();
        meter.received(&second[3..]).unwrap();
        assert_eq!(budget.in_use(), 1000);
        meter.consumed_message();
        assert_eq!(budget.in_use(), 0);
        meter.consumed_message();
        assert_eq!(budget.in_use(), 0);
        // After a large message, its size stays counted (tonic's buffer).
        let large = message(FREE_STREAM_BYTES + 5000);
        meter.received(&large).unwrap();
        meter.consumed_message();
        assert_eq!(budget.in_use(), 5000);
        // More than the budget unread: refused, with what it would take.
        let huge = message(2 << 20);
        assert_eq!(
            meter.received(&huge),
            Err((2 << 20) - FREE_STREAM_BYTES - 5000)
        );
        drop(meter);
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn message_sizes_come_from_the_prefixes_whatever_the_pieces() {
        let mut f = Framing::default();
        let mut done = VecDeque::new();
        let mut wire = message(12);
        wire.extend(message(5));
        wire.extend(message(300));
        for piece in wire.chunks(7) {
            f.read(piece, &mut done);
        }
        assert_eq!(done, [12, 5, 300]);
    }
}
