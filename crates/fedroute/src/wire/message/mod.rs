//! Typed Fed-BioMed messages.
//!
//! Each struct has the fields of Fed-BioMed 6.x's dataclass in the same
//! order (`protocol_version`, `request_id`, `researcher_id`, then the class's
//! own fields; replies carry `node_id` and `node_name`), so
//! [`Envelope::from_typed`](super::Envelope::from_typed) writes the bytes
//! Fed-BioMed writes. Dict-valued fields (model parameters, training
//! arguments) are [`Value`](super::Value)s, so ndarray and other extension
//! values pass through unchanged and uncopied.
//!
//! ```
//! use fedroute::wire::{Envelope, PingReply, PingRequest};
//!
//! let ping = Envelope::from_typed(&PingRequest::new("RESEARCHER_1")).unwrap();
//! let reply = PingReply::answer(&ping, "NODE_1", "node one");
//! assert_eq!(reply.request_id.as_deref(), ping.request_id());
//! let bytes = Envelope::from_typed(&reply).unwrap().to_bytes();
//! let back: PingReply = Envelope::decode(bytes).unwrap().to_typed().unwrap();
//! assert_eq!(back, reply);
//! ```

mod approval;
mod error;
mod list;
mod overlay;
mod ping;
mod search;
mod train;

pub use approval::{ApprovalReply, ApprovalRequest};
pub use error::ErrorMessage;
pub use list::{ListReply, ListRequest};
pub use overlay::OverlayMessage;
pub use ping::{PingReply, PingRequest};
pub use search::{SearchReply, SearchRequest};
pub use train::{TrainReply, TrainRequest};

use super::envelope::Envelope;
use super::version::PROTOCOL_VERSION;

/// A typed message: serde plus its Fed-BioMed class name.
pub trait Typed: serde::Serialize + serde::de::DeserializeOwned {
    /// The class name in `__type_message__.class`.
    const CLASS: &'static str;
    /// The field names, in wire order.
    const FIELDS: &'static [&'static str] = &[];
}

/// Implements [`Typed`] with the class name equal to the struct name.
macro_rules! typed {
    ($t:ident, [$($f:literal),* $(,)?]) => {
        impl $crate::wire::message::Typed for $t {
            const CLASS: &'static str = stringify!($t);
            const FIELDS: &'static [&'static str] = &[$($f),*];
        }
    };
}
pub(crate) use typed;

/// `protocol_version` for new messages.
pub(crate) fn version() -> String {
    PROTOCOL_VERSION.to_owned()
}

/// A fresh uuid4 request id.
pub fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `(researcher_id, request_id)` of a request, for building its reply.
pub(crate) fn reply_ids(request: &Envelope) -> (String, Option<String>) {
    (
        request.researcher_id().unwrap_or_default().to_owned(),
        request.request_id().map(str::to_owned),
    )
}
