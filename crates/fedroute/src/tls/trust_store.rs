//! The node's trust store: which certificate each researcher endpoint was
//! trusted with, remembered across restarts.
//!
//! The policy ([`TrustStore::decide`]) is a plain function of the record,
//! the presented certificate and the time; writing the file
//! ([`TrustStore::record`]) is separate, so the rules are tested without
//! sockets or files.
//!
//! The file is JSON (`{"format": 1, "endpoints": {"host:port": {...}}}`),
//! replaced atomically on every change; a file that does not parse, or
//! was written by a newer format, is an error naming it, never a silent
//! reset.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::fingerprint::Fingerprint;
use super::pem::{certificate_to_pem, certificates_from_pem};
use super::rotation::{verify_rotation, RotationError};
use super::validity::{validity_of, Validity};
use super::TlsError;
use crate::state_file::write_atomically;

/// The format version this code writes and reads.
const FORMAT: u32 = 1;

/// The largest trust-store file read (1,000 endpoints take about 1.5 MiB);
/// a larger file is refused as damaged rather than read into memory.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// How stale the recorded "last seen" of an endpoint may get before a
/// successful connection writes it again: writing (and fsyncing) on every
/// reconnection would cost more than the TLS handshake it follows.
pub(crate) const LAST_SEEN_WRITE_INTERVAL: Duration = Duration::from_secs(600);

/// How a node decides on a certificate that differs from the recorded one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeRule {
    /// Only with a valid rotation proof by the recorded key.
    RotationProof,
    /// Any certificate with the recorded researcher id (Fed-BioMed's
    /// behaviour), with a warning.
    SameResearcherId,
}

/// How the recorded certificate of an endpoint came to be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Acceptance {
    /// First contact with the endpoint.
    FirstUse,
    /// A rotation proof by the previously recorded key.
    RotationProof,
    /// The same researcher id under `TrustPolicy::TrustSameResearcherId`.
    SameResearcherId,
}

/// What the trust store records for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrustedResearcher {
    /// The researcher id of the certificate's subject O=, when it has one.
    pub researcher_id: Option<String>,
    /// The SHA-256 fingerprint of the trusted certificate.
    pub fingerprint: Fingerprint,
    /// The trusted certificate (a rotation proof is checked against its key).
    pub certificate: CertificateDer<'static>,
    /// When the endpoint was first trusted.
    pub first_seen: SystemTime,
    /// When a connection last used this record (written at most every
    /// 10 minutes: writing on every reconnection would cost an fsync).
    pub last_seen: SystemTime,
    /// How the current certificate was accepted.
    pub accepted: Acceptance,
}

/// The outcome of presenting a certificate at an endpoint.
#[derive(Debug)]
pub(crate) enum Decision {
    /// The recorded certificate.
    Known,
    /// A new record (first contact) or a replaced one (rotation, same id).
    Accept(Acceptance),
    /// Refused: the certificate differs from the recorded one and the
    /// rule does not accept it.
    Changed {
        recorded: Fingerprint,
        presented: Fingerprint,
        why: RotationError,
    },
    /// Refused: another researcher id than the recorded one.
    OtherResearcher { expected: String, found: String },
    /// Refused: the certificate's validity period is over (or has not
    /// begun).
    Invalid(Validity),
}

/// A node's trusted researcher certificates, in memory or backed by a file.
#[derive(Debug, Default)]
pub struct TrustStore {
    path: Option<PathBuf>,
    entries: BTreeMap<String, TrustedResearcher>,
    /// Fingerprints already warned about (expiry soon), so that each
    /// warning is logged once per process, not once per connection.
    warned: HashSet<Fingerprint>,
    /// The file's modification time and length when last read or written:
    /// a change by someone else (`fedroute trust forget`) is read back.
    seen: Option<(SystemTime, u64)>,
}

impl TrustStore {
    /// The name of the file in a node's state directory.
    pub const FILE_NAME: &'static str = "trust.json";

    /// A store that lives as long as the process (no state directory).
    pub fn in_memory() -> TrustStore {
        TrustStore::default()
    }

    /// Opens the store file `path` (an absent file is an empty store; it
    /// is created at the first record). A file that cannot be read or
    /// parsed is an error naming it.
    pub fn open(path: &Path) -> Result<TrustStore, TlsError> {
        let corrupt = |reason: String| TlsError::TrustStoreDamaged {
            path: path.to_path_buf(),
            reason,
        };
        let read_error = |source| TlsError::ReadFile {
            what: "trust store",
            path: path.to_path_buf(),
            source,
        };
        let entries = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(read_error(e)),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                return Err(corrupt(format!(
                    "{} bytes, above the maximum of {MAX_FILE_BYTES}",
                    meta.len()
                )))
            }
            Ok(_) => {
                let bytes = std::fs::read(path).map_err(read_error)?;
                let file: File = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(format!("not a fedroute trust store: {e}")))?;
                if file.format != FORMAT {
                    return Err(corrupt(format!(
                        "format {} was written by another fedroute version; this one reads format {FORMAT}",
                        file.format
                    )));
                }
                file.endpoints
                    .into_iter()
                    .map(|(endpoint, e)| {
                        let entry = e.into_entry().map_err(|reason| {
                            corrupt(format!("the entry for {endpoint}: {reason}"))
                        })?;
                        Ok((endpoint, entry))
                    })
                    .collect::<Result<_, TlsError>>()?
            }
        };
        Ok(TrustStore {
            path: Some(path.to_path_buf()),
            entries,
            warned: HashSet::new(),
            seen: file_stamp(path),
        })
    }

    /// Reads the file again if someone else changed it since this store
    /// last read or wrote it (an operator ran `fedroute trust forget`
    /// while the node runs): the change takes effect at the next
    /// connection, and is not overwritten by this store's next write.
    pub(crate) fn refresh(&mut self) -> Result<(), TlsError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        if file_stamp(&path) == self.seen {
            return Ok(());
        }
        let fresh = TrustStore::open(&path)?;
        self.entries = fresh.entries;
        self.seen = fresh.seen;
        Ok(())
    }

    /// The file backing the store, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The record of `endpoint` (`host:port`).
    pub fn get(&self, endpoint: &str) -> Option<&TrustedResearcher> {
        self.entries.get(endpoint)
    }

    /// Every record, by endpoint.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &TrustedResearcher)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Forgets `endpoint`, so that its next certificate is trusted as on
    /// first contact (how an operator accepts a changed certificate).
    /// Returns whether there was a record.
    pub fn forget(&mut self, endpoint: &str) -> Result<bool, TlsError> {
        let had = self.entries.remove(endpoint).is_some();
        if had {
            self.save()?;
        }
        Ok(had)
    }

    /// Decides on `presented` (whose subject O= is `researcher_id`) at
    /// `endpoint`, without changing anything.
    pub(crate) fn decide(
        &self,
        endpoint: &str,
        presented: &CertificateDer<'_>,
        researcher_id: Option<&str>,
        rule: ChangeRule,
        now: SystemTime,
    ) -> Decision {
        let validity = validity_of(presented, now);
        if validity.is_invalid() {
            return Decision::Invalid(validity);
        }
        let Some(entry) = self.entries.get(endpoint) else {
            return Decision::Accept(Acceptance::FirstUse);
        };
        if let (Some(expected), Some(found)) = (&entry.researcher_id, researcher_id) {
            if expected != found {
                return Decision::OtherResearcher {
                    expected: expected.clone(),
                    found: found.to_string(),
                };
            }
        }
        let presented_fp = Fingerprint::of(presented);
        if presented_fp == entry.fingerprint {
            return Decision::Known;
        }
        let proof = match researcher_id {
            Some(id) => verify_rotation(&entry.certificate, presented, id),
            None => Err(RotationError::Absent),
        };
        match (proof, rule) {
            (Ok(()), _) => Decision::Accept(Acceptance::RotationProof),
            (Err(_), ChangeRule::SameResearcherId)
                if researcher_id.is_some() && researcher_id == entry.researcher_id.as_deref() =>
            {
                Decision::Accept(Acceptance::SameResearcherId)
            }
            (Err(why), _) => Decision::Changed {
                recorded: entry.fingerprint,
                presented: presented_fp,
                why,
            },
        }
    }

    /// Applies an accepting decision for `presented` at `endpoint` and
    /// writes the file when something worth keeping changed. Returns the
    /// certificate's expiry warning, the first time it is due in this
    /// process.
    pub(crate) fn record(
        &mut self,
        endpoint: &str,
        presented: &CertificateDer<'static>,
        researcher_id: Option<&str>,
        decision: &Decision,
        now: SystemTime,
    ) -> Result<Option<Validity>, TlsError> {
        let fingerprint = Fingerprint::of(presented);
        let write = match decision {
            Decision::Known => match self.entries.get_mut(endpoint) {
                Some(entry) => {
                    let stale = now
                        .duration_since(entry.last_seen)
                        .is_ok_and(|d| d >= LAST_SEEN_WRITE_INTERVAL);
                    entry.last_seen = now;
                    stale
                }
                None => false,
            },
            Decision::Accept(how) => {
                let first_seen = match (how, self.entries.get(endpoint)) {
                    (Acceptance::FirstUse, _) | (_, None) => now,
                    (_, Some(old)) => old.first_seen,
                };
                self.entries.insert(
                    endpoint.to_string(),
                    TrustedResearcher {
                        researcher_id: researcher_id.map(str::to_string),
                        fingerprint,
                        certificate: presented.clone(),
                        first_seen,
                        last_seen: now,
                        accepted: *how,
                    },
                );
                true
            }
            _ => false,
        };
        if write {
            self.save()?;
        }
        let validity = validity_of(presented, now);
        Ok((validity.expires_soon() && self.warned.insert(fingerprint)).then_some(validity))
    }

    fn save(&mut self) -> Result<(), TlsError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = File {
            format: FORMAT,
            endpoints: self
                .entries
                .iter()
                .map(|(k, v)| (k.clone(), FileEntry::from_entry(v)))
                .collect(),
        };
        let mut bytes =
            serde_json::to_vec_pretty(&file).map_err(|e| TlsError::TrustStoreDamaged {
                path: path.clone(),
                reason: format!("could not be serialised: {e}"),
            })?;
        bytes.push(b'\n');
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::state_file::create_state_dir(dir).map_err(|source| TlsError::WriteFile {
                what: "state directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        write_atomically(path, &bytes, false).map_err(|source| TlsError::WriteFile {
            what: "trust store",
            path: path.clone(),
            source,
        })?;
        self.seen = file_stamp(path);
        Ok(())
    }
}

/// A file's modification time and length, `None` when it is absent.
fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    format: u32,
    endpoints: BTreeMap<String, FileEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    researcher_id: Option<String>,
    fingerprint: Fingerprint,
    #[serde(with = "time::serde::rfc3339")]
    first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    last_seen: OffsetDateTime,
    accepted: Acceptance,
    certificate: String,
}

impl FileEntry {
    fn from_entry(e: &TrustedResearcher) -> FileEntry {
        FileEntry {
            researcher_id: e.researcher_id.clone(),
            fingerprint: e.fingerprint,
            first_seen: OffsetDateTime::from(e.first_seen),
            last_seen: OffsetDateTime::from(e.last_seen),
            accepted: e.accepted,
            certificate: certificate_to_pem(&e.certificate),
        }
    }

    fn into_entry(self) -> Result<TrustedResearcher, String> {
        let mut certs = certificates_from_pem(self.certificate.as_bytes(), "its certificate")
            .map_err(|e| crate::ErrorChain(&e).to_string())?;
        let certificate = certs.swap_remove(0);
        if Fingerprint::of(&certificate) != self.fingerprint {
            return Err("the fingerprint does not match the certificate".into());
        }
        Ok(TrustedResearcher {
            researcher_id: self.researcher_id,
            fingerprint: self.fingerprint,
            certificate,
            first_seen: self.first_seen.into(),
            last_seen: self.last_seen.into(),
            accepted: self.accepted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{generate_researcher_identity, ServerIdentity};

    const EP: &str = "127.0.0.1:50051";

    fn researcher() -> ServerIdentity {
        generate_researcher_identity(None, "127.0.0.1").unwrap()
    }

    fn trust(store: &mut TrustStore, id: &ServerIdentity, rule: ChangeRule) -> Decision {
        let now = SystemTime::now();
        let d = store.decide(EP, &id.cert_der, Some(&id.researcher_id), rule, now);
        store
            .record(EP, &id.cert_der, Some(&id.researcher_id), &d, now)
            .unwrap();
        d
    }

    #[test]
    fn first_contact_is_recorded_then_known() {
        let mut store = TrustStore::in_memory();
        let r = researcher();
        assert!(matches!(
            trust(&mut store, &r, ChangeRule::RotationProof),
            Decision::Accept(Acceptance::FirstUse)
        ));
        assert!(matches!(
            trust(&mut store, &r, ChangeRule::RotationProof),
            Decision::Known
        ));
        let entry = store.get(EP).unwrap();
        assert_eq!(entry.fingerprint, Fingerprint::of(&r.cert_der));
        assert_eq!(
            entry.researcher_id.as_deref(),
            Some(r.researcher_id.as_str())
        );
    }

    #[test]
    fn another_certificate_with_the_same_id_is_refused_unless_the_rule_allows_it() {
        let mut store = TrustStore::in_memory();
        let r = researcher();
        trust(&mut store, &r, ChangeRule::RotationProof);
        let impostor = generate_researcher_identity(Some(&r.researcher_id), "127.0.0.1").unwrap();
        let now = SystemTime::now();
        match store.decide(
            EP,
            &impostor.cert_der,
            Some(&r.researcher_id),
            ChangeRule::RotationProof,
            now,
        ) {
            Decision::Changed {
                recorded,
                presented,
                why,
            } => {
                assert_eq!(recorded, Fingerprint::of(&r.cert_der));
                assert_eq!(presented, Fingerprint::of(&impostor.cert_der));
                assert_eq!(why, RotationError::Absent);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            trust(&mut store, &impostor, ChangeRule::SameResearcherId),
            Decision::Accept(Acceptance::SameResearcherId)
        ));
        assert_eq!(
            store.get(EP).unwrap().fingerprint,
            Fingerprint::of(&impostor.cert_der)
        );
    }

    #[test]
    fn a_rotated_certificate_is_accepted_by_its_proof_and_replaces_the_record() {
        let mut store = TrustStore::in_memory();
        let r = researcher();
        trust(&mut store, &r, ChangeRule::RotationProof);
        let first_seen = store.get(EP).unwrap().first_seen;
        let rotated = super::super::rotation::rotate(&r, &["127.0.0.1"]).unwrap();
        assert!(matches!(
            trust(&mut store, &rotated, ChangeRule::RotationProof),
            Decision::Accept(Acceptance::RotationProof)
        ));
        let entry = store.get(EP).unwrap();
        assert_eq!(entry.fingerprint, Fingerprint::of(&rotated.cert_der));
        assert_eq!(entry.first_seen, first_seen);
        // The old certificate is now the changed one.
        assert!(matches!(
            store.decide(
                EP,
                &r.cert_der,
                Some(&r.researcher_id),
                ChangeRule::RotationProof,
                SystemTime::now()
            ),
            Decision::Changed { .. }
        ));
    }

    #[test]
    fn another_researcher_id_is_refused_whatever_the_rule() {
        let mut store = TrustStore::in_memory();
        trust(&mut store, &researcher(), ChangeRule::RotationProof);
        let other = researcher();
        for rule in [ChangeRule::RotationProof, ChangeRule::SameResearcherId] {
            assert!(matches!(
                store.decide(
                    EP,
                    &other.cert_der,
                    Some(&other.researcher_id),
                    rule,
                    SystemTime::now()
                ),
                Decision::OtherResearcher { .. }
            ));
        }
    }

    #[test]
    fn the_file_is_read_back_and_damage_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(TrustStore::FILE_NAME);
        let r = researcher();
        {
            let mut store = TrustStore::open(&path).unwrap();
            assert_eq!(store.entries().count(), 0);
            trust(&mut store, &r, ChangeRule::RotationProof);
        }
        let store = TrustStore::open(&path).unwrap();
        let entry = store.get(EP).unwrap();
        assert_eq!(entry.certificate, r.cert_der);
        assert_eq!(entry.accepted, Acceptance::FirstUse);

        let text = std::fs::read_to_string(&path).unwrap();
        for damaged in [
            text[..text.len() / 2].to_string(),
            text.replace("\"format\": 1", "\"format\": 2"),
            text.replace(&Fingerprint::of(&r.cert_der).to_string()[..5], "00:00"),
            "[]".to_string(),
        ] {
            std::fs::write(&path, damaged).unwrap();
            let e = TrustStore::open(&path).unwrap_err();
            let shown = crate::ErrorChain(&e).to_string();
            assert!(shown.contains(&path.display().to_string()), "{shown}");
        }
    }

    #[test]
    fn an_expired_certificate_is_refused_even_on_first_contact() {
        let store = TrustStore::in_memory();
        let r = researcher();
        let after_expiry = SystemTime::now() + Duration::from_secs(6 * 365 * 24 * 3600);
        match store.decide(
            EP,
            &r.cert_der,
            Some(&r.researcher_id),
            ChangeRule::RotationProof,
            after_expiry,
        ) {
            Decision::Invalid(v) => assert!(v.to_string().starts_with("expired on"), "{v}"),
            other => panic!("{other:?}"),
        }
        let almost = SystemTime::now() + Duration::from_secs((5 * 365 - 10) * 24 * 3600);
        let mut store = TrustStore::in_memory();
        let d = store.decide(
            EP,
            &r.cert_der,
            Some(&r.researcher_id),
            ChangeRule::RotationProof,
            almost,
        );
        assert!(matches!(d, Decision::Accept(Acceptance::FirstUse)));
        let warn = store
            .record(EP, &r.cert_der, Some(&r.researcher_id), &d, almost)
            .unwrap();
        assert!(warn.is_some_and(|v| v.expires_soon()));
        // Warned once per process, not at every connection.
        let again = store
            .record(EP, &r.cert_der, None, &Decision::Known, almost)
            .unwrap();
        assert!(again.is_none());
    }

    #[test]
    fn a_change_by_another_process_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TrustStore::FILE_NAME);
        let mut running = TrustStore::open(&path).unwrap();
        trust(&mut running, &researcher(), ChangeRule::RotationProof);
        // The operator forgets the endpoint while the node runs.
        assert!(TrustStore::open(&path).unwrap().forget(EP).unwrap());
        running.refresh().unwrap();
        assert!(running.get(EP).is_none());
        // Not resurrected by the running store's next write.
        let other = researcher();
        trust(&mut running, &other, ChangeRule::RotationProof);
        let on_disk = TrustStore::open(&path).unwrap();
        assert_eq!(
            on_disk.get(EP).unwrap().fingerprint,
            Fingerprint::of(&other.cert_der)
        );
    }

    #[test]
    fn forgetting_an_endpoint_trusts_it_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TrustStore::FILE_NAME);
        let mut store = TrustStore::open(&path).unwrap();
        trust(&mut store, &researcher(), ChangeRule::RotationProof);
        assert!(store.forget(EP).unwrap());
        assert!(!store.forget(EP).unwrap());
        assert!(TrustStore::open(&path).unwrap().get(EP).is_none());
    }

    #[test]
    fn last_seen_is_written_only_when_stale() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TrustStore::FILE_NAME);
        let mut store = TrustStore::open(&path).unwrap();
        let r = researcher();
        let t0 = SystemTime::now();
        let d = store.decide(
            EP,
            &r.cert_der,
            Some(&r.researcher_id),
            ChangeRule::RotationProof,
            t0,
        );
        store
            .record(EP, &r.cert_der, Some(&r.researcher_id), &d, t0)
            .unwrap();
        let soon = t0 + Duration::from_secs(1);
        store
            .record(EP, &r.cert_der, None, &Decision::Known, soon)
            .unwrap();
        let on_disk = TrustStore::open(&path).unwrap().get(EP).unwrap().last_seen;
        assert_eq!(on_disk.duration_since(t0).unwrap().as_secs(), 0);
        let later = t0 + LAST_SEEN_WRITE_INTERVAL + Duration::from_secs(1);
        store
            .record(EP, &r.cert_der, None, &Decision::Known, later)
            .unwrap();
        let on_disk = TrustStore::open(&path).unwrap().get(EP).unwrap().last_seen;
        assert!(on_disk >= later - Duration::from_secs(1));
    }
}
