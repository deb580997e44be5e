//! The sender: drains a link's outgoing queue to the researcher.
//!
//! Messages go by the client-streaming `ReplyTask`, each cut into chunks by
//! `Frame::split` (slices of the message's pieces, no copies of a model);
//! consecutive queued messages share one `ReplyTask` stream (Fed-BioMed
//! accepts several messages per stream), up to the batch limits of the
//! config. Feedback goes by the unary `Feedback` RPC, one call per message.
//! Items leave the queue only once the researcher acknowledged the RPC; a
//! failure ends the pump so the link reconnects, and the same items are sent
//! again, in order.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::config::ReplyStreamMode;
use super::status::PollMode;

use super::error::NodeError;
use super::outbox::Outgoing;
use super::progress::LinkClient;
use super::shared::LinkShared;
use crate::proto::TaskResult;
use crate::wire;
use crate::ErrorChain;

/// Frames buffered ahead of the network on a persistent reply call.
const STREAM_FRAME_BUFFER: usize = 8;

/// The `TaskResult` frames of a batch of messages, in order (feedback items
/// are skipped: they never share a batch with messages).
pub(super) fn frames(batch: &[Outgoing]) -> Vec<TaskResult> {
    let count: usize = batch
        .iter()
        .map(|m| match m {
            Outgoing::Message(b, _) => wire::Frame::count_for(b.len()),
            Outgoing::Feedback(_) => 0,
        })
        .sum();
    let mut frames = Vec::with_capacity(count);
    for item in batch {
        if let Outgoing::Message(bytes, _) = item {
            frames.extend(wire::Frame::split(bytes.clone()).map(|f| TaskResult {
                size: f.size,
                iteration: f.iteration,
                bytes: f.bytes,
            }));
        }
    }
    frames
}

/// True when `b` may travel in the same send as `a` (messages batch together,
/// feedback goes alone).
pub(super) fn same_batch(a: &Outgoing, b: &Outgoing) -> bool {
    !a.is_feedback() && !b.is_feedback()
}

/// Sends one batch (several messages, or one feedback); bounded by `timeout`.
pub(super) async fn send_batch(
    client: &mut LinkClient,
    endpoint: &str,
    batch: &[Outgoing],
    timeout: Duration,
) -> Result<(), NodeError> {
    let (rpc, call) = match batch.first() {
        None => return Ok(()),
        Some(Outgoing::Feedback(feedback)) => {
            let fut = client.feedback(feedback.clone());
            let r = tokio::time::timeout(timeout, fut).await;
            ("Feedback", r.map(|r| r.map(|_| ())))
        }
        Some(Outgoing::Message(..)) => {
            let stream = tokio_stream::iter(frames(batch));
            let fut = client.reply_task(stream);
            let r = tokio::time::timeout(timeout, fut).await;
            ("ReplyTask", r.map(|r| r.map(|_| ())))
        }
    };
    match call {
        Ok(Ok(())) => Ok(()),
        Ok(Err(status)) => Err(NodeError::rpc(endpoint, rpc, status)),
        Err(_) => Err(NodeError::Timeout {
            endpoint: endpoint.to_string(),
            rpc,
            after: timeout,
        }),
    }
}

/// What the pump needs; moved into its future.
pub(super) struct Pump {
    /// The gRPC client (a clone of the link's channel).
    pub client: LinkClient,
    /// `host:port`.
    pub endpoint: String,
    /// The queue and counters.
    pub shared: Arc<LinkShared>,
    /// Bound on one RPC.
    pub send_timeout: Duration,
    /// Most messages per `ReplyTask`.
    pub max_batch_messages: usize,
    /// Most bytes per `ReplyTask`.
    pub max_batch_bytes: usize,
    /// Rejections of one message before it is dropped.
    pub max_rejections: u32,
    /// Per-batch or persistent `ReplyTask` calls.
    pub reply_stream: ReplyStreamMode,
    /// Idle time closing a persistent call.
    pub stream_idle: Duration,
    /// Most messages per persistent call.
    pub stream_messages: usize,
    /// Longest life of a persistent call.
    pub stream_age: Duration,
}

impl Pump {
    /// Sends queued items until a send fails (then returns the error; the
    /// items stay queued). Never returns while sends succeed.
    ///
    /// Sends start once the connection's poll has settled (see
    /// `LinkShared::poll_settled`).
    ///
    /// A send the researcher *rejects* (a gRPC status other than a transport
    /// failure, see [`NodeError::is_rejection`]) is retried after a back-off
    /// (the link keeps its connection, see [`NodeError::is_refusal`]),
    /// one message at a time so that one bad message cannot hold back the
    /// others; a single message rejected `max_rejections` times in a row is
    /// dropped with an error log and counted in the link status.
    pub(super) async fn run(mut self) -> NodeError {
        self.shared.poll_settled().await;
        loop {
            let single = self.shared.isolate.load(Ordering::Relaxed);
            let front = self.shared.outbox().get(0);
            let Some(front) = front else {
                self.shared.drained.notify_waiters();
                self.shared.wake.notified().await;
                continue;
            };
            if !single && !front.is_feedback() && self.persistent() {
                if let Err(e) = self.run_stream().await {
                    if e.is_rejection() && !e.is_unknown_node() {
                        // Which message was refused is unknown: go one by one.
                        self.shared.isolate.store(true, Ordering::Relaxed);
                    }
                    return e;
                }
                continue;
            }
            let batch = self.shared.outbox().peek_batch(
                if single { 1 } else { self.max_batch_messages },
                self.max_batch_bytes,
                Outgoing::len,
                same_batch,
            );
            self.shared.outbox().mark_attempted(batch.len());
            let sent =
                send_batch(&mut self.client, &self.endpoint, &batch, self.send_timeout).await;
            match sent {
                Ok(()) => self.acknowledge(batch.len(), batch.iter().map(Outgoing::len).sum()),
                // Not yet known to a restarted researcher: no message is at
                // fault, none is dropped for it.
                Err(e) if e.is_unknown_node() => return e,
                Err(e) if e.is_rejection() && batch.len() > 1 => {
                    self.shared.isolate.store(true, Ordering::Relaxed);
                    return e;
                }
                Err(e) if e.is_rejection() => {
                    let n = self.shared.rejections.fetch_add(1, Ordering::Relaxed) + 1;
                    if n < self.max_rejections {
                        return e;
                    }
                    log::error!(
                        "{}: the researcher rejected the same message {n} times; it is dropped: {}",
                        self.endpoint,
                        ErrorChain(&e)
                    );
                    self.shared.remove_front(1);
                    self.shared.status().rejected += 1;
                    self.shared.rejections.store(0, Ordering::Relaxed);
                    self.shared.isolate.store(false, Ordering::Relaxed);
                }
                Err(e) => return e,
            }
        }
    }

    fn persistent(&self) -> bool {
        match self.reply_stream {
            ReplyStreamMode::PerBatch => false,
            ReplyStreamMode::Persistent => true,
            ReplyStreamMode::Auto => self.shared.status().poll_mode == PollMode::Streaming,
        }
    }

    fn acknowledge(&self, messages: usize, bytes: usize) {
        self.shared.remove_front(messages);
        self.shared.status().record_sent(messages, bytes);
        self.shared.rejections.store(0, Ordering::Relaxed);
        self.shared.isolate.store(false, Ordering::Relaxed);
    }

    /// One persistent `ReplyTask` call: messages are written as they are
    /// queued (they stay queued, unacknowledged); the call is closed when the
    /// queue is idle, full of unacknowledged messages, or old, or when a
    /// feedback item is next (order is kept). Success acknowledges everything
    /// written.
    async fn run_stream(&mut self) -> Result<(), NodeError> {
        let (tx, rx) = mpsc::channel::<TaskResult>(STREAM_FRAME_BUFFER);
        let mut client = self.client.clone();
        let mut call = Box::pin(async move { client.reply_task(ReceiverStream::new(rx)).await });
        let closes_at = Instant::now() + self.stream_age;
        let mut written = 0usize;
        let mut written_bytes = 0usize;
        let mut tx = Some(tx);
        while let Some(sender) = &tx {
            let next = if written < self.stream_messages && Instant::now() < closes_at {
                let mut outbox = self.shared.outbox();
                let next = outbox.get(written);
                if matches!(next, Some(Outgoing::Message(..))) {
                    // About to be written (feedback ends the call instead).
                    outbox.mark_attempted(written + 1);
                }
                next
            } else {
                None
            };
            match next {
                Some(Outgoing::Message(bytes, _)) => {
                    let mut complete = true;
                    for f in wire::Frame::split(bytes.clone()) {
                        let frame = TaskResult {
                            size: f.size,
                            iteration: f.iteration,
                            bytes: f.bytes,
                        };
                        tokio::select! {
                            sent = sender.send(frame) => if sent.is_err() {
                                // The call is over; its result says why.
                                complete = false;
                                break;
                            },
                            res = &mut call => return self.stream_ended(res.map(|_| ()), written, written_bytes),
                        }
                    }
                    if complete {
                        written += 1;
                        written_bytes += bytes.len();
                    } else {
                        tx = None;
                    }
                }
                Some(Outgoing::Feedback(_)) => tx = None,
                None if written < self.stream_messages && Instant::now() < closes_at => {
                    tokio::select! {
                        _ = self.shared.wake.notified() => {}
                        _ = tokio::time::sleep(self.stream_idle) => {
                            if self.shared.outbox().len() <= written {
                                tx = None;
                            }
                        }
                        res = &mut call => return self.stream_ended(res.map(|_| ()), written, written_bytes),
                    }
                }
                None => tx = None,
            }
        }
        match tokio::time::timeout(self.send_timeout, call).await {
            Ok(res) => self.stream_ended(res.map(|_| ()), written, written_bytes),
            Err(_) => Err(NodeError::Timeout {
                endpoint: self.endpoint.clone(),
                rpc: "ReplyTask",
                after: self.send_timeout,
            }),
        }
    }

    fn stream_ended(
        &self,
        res: Result<(), tonic::Status>,
        written: usize,
        bytes: usize,
    ) -> Result<(), NodeError> {
        match res {
            Ok(()) => {
                self.acknowledge(written, bytes);
                Ok(())
            }
            Err(status) => Err(NodeError::rpc(&self.endpoint, "ReplyTask", status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use crate::wire::Payload;
    use bytes::Bytes;

    #[test]
    fn frames_of_a_batch_keep_order_and_share_buffers() {
        let big = Bytes::from(vec![7u8; wire::CHUNK_SIZE + 10]);
        let batch = vec![
            Outgoing::Message(Payload::from(&b"one"[..]), None),
            Outgoing::Message(Payload::from(big.clone()), None),
        ];
        let f = frames(&batch);
        assert_eq!(f.len(), 3);
        assert_eq!((f[0].size, f[0].iteration), (1, 1));
        assert_eq!(&f[0].bytes[..], b"one");
        assert_eq!((f[1].size, f[1].iteration), (2, 1));
        assert_eq!((f[2].size, f[2].iteration), (2, 2));
        assert_eq!(f[1].bytes.len() + f[2].bytes.len(), big.len());
        // No copy: the first chunk points into the original buffer.
        assert_eq!(f[1].bytes.as_ptr(), big.as_ptr());
    }

    #[test]
    fn feedback_never_shares_a_batch() {
        let m = Outgoing::Message(Payload::from(&b"m"[..]), None);
        let f = Outgoing::Feedback(proto::FeedbackMessage::default());
        assert!(same_batch(&m, &m));
        assert!(!same_batch(&m, &f));
        assert!(!same_batch(&f, &m));
        assert!(!same_batch(&f, &f));
    }
}
