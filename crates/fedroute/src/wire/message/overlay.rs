//! `OverlayMessage`: node-to-node traffic relayed by the researcher.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{typed, version};

/// Node -> researcher -> node: an encrypted inner message for `dest_node_id`.
/// The researcher relays it unchanged; it has no `request_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OverlayMessage {
    /// Messaging protocol version.
    pub protocol_version: String,
    /// The relaying researcher.
    pub researcher_id: String,
    /// The source node.
    pub node_id: String,
    /// The destination node.
    pub dest_node_id: String,
    /// The encrypted inner message.
    #[serde(with = "crate::wire::bin")]
    pub overlay: Bytes,
    /// Whether this sets up the channel (true) or carries application data.
    pub setup: bool,
    /// Salt for the key derivation.
    #[serde(with = "crate::wire::bin")]
    pub salt: Bytes,
    /// Nonce for the encryption.
    #[serde(with = "crate::wire::bin")]
    pub nonce: Bytes,
}
typed!(
    OverlayMessage,
    [
        "protocol_version",
        "researcher_id",
        "node_id",
        "dest_node_id",
        "overlay",
        "setup",
        "salt",
        "nonce"
    ]
);

impl OverlayMessage {
    /// An overlay message from `node_id` to `dest_node_id`.
    pub fn new(
        researcher_id: impl Into<String>,
        node_id: impl Into<String>,
        dest_node_id: impl Into<String>,
        overlay: Bytes,
        setup: bool,
        salt: Bytes,
        nonce: Bytes,
    ) -> OverlayMessage {
        OverlayMessage {
            protocol_version: version(),
            researcher_id: researcher_id.into(),
            node_id: node_id.into(),
            dest_node_id: dest_node_id.into(),
            overlay,
            setup,
            salt,
            nonce,
        }
    }
}
