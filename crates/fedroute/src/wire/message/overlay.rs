//! `OverlayMessage`: node-to-node traffic relayed by the researcher.

use bytes::Bytes;

use super::{typed, version};

typed! {
    /// Node -> researcher -> node: an encrypted inner message for `dest_node_id`.
    /// The researcher relays it unchanged; it has no `request_id`.
    #[derive(Clone, Debug, PartialEq)]
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
        pub overlay: Bytes,
        /// Whether this sets up the channel (true) or carries application data.
        pub setup: bool,
        /// Salt for the key derivation.
        pub salt: Bytes,
        /// Nonce for the encryption.
        pub nonce: Bytes,
    }
}

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
