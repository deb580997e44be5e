//! `HTTPS_PROXY` and `NO_PROXY`: [`Proxy::from_env`], and the pure
//! functions it applies ([`Proxy::from_vars`], [`no_proxy_matches`]).

use std::net::IpAddr;

use super::{Proxy, ProxyError};

impl Proxy {
    /// The proxy the usual environment variables ask for to reach `host`:
    /// `HTTPS_PROXY` (else `https_proxy`), unless `host` matches `NO_PROXY`
    /// (else `no_proxy`); `None` when there is none or `host` is excluded.
    /// Empty variables count as unset. See [`Proxy::from_vars`] for the
    /// rules. The library never calls this itself: an embedder that wants
    /// the variables honoured calls it for each researcher
    /// (`fedroute node` does when no `--proxy` is given).
    pub fn from_env(host: &str) -> Result<Option<Proxy>, ProxyError> {
        let var = |names: [&str; 2]| {
            names
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
        };
        let proxy = var(["HTTPS_PROXY", "https_proxy"]);
        let no_proxy = var(["NO_PROXY", "no_proxy"]);
        Proxy::from_vars(proxy.as_deref(), no_proxy.as_deref(), host)
    }

    /// [`Proxy::from_env`] with the variables' values given: `https_proxy`
    /// (a proxy URL, see [`Proxy::parse`]) unless `host` matches
    /// `no_proxy` ([`no_proxy_matches`]). A bad URL is an error, whether
    /// or not `host` is excluded (a typo should not pass unseen).
    ///
    /// ```
    /// use fedroute::proxy::Proxy;
    ///
    /// let via = |host| Proxy::from_vars(Some("http://proxy:3128"), Some("localhost,.hospital.org"), host);
    /// assert_eq!(via("researcher.example.org")?.unwrap().to_string(), "http://proxy:3128");
    /// assert!(via("ward3.hospital.org")?.is_none());
    /// assert!(via("localhost")?.is_none());
    /// assert!(Proxy::from_vars(None, None, "researcher.example.org")?.is_none());
    /// # Ok::<(), fedroute::proxy::ProxyError>(())
    /// ```
    pub fn from_vars(
        https_proxy: Option<&str>,
        no_proxy: Option<&str>,
        host: &str,
    ) -> Result<Option<Proxy>, ProxyError> {
        let Some(url) = https_proxy.filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let proxy = Proxy::parse(url)?;
        if no_proxy.is_some_and(|list| no_proxy_matches(list, host)) {
            return Ok(None);
        }
        Ok(Some(proxy))
    }
}

/// Whether `host` is to be reached directly by a `NO_PROXY` list: entries
/// separated by commas (spaces around them ignored), each
/// - `*`: every host;
/// - a domain, `example.org` or `.example.org`: that name and every name
///   under it (`a.example.org`), case-insensitive, as curl does;
/// - an IP address (`10.1.2.3`, `::1`, `[::1]`): that address, or a block
///   of them in CIDR notation (`10.0.0.0/8`, `fd00::/8`).
///
/// A port after an entry (`host:8080`) is ignored. Host names are compared
/// as written: no DNS lookup, so `localhost` does not match `127.0.0.1`.
pub fn no_proxy_matches(no_proxy: &str, host: &str) -> bool {
    let host = host
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    let host_ip = host.parse::<IpAddr>().ok();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| entry_matches(entry, &host, host_ip))
}

fn entry_matches(entry: &str, host: &str, host_ip: Option<IpAddr>) -> bool {
    if entry == "*" {
        return true;
    }
    let entry = entry.to_ascii_lowercase();
    let entry = strip_port(&entry);
    if let Some((net, bits)) = entry.split_once('/') {
        return match (host_ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
            (Some(ip), Ok(net), Ok(bits)) => in_block(ip, net, bits),
            _ => false,
        };
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return host_ip == Some(ip);
    }
    let domain = entry.trim_start_matches('.').trim_end_matches('.');
    if domain.is_empty() || host_ip.is_some() {
        return false;
    }
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// An entry without a port: `host:8080` -> `host`, `[::1]:8080` -> `::1`,
/// `[::1]` -> `::1`; a bare IPv6 address is left whole.
fn strip_port(entry: &str) -> &str {
    if let Some(rest) = entry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.parse::<u16>().is_ok() => host,
        _ => entry,
    }
}

/// Whether `ip` is in the block `net/bits` (same address family only).
fn in_block(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_hosts_and_domains_match_case_insensitively() {
        let list = "localhost, Researcher.Example.org ,.hospital.org,lab.net";
        for host in [
            "localhost",
            "researcher.example.org",
            "RESEARCHER.example.org.",
            "hospital.org",
            "ward3.hospital.org",
            "lab.net",
            "a.b.lab.net",
        ] {
            assert!(no_proxy_matches(list, host), "{host}");
        }
        for host in [
            "example.org",
            "other.example.org",
            "evilhospital.org",
            "xlab.net",
            "localhost.evil",
            "127.0.0.1",
        ] {
            assert!(!no_proxy_matches(list, host), "{host}");
        }
    }

    #[test]
    fn a_star_matches_everything_and_empty_lists_nothing() {
        assert!(no_proxy_matches("*", "anything.example"));
        assert!(no_proxy_matches("a.org, *", "10.0.0.1"));
        assert!(!no_proxy_matches("", "a.org"));
        assert!(!no_proxy_matches(" , ,", "a.org"));
        assert!(!no_proxy_matches(".", "a.org"));
    }

    #[test]
    fn ip_literals_and_blocks_match_addresses_only() {
        let list = "127.0.0.1,::1,10.0.0.0/8,fd00::/8,[2001:db8::7]:443,192.168.1.5:3128";
        for host in [
            "127.0.0.1",
            "::1",
            "[::1]",
            "10.200.3.4",
            "fd12::1",
            "2001:db8::7",
            "192.168.1.5",
        ] {
            assert!(no_proxy_matches(list, host), "{host}");
        }
        for host in [
            "127.0.0.2",
            "11.0.0.1",
            "fe80::1",
            "2001:db8::8",
            "localhost",
        ] {
            assert!(!no_proxy_matches(list, host), "{host}");
        }
        // A block of the other family, or a nonsense one, matches nothing.
        assert!(!no_proxy_matches("10.0.0.0/8", "::ffff:10.0.0.1"));
        assert!(!no_proxy_matches("10.0.0.0/99,10.0.0.0/x", "10.0.0.1"));
        assert!(no_proxy_matches("0.0.0.0/0", "8.8.8.8"));
        // A domain entry never matches an address.
        assert!(!no_proxy_matches("0.1", "10.0.0.1"));
    }

    #[test]
    fn ports_in_entries_are_ignored() {
        assert!(no_proxy_matches("researcher.org:50051", "researcher.org"));
        assert!(no_proxy_matches("[::1]:1", "::1"));
    }

    #[test]
    fn the_proxy_applies_unless_no_proxy_excludes_the_host() {
        let url = Some("http://u:p@proxy:3128");
        let p = Proxy::from_vars(url, Some("internal.org"), "r.example.org")
            .unwrap()
            .unwrap();
        assert_eq!((p.host(), p.port(), p.user()), ("proxy", 3128, Some("u")));
        assert!(
            Proxy::from_vars(url, Some("internal.org"), "r.internal.org")
                .unwrap()
                .is_none()
        );
        assert!(Proxy::from_vars(url, Some("*"), "r.example.org")
            .unwrap()
            .is_none());
        assert!(Proxy::from_vars(None, Some("x"), "r.example.org")
            .unwrap()
            .is_none());
        assert!(Proxy::from_vars(Some("  "), None, "r.example.org")
            .unwrap()
            .is_none());
        // A bad URL is an error even for an excluded host.
        assert!(Proxy::from_vars(Some("https://proxy"), Some("*"), "r").is_err());
    }
}
