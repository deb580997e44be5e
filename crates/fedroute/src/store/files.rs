//! Large payloads, one file each: written from the payload's own buffers
//! (no copy), fsynced and renamed into place before the row naming them is
//! committed.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;

use super::StoreError;
use crate::wire::Payload;

const SUFFIX: &str = ".payload";
const TMP_SUFFIX: &str = ".payload.tmp";

/// The file name of item `seq`'s payload.
pub(super) fn name(seq: u64) -> String {
    format!("{seq:020}{SUFFIX}")
}

/// Writes `payload` to `dir/name(seq)`: a temporary file, fsynced, then
/// renamed (the directory itself is fsynced by the caller, once per
/// commit).
pub(super) fn write(dir: &Path, seq: u64, payload: &Payload) -> io::Result<String> {
    let name = name(seq);
    let tmp = dir.join(format!("{seq:020}{TMP_SUFFIX}"));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        for piece in payload.pieces() {
            file.write_all(piece)?;
        }
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(&name))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| name)
}

/// Makes the renames of a commit durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Reads the payload file a row names (`name`, as stored).
pub(super) fn read(dir: &Path, name: &[u8]) -> Result<(String, Payload), StoreError> {
    let damaged = |reason: String| StoreError::Damaged {
        path: dir.to_path_buf(),
        reason,
    };
    let name = std::str::from_utf8(name)
        .ok()
        .filter(|n| n.ends_with(SUFFIX) && !n.contains(['/', '\\']) && !n.starts_with('.'))
        .ok_or_else(|| damaged("a row names an invalid payload file".to_string()))?;
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Ok((name.to_string(), Payload::from(Bytes::from(bytes)))),
        Err(e) => Err(StoreError::Damaged {
            path,
            reason: format!("a queued item's payload file cannot be read ({e})"),
        }),
    }
}

/// Removes a payload file (its row is gone).
pub(super) fn remove(dir: &Path, name: &str) {
    if let Err(e) = std::fs::remove_file(dir.join(name)) {
        if e.kind() != io::ErrorKind::NotFound {
            log::warn!(
                "delivery store: cannot remove {}: {e}",
                dir.join(name).display()
            );
        }
    }
}

/// Removes the files no row names: payloads written before a crash that
/// came before their commit, and temporary files.
pub(super) fn remove_orphans(dir: &Path, named: &HashSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = name.ends_with(SUFFIX) || name.ends_with(TMP_SUFFIX);
        if ours && !named.contains(name) {
            log::debug!("delivery store: removing the uncommitted {name}");
            remove(dir, name);
        }
    }
}
