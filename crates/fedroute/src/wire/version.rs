//! Messaging protocol version check, as Fed-BioMed does it
//! (`fedbiomed.common.utils.raise_for_version_compatibility`): a different
//! major version is refused, so is a newer minor version, and a newer micro
//! version with the same minor; anything older is accepted (logged at debug
//! level: it comes with every message of that peer).
//! Versions compare numerically (`"7"` equals `"7.0.0"`).

use super::echo::echo;
use super::error::WireError;

/// The messaging protocol version fedroute speaks (Fed-BioMed 6.x).
pub const PROTOCOL_VERSION: &str = "7";

/// How a compatible peer version relates to ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum VersionCompat {
    /// The same version.
    Same,
    /// An older minor (or micro) version: accepted.
    OlderMinor,
}

/// Checks the peer's protocol version `theirs` against [`PROTOCOL_VERSION`].
pub(crate) fn check_version(theirs: &str) -> Result<VersionCompat, WireError> {
    check_against(theirs, PROTOCOL_VERSION)
}

/// Checks `theirs` against `ours` (both `major[.minor[.micro]]`).
pub(super) fn check_against(theirs: &str, ours: &str) -> Result<VersionCompat, WireError> {
    let t = parse_version(theirs)?;
    let o = parse_version(ours)?;
    if t == o {
        return Ok(VersionCompat::Same);
    }
    if t.0 != o.0 || t.1 > o.1 || (t.1 == o.1 && t.2 > o.2) {
        return Err(WireError::IncompatibleVersion {
            theirs: echo(theirs),
            ours: ours.to_owned(),
        });
    }
    log::debug!(
        "peer speaks protocol version {}, older than ours ({ours}); accepted",
        echo(theirs)
    );
    Ok(VersionCompat::OlderMinor)
}

/// Parses `major[.minor[.micro]]` into numbers (missing parts are 0).
pub(super) fn parse_version(v: &str) -> Result<(u64, u64, u64), WireError> {
    let bad = || WireError::UnparsableVersion { version: echo(v) };
    let mut parts = [0u64; 3];
    for (n, p) in v.trim().split('.').enumerate() {
        if n == 3 || p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        parts[n] = p.parse().map_err(|_| bad())?;
    }
    Ok((parts[0], parts[1], parts[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_version_in_any_spelling_is_accepted() {
        assert_eq!(check_version("7"), Ok(VersionCompat::Same));
        assert_eq!(check_version("7.0"), Ok(VersionCompat::Same));
        assert_eq!(check_version("7.0.0"), Ok(VersionCompat::Same));
    }

    #[test]
    fn newer_minor_or_micro_and_other_majors_are_refused() {
        for v in ["7.1", "7.0.1", "8", "6", "6.9"] {
            assert!(
                matches!(check_version(v), Err(WireError::IncompatibleVersion { ref theirs, ref ours }) if theirs == v && ours == "7"),
                "{v}"
            );
        }
    }

    #[test]
    fn older_minor_or_micro_is_accepted_with_a_warning() {
        assert_eq!(check_against("7.1", "7.2"), Ok(VersionCompat::OlderMinor));
        assert_eq!(
            check_against("7.2.0", "7.2.3"),
            Ok(VersionCompat::OlderMinor)
        );
        assert!(check_against("7.3", "7.2.3").is_err());
    }

    #[test]
    fn garbage_versions_are_unparsable() {
        for v in ["", "seven", "7.", "7.0.0.0", "7-rc1", "-7"] {
            assert!(
                matches!(check_version(v), Err(WireError::UnparsableVersion { .. })),
                "{v:?}"
            );
        }
    }
}
