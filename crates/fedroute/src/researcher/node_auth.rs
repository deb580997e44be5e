//! Which node a call may act as: the identity policy of mutual TLS, as
//! plain functions (the service applies them to every call).
//!
//! - Mutual TLS off: calls are taken at their word (nothing to check).
//! - Mutual TLS on, and the connection has no usable certificate (none, or
//!   one that names no node): UNAUTHENTICATED, before anything of the call
//!   is read. (The handshake already refuses connections without an
//!   acceptable certificate; this is the second line.)
//! - Otherwise every node id the call claims must be the certificate's
//!   (subject O=, else CN=): `TaskRequest.node` of `GetTaskUnary` and of
//!   the first request of `GetTask`, the `node_id` of every message of
//!   `ReplyTask`, the `node_id` of `Feedback` and the `node_id` inside a
//!   log record's JSON text. Another node's id: PERMISSION_DENIED.

use tonic::Status;

use crate::tls::TlsError;
use crate::wire::echo;
use crate::ErrorChain;

/// The node a connection's client certificate proves, from whether mutual
/// TLS is on and what the certificate names (`None`: no certificate).
/// `Ok(None)` when mutual TLS is off (nothing is proven, nothing checked).
pub(crate) fn authenticate(
    mutual_tls: bool,
    certificate: Option<Result<String, TlsError>>,
) -> Result<Option<String>, Status> {
    if !mutual_tls {
        return Ok(None);
    }
    match certificate {
        Some(Ok(node)) => Ok(Some(node)),
        Some(Err(e)) => Err(Status::unauthenticated(format!(
            "mutual TLS: the client certificate names no node: {}",
            echo(&ErrorChain(&e).to_string())
        ))),
        None => Err(Status::unauthenticated(
            "mutual TLS: the connection presented no client certificate",
        )),
    }
}

/// Checks that a call claiming node `claimed` (in `field`) may act as it,
/// for a connection that proves `certified` (see [`authenticate`]).
pub(crate) fn authorize(certified: Option<&str>, field: &str, claimed: &str) -> Result<(), Status> {
    match certified {
        Some(node) if node != claimed => Err(Status::permission_denied(format!(
            "{field} {:?} is not the node of the client certificate ({:?})",
            echo(claimed),
            echo(node)
        ))),
        _ => Ok(()),
    }
}

/// The `node_id` of a log record in Fed-BioMed's JSON form (the `msg` of a
/// log feedback), when it is one and has one.
pub(crate) fn log_record_node_id(msg: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Record {
        node_id: Option<String>,
    }
    if !msg.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<Record>(msg).ok()?.node_id
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn names_no_node() -> TlsError {
        TlsError::MissingSubjectAttribute {
            attribute: "Organization (O=) or Common Name (CN=)",
            subject: "".into(),
        }
    }

    #[test]
    fn without_mutual_tls_every_claim_passes() {
        assert_eq!(authenticate(false, None).unwrap(), None);
        authorize(None, "TaskRequest.node", "NODE_b").unwrap();
    }

    #[test]
    fn under_mutual_tls_a_connection_without_a_usable_certificate_is_unauthenticated() {
        let none = authenticate(true, None).unwrap_err();
        assert_eq!(none.code(), Code::Unauthenticated);
        assert!(none.message().contains("no client certificate"), "{none:?}");
        let anonymous = authenticate(true, Some(Err(names_no_node()))).unwrap_err();
        assert_eq!(anonymous.code(), Code::Unauthenticated);
        assert!(
            anonymous.message().contains("names no node"),
            "{anonymous:?}"
        );
    }

    #[test]
    fn a_certified_node_may_act_only_as_itself() {
        let certified = authenticate(true, Some(Ok("NODE_a".into()))).unwrap();
        assert_eq!(certified.as_deref(), Some("NODE_a"));
        authorize(certified.as_deref(), "TaskRequest.node", "NODE_a").unwrap();
        let denied = authorize(certified.as_deref(), "TaskRequest.node", "NODE_b").unwrap_err();
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert!(
            denied.message().contains("TaskRequest.node \"NODE_b\"")
                && denied.message().contains("\"NODE_a\""),
            "{denied:?}"
        );
    }

    #[test]
    fn a_claim_is_quoted_shortened() {
        let long = "x".repeat(1 << 20);
        let denied = authorize(Some("NODE_a"), "node_id", &long).unwrap_err();
        assert!(denied.message().len() < 1000, "{}", denied.message().len());
    }

    #[test]
    fn the_node_id_of_a_fedbiomed_log_record_is_read_from_its_json() {
        let log = crate::wire::Log::fedbiomed("NODE_a", "n", "INFO", "hi");
        assert_eq!(log_record_node_id(&log.msg).as_deref(), Some("NODE_a"));
        assert_eq!(log_record_node_id("plain text"), None);
        assert_eq!(log_record_node_id("{\"message\": \"x\"}"), None);
        assert_eq!(log_record_node_id("{not json"), None);
    }
}
