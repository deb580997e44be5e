//! Counting what the gRPC layer holds for a call before fedroute reads it.
//!
//! tonic collects the bytes of a frame (up to `max_frame_bytes`) from
//! HTTP/2 before the service sees it. A node that starts a large frame on
//! many streams and stops would make that memory grow outside the
//! reassembly budget, so [`Metered`] wraps the service: every call's
//! request body takes what it receives from the researcher's
//! [`ReceiveBudget`], beyond [`FREE_STREAM_BYTES`] per call, and the service
//! gives it back as it reads each message ([`StreamMeter::consumed`]). A
//! call whose unread bytes do not fit the budget fails with
//! RESOURCE_EXHAUSTED. Small messages never reach the budget, so they go
//! through even when partial messages have spent it.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::Status;
use tower::Service;

use crate::wire::{Hold, ReceiveBudget};

/// Bytes of a call received and not yet read that do not count against the
/// budget (64 KiB): every small message fits.
pub const FREE_STREAM_BYTES: usize = 64 << 10;

#[derive(Debug)]
struct MeterState {
    hold: Hold,
    unread: usize,
}

/// The bytes one call has received and the service has not read yet.
#[derive(Clone, Debug)]
pub(crate) struct StreamMeter {
    state: Arc<Mutex<MeterState>>,
}

impl StreamMeter {
    fn new(budget: &ReceiveBudget) -> StreamMeter {
        StreamMeter {
            state: Arc::new(Mutex::new(MeterState {
                hold: budget.hold(),
                unread: 0,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `n` more bytes arrived.
    fn received(&self, n: usize) -> Result<(), Status> {
        let mut s = self.lock();
        s.unread = s.unread.saturating_add(n);
        let owed = s.unread.saturating_sub(FREE_STREAM_BYTES);
        let held = s.hold.bytes();
        if owed > held {
            s.hold.grow(owed - held).map_err(|e| {
                Status::resource_exhausted(format!(
                    "call refused for now, send it again later: {e}"
                ))
            })?;
        }
        Ok(())
    }

    /// The service read a message of `n` bytes (as encoded on the wire).
    pub(crate) fn consumed(&self, n: usize) {
        let mut s = self.lock();
        s.unread = s.unread.saturating_sub(n);
        let owed = s.unread.saturating_sub(FREE_STREAM_BYTES);
        let held = s.hold.bytes();
        if held > owed {
            s.hold.release(held - owed);
        }
    }
}

/// A gRPC message's size on the wire: its 5-byte prefix and its encoding.
pub(crate) fn wire_len<M: prost::Message>(message: &M) -> usize {
    5 + message.encoded_len()
}

/// The meter of `request`'s call, if the service is [`Metered`].
pub(crate) fn meter_of<T>(request: &tonic::Request<T>) -> Option<StreamMeter> {
    request.extensions().get::<StreamMeter>().cloned()
}

/// A request body that takes what it receives from the budget.
struct MeteredBody {
    inner: Body,
    meter: StreamMeter,
}

impl HttpBody for MeteredBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &frame {
            if let Some(data) = f.data_ref() {
                if let Err(status) = self.meter.received(data.len()) {
                    return Poll::Ready(Some(Err(status)));
                }
            }
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The service `S` with every call's request body metered (see the module
/// documentation).
#[derive(Clone, Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    budget: ReceiveBudget,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, budget: ReceiveBudget) -> Metered<S> {
        Metered { inner, budget }
    }
}

impl<S: NamedService> NamedService for Metered<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Metered<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let meter = StreamMeter::new(&self.budget);
        request.extensions_mut().insert(meter.clone());
        let request = request.map(|inner| Body::new(MeteredBody { inner, meter }));
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_bytes_beyond_the_free_part_are_charged_until_read() {
        let budget = ReceiveBudget::new(1 << 20);
        let meter = StreamMeter::new(&budget);
        meter.received(FREE_STREAM_BYTES).unwrap();
        assert_eq!(budget.in_use(), 0);
        meter.received(1000).unwrap();
        assert_eq!(budget.in_use(), 1000);
        meter.consumed(600);
        assert_eq!(budget.in_use(), 400);
        // More than the budget unread: refused.
        let e = meter.received(2 << 20).unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        meter.consumed(usize::MAX);
        assert_eq!(budget.in_use(), 0);
        meter.received(10).unwrap();
        drop(meter);
        assert_eq!(budget.in_use(), 0);
    }
}
