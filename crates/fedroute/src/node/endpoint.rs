//! [`ResearcherEndpoint`]: where a researcher listens, how its
//! certificate is trusted and the HTTP proxy it is reached through, if any;
//! its `host:port` key names its link everywhere.

use std::fmt;

use super::error::NodeError;
use crate::proxy::Proxy;
use crate::tls::TrustPolicy;
use crate::wire::echo;

/// Where a researcher listens, how to trust it, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResearcherEndpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How its certificate is trusted.
    pub trust: TrustPolicy,
    /// The HTTP proxy every connection to it goes through (`CONNECT`, TLS
    /// end to end inside the tunnel; the knocks on a down researcher too);
    /// `None`: the controller's `ControllerConfig::channel.proxy`, which
    /// is itself `None` (direct) by default. It is per endpoint so that
    /// `NO_PROXY` rules ([`Proxy::from_env`]) can send some researchers
    /// through the proxy and others not. The link's key stays the
    /// researcher's `host:port`.
    pub proxy: Option<Proxy>,
}

impl ResearcherEndpoint {
    /// An endpoint trusted on first use (as Fed-BioMed nodes do).
    pub fn trust_on_first_use(host: impl Into<String>, port: u16) -> ResearcherEndpoint {
        ResearcherEndpoint {
            host: host.into(),
            port,
            trust: TrustPolicy::TrustOnFirstUse,
            proxy: None,
        }
    }

    /// The same endpoint reached through `proxy`.
    ///
    /// ```
    /// use fedroute::node::ResearcherEndpoint;
    ///
    /// let endpoint = ResearcherEndpoint::trust_on_first_use("researcher.example.org", 50051)
    ///     .with_proxy("http://proxy.hospital.org:3128".parse()?);
    /// assert_eq!(endpoint.key(), "researcher.example.org:50051");
    /// # Ok::<(), fedroute::proxy::ProxyError>(())
    /// ```
    pub fn with_proxy(mut self, proxy: Proxy) -> ResearcherEndpoint {
        self.proxy = Some(proxy);
        self
    }

    /// `host:port` (IPv6 addresses in brackets), the key of the link.
    pub fn key(&self) -> String {
        endpoint_key(&self.host, self.port)
    }
}

impl fmt::Display for ResearcherEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// `host:port` with IPv6 addresses in brackets.
pub(super) fn endpoint_key(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The one researcher-id check: a link knows one researcher id per
/// endpoint (learnt from its certificate or its first task), and an id
/// `found` later in `seen_in` (a certificate, a task) that differs from the
/// `known` one is refused for good, whatever it was found in.
pub(super) fn check_same_researcher(
    endpoint: &str,
    known: Option<&str>,
    found: &str,
    seen_in: &'static str,
) -> Result<(), NodeError> {
    match known {
        Some(expected) if expected != found => Err(NodeError::ResearcherIdChanged {
            endpoint: endpoint.to_owned(),
            expected: expected.to_owned(),
            found: echo(found),
            seen_in,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_differing_from_the_known_one_is_refused_for_good() {
        assert!(check_same_researcher("h:1", None, "R1", "task").is_ok());
        assert!(check_same_researcher("h:1", Some("R1"), "R1", "task").is_ok());
        let e = check_same_researcher("h:1", Some("R1"), "R2", "task").unwrap_err();
        assert!(e.is_fatal(), "{e}");
        let text = e.to_string();
        assert!(
            text.contains("R1") && text.contains("R2") && text.contains("task"),
            "{text}"
        );
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_keys() {
        assert_eq!(endpoint_key("::1", 50051), "[::1]:50051");
        assert_eq!(endpoint_key("[::1]", 50051), "[::1]:50051");
        assert_eq!(endpoint_key("localhost", 1), "localhost:1");
    }
}
