//! [`Progress`]: a link's channel that notes when response data last
//! arrived, so that a slow task whose bytes keep coming is not taken for a
//! stalled one (the stall timeout counts time without data, not time
//! without a whole frame).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::Channel;
use tower::Service;

use crate::proto::researcher_service_client::ResearcherServiceClient;

/// The gRPC client of a link.
pub(super) type LinkClient = ResearcherServiceClient<Progress<Channel>>;

/// When data last arrived on any response of a channel.
#[derive(Clone, Debug)]
pub(super) struct LastData(Arc<Mutex<Instant>>);

impl LastData {
    fn new() -> LastData {
        LastData(Arc::new(Mutex::new(Instant::now())))
    }

    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// When data last arrived.
    pub(super) fn at(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A channel whose response bodies note when their data arrives.
#[derive(Clone, Debug)]
pub(super) struct Progress<S> {
    inner: S,
    last: LastData,
}

impl Progress<Channel> {
    /// A client over `channel`, and the note of its progress.
    pub(super) fn client(channel: Channel) -> (LinkClient, LastData) {
        let last = LastData::new();
        let inner = Progress {
            inner: channel,
            last: last.clone(),
        };
        (ResearcherServiceClient::new(inner), last)
    }
}

/// A response body that notes its data.
pub(super) struct ProgressBody<B> {
    inner: B,
    last: LastData,
}

impl<B> HttpBody for ProgressBody<B>
where
    B: HttpBody<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(&frame, Poll::Ready(Some(Ok(f))) if f.is_data()) {
            self.last.touch();
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

impl<S> Service<http::Request<Body>> for Progress<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: std::marker::Send + 'static,
{
    type Response = http::Response<ProgressBody<Body>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        let last = self.last.clone();
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| ProgressBody { inner, last }))
        })
    }
}
