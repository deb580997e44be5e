//! Resident memory of this process, from `/proc/self/status` (Linux).
//!
//! `VmRSS` is the current resident set, `VmHWM` its peak since the process
//! started or since the peak was last reset by writing `5` to
//! `/proc/self/clear_refs`. On other systems every figure is `None`.

/// Current resident memory in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_field("VmRSS:")
}

/// Peak resident memory in bytes since start or the last [`reset_peak`] (`VmHWM`).
pub fn peak_rss_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

/// Resets the peak (`VmHWM`) to the current resident memory. Returns false
/// when the kernel does not allow it.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn status_field(name: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_field(&text, name)
}

/// Reads a `Name:   1234 kB` line of a `/proc/*/status` text, in bytes.
pub fn parse_status_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut parts = line[name.len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(n * 1024),
        None => Some(n),
        Some(_) => None,
    }
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kb_lines() {
        let text = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(parse_status_field(text, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(parse_status_field(text, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(parse_status_field(text, "VmSwap:"), None);
        assert_eq!(parse_status_field("VmRSS: x kB", "VmRSS:"), None);
    }

    #[test]
    fn reads_own_memory_on_linux() {
        if cfg!(target_os = "linux") {
            let rss = rss_bytes().expect("VmRSS");
            assert!(rss > 0);
            assert!(peak_rss_bytes().expect("VmHWM") >= rss / 2);
        }
    }
}
