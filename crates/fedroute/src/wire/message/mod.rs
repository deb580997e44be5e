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
mod field;
mod list;
mod overlay;
mod ping;
mod search;
mod train;

pub use approval::{ApprovalReply, ApprovalRequest};
pub use error::ErrorMessage;
pub use field::{FieldValue, Fields};
pub use list::{ListReply, ListRequest};
pub use overlay::OverlayMessage;
pub use ping::{PingReply, PingRequest};
pub use search::{SearchReply, SearchRequest};
pub use train::{TrainReply, TrainRequest};

use super::envelope::Envelope;
use super::error::WireError;
use super::value::Value;
use super::version::PROTOCOL_VERSION;

/// A typed message: its Fed-BioMed class name and how its fields are
/// written to and read from the message's map.
///
/// The messages of this crate implement it with the crate's `typed!`
/// macro. Another class implements it by hand: write each field with
/// [`FieldValue::to_value`], in Fed-BioMed's order, and read each with
/// [`Fields::get`]. [`FieldValue`] covers `String`, `bool`, `u64`, `i64`,
/// `f64`, [`Value`], [`Bytes`](bytes::Bytes) (a bin), `Vec` and `Option` of
/// those; implement it for a field type of your own.
///
/// ```
/// use fedroute::wire::{Envelope, FieldValue, Fields, Typed, Value, WireError};
///
/// #[derive(Debug, PartialEq)]
/// struct Greeting {
///     protocol_version: String,
///     text: String,
///     note: Option<String>,
/// }
///
/// impl Typed for Greeting {
///     const CLASS: &'static str = "Greeting";
///     const FIELDS: &'static [&'static str] = &["protocol_version", "text", "note"];
///
///     fn write_fields(&self, map: &mut Vec<(Value, Value)>) {
///         map.push(("protocol_version".into(), self.protocol_version.to_value()));
///         map.push(("text".into(), self.text.to_value()));
///         map.push(("note".into(), self.note.to_value()));
///     }
///
///     fn read_fields(fields: &Fields<'_>) -> Result<Greeting, WireError> {
///         Ok(Greeting {
///             protocol_version: fields.get("protocol_version")?,
///             text: fields.get("text")?,
///             note: fields.get("note")?,
///         })
///     }
/// }
///
/// let hello = Greeting { protocol_version: "7".into(), text: "hello".into(), note: None };
/// let env = Envelope::from_typed(&hello).unwrap();
/// assert_eq!(env.class(), "Greeting");
/// assert_eq!(env.get("note"), Some(&Value::Nil));
/// let back: Greeting = Envelope::decode(env.to_bytes()).unwrap().to_typed().unwrap();
/// assert_eq!(back, hello);
/// ```
pub trait Typed: Sized {
    /// The class name in `__type_message__.class`.
    const CLASS: &'static str;
    /// The field names, in wire order.
    const FIELDS: &'static [&'static str] = &[];

    /// Appends the fields to the entries of the message's map, in wire
    /// order (`__type_message__` follows them).
    fn write_fields(&self, map: &mut Vec<(Value, Value)>);

    /// Reads the message from its fields (keys it does not ask for are
    /// ignored).
    fn read_fields(fields: &Fields<'_>) -> Result<Self, WireError>;
}

/// Defines a message struct and implements [`Typed`] for it from its field
/// list: the class name is the struct's name, the wire order the fields'
/// order, and each field converts through its [`FieldValue`].
macro_rules! typed {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $( $(#[$field_attr:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $( $(#[$field_attr])* pub $field: $ty ),*
        }

        impl $crate::wire::Typed for $name {
            const CLASS: &'static str = stringify!($name);
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn write_fields(&self, map: &mut Vec<($crate::wire::Value, $crate::wire::Value)>) {
                $(
                    map.push((
                        $crate::wire::Value::Str(stringify!($field).to_owned()),
                        $crate::wire::FieldValue::to_value(&self.$field),
                    ));
                )*
            }

            fn read_fields(
                fields: &$crate::wire::Fields<'_>,
            ) -> Result<$name, $crate::wire::WireError> {
                Ok($name {
                    $( $field: fields.get(stringify!($field))?, )*
                })
            }
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
