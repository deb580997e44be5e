//! `ErrorMessage`: a node reports a failure.

use super::{reply_ids, typed, version};
use crate::wire::Envelope;

typed! {
    /// Node -> researcher: something went wrong (optionally about a request).
    #[derive(Clone, Debug, PartialEq)]
    pub struct ErrorMessage {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// The request the error is about, if any.
        pub request_id: Option<String>,
        /// The researcher the error goes to.
        pub researcher_id: String,
        /// The reporting node.
        pub node_id: String,
        /// The reporting node's display name.
        pub node_name: String,
        /// Human-readable details.
        pub extra_msg: String,
        /// Fed-BioMed error number (`"FB..."`), if any.
        pub errnum: Option<String>,
    }
}

impl ErrorMessage {
    /// An error about `request`.
    pub fn answer(
        request: &Envelope,
        node_id: impl Into<String>,
        node_name: impl Into<String>,
        extra_msg: impl Into<String>,
        errnum: Option<String>,
    ) -> ErrorMessage {
        let (researcher_id, request_id) = reply_ids(request);
        ErrorMessage {
            protocol_version: version(),
            request_id,
            researcher_id,
            node_id: node_id.into(),
            node_name: node_name.into(),
            extra_msg: extra_msg.into(),
            errnum,
        }
    }
}
