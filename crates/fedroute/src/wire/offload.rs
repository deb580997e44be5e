//! [`MessageDecoder`]: decoding received messages without stalling the
//! event loop.
//!
//! A researcher serves every node, and a node every researcher link, from
//! one actix event loop. Decoding a message walks all of it; for a large
//! message that is milliseconds to seconds during which no other peer's
//! round trip moves. So a message of [`OFF_LOOP_MIN_BYTES`] or more is
//! decoded on tokio's blocking threads, at most `threads` at a time (each
//! may build a value tree up to [`DecodeLimits::tree_budget`]), while the
//! loop serves the others; smaller messages decode in place, which is
//! cheaper than the hand-off.
//!

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::budget::Hold;
use super::envelope::Envelope;
use super::error::WireError;
use super::limits::DecodeLimits;

/// Messages at least this large are decoded off the event loop (1 MiB).
pub(crate) const OFF_LOOP_MIN_BYTES: usize = 1 << 20;

/// Decodes messages within limits, large ones off the event loop; cheap to
/// clone (clones share the thread bound).
#[derive(Clone, Debug)]
pub(crate) struct MessageDecoder {
    limits: DecodeLimits,
    threads: Arc<Semaphore>,
}

impl MessageDecoder {
    /// A decoder applying `limits`, decoding at most `threads` (at least 1)
    /// large messages at once.
    pub(crate) fn new(limits: DecodeLimits, threads: usize) -> MessageDecoder {
        MessageDecoder {
            limits,
            threads: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Decodes `payload` (see [`Envelope::decode_with`]). Must run inside a
    /// tokio runtime (an actix `System` is one).
    #[cfg(test)]
    pub(crate) async fn decode(&self, payload: Bytes) -> Result<Envelope, WireError> {
        self.decode_holding(payload, None).await.0
    }

    /// Like [`MessageDecoder::decode`], keeping `hold` (the budget the
    /// message's bytes took) until decoding is over, and handing it back: a
    /// caller that stops waiting does not give the budget back while a
    /// thread still decodes the message.
    pub(crate) async fn decode_holding(
        &self,
        payload: Bytes,
        hold: Option<Hold>,
    ) -> (Result<Envelope, WireError>, Option<Hold>) {
        if payload.len() < OFF_LOOP_MIN_BYTES {
            return (Envelope::decode_with(payload, &self.limits), hold);
        }
        let permit = match Arc::clone(&self.threads).acquire_owned().await {
            Ok(p) => p,
            Err(e) => return (Err(interrupted(e)), hold),
        };
        let limits = self.limits;
        // The permit and the hold travel with the work: a caller that stops
        // waiting lets neither more decodes run than the bound nor the
        // budget forget bytes still in use.
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            (Envelope::decode_with(payload, &limits), hold)
        });
        match work.await {
            Ok(done) => done,
            Err(e) => (Err(interrupted(e)), None),
        }
    }
}

fn interrupted(e: impl std::fmt::Display) -> WireError {
    WireError::DecodeInterrupted {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{PingRequest, Value};

    /// What the module's documentation says, as it was once its example.
    #[test]
    fn the_documented_behaviour_holds() {
        use crate::wire::{DecodeLimits, Envelope, MessageDecoder, PingRequest};
        actix_rt::System::new().block_on(async {
            let decoder = MessageDecoder::new(DecodeLimits::default(), 2);
            let bytes = Envelope::from_typed(&PingRequest::new("RESEARCHER_1"))
                .unwrap()
                .to_bytes();
            let envelope = decoder.decode(bytes).await.unwrap();
            assert_eq!(envelope.class(), "PingRequest");
        });
    }

    #[actix_rt::test]
    async fn large_messages_decode_off_the_loop_within_the_limits() {
        let decoder = MessageDecoder::new(DecodeLimits::default(), 1);
        let mut ping = Envelope::from_typed(&PingRequest::new("R")).unwrap();
        ping.set(
            "pad",
            Value::Bin(Bytes::from(vec![0u8; OFF_LOOP_MIN_BYTES])),
        );
        let decoded = decoder.decode(ping.to_bytes()).await.unwrap();
        assert_eq!(decoded, ping);

        // Five million nils: refused, whichever thread decodes.
        let mut nils = vec![0xdd, 0x00, 0x4c, 0x4b, 0x40];
        nils.resize(5 + 5_000_000, 0xc0);
        let e = decoder.decode(Bytes::from(nils)).await.unwrap_err();
        assert!(matches!(e, WireError::TreeTooLarge { .. }), "{e}");
    }
}
