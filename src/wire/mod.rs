//! The Fed-BioMed payload: msgpack values, the message envelope, typed
//! messages, protocol version checks, chunking and reassembly.
//!
//! A message travels as msgpack bytes ([`value`]), cut into frames of
//! [`CHUNK_SIZE`] bytes ([`chunk`]) and joined again on the other side
//! ([`reassemble`]). [`Envelope`] wraps any message losslessly; the typed
//! structs in [`message`] build and read the common classes. Along the way a
//! model's parameter bytes are copied once: encoding keeps a large `bin`
//! value as a piece of the outgoing [`Payload`] ([`payload`]), frames are
//! slices of those pieces (a message of one frame is joined into it by the
//! sender, and then handed on by the receiver without a copy), a longer
//! message is copied once into the receiver's buffer ([`pool`] keeps those
//! buffers for reuse), and decoding slices `bin` values out of it.

pub mod chunk;
pub mod envelope;
pub mod error;
pub mod feedback;
pub mod json;
pub mod message;
pub mod ndarray;
pub mod payload;
pub mod pool;
pub mod reassemble;
pub mod serde_value;
pub mod value;
pub mod version;

pub use chunk::{chunks, chunks_of, frame_count, Chunks, Frame, CHUNK_SIZE};
pub use envelope::{Envelope, MESSAGE_MODULE, TYPE_MESSAGE_KEY};
pub use error::WireError;
pub use feedback::{Feedback, FeedbackMessage, Log, Scalar};
pub use message::{
    ApprovalReply, ApprovalRequest, ErrorMessage, ListReply, ListRequest, OverlayMessage,
    PingReply, PingRequest, SearchReply, SearchRequest, TrainReply, TrainRequest, Typed,
};
pub use ndarray::NdArray;
pub use payload::{encode_payload, Payload, SHARED_MIN_BYTES};
pub use pool::{BufferPool, DEFAULT_RECEIVE_BUFFER_BYTES};
pub use reassemble::{Reassembler, DEFAULT_MAX_MESSAGE_BYTES, INITIAL_RESERVE_CAP};
pub use serde_value::{bin, from_value, to_value};
pub use value::{
    decode_value, encode_into, encode_to_buf, encode_to_bytes, encode_value, encoded_len, Value,
    MAX_DEPTH,
};
pub use version::{check_version, VersionCompat, PROTOCOL_VERSION};

/// gRPC message size limit on every fedroute client and server (as Fed-BioMed).
pub const GRPC_MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;
