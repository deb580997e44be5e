//! Nodes behind HTTP proxies: [`Proxy`], dialled with HTTP `CONNECT`.
//!
//! Hospital machines often reach the outside only through an HTTP proxy. A
//! node's link to a researcher can go through one: the node opens a TCP
//! connection to the proxy, asks it for a tunnel with
//! `CONNECT host:port HTTP/1.1` (with `Proxy-Authorization: Basic ...` when
//! the proxy URL carries a user and password), and once the proxy answers
//! 2xx, runs TLS to the researcher *inside* the tunnel. TLS is end to end:
//! the proxy sees the researcher's address and ciphertext, never the
//! messages, and the researcher's certificate is checked by the node's trust
//! policy as on a direct connection.
//!
//! # Where it is set
//! - Per researcher: [`ResearcherEndpoint::proxy`](crate::node::ResearcherEndpoint::proxy)
//!   (see [`ResearcherEndpoint::with_proxy`](crate::node::ResearcherEndpoint::with_proxy)).
//! - For a whole channel (the tls layer's [`connect_channel`](crate::tls::connect_channel)):
//!   [`ChannelOptions::proxy`](crate::tls::ChannelOptions::proxy); in a node's
//!   `ControllerConfig::channel` it is the proxy of every link whose
//!   endpoint names none.
//!
//! Every connection of the link goes through it: fetching the certificate
//! on first use, the channel and tonic's reconnects, and the knocks on a
//! down researcher (a knock is a `CONNECT`; see `node::probe`).
//!
//! # Environment variables
//! The library reads no environment variable by itself: an embedder decides
//! where its proxy comes from. [`Proxy::from_env`] is the helper for those
//! that want the usual variables (`fedroute node` calls it when no
//! `--proxy` is given): `HTTPS_PROXY` (else `https_proxy`) names the proxy,
//! `NO_PROXY` (else `no_proxy`) the hosts reached directly. The rules are
//! those of [`Proxy::from_vars`], a pure function. `HTTP_PROXY` and
//! `ALL_PROXY` are not read: a link is TLS (as grpc-go, which also reads
//! only `HTTPS_PROXY` for its connections).
//!
//! # What a proxy may send
//! Its answer is untrusted input: the status line and headers are read up
//! to [`MAX_ANSWER_HEAD_BYTES`] (8 KiB) and [`MAX_ANSWER_HEADERS`] (64)
//! headers, within [`Proxy::handshake_timeout`] (10 s by default), parsed
//! by `httparse`; nothing it says is echoed in full. A refusal (407, 403,
//! 502, ...) is a [`ProxyError::Refused`] naming the proxy (never the
//! password), the researcher, the status and its reason; the link retries
//! with its back-off.
//!
//! # Layout
//! - `url`: [`Proxy`], parsed from `http://[user:password@]host[:port]`.
//! - `env`: `NO_PROXY` matching and [`Proxy::from_vars`].
//! - `handshake`: the `CONNECT` request and the parsing of the answer,
//!   plain functions over bytes (no socket, unit-tested).
//! - `tunnel`: the async part, one tunnel over one TCP connection.
//! - `error`: [`ProxyError`].

mod env;
mod error;
mod handshake;
pub(crate) mod tunnel;
mod url;

pub use env::no_proxy_matches;
pub use error::ProxyError;
pub use handshake::{MAX_ANSWER_HEADERS, MAX_ANSWER_HEAD_BYTES};
pub use url::Proxy;
