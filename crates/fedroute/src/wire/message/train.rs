//! `TrainRequest` / `TrainReply`: one round of training.

use super::{new_request_id, reply_ids, typed, version};
use crate::wire::{Envelope, Value};

typed! {
    /// Researcher -> node: train on a dataset, starting from `params`.
    #[derive(Clone, Debug, PartialEq)]
    pub struct TrainRequest {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// Matches the reply to this request.
        pub request_id: Option<String>,
        /// The sending researcher.
        pub researcher_id: String,
        /// The experiment.
        pub experiment_id: String,
        /// The node-side state of the previous round, if any.
        pub state_id: Option<String>,
        /// Training routine arguments (a map).
        pub training_args: Value,
        /// The dataset to train on.
        pub dataset_id: String,
        /// Whether to train (false: validation only).
        pub training: bool,
        /// Training plan constructor arguments (a map).
        pub model_args: Value,
        /// Model parameters (a map of ndarray/tensor extension values, kept whole).
        pub params: Value,
        /// Training plan source code.
        pub training_plan: String,
        /// Training plan class name.
        pub training_plan_class: String,
        /// Rounds already done.
        pub round: u64,
        /// Aggregator arguments (a map).
        pub aggregator_args: Value,
        /// Secure aggregation arguments.
        pub secagg_arguments: Option<Value>,
        /// Optimizer auxiliary variables.
        pub optim_aux_var: Option<Value>,
    }
}

impl TrainRequest {
    /// A train request with a fresh request id, empty argument maps and no
    /// secure aggregation.
    pub fn new(
        researcher_id: impl Into<String>,
        experiment_id: impl Into<String>,
        dataset_id: impl Into<String>,
        params: Value,
    ) -> TrainRequest {
        TrainRequest {
            protocol_version: version(),
            request_id: Some(new_request_id()),
            researcher_id: researcher_id.into(),
            experiment_id: experiment_id.into(),
            state_id: None,
            training_args: Value::Map(Vec::new()),
            dataset_id: dataset_id.into(),
            training: true,
            model_args: Value::Map(Vec::new()),
            params,
            training_plan: String::new(),
            training_plan_class: String::new(),
            round: 0,
            aggregator_args: Value::Map(Vec::new()),
            secagg_arguments: None,
            optim_aux_var: None,
        }
    }
}

typed! {
    /// Node -> researcher: the result of a round.
    #[derive(Clone, Debug, PartialEq)]
    pub struct TrainReply {
        /// Messaging protocol version.
        pub protocol_version: String,
        /// The request's id.
        pub request_id: Option<String>,
        /// The researcher that asked.
        pub researcher_id: String,
        /// The experiment.
        pub experiment_id: String,
        /// Whether training succeeded.
        pub success: bool,
        /// The answering node.
        pub node_id: String,
        /// The answering node's display name.
        pub node_name: String,
        /// The dataset trained on.
        pub dataset_id: String,
        /// Timing statistics (a map).
        pub timing: Value,
        /// Free-form message.
        pub msg: String,
        /// The node-side state saved for the next round.
        pub state_id: Option<String>,
        /// Number of samples trained on.
        pub sample_size: Option<u64>,
        /// Whether `params` are encrypted (secure aggregation).
        pub encrypted: bool,
        /// Updated model parameters (kept whole).
        pub params: Option<Value>,
        /// Optimizer arguments.
        pub optimizer_args: Option<Value>,
        /// Optimizer auxiliary variables.
        pub optim_aux_var: Option<Value>,
        /// Encryption factor (secure aggregation).
        pub encryption_factor: Option<Value>,
    }
}

impl TrainReply {
    /// A successful reply to `request` carrying `params`.
    pub fn answer(
        request: &Envelope,
        node_id: impl Into<String>,
        node_name: impl Into<String>,
        params: Value,
    ) -> TrainReply {
        let (researcher_id, request_id) = reply_ids(request);
        let get = |k: &str| {
            request
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        TrainReply {
            protocol_version: version(),
            request_id,
            researcher_id,
            experiment_id: get("experiment_id"),
            success: true,
            node_id: node_id.into(),
            node_name: node_name.into(),
            dataset_id: get("dataset_id"),
            timing: Value::Map(Vec::new()),
            msg: String::new(),
            state_id: None,
            sample_size: None,
            encrypted: false,
            params: Some(params),
            optimizer_args: None,
            optim_aux_var: None,
            encryption_factor: None,
        }
    }
}
