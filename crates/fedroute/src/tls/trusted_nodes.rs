//! The directory of registered node certificates
//! (`ListenSettings::trusted_nodes`): every `*.pem` file in it holds one
//! node certificate, trusted as it is (the exact DER of the leaf a node
//! presents must be one of them, within its validity dates), not as a CA.
//!
//! Registering a node is copying its certificate into the directory; no
//! restart is needed. [`TrustedNodes::current`] runs at each handshake that
//! presents a certificate: it lists the directory and compares each file's
//! size and modification time with what it read before (one `stat` per
//! file), and reads again only the files that changed. A file that cannot
//! be used any more (being rewritten, unreadable, not a certificate) is
//! logged once per change and skipped, its last good content kept; a
//! directory that cannot be listed keeps the last good set. At start
//! ([`TrustedNodes::open`]) the same problems are errors naming the path.
//! Files of other names (keys, notes) are ignored.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, UnixTime};

use super::identity::node_id_of_client_cert;
use super::pem::certificates_from_pem;
use super::TlsError;
use crate::ErrorChain;

/// Largest registered certificate file read (64 KiB; a certificate is
/// about 1 KiB).
pub(crate) const MAX_REGISTERED_FILE_BYTES: u64 = 64 << 10;

/// A registered certificate.
#[derive(Clone, Debug)]
pub(crate) struct Registered {
    der: CertificateDer<'static>,
    /// Validity, in seconds since the Unix epoch.
    not_before: i64,
    not_after: i64,
}

impl Registered {
    /// Whether the certificate may be used at `now`.
    fn valid_at(&self, now: UnixTime) -> bool {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        self.not_before <= now && now <= self.not_after
    }
}

/// What a lookup of a presented certificate found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Registered and within its validity dates.
    Trusted,
    /// Registered, but expired or not yet valid.
    OutsideValidity,
    /// Not registered.
    Unknown,
}

/// When a file was last seen changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Debug)]
struct Entry {
    stamp: Stamp,
    /// The last good content (`None` if the file was never usable).
    good: Option<Registered>,
}

#[derive(Debug, Default)]
struct State {
    entries: BTreeMap<OsString, Entry>,
    /// The set built from `entries`, shared with lookups.
    set: Arc<Vec<Registered>>,
    /// Whether listing the directory failed last time (logged once).
    listing_failed: bool,
}

/// The registered node certificates of a directory; see the module
/// documentation.
#[derive(Debug)]
pub(crate) struct TrustedNodes {
    dir: PathBuf,
    state: Mutex<State>,
}

impl TrustedNodes {
    /// Reads `dir` strictly: it must be a directory that can be listed, and
    /// every `*.pem` file in it one usable node certificate (exactly one
    /// X.509 certificate naming a node).
    pub(crate) fn open(dir: &Path) -> Result<TrustedNodes, TlsError> {
        let mut entries = BTreeMap::new();
        for (name, path, stamp) in list(dir)? {
            let registered = load(&path, stamp)?;
            entries.insert(
                name,
                Entry {
                    stamp,
                    good: Some(registered),
                },
            );
        }
        let set = Arc::new(entries.values().filter_map(|e| e.good.clone()).collect());
        Ok(TrustedNodes {
            dir: dir.to_path_buf(),
            state: Mutex::new(State {
                entries,
                set,
                listing_failed: false,
            }),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The certificates registered now, re-reading what changed.
    pub(crate) fn current(&self) -> Arc<Vec<Registered>> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let listed = match list(&self.dir) {
            Ok(listed) => {
                if state.listing_failed {
                    log::info!("trusted nodes: {} can be read again", self.dir.display());
                    state.listing_failed = false;
                }
                listed
            }
            Err(e) => {
                if !state.listing_failed {
                    log::warn!(
                        "trusted nodes: {}; keeping the {} certificates read before",
                        ErrorChain(&e),
                        state.set.len()
                    );
                    state.listing_failed = true;
                }
                return Arc::clone(&state.set);
            }
        };
        let unchanged = listed.len() == state.entries.len()
            && listed.iter().all(|(name, _, stamp)| {
                state
                    .entries
                    .get(name)
                    .is_some_and(|entry| entry.stamp == *stamp)
            });
        if unchanged {
            return Arc::clone(&state.set);
        }
        let mut entries = BTreeMap::new();
        for (name, path, stamp) in listed {
            let old = state.entries.remove(&name);
            let entry = match old {
                Some(old) if old.stamp == stamp => old,
                old => {
                    let previous = old.and_then(|o| o.good);
                    match load(&path, stamp) {
                        Ok(registered) => {
                            log::info!("trusted nodes: read {}", path.display());
                            Entry {
                                stamp,
                                good: Some(registered),
                            }
                        }
                        Err(e) => {
                            log::warn!(
                                "trusted nodes: {}; {}",
                                ErrorChain(&e),
                                if previous.is_some() {
                                    "keeping its previous content"
                                } else {
                                    "skipped"
                                }
                            );
                            Entry {
                                stamp,
                                good: previous,
                            }
                        }
                    }
                }
            };
            entries.insert(name, entry);
        }
        if !state.entries.is_empty() {
            log::info!(
                "trusted nodes: {} certificate file(s) removed from {}",
                state.entries.len(),
                self.dir.display()
            );
        }
        state.set = Arc::new(entries.values().filter_map(|e| e.good.clone()).collect());
        state.entries = entries;
        Arc::clone(&state.set)
    }

    /// Whether `cert` is registered (exactly) and valid at `now`.
    pub(crate) fn lookup(&self, cert: &CertificateDer<'_>, now: UnixTime) -> Lookup {
        let set = self.current();
        match set.iter().find(|r| r.der.as_ref() == cert.as_ref()) {
            Some(r) if r.valid_at(now) => Lookup::Trusted,
            Some(_) => Lookup::OutsideValidity,
            None => Lookup::Unknown,
        }
    }
}

/// The `*.pem` files of `dir` (following symbolic links), with their stamps.
fn list(dir: &Path) -> Result<Vec<(OsString, PathBuf, Stamp)>, TlsError> {
    let err = |source| TlsError::ReadDirectory {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(err)? {
        let item = item.map_err(err)?;
        let path = item.path();
        if path.extension().is_none_or(|e| e != "pem") {
            continue;
        }
        // A file that vanished between listing and stat is simply gone.
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let stamp = Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
        };
        out.push((item.file_name(), path, stamp));
    }
    Ok(out)
}

/// Reads one registered certificate file.
fn load(path: &Path, stamp: Stamp) -> Result<Registered, TlsError> {
    let bad = |reason: String| TlsError::BadRegisteredCertificate {
        path: path.to_path_buf(),
        reason,
    };
    if stamp.len > MAX_REGISTERED_FILE_BYTES {
        return Err(bad(format!(
            "the file has {} bytes, more than the {MAX_REGISTERED_FILE_BYTES} a certificate may have",
            stamp.len
        )));
    }
    let pem = super::pem::read_file(path, "registered node certificate")?;
    let origin = path.display().to_string();
    let mut certs = certificates_from_pem(&pem, &origin).map_err(|e| bad(e.to_string()))?;
    if certs.len() != 1 {
        return Err(bad(format!(
            "it holds {} certificates; a registered node file holds exactly one",
            certs.len()
        )));
    }
    let der = certs.remove(0);
    node_id_of_client_cert(&der).map_err(|e| bad(e.to_string()))?;
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| bad(e.to_string()))?;
    let validity = cert.validity();
    let (not_before, not_after) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    Ok(Registered {
        der,
        not_before,
        not_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate_node_identity;

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_certificate_copied_in_is_trusted_at_the_next_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_node_identity("NODE_a").unwrap();
        let b = generate_node_identity("NODE_b").unwrap();
        write(dir.path(), "NODE_a.pem", &a.cert_pem);
        write(dir.path(), "notes.txt", "not a certificate");
        let trusted = TrustedNodes::open(dir.path()).unwrap();
        assert_eq!(trusted.lookup(&a.cert_der, now()), Lookup::Trusted);
        assert_eq!(trusted.lookup(&b.cert_der, now()), Lookup::Unknown);
        write(dir.path(), "NODE_b.pem", &b.cert_pem);
        assert_eq!(trusted.lookup(&b.cert_der, now()), Lookup::Trusted);
        std::fs::remove_file(dir.path().join("NODE_a.pem")).unwrap();
        assert_eq!(trusted.lookup(&a.cert_der, now()), Lookup::Unknown);
    }

    #[test]
    fn only_the_exact_certificate_is_trusted_not_others_of_the_same_node() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_node_identity("NODE_a").unwrap();
        let a_again = generate_node_identity("NODE_a").unwrap();
        write(dir.path(), "a.pem", &a.cert_pem);
        let trusted = TrustedNodes::open(dir.path()).unwrap();
        assert_eq!(trusted.lookup(&a_again.cert_der, now()), Lookup::Unknown);
    }

    #[test]
    fn validity_dates_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_node_identity("NODE_a").unwrap();
        write(dir.path(), "a.pem", &a.cert_pem);
        let trusted = TrustedNodes::open(dir.path()).unwrap();
        let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            now().as_secs() + 6 * 365 * 86_400,
        ));
        assert_eq!(trusted.lookup(&a.cert_der, later), Lookup::OutsideValidity);
    }

    #[test]
    fn at_start_a_missing_directory_or_a_bad_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        match TrustedNodes::open(&missing) {
            Err(e @ TlsError::ReadDirectory { .. }) => {
                assert!(e.to_string().contains("nope"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        write(dir.path(), "bad.pem", "garbage");
        match TrustedNodes::open(dir.path()) {
            Err(e @ TlsError::BadRegisteredCertificate { .. }) => {
                assert!(e.to_string().contains("bad.pem"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let a = generate_node_identity("NODE_a").unwrap();
        let b = generate_node_identity("NODE_b").unwrap();
        write(
            dir.path(),
            "bad.pem",
            &format!("{}{}", a.cert_pem, b.cert_pem),
        );
        let e = TrustedNodes::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
    }

    #[test]
    fn later_a_broken_file_keeps_its_last_good_content_and_others_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate_node_identity("NODE_a").unwrap();
        let b = generate_node_identity("NODE_b").unwrap();
        write(dir.path(), "a.pem", &a.cert_pem);
        let trusted = TrustedNodes::open(dir.path()).unwrap();
        write(dir.path(), "a.pem", "-----BEGIN CERT");
        write(dir.path(), "junk.pem", "junk");
        write(dir.path(), "b.pem", &b.cert_pem);
        assert_eq!(trusted.lookup(&a.cert_der, now()), Lookup::Trusted);
        assert_eq!(trusted.lookup(&b.cert_der, now()), Lookup::Trusted);
        assert_eq!(trusted.current().len(), 2);
        // The directory itself going away keeps the last good set.
        drop(dir);
        assert_eq!(trusted.lookup(&b.cert_der, now()), Lookup::Trusted);
    }

    #[test]
    fn an_oversized_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "big.pem",
            &"x".repeat(MAX_REGISTERED_FILE_BYTES as usize + 1),
        );
        let e = TrustedNodes::open(dir.path()).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
    }
}
