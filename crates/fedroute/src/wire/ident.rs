//! The identifiers peers send and fedroute keeps as keys: node ids,
//! researcher ids and request ids.
//!
//! A researcher keeps an agent per node id and a pending entry per request
//! id; a node keeps the researcher id of each link and a window of request
//! ids. Each is a string the peer chose, so each is checked before it is
//! kept or quoted: 1 to [`MAX_ID_BYTES`] bytes of ASCII letters, digits and
//! `_ - . : @ +`. That covers what Fed-BioMed generates (`NODE_<uuid4>`,
//! `RESEARCHER_<uuid4>`, request ids that are bare uuid4s) and the names
//! people give nodes by hand, and keeps out spaces, quotes, control
//! characters and anything a terminal or a log parser could misread.
//!

use super::echo::echo;
use super::error::WireError;

/// Longest identifier accepted, in bytes.
pub(crate) const MAX_ID_BYTES: usize = 256;

/// What an identifier names, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdKind {
    /// A node id (`TaskRequest.node`, a reply's `node_id`).
    Node,
    /// A researcher id (a task's `researcher_id`, a certificate's O=).
    Researcher,
    /// A request id (`request_id`).
    Request,
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdKind::Node => "node id",
            IdKind::Researcher => "researcher id",
            IdKind::Request => "request id",
        })
    }
}

/// Whether `c` may appear in an identifier.
fn allowed(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':' | b'@' | b'+')
}

/// Checks `id` against the rules of the module documentation.
pub(crate) fn check_id(kind: IdKind, id: &str) -> Result<(), WireError> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_ID_BYTES {
        "it is longer than 256 bytes"
    } else if !id.bytes().all(allowed) {
        "it has characters other than ASCII letters, digits and _ - . : @ +"
    } else {
        return Ok(());
    };
    Err(WireError::BadId {
        kind,
        id: echo(id),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the module's documentation says, as it was once its example.
    #[test]
    fn the_documented_behaviour_holds() {
        use crate::wire::{check_id, IdKind};
        assert!(check_id(IdKind::Node, "NODE_0d3c1a7e-6d5b-4c63-9a3e-1b2f5d9e8a70").is_ok());
        assert!(check_id(IdKind::Request, "1b2f5d9e-8a70-4c63-9a3e-0d3c1a7e6d5b").is_ok());
        assert!(check_id(IdKind::Node, "").is_err());
        assert!(check_id(IdKind::Node, "NODE 1").is_err());
        assert!(check_id(IdKind::Researcher, &"R".repeat(257)).is_err());
    }

    #[test]
    fn fedbiomed_ids_pass_and_others_are_refused_with_a_short_echo() {
        for ok in [
            "NODE_1",
            "RESEARCHER_6efc5a3b-2f7e-4c1e-9d27-1f2a3b4c5d6e",
            "a.b:c@d+e-f_g",
            &"x".repeat(MAX_ID_BYTES),
        ] {
            check_id(IdKind::Node, ok).unwrap();
        }
        for bad in [
            "",
            "a b",
            "a\"b",
            "a\nb",
            "é",
            "a/b",
            &"x".repeat(MAX_ID_BYTES + 1),
        ] {
            assert!(check_id(IdKind::Node, bad).is_err(), "{bad:?}");
        }
        let huge = "y".repeat(1 << 20);
        let e = check_id(IdKind::Researcher, &huge).unwrap_err();
        let text = e.to_string();
        assert!(text.len() < 300, "{text}");
        assert!(text.starts_with("researcher id"), "{text}");
    }
}
