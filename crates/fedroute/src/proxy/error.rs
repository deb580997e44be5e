//! [`ProxyError`]: a proxy URL that cannot be used, or a tunnel the proxy
//! did not open.

use std::time::Duration;

/// What can go wrong with an HTTP proxy. Proxies are named as
/// `http://host:port`, never with their password; `target` is the
/// researcher's `host:port`. A dial through a proxy returns these inside
/// [`TlsError::Proxy`](crate::tls::TlsError::Proxy); none is fatal for a
/// node's link, which retries with its back-off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL cannot be parsed or used.
    #[error("the proxy URL \"{url}\" is not usable: {reason}")]
    BadUrl {
        /// The URL, without its user and password.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The proxy URL has another scheme than `http://`.
    #[error("the proxy URL \"{url}\" is not usable: only http:// proxies are supported (HTTP CONNECT), not {scheme}://")]
    UnsupportedScheme {
        /// The URL, without its user and password.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The TCP connection to the proxy could not be opened (the proxy is
    /// down, or its address is wrong).
    #[error("could not connect to the HTTP proxy {proxy} (to reach {target})")]
    Unreachable {
        /// The proxy.
        proxy: String,
        /// The researcher it was to reach.
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The proxy answered the `CONNECT` with another status than 2xx.
    #[error(
        "the HTTP proxy {proxy} refused to open a tunnel to {target}: {status} {reason}{hint}"
    )]
    Refused {
        /// The proxy.
        proxy: String,
        /// The researcher it was to reach.
        target: String,
        /// The HTTP status code (407: authentication required or refused;
        /// 403: forbidden by its rules; 502/503/504 or tinyproxy's 500: it
        /// could not reach the researcher).
        status: u16,
        /// The reason phrase it gave, shortened.
        reason: String,
        /// What the status means for the operator ("" when nothing to add).
        hint: String,
    },
    /// The proxy answered something that is not a usable HTTP answer
    /// (not HTTP, headers too large or too many, data before the tunnel).
    #[error("the HTTP proxy {proxy} gave an unusable answer to CONNECT {target}: {reason}")]
    BadAnswer {
        /// The proxy.
        proxy: String,
        /// The researcher it was to reach.
        target: String,
        /// What was wrong.
        reason: String,
    },
    /// The proxy closed the connection before its answer was complete.
    #[error("the HTTP proxy {proxy} closed the connection after {received} bytes, before answering CONNECT {target}")]
    Closed {
        /// The proxy.
        proxy: String,
        /// The researcher it was to reach.
        target: String,
        /// Bytes of its answer received.
        received: usize,
    },
    /// Reading from or writing to the proxy failed during the `CONNECT`.
    #[error("the connection to the HTTP proxy {proxy} failed during CONNECT {target}")]
    Io {
        /// The proxy.
        proxy: String,
        /// The researcher it was to reach.
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The proxy did not accept the connection and answer within
    /// [`Proxy::handshake_timeout`](super::Proxy::handshake_timeout).
    #[error("the HTTP proxy {proxy} did not answer CONNECT {target} within {after:?}")]
    Timeout {
        /// The proxy.
        proxy: String,
        /// The researcher it was to reach.
        target: String,
        /// The bound.
        after: Duration,
    },
}

impl ProxyError {
    /// The status the proxy refused the tunnel with, if it did.
    pub fn status(&self) -> Option<u16> {
        match self {
            ProxyError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the proxy said it could not reach the researcher (500,
    /// 502, 503, 504), as opposed to refusing this node (407, 403, ...).
    pub(crate) fn target_unreachable(&self) -> bool {
        matches!(self.status(), Some(500 | 502..=504))
    }
}
