//! Where `fedroute node` and `fedroute researcher` keep their state (the
//! node's trust store, the researcher's identity) when `--state-dir` is not
//! given: `$FEDROUTE_STATE_DIR`, else `$XDG_STATE_HOME/fedroute/<role>`,
//! else `~/.local/state/fedroute/<role>` (the XDG base-directory default).

use std::path::PathBuf;

/// The environment variable that overrides the default state directory.
pub(crate) const STATE_DIR_ENV: &str = "FEDROUTE_STATE_DIR";

/// The state directory for `role` ("node" or "researcher"): `given`, or
/// the default above; an error when no default can be found (no home).
pub(crate) fn state_dir(given: Option<&PathBuf>, role: &str) -> Result<PathBuf, String> {
    if let Some(dir) = given {
        return Ok(dir.clone());
    }
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(STATE_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(base) = var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(base).join("fedroute").join(role));
    }
    if let Some(home) = var("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/fedroute").join(role));
    }
    Err(format!(
        "no state directory: give --state-dir, or set {STATE_DIR_ENV} or HOME"
    ))
}
