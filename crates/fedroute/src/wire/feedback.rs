//! `FeedbackMessage`: node logs and training scalars, sent through the
//! `Feedback` RPC as protobuf (not msgpack). These types mirror Fed-BioMed's
//! `Log`/`Scalar` dataclasses and convert to and from [`proto::FeedbackMessage`].

use std::collections::BTreeMap;

use crate::proto;
use crate::proto::feedback_message::FeedbackType;

use super::error::WireError;
use super::version::PROTOCOL_VERSION;

/// A log line from a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Log {
    /// The logging node.
    pub node_id: String,
    /// Log level name (`"INFO"`, `"ERROR"`, ...).
    pub level: String,
    /// The message.
    pub msg: String,
}

impl Log {
    /// A log line whose `msg` is the JSON text Fed-BioMed's node logger
    /// sends (`{"asctime", "node_id", "name", "level", "message"}`):
    /// Fed-BioMed's researcher reads `json.loads(msg)["message"]` and fails
    /// on plain text, so this is the form a node must send.
    ///
    /// ```
    /// let log = fedroute::wire::Log::fedbiomed("NODE_1", "my_node", "INFO", "ready");
    /// assert_eq!(log.text(), "ready");
    /// assert!(log.msg.starts_with("{\"asctime\":"));
    /// ```
    pub fn fedbiomed(node_id: &str, name: &str, level: &str, message: &str) -> Log {
        #[derive(serde::Serialize)]
        struct Record<'a> {
            asctime: String,
            node_id: &'a str,
            name: &'a str,
            level: &'a str,
            message: &'a str,
        }
        let record = Record {
            asctime: asctime(std::time::SystemTime::now()),
            node_id,
            name,
            level,
            message,
        };
        // Serialising a struct of strings to JSON cannot fail; the fallback
        // keeps the text rather than losing the record if it ever did.
        let msg = serde_json::to_string(&record).unwrap_or_else(|_| message.to_owned());
        Log {
            node_id: node_id.to_owned(),
            level: level.to_owned(),
            msg,
        }
    }

    /// The human text of the line: the `message` of Fed-BioMed's JSON form,
    /// or `msg` itself when it is plain text.
    pub fn text(&self) -> String {
        match serde_json::from_str::<serde_json::Value>(&self.msg) {
            Ok(serde_json::Value::Object(o)) => match o.get("message") {
                Some(serde_json::Value::String(text)) => text.clone(),
                _ => self.msg.clone(),
            },
            _ => self.msg.clone(),
        }
    }
}

/// `time` as Python's logging `asctime` (`2026-11-27 04:01:14,123`, UTC).
fn asctime(time: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(time);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// A training or validation metric from a node.
#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    /// The reporting node.
    pub node_id: String,
    /// The experiment.
    pub experiment_id: String,
    /// Whether the value comes from training.
    pub train: bool,
    /// Whether the value comes from validation.
    pub test: bool,
    /// Validation over locally updated parameters.
    pub test_on_local_updates: bool,
    /// Validation over aggregated parameters.
    pub test_on_global_updates: bool,
    /// Metric name -> value.
    pub metric: BTreeMap<String, f32>,
    /// Epoch, if known.
    pub epoch: Option<i32>,
    /// Samples in the dataset.
    pub total_samples: i32,
    /// Samples in the batch.
    pub batch_samples: i32,
    /// Batches per epoch.
    pub num_batches: i32,
    /// Samples trained so far, if known.
    pub num_samples_trained: Option<i32>,
    /// Iteration the value was taken at.
    pub iteration: i32,
    /// The reporting node's display name.
    pub node_name: String,
}

/// What a feedback message carries.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Feedback {
    /// A log line.
    Log(Log),
    /// A metric.
    Scalar(Scalar),
}

/// A node's feedback to a researcher.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackMessage {
    /// Messaging protocol version.
    pub protocol_version: String,
    /// The researcher it is for, if set.
    pub researcher_id: Option<String>,
    /// The log line or metric.
    pub feedback: Feedback,
}

impl FeedbackMessage {
    /// A log feedback in our protocol version, its `msg` in the JSON form
    /// Fed-BioMed's researcher requires ([`Log::fedbiomed`], logger name
    /// `fedroute`).
    ///
    /// ```
    /// use fedroute::wire::{Feedback, FeedbackMessage};
    ///
    /// let m = FeedbackMessage::log(None, "NODE_1", "WARNING", "disk almost full");
    /// let Feedback::Log(log) = &m.feedback else { unreachable!() };
    /// assert_eq!(log.text(), "disk almost full");
    /// assert!(log.msg.contains("\"level\":\"WARNING\""));
    /// ```
    pub fn log(
        researcher_id: Option<String>,
        node_id: &str,
        level: &str,
        message: &str,
    ) -> FeedbackMessage {
        FeedbackMessage::with_log(
            researcher_id,
            Log::fedbiomed(node_id, "fedroute", level, message),
        )
    }

    /// A log feedback carrying `log` as it is (its `msg` is sent unchanged).
    pub fn with_log(researcher_id: Option<String>, log: Log) -> FeedbackMessage {
        FeedbackMessage {
            protocol_version: PROTOCOL_VERSION.to_owned(),
            researcher_id,
            feedback: Feedback::Log(log),
        }
    }

    /// A scalar feedback in our protocol version.
    pub fn scalar(researcher_id: Option<String>, scalar: Scalar) -> FeedbackMessage {
        FeedbackMessage {
            protocol_version: PROTOCOL_VERSION.to_owned(),
            researcher_id,
            feedback: Feedback::Scalar(scalar),
        }
    }

    /// The sending node.
    pub fn node_id(&self) -> &str {
        match &self.feedback {
            Feedback::Log(l) => &l.node_id,
            Feedback::Scalar(s) => &s.node_id,
        }
    }

    /// Checks `protocol_version` as for any message.
    pub fn check_version(&self) -> Result<(), WireError> {
        super::version::check_version(&self.protocol_version).map(|_| ())
    }
}

impl From<FeedbackMessage> for proto::FeedbackMessage {
    fn from(m: FeedbackMessage) -> proto::FeedbackMessage {
        let feedback_type = match m.feedback {
            Feedback::Log(l) => FeedbackType::Log(proto::feedback_message::Log {
                node_id: l.node_id,
                level: l.level,
                msg: l.msg,
            }),
            Feedback::Scalar(s) => FeedbackType::Scalar(proto::feedback_message::Scalar {
                node_id: s.node_id,
                experiment_id: s.experiment_id,
                train: s.train,
                test: s.test,
                test_on_local_updates: s.test_on_local_updates,
                test_on_global_updates: s.test_on_global_updates,
                metric: s.metric.into_iter().collect(),
                epoch: s.epoch,
                total_samples: s.total_samples,
                batch_samples: s.batch_samples,
                num_batches: s.num_batches,
                num_samples_trained: s.num_samples_trained,
                iteration: s.iteration,
                node_name: s.node_name,
            }),
        };
        proto::FeedbackMessage {
            protocol_version: m.protocol_version,
            researcher_id: m.researcher_id,
            feedback_type: Some(feedback_type),
        }
    }
}

impl TryFrom<proto::FeedbackMessage> for FeedbackMessage {
    type Error = WireError;

    /// Fails with [`WireError::MissingField`] when neither `log` nor `scalar` is set.
    fn try_from(p: proto::FeedbackMessage) -> Result<FeedbackMessage, WireError> {
        let feedback = match p.feedback_type {
            Some(FeedbackType::Log(l)) => Feedback::Log(Log {
                node_id: l.node_id,
                level: l.level,
                msg: l.msg,
            }),
            Some(FeedbackType::Scalar(s)) => Feedback::Scalar(Scalar {
                node_id: s.node_id,
                experiment_id: s.experiment_id,
                train: s.train,
                test: s.test,
                test_on_local_updates: s.test_on_local_updates,
                test_on_global_updates: s.test_on_global_updates,
                metric: s.metric.into_iter().collect(),
                epoch: s.epoch,
                total_samples: s.total_samples,
                batch_samples: s.batch_samples,
                num_batches: s.num_batches,
                num_samples_trained: s.num_samples_trained,
                iteration: s.iteration,
                node_name: s.node_name,
            }),
            None => {
                return Err(WireError::MissingField {
                    class: "FeedbackMessage".to_owned(),
                    field: "log or scalar",
                })
            }
        };
        Ok(FeedbackMessage {
            protocol_version: p.protocol_version,
            researcher_id: p.researcher_id,
            feedback,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn fedbiomed_log_is_the_json_fedbiomed_researchers_read() {
        let log = super::Log::fedbiomed("NODE_1", "my_node", "WARNING", "disk \"full\"");
        let v: serde_json::Value = serde_json::from_str(&log.msg).unwrap();
        assert_eq!(v["message"], "disk \"full\"");
        assert_eq!(v["node_id"], "NODE_1");
        assert_eq!(v["name"], "my_node");
        assert_eq!(v["level"], "WARNING");
        let asctime = v["asctime"].as_str().unwrap();
        assert_eq!(asctime.len(), "2026-11-27 04:01:14,123".len(), "{asctime}");
        assert_eq!(&asctime[19..20], ",");
        assert_eq!(log.text(), "disk \"full\"");
    }

    #[test]
    fn log_text_reads_plain_text_too() {
        let log = |msg: &str| super::Log {
            node_id: "N".into(),
            level: "INFO".into(),
            msg: msg.into(),
        };
        assert_eq!(log("plain words").text(), "plain words");
        assert_eq!(log(r#"{"other": 1}"#).text(), r#"{"other": 1}"#);
        assert_eq!(log("42").text(), "42");
    }

    use super::*;

    #[test]
    fn log_and_scalar_round_trip_through_the_proto() {
        let log = FeedbackMessage::log(Some("R".into()), "NODE_1", "INFO", "hello");
        let p: proto::FeedbackMessage = log.clone().into();
        assert!(matches!(p.feedback_type, Some(FeedbackType::Log(_))));
        assert_eq!(FeedbackMessage::try_from(p).unwrap(), log);

        let scalar = FeedbackMessage::scalar(
            None,
            Scalar {
                node_id: "NODE_1".into(),
                experiment_id: "exp".into(),
                train: true,
                test: false,
                test_on_local_updates: false,
                test_on_global_updates: false,
                metric: [("loss".to_owned(), 0.5f32)].into_iter().collect(),
                epoch: Some(1),
                total_samples: 100,
                batch_samples: 10,
                num_batches: 10,
                num_samples_trained: None,
                iteration: 3,
                node_name: "n".into(),
            },
        );
        let p: proto::FeedbackMessage = scalar.clone().into();
        assert_eq!(FeedbackMessage::try_from(p).unwrap(), scalar);
        assert_eq!(scalar.node_id(), "NODE_1");
    }

    #[test]
    fn feedback_without_content_is_a_missing_field() {
        let p = proto::FeedbackMessage {
            protocol_version: "7".into(),
            researcher_id: None,
            feedback_type: None,
        };
        assert!(matches!(
            FeedbackMessage::try_from(p),
            Err(WireError::MissingField { .. })
        ));
    }
}
