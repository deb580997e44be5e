//! `PingRequest` / `PingReply`.

use super::{new_request_id, reply_ids, typed, version};
use crate::wire::Envelope;

typed! {
    /// Researcher -> node: are you there?
    #[derive(Clone, Debug, PartialEq)]
    pub struct PingRequest {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// Matches the reply to this request.
        pub request_id: Option<String>,
        /// The sending researcher.
        pub researcher_id: String,
    }
}

impl PingRequest {
    /// A ping with a fresh request id.
    pub fn new(researcher_id: impl Into<String>) -> PingRequest {
        PingRequest {
            protocol_version: version(),
            request_id: Some(new_request_id()),
            researcher_id: researcher_id.into(),
        }
    }
}

typed! {
    /// Node -> researcher: the answer to a [`PingRequest`].
    #[derive(Clone, Debug, PartialEq)]
    pub struct PingReply {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// The request's id.
        pub request_id: Option<String>,
        /// The researcher that asked.
        pub researcher_id: String,
        /// The answering node.
        pub node_id: String,
        /// The answering node's display name.
        pub node_name: String,
    }
}

impl PingReply {
    /// The reply to `request` (copies its researcher id and request id).
    pub fn answer(
        request: &Envelope,
        node_id: impl Into<String>,
        node_name: impl Into<String>,
    ) -> PingReply {
        let (researcher_id, request_id) = reply_ids(request);
        PingReply {
            protocol_version: version(),
            request_id,
            researcher_id,
            node_id: node_id.into(),
            node_name: node_name.into(),
        }
    }
}
