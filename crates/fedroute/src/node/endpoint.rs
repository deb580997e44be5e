//! [`ResearcherEndpoint`]: where a researcher listens and how its
//! certificate is trusted; its `host:port` key names its link everywhere.

use std::fmt;

use crate::tls::TrustPolicy;

/// Where a researcher listens and how to trust it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResearcherEndpoint {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// How its certificate is trusted.
    pub trust: TrustPolicy,
}

impl ResearcherEndpoint {
    /// An endpoint trusted on first use (as Fed-BioMed nodes do).
    pub fn trust_on_first_use(host: impl Into<String>, port: u16) -> ResearcherEndpoint {
        ResearcherEndpoint {
            host: host.into(),
            port,
            trust: TrustPolicy::TrustOnFirstUse,
        }
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
