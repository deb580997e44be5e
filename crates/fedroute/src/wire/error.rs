//! The wire layer's error type: one variant per violation, each a sentence
//! carrying the values that explain it.

/// Everything that can go wrong while decoding, encoding, checking, chunking or
/// reassembling a Fed-BioMed payload.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    // ---- msgpack ------------------------------------------------------------
    /// The input ends inside a msgpack value.
    #[error(
        "msgpack truncated at byte {offset}: {needed} more bytes needed, {available} available"
    )]
    Truncated {
        /// Where the incomplete item starts or continues.
        offset: usize,
        /// How many bytes the item still needs.
        needed: usize,
        /// How many bytes are left in the input.
        available: usize,
    },
    /// The reserved marker byte 0xc1 (never used by msgpack) was found.
    #[error("msgpack reserved marker byte 0x{byte:02x} at byte {offset}")]
    ReservedMarker {
        /// The marker byte.
        byte: u8,
        /// Where it was found.
        offset: usize,
    },
    /// A complete value was decoded but the buffer holds more bytes after it.
    #[error("{trailing} trailing bytes after the msgpack value that ends at byte {offset}")]
    TrailingBytes {
        /// Where the value ends.
        offset: usize,
        /// How many bytes follow it.
        trailing: usize,
    },
    /// Arrays and maps are nested deeper than the decoder accepts.
    #[error("msgpack nesting deeper than the limit of {limit} levels at byte {offset}")]
    TooDeep {
        /// The depth limit ([`DecodeLimits::max_depth`](crate::wire::DecodeLimits::max_depth)).
        limit: usize,
        /// Where the value that crossed the limit starts.
        offset: usize,
    },
    /// Decoding would take more memory than [`crate::wire::DecodeLimits`]
    /// allows for a message of this size (a claimed array, map or string
    /// that would cost too much as a value tree).
    #[error("decoding the {input}-byte message would take {needed} bytes of memory at byte {offset}, more than its limit of {limit} (the decode_limits of the researcher or node configuration)")]
    TreeTooLarge {
        /// Where the container or string that crossed the limit starts.
        offset: usize,
        /// Bytes of tree the message would need up to that point.
        needed: u64,
        /// The limit for this message ([`crate::wire::DecodeLimits::tree_budget`]).
        limit: usize,
        /// The message's size in bytes.
        input: usize,
    },
    /// The thread decoding a large message stopped before it finished (the
    /// runtime is shutting down).
    #[error("decoding was interrupted: {reason}")]
    DecodeInterrupted {
        /// What the runtime said.
        reason: String,
    },
    /// A msgpack str is not valid UTF-8.
    #[error("msgpack str of {len} bytes at byte {offset} is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string's bytes start.
        offset: usize,
        /// The string's length in bytes.
        len: usize,
    },

    // ---- envelope and typed messages ----------------------------------------
    /// The payload's top-level value is not a map.
    #[error("a Fed-BioMed message must be a msgpack map, found {found}")]
    NotAMap {
        /// The type that was found instead.
        found: &'static str,
    },
    /// The top-level map has no `__type_message__` entry.
    #[error("the message has no `__type_message__` entry")]
    MissingTypeMessage,
    /// `__type_message__` exists but is not a map with a string `class`.
    #[error("`__type_message__` must be a map with a string `class`, found {found}")]
    BadTypeMessage {
        /// What was found instead (a type name or a description).
        found: String,
    },
    /// The envelope holds another class than the typed message asked for.
    #[error("expected a {expected} message, found a {found} message")]
    WrongClass {
        /// The class the caller asked for.
        expected: &'static str,
        /// The class in the envelope.
        found: String,
    },
    /// A field a message needs is absent.
    #[error("the {class} message has no `{field}` field")]
    MissingField {
        /// The message class.
        class: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field holds a value of the wrong type.
    #[error("field `{field}` should be {expected}, found {found}")]
    WrongType {
        /// The field, as a path such as `params.blob.value[1]` (empty for the top level).
        field: String,
        /// The expected type.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A field a message reads is in its map more than once.
    #[error("the {class} message has the `{field}` field more than once")]
    DuplicateField {
        /// The message class.
        class: String,
        /// The repeated field.
        field: &'static str,
    },

    /// An identifier (node, researcher or request id) breaks the rules of
    /// `crate::wire::check_id`.
    #[error("{kind} {id:?} is not valid: {reason}")]
    BadId {
        /// What the identifier names.
        kind: crate::wire::IdKind,
        /// The identifier, shortened ([`crate::wire::echo()`]).
        id: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    // ---- protocol version --------------------------------------------------
    /// The message has no `protocol_version` string.
    #[error("the {class} message has no `protocol_version` string")]
    MissingProtocolVersion {
        /// The message class.
        class: String,
    },
    /// A protocol version string is not `major[.minor[.micro]]`.
    #[error("protocol version `{version}` is not of the form major[.minor[.micro]]")]
    UnparsableVersion {
        /// The string that was received.
        version: String,
    },
    /// The peer speaks an incompatible protocol version.
    #[error("incompatible protocol version {theirs}: we speak {ours} (a different major version or a newer minor or micro version is refused)")]
    IncompatibleVersion {
        /// The version the peer sent.
        theirs: String,
        /// Our version ([`crate::wire::PROTOCOL_VERSION`]).
        ours: String,
    },

    // ---- frames ------------------------------------------------------------
    /// A frame that does not fit the message being reassembled.
    #[error("frame {iteration} of {size}: {problem}")]
    BadFrame {
        /// The `iteration` received.
        iteration: i32,
        /// The `size` received.
        size: i32,
        /// What is wrong with it.
        problem: FrameProblem,
    },
    /// The frame stream ended in the middle of a message.
    #[error("the stream ended after {received} of {size} frames of a message")]
    StreamEndedMidMessage {
        /// Frames received.
        received: i32,
        /// The message's frame count.
        size: i32,
    },
    /// Receiving the message would take the bytes held by incomplete
    /// messages past the process's receive budget
    /// (`crate::wire::ReceiveBudget`); the peer may send it again later.
    #[error("receiving {requested} more bytes of a message would exceed the receive budget: {in_use} of {limit} bytes are held by incomplete messages")]
    BudgetExhausted {
        /// The bytes asked for.
        requested: usize,
        /// The bytes the whole message will need if its claimed size is
        /// true: what to wait for before trying it again.
        claimed: usize,
        /// The bytes already held when they were asked for.
        in_use: usize,
        /// The budget.
        limit: usize,
    },
    /// A message claims more than the whole receive budget could ever hold:
    /// refused for good (not "later").
    #[error("a message of {claimed} bytes ({size} frames) can never fit the receive budget of {budget} bytes")]
    LargerThanBudget {
        /// Bytes claimed (frame count times first frame length, and a frame
        /// ahead where it counts).
        claimed: usize,
        /// The message's frame count.
        size: i32,
        /// The budget (`crate::wire::ReceiveBudget::limit`).
        budget: usize,
    },
    /// A message is (or claims to be) larger than the configured limit.
    #[error("message of {claimed} bytes ({size} frames) exceeds the limit of {limit} bytes")]
    MessageTooLarge {
        /// Bytes claimed (frame count times first frame length) or accumulated.
        claimed: u64,
        /// The message's frame count.
        size: i32,
        /// The configured limit (`max_message_bytes`).
        limit: usize,
    },
}

impl WireError {
    /// Prefixes the field path of a [`WireError::WrongType`] with `segment`
    /// (a map key, or `[i]` for an array index).
    pub(crate) fn in_field(self, segment: &str) -> WireError {
        match self {
            WireError::WrongType {
                field,
                expected,
                found,
            } => {
                let segment = super::echo::echo(segment);
                let field = if field.is_empty() {
                    segment
                } else if field.starts_with('[') {
                    format!("{segment}{field}")
                } else {
                    format!("{segment}.{field}")
                };
                WireError::WrongType {
                    field,
                    expected,
                    found,
                }
            }
            other => other,
        }
    }
}

/// What is wrong with a frame ([`WireError::BadFrame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameProblem {
    /// `size` is zero or negative: a message has at least one frame.
    SizeNotPositive,
    /// `iteration` is outside 1..=size.
    IterationOutOfRange,
    /// `size` differs from that of the message's first frame.
    SizeChanged {
        /// The `size` of the message's first frame.
        expected: i32,
    },
    /// A frame already received arrived again.
    Repeated {
        /// The iteration that was expected.
        expected: i32,
    },
    /// A frame arrived after a later one, or a message did not start with
    /// frame 1.
    OutOfOrder {
        /// The iteration that was expected.
        expected: i32,
    },
    /// One or more frames were skipped.
    Missing {
        /// The iteration that was expected.
        expected: i32,
    },
    /// A new message started before the previous one was complete.
    PreviousIncomplete {
        /// Frames of the previous message received.
        received: i32,
        /// The previous message's frame count.
        previous_size: i32,
    },
}

impl std::fmt::Display for FrameProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameProblem::SizeNotPositive => f.write_str("a message has at least one frame"),
            FrameProblem::IterationOutOfRange => f.write_str("the iteration is outside 1..=size"),
            FrameProblem::SizeChanged { expected } => {
                write!(f, "the message started with {expected} frames")
            }
            FrameProblem::Repeated { expected } => {
                write!(f, "arrived twice (frame {expected} was expected)")
            }
            FrameProblem::OutOfOrder { expected } => {
                write!(f, "arrived out of order (frame {expected} was expected)")
            }
            FrameProblem::Missing { expected } => {
                write!(f, "frames are missing (frame {expected} was expected)")
            }
            FrameProblem::PreviousIncomplete {
                received,
                previous_size,
            } => write!(
                f,
                "a new message started while the previous one had only {received} of its \
                 {previous_size} frames"
            ),
        }
    }
}
