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

pub mod budget;
pub mod chunk;
pub mod echo;
pub mod envelope;
pub mod error;
pub mod feedback;
pub mod ident;
pub mod json;
pub mod limits;
pub mod message;
pub mod ndarray;
pub mod offload;
pub mod payload;
pub mod pool;
pub mod reassemble;
pub mod serde_value;
pub mod value;
pub mod version;

pub use budget::{Hold, ReceiveBudget, WaitPlace, DEFAULT_RECEIVE_BUDGET_BYTES, MAX_WAITING};
pub use chunk::{chunks, chunks_of, frame_count, Chunks, Frame, CHUNK_SIZE};
pub use echo::{echo, shortened, ECHO_CHARS};
pub use envelope::{Envelope, MESSAGE_MODULE, TYPE_MESSAGE_KEY};
pub use error::WireError;
pub use feedback::{Feedback, FeedbackMessage, Log, Scalar};
pub use ident::{check_id, IdKind, MAX_ID_BYTES};
pub use limits::{
    DecodeLimits, DEFAULT_MAX_TREE_BYTES, DEFAULT_TREE_BYTES_FLOOR,
    DEFAULT_TREE_BYTES_PER_INPUT_BYTE, MAX_DEPTH,
};
pub use message::{
    ApprovalReply, ApprovalRequest, ErrorMessage, ListReply, ListRequest, OverlayMessage,
    PingReply, PingRequest, SearchReply, SearchRequest, TrainReply, TrainRequest, Typed,
};
pub use ndarray::NdArray;
pub use offload::{MessageDecoder, DEFAULT_DECODE_THREADS, OFF_LOOP_MIN_BYTES};
pub use payload::{encode_payload, Payload, SHARED_MIN_BYTES};
pub use pool::{BufferPool, DEFAULT_RECEIVE_BUFFER_BYTES};
pub use reassemble::{next_capacity, Reassembler, DEFAULT_MAX_MESSAGE_BYTES};
pub use serde_value::{bin, from_value, to_value};
pub use value::{
    decode_value, decode_value_with, encode_into, encode_to_buf, encode_to_bytes, encode_value,
    encoded_len, Value,
};
pub use version::{check_version, VersionCompat, PROTOCOL_VERSION};

/// gRPC message size limit for what fedroute sends (as Fed-BioMed); its
/// frames are [`CHUNK_SIZE`] bytes.
pub const GRPC_MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// Default largest gRPC message (one frame) fedroute accepts from a peer
/// (8 MiB): twice the frames fedroute and Fed-BioMed send, and what a peer
/// can make the gRPC layer buffer per stream before fedroute sees a frame.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;
