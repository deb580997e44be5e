//! Value parsers shared by the sub-commands: `HOST:PORT`, durations in
//! seconds, byte sizes (`16MiB`) and datasets (`NAME:TAG,TAG`). Each returns
//! a one-line message clap shows as the error. [`Size`] and [`Seconds`]
//! carry values whose defaults are constants (most of them the library's):
//! clap shows a default through `Display` and parses it back, so those
//! print in the form the flags take.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use fedroute::config::ReceiveLimits;

/// A researcher address as given on the command line: `HOST:PORT`, with an
/// IPv6 address in brackets (`[::1]:50051`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub(crate) host: String,
    /// TCP port.
    pub(crate) port: u16,
}

impl FromStr for HostPort {
    type Err = String;

    fn from_str(s: &str) -> Result<HostPort, String> {
        let bad = |why: &str| format!("{s:?} is not HOST:PORT ({why})");
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner.strip_suffix(']').ok_or_else(|| bad("unclosed '['"))?,
            None if host.contains(':') => return Err(bad("put an IPv6 address in brackets")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
        if port == 0 {
            return Err(bad("port 0 cannot be dialled"));
        }
        Ok(HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A dataset the reference node declares: `NAME:TAG,TAG` (tags optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatasetSpec {
    /// The dataset name.
    pub(crate) name: String,
    /// Its tags (searched by `SearchRequest`).
    pub(crate) tags: Vec<String>,
}

impl FromStr for DatasetSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DatasetSpec, String> {
        let (name, tags) = s.split_once(':').unwrap_or((s, ""));
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("{s:?} is not NAME:TAG,TAG (empty name)"));
        }
        let tags = tags
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect();
        Ok(DatasetSpec {
            name: name.to_string(),
            tags,
        })
    }
}

/// Parses a duration in seconds (`10`, `0.5`), at most a year.
pub(crate) fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.0..=365.0 * 86_400.0).contains(&secs) {
        return Err(format!("{s:?} seconds is out of range (0 to one year)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a byte size: a number with an optional unit `B`, `KiB`, `MiB`,
/// `GiB` (powers of 1024) or `kB`, `MB`, `GB` (powers of 1000); `K`, `M`,
/// `G` alone are binary. At most 1 GiB (a model travels in memory).
pub(crate) fn byte_size(s: &str) -> Result<usize, String> {
    let bytes = size(s, 1u64 << 30)?;
    Ok(bytes as usize)
}

/// Parses a size limit like [`byte_size`], up to 1 TiB.
pub(crate) fn limit_size(s: &str) -> Result<usize, String> {
    let bytes = size(s, 1u64 << 40)?;
    usize::try_from(bytes).map_err(|_| format!("{s:?} does not fit this machine"))
}

/// A byte count, shown in the largest binary unit that divides it
/// (`2GiB`, `2064MiB`, `1000`): a form [`byte_size`] and [`limit_size`]
/// read back exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub(crate) usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", n >> shift);
            }
        }
        write!(f, "{n}")
    }
}

/// [`limit_size`] as a [`Size`].
pub(crate) fn limit(s: &str) -> Result<Size, String> {
    limit_size(s).map(Size)
}

/// [`byte_size`] as a [`Size`].
pub(crate) fn model_size(s: &str) -> Result<Size, String> {
    byte_size(s).map(Size)
}

/// A duration, shown in seconds (`30`, `0.25`): a form [`seconds`] reads
/// back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seconds(pub(crate) Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.subsec_nanos() == 0 {
            write!(f, "{}", self.0.as_secs())
        } else {
            write!(f, "{}", self.0.as_secs_f64())
        }
    }
}

/// [`seconds`] as [`Seconds`].
pub(crate) fn secs(s: &str) -> Result<Seconds, String> {
    seconds(s).map(Seconds)
}

/// A size in bytes, at most `max`.
fn size(s: &str, max: u64) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 16MiB, 4096, 1.5M)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" | "b" => 1.0,
        "K" | "k" | "KiB" => 1024.0,
        "M" | "m" | "MiB" => 1024.0 * 1024.0,
        "G" | "g" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        other => {
            return Err(format!(
                "{s:?}: unknown size unit {other:?} (use KiB, MiB, GiB)"
            ))
        }
    };
    let bytes = (num * mult).round();
    if bytes > max as f64 {
        let limit = if max >= 1 << 40 { "1 TiB" } else { "1 GiB" };
        return Err(format!("{s:?} is larger than {limit}"));
    }
    Ok(bytes as u64)
}

/// Bounds on what peers may send, shared by `researcher` and `node`: the
/// library's [`ReceiveLimits`] (the full set is in the library's
/// configuration; see the README's Limits).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct LimitArgs {
    /// Largest message accepted once its frames are joined, e.g. 512MiB.
    #[arg(long, value_name = "SIZE", value_parser = limit,
          default_value_t = Size(ReceiveLimits::DEFAULT_MAX_MESSAGE_BYTES))]
    pub(crate) max_message: Size,
    /// Bytes that messages still being received may hold, all peers
    /// together; a peer whose message would exceed it is refused for now.
    #[arg(long, value_name = "SIZE", value_parser = limit,
          default_value_t = Size(ReceiveLimits::DEFAULT_BUDGET_BYTES))]
    pub(crate) receive_budget: Size,
    /// Seconds a stream may go without a frame in the middle of a message
    /// before it is cancelled.
    #[arg(long, value_name = "SECONDS", value_parser = secs,
          default_value_t = Seconds(ReceiveLimits::DEFAULT_STALL_TIMEOUT))]
    pub(crate) stall_timeout: Seconds,
}

impl LimitArgs {
    /// Sets `limits` to the flags' values.
    pub(crate) fn apply(&self, limits: &mut ReceiveLimits) {
        limits.max_message_bytes = self.max_message.0;
        limits.budget_bytes = self.receive_budget.0;
        limits.stall_timeout = self.stall_timeout.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        let hp: HostPort = "127.0.0.1:50051".parse().unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("127.0.0.1", 50051));
        let hp: HostPort = "[::1]:7".parse().unwrap();
        assert_eq!((hp.host.as_str(), hp.port), ("::1", 7));
        assert_eq!(hp.to_string(), "[::1]:7");
        let hp: HostPort = "researcher.example:443".parse().unwrap();
        assert_eq!(hp.host, "researcher.example");
        for bad in [
            "localhost",
            ":50051",
            "h:0",
            "h:99999",
            "::1:5",
            "[::1:5",
            "h:x",
        ] {
            assert!(bad.parse::<HostPort>().is_err(), "{bad}");
        }
    }

    #[test]
    fn dataset_forms() {
        let d: DatasetSpec = "mnist:images, digits".parse().unwrap();
        assert_eq!(d.name, "mnist");
        assert_eq!(d.tags, ["images", "digits"]);
        let d: DatasetSpec = "plain".parse().unwrap();
        assert!(d.tags.is_empty());
        assert!(":tag".parse::<DatasetSpec>().is_err());
    }

    #[test]
    fn sizes_and_seconds() {
        assert_eq!(byte_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(byte_size("4096").unwrap(), 4096);
        assert_eq!(byte_size("1.5K").unwrap(), 1536);
        assert_eq!(byte_size("2MB").unwrap(), 2_000_000);
        assert!(byte_size("2TB").is_err());
        assert!(byte_size("5GiB").is_err());
        assert!(byte_size("x").is_err());
        assert_eq!(limit_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(limit_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(limit_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(limit_size("2048MiB").unwrap(), 2 << 30);
        assert_eq!(limit_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(limit_size("2g").unwrap(), 2 << 30);
        assert!(limit_size("2048GiB").is_err());
        assert!(limit_size("-1G").is_err());
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert!(seconds("-1").is_err());
        assert!(seconds("soon").is_err());
    }

    #[test]
    fn defaults_are_shown_as_the_flags_take_them() {
        for n in [
            ReceiveLimits::DEFAULT_MAX_MESSAGE_BYTES,
            ReceiveLimits::DEFAULT_BUDGET_BYTES,
            16 << 20,
            1536,
            1000,
            0,
        ] {
            let shown = Size(n).to_string();
            assert_eq!(limit(&shown), Ok(Size(n)), "{shown}");
        }
        assert_eq!(
            Size(ReceiveLimits::DEFAULT_BUDGET_BYTES).to_string(),
            "2064MiB"
        );
        assert_eq!(Size(2 << 30).to_string(), "2GiB");
        assert_eq!(Size(1536).to_string(), "1536");
        for d in [Duration::from_secs(30), Duration::from_millis(250)] {
            let shown = Seconds(d).to_string();
            assert_eq!(secs(&shown), Ok(Seconds(d)), "{shown}");
        }
        assert_eq!(Seconds(Duration::from_secs(30)).to_string(), "30");
    }
}
