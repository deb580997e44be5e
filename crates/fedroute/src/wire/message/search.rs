//! `SearchRequest` / `SearchReply`: find datasets by tags.

use super::{new_request_id, reply_ids, typed, version};
use crate::wire::{Envelope, Value};

typed! {
    /// Researcher -> node: which datasets carry all these tags?
    #[derive(Clone, Debug, PartialEq)]
    pub struct SearchRequest {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// Matches the reply to this request.
        pub request_id: Option<String>,
        /// The sending researcher.
        pub researcher_id: String,
        /// The tags searched for.
        pub tags: Vec<String>,
    }
}

impl SearchRequest {
    /// A search with a fresh request id.
    pub fn new(researcher_id: impl Into<String>, tags: Vec<String>) -> SearchRequest {
        SearchRequest {
            protocol_version: version(),
            request_id: Some(new_request_id()),
            researcher_id: researcher_id.into(),
            tags,
        }
    }
}

typed! {
    /// Node -> researcher: the matching datasets.
    #[derive(Clone, Debug, PartialEq)]
    pub struct SearchReply {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// The request's id.
        pub request_id: Option<String>,
        /// The researcher that asked.
        pub researcher_id: String,
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

impl SearchReply {
    /// The reply to `request` with `databases`.
    pub fn answer(
        request: &Envelope,
        node_id: impl Into<String>,
        node_name: impl Into<String>,
        databases: Vec<Value>,
    ) -> SearchReply {
        let (researcher_id, request_id) = reply_ids(request);
        SearchReply {
            protocol_version: version(),
            request_id,
            researcher_id,
            count: databases.len() as u64,
            databases: Value::Array(databases),
            node_id: node_id.into(),
            node_name: node_name.into(),
        }
    }
}
