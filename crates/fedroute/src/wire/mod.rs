//! The Fed-BioMed payload: msgpack values, the message envelope, typed
//! messages, protocol version checks, chunking and reassembly.
//!
//! A message travels as msgpack bytes (`value`, written by `encode`), cut
//! into frames of [`CHUNK_SIZE`] bytes (`chunk`) and joined again on the
//! other side (`reassemble`). [`Envelope`] wraps any message losslessly; the
//! typed structs in `message` build and read the common classes. Along the way a
//! model's parameter bytes are copied once: encoding keeps a large `bin`
//! value as a piece of the outgoing [`Payload`] (`payload`), frames are
//! slices of those pieces (a message of one frame is joined into it by the
//! sender, and then handed on by the receiver without a copy), a longer
//! message is copied once into the receiver's buffer (`pool` keeps those
//! buffers for reuse), and decoding slices `bin` values out of it.

mod budget;
mod chunk;
mod echo;
mod encode;
mod envelope;
mod error;
mod feedback;
mod ident;
mod json;
mod limits;
mod message;
mod ndarray;
mod offload;
mod payload;
mod pool;
mod reassemble;
mod value;
mod version;

pub(crate) use budget::{Hold, ReceiveBudget, WaitPlace};
pub(crate) use chunk::Chunks;
pub use chunk::{Frame, CHUNK_SIZE};
pub use echo::{echo, shortened};
pub use envelope::{Envelope, MESSAGE_MODULE, TYPE_MESSAGE_KEY};
pub use error::{FrameProblem, WireError};
pub use feedback::{Feedback, FeedbackMessage, Log, Scalar};
pub(crate) use ident::check_id;
pub use ident::IdKind;
pub use limits::DecodeLimits;
pub use message::new_request_id;
pub use message::{
    ApprovalReply, ApprovalRequest, ErrorMessage, FieldValue, Fields, ListReply, ListRequest,
    OverlayMessage, PingReply, PingRequest, SearchReply, SearchRequest, TrainReply, TrainRequest,
    Typed,
};
pub use ndarray::NdArray;
pub(crate) use offload::{MessageDecoder, OFF_LOOP_MIN_BYTES};
pub use payload::Payload;
pub use pool::BufferPool;
pub use reassemble::Reassembler;
pub use value::Value;
pub(crate) use version::check_version;
pub use version::PROTOCOL_VERSION;

/// gRPC message size limit for what fedroute sends (as Fed-BioMed); its
/// frames are [`CHUNK_SIZE`] bytes.
pub const GRPC_MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;
