//! [`Proxy`]: an HTTP proxy parsed from its URL.
//!
//! The URL is parsed with `http::Uri` (already in the dependency graph with
//! tonic; the `url` crate would bring IDNA tables for an authority that
//! `http` parses as well); the user and password are percent-decoded with
//! `percent-encoding`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::ProxyError;

/// An HTTP proxy that opens tunnels with `CONNECT`, optionally with basic
/// authentication.
///
/// Parsed from `http://[user[:password]@]host[:port]` (the port defaults
/// to 80; a URL without a scheme is taken as `http://`, as curl and Go do;
/// `%`-escapes in the user and password are decoded). Only `http://`
/// proxies are supported: the connection to the proxy itself is plain TCP,
/// and TLS to the researcher runs inside the tunnel.
///
/// Neither [`Display`](fmt::Display) nor [`Debug`] shows the password:
/// errors and logs name the proxy as `http://host:port`.
///
/// ```
/// use fedroute::proxy::Proxy;
///
/// let proxy: Proxy = "http://alice:s%40cret@proxy.example.org:3128".parse()?;
/// assert_eq!((proxy.host(), proxy.port()), ("proxy.example.org", 3128));
/// assert_eq!(proxy.user(), Some("alice"));
/// assert_eq!(proxy.to_string(), "http://proxy.example.org:3128");
/// assert!(!format!("{proxy:?}").contains("s@cret"));
/// assert!("https://proxy:3128".parse::<Proxy>().is_err());
/// # Ok::<(), fedroute::proxy::ProxyError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Host name or IP address (IPv6 without brackets).
    host: String,
    port: u16,
    credentials: Option<Credentials>,
    handshake_timeout: Duration,
}

/// The user and password sent with `Proxy-Authorization: Basic`.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Credentials {
    pub(super) user: String,
    pub(super) password: String,
}

impl Proxy {
    /// Default of [`Proxy::handshake_timeout`] (10 s, the default connect
    /// timeout of a channel).
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The port of a proxy URL that names none (80, the `http://` port).
    pub const DEFAULT_PORT: u16 = 80;

    /// Parses a proxy URL (see the type's documentation).
    pub fn parse(url: &str) -> Result<Proxy, ProxyError> {
        let text = url.trim();
        let bad = |reason: &str| ProxyError::BadUrl {
            url: redact(text),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(bad("it is empty"));
        }
        let with_scheme = match text.split_once("://") {
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("http") => text.to_string(),
            Some((scheme, _)) => {
                return Err(ProxyError::UnsupportedScheme {
                    url: redact(text),
                    scheme: crate::wire::echo(scheme),
                })
            }
            None => format!("http://{text}"),
        };
        let uri: http::Uri = with_scheme
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let authority = uri.authority().ok_or_else(|| bad("it names no host"))?;
        match uri.path_and_query().map(|p| p.as_str()) {
            None | Some("") | Some("/") => {}
            Some(_) => return Err(bad("a proxy URL has no path or query")),
        }
        let host = authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("it names no host"));
        }
        // `http` drops a port it cannot read as u16: read it here.
        let port = match port_text(authority.as_str()) {
            None => Self::DEFAULT_PORT,
            Some("") => return Err(bad("the port after ':' is missing")),
            Some(text) => match text.parse::<u16>() {
                Ok(0) => return Err(bad("port 0 cannot be dialled")),
                Ok(port) => port,
                Err(_) => return Err(bad("the port must be a number from 1 to 65535")),
            },
        };
        let credentials = match authority.as_str().rsplit_once('@') {
            None => None,
            Some((userinfo, _)) => {
                let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |part: &str, what: &str| {
                    percent_decode_str(part)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| bad(&format!("the {what} is not UTF-8 once %-decoded")))
                };
                let user = decode(user, "user")?;
                let password = decode(password, "password")?;
                if user.contains(':') {
                    return Err(bad("the user must not contain ':' (basic authentication)"));
                }
                Some(Credentials { user, password })
            }
        };
        Ok(Proxy {
            host: host.to_ascii_lowercase(),
            port,
            credentials,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        })
    }

    /// The proxy's host name or IP address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user of basic authentication, if the URL has one.
    pub fn user(&self) -> Option<&str> {
        self.credentials.as_ref().map(|c| c.user.as_str())
    }

    /// How long the proxy has to accept the TCP connection and answer the
    /// `CONNECT` (the status line and headers). Default:
    /// [`Proxy::DEFAULT_HANDSHAKE_TIMEOUT`] (10 s). A channel's connect
    /// timeout bounds the whole dial as well.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The same proxy with another [`Proxy::handshake_timeout`].
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Proxy {
        self.handshake_timeout = timeout;
        self
    }

    pub(super) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// `host:port` of the proxy (IPv6 in brackets).
    pub(crate) fn address(&self) -> String {
        authority(&self.host, self.port)
    }
}

impl FromStr for Proxy {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Proxy, ProxyError> {
        Proxy::parse(s)
    }
}

impl fmt::Display for Proxy {
    /// `http://host:port`, without the user and password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.address())
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.to_string())
            .field("user", &self.user())
            .field("password", &self.credentials.as_ref().map(|_| "***"))
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

/// The text after the host's `:` in an authority (`user@host:port`,
/// `[::1]:port`), if there is one.
fn port_text(authority: &str) -> Option<&str> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let after_host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or("", |(_, after)| after),
        None => host_port.find(':').map_or("", |i| &host_port[i..]),
    };
    after_host.strip_prefix(':')
}

/// `host:port`, with an IPv6 address in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

/// A URL as it may be quoted: without what stands between `://` and the
/// last `@` (user and password), and shortened.
fn redact(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let rest = match rest[..authority_end].rfind('@') {
        Some(at) => format!("***@{}", &rest[at + 1..]),
        None => rest.to_string(),
    };
    let shown = match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest,
    };
    crate::wire::echo(&shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Proxy {
        Proxy::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn host_port_and_credentials_are_read_and_decoded() {
        let p = parse("http://user%20name:p%40ss%3Aword@Proxy.Example.org:3128/");
        assert_eq!((p.host(), p.port()), ("proxy.example.org", 3128));
        let c = p.credentials().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("user name", "p@ss:word")
        );
        let p = parse("http://bob@10.0.0.1:8080");
        assert_eq!(p.user(), Some("bob"));
        assert_eq!(p.credentials().unwrap().password, "");
        assert_eq!(parse("http://proxy").port(), 80);
        assert_eq!(parse("proxy:3128").to_string(), "http://proxy:3128");
        assert_eq!(parse("HTTP://proxy:1").port(), 1);
        let v6 = parse("http://[::1]:3128");
        assert_eq!(
            (v6.host(), v6.to_string().as_str()),
            ("::1", "http://[::1]:3128")
        );
        assert_eq!(
            parse("http://proxy:3128").handshake_timeout(),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason_and_without_the_password() {
        for (url, says) in [
            ("https://proxy:3128", "only http://"),
            ("socks5://proxy:1080", "only http://"),
            ("", "empty"),
            ("http://", "not usable"),
            ("http://proxy:0", "port 0"),
            ("http://proxy:99999", "1 to 65535"),
            ("http://proxy:", "not usable"),
            ("http://proxy:3128/path", "no path"),
            ("http://proxy:3128?x=1", "no path"),
            ("http://a b:3128", "not usable"),
            ("http://u:%FF@proxy:1", "UTF-8"),
        ] {
            let e = Proxy::parse(url).expect_err(url).to_string();
            assert!(e.contains(says), "{url}: {e}");
        }
        let e = Proxy::parse("https://alice:hunter2@proxy:3128").unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("hunter2") && text.contains("***@proxy:3128"),
            "{text}"
        );
        let e = Proxy::parse("http://alice:hunter2@proxy:3128/x").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn neither_display_nor_debug_show_the_password() {
        let p = parse("http://alice:hunter2@proxy:3128");
        assert_eq!(p.to_string(), "http://proxy:3128");
        let debug = format!("{p:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("alice"),
            "{debug}"
        );
    }
}
