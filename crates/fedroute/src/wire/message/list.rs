//! `ListRequest` / `ListReply`: the datasets a node holds.

use super::{new_request_id, reply_ids, typed, version};
use crate::wire::{Envelope, Value};

typed! {
    /// Researcher -> node: list your datasets.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ListRequest {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// Matches the reply to this request.
        pub request_id: Option<String>,
        /// The sending researcher.
        pub researcher_id: String,
    }
}

impl ListRequest {
    /// A list request with a fresh request id.
    pub fn new(researcher_id: impl Into<String>) -> ListRequest {
        ListRequest {
            protocol_version: version(),
            request_id: Some(new_request_id()),
            researcher_id: researcher_id.into(),
        }
    }
}

typed! {
    /// Node -> researcher: the datasets.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ListReply {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// The request's id.
        pub request_id: Option<String>,
        /// The researcher that asked.
        pub researcher_id: String,
        /// Whether the node could list its datasets.
        pub success: bool,
        /// The datasets (a list of maps, kept as sent).
        pub databases: Value,
        /// The answering node.
        pub node_id: String,
        /// The answering node's display name.
        pub node_name: String,
        /// Number of datasets.
        pub count: u64,
    }
}

impl ListReply {
    /// The reply to `request` with `databases` (an array value).
    pub fn answer(
        request: &Envelope,
        node_id: impl Into<String>,
        node_name: impl Into<String>,
        databases: Vec<Value>,
    ) -> ListReply {
        let (researcher_id, request_id) = reply_ids(request);
        ListReply {
            protocol_version: version(),
            request_id,
            researcher_id,
            success: true,
            count: databases.len() as u64,
            databases: Value::Array(databases),
            node_id: node_id.into(),
            node_name: node_name.into(),
        }
    }
}
