//! `ApprovalRequest` / `ApprovalReply`: submitting a training plan for approval.

use super::{new_request_id, reply_ids, typed, version};
use crate::wire::Envelope;

typed! {
    /// Researcher -> node: please approve this training plan.
    #[derive(Clone, Debug, PartialEq)]
    pub struct ApprovalRequest {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// Matches the reply to this request.
        pub request_id: Option<String>,
        /// The sending researcher.
        pub researcher_id: String,
        /// Description of the training plan.
        pub description: String,
        /// Source code of the training plan.
        pub training_plan: String,
    }
}

impl ApprovalRequest {
    /// An approval request with a fresh request id.
    pub fn new(
        researcher_id: impl Into<String>,
        description: impl Into<String>,
        training_plan: impl Into<String>,
    ) -> ApprovalRequest {
        ApprovalRequest {
            protocol_version: version(),
            request_id: Some(new_request_id()),
            researcher_id: researcher_id.into(),
            description: description.into(),
            training_plan: training_plan.into(),
        }
    }
}

typed! {
    /// Node -> researcher: the plan was received (not yet approved).
    #[derive(Clone, Debug, PartialEq)]
    pub struct ApprovalReply {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// The request's id.
        pub request_id: Option<String>,
        /// The researcher that asked.
        pub researcher_id: String,
        /// The plan's id on the node (`None` when `success` is false).
        pub training_plan_id: Option<String>,
        /// Currently unused by Fed-BioMed (empty string).
        pub message: String,
        /// The answering node.
        pub node_id: String,
        /// The answering node's display name.
        pub node_name: String,
        /// Obsolete status code (always 0).
        pub status: i64,
        /// Whether the plan was registered.
        pub success: bool,
    }
}

impl ApprovalReply {
    /// The reply to `request`.
    pub fn answer(
        request: &Envelope,
        node_id: impl Into<String>,
        node_name: impl Into<String>,
        training_plan_id: Option<String>,
        success: bool,
    ) -> ApprovalReply {
        let (researcher_id, request_id) = reply_ids(request);
        ApprovalReply {
            protocol_version: version(),
            request_id,
            researcher_id,
            training_plan_id,
            message: String::new(),
            node_id: node_id.into(),
            node_name: node_name.into(),
            status: 0,
            success,
        }
    }
}
