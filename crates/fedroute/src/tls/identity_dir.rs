//! A researcher identity kept in a state directory, so that nodes that
//! trusted it on first use still trust it after a restart (Fed-BioMed keeps
//! its researcher certificate the same way), and rotated with a proof.

use std::path::PathBuf;

use super::identity::generate_researcher_identity_for_hosts;
use super::pem::{certificate_to_pem, read_file};
use super::rotation::rotate;
use super::validity::check_own_certificate;
use super::{ServerIdentity, TlsError};
use crate::state_file::{create_state_dir, write_atomically};

/// A researcher's key and certificate in a state directory: one file,
/// `researcher-identity.pem` (certificate then key, owner-only), replaced
/// atomically, so a crash never leaves a key without its certificate.
///
/// ```
/// use fedroute::tls::IdentityDir;
///
/// let dir = tempfile::tempdir()?;
/// let ids = IdentityDir::new(dir.path());
/// let first = ids.load_or_generate(None, &["127.0.0.1"])?;
/// // A restart reads the same identity back.
/// assert_eq!(ids.load_or_generate(None, &["127.0.0.1"])?.cert_der, first.cert_der);
/// // A rotation keeps the researcher id; nodes accept the new key by its proof.
/// let rotated = ids.rotate(&["127.0.0.1"])?;
/// assert_eq!(rotated.researcher_id, first.researcher_id);
/// assert_ne!(rotated.cert_der, first.cert_der);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct IdentityDir {
    dir: PathBuf,
}

impl IdentityDir {
    const IDENTITY: &'static str = "researcher-identity.pem";
    const PREVIOUS: &'static str = "researcher-previous-certificate.pem";

    /// The identity kept in `dir` (nothing is read or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> IdentityDir {
        IdentityDir { dir: dir.into() }
    }

    /// The file holding the certificate and key.
    pub fn identity_path(&self) -> PathBuf {
        self.dir.join(Self::IDENTITY)
    }

    /// Reads the identity, or generates and saves one on first start (for
    /// `researcher_id`, a fresh one when `None`, with a certificate for
    /// `hosts`). A stored identity for another id than a given
    /// `researcher_id` is an error, as is a damaged or expired one.
    pub fn load_or_generate(
        &self,
        researcher_id: Option<&str>,
        hosts: &[&str],
    ) -> Result<ServerIdentity, TlsError> {
        let path = self.identity_path();
        if !path.exists() {
            let id = generate_researcher_identity_for_hosts(researcher_id, hosts)?;
            self.save(&id)?;
            log::info!(
                "researcher identity {} generated and saved in {}",
                id.researcher_id,
                path.display()
            );
            return Ok(id);
        }
        let id = self.load()?;
        if let Some(wanted) = researcher_id {
            if wanted != id.researcher_id {
                return Err(TlsError::IdentityMismatch {
                    path,
                    stored: id.researcher_id,
                    wanted: wanted.to_string(),
                });
            }
        }
        Ok(id)
    }

    /// Replaces the stored identity with a new key and a certificate for
    /// `hosts` that carries a rotation proof by the current key (see the
    /// `tls` module docs); the old certificate is kept next to it as
    /// `researcher-previous-certificate.pem`.
    pub fn rotate(&self, hosts: &[&str]) -> Result<ServerIdentity, TlsError> {
        let current = self.load()?;
        let next = rotate(&current, hosts)?;
        let previous = self.dir.join(Self::PREVIOUS);
        write_atomically(
            &previous,
            certificate_to_pem(&current.cert_der).as_bytes(),
            false,
        )
        .map_err(|source| TlsError::WriteFile {
            what: "previous certificate",
            path: previous,
            source,
        })?;
        self.save(&next)?;
        log::info!(
            "researcher identity {} rotated in {}: nodes that trusted the old certificate accept the new one by its proof",
            next.researcher_id,
            self.identity_path().display()
        );
        Ok(next)
    }

    fn load(&self) -> Result<ServerIdentity, TlsError> {
        let path = self.identity_path();
        let bytes = read_file(&path, "researcher identity")?;
        let text = String::from_utf8(bytes).map_err(|_| TlsError::BadPem {
            what: "researcher identity",
            origin: path.display().to_string(),
            reason: "the file is not UTF-8 text".into(),
        })?;
        let id = ServerIdentity::from_pem(&text, &text).map_err(|e| TlsError::IdentityDamaged {
            path: path.clone(),
            source: Box::new(e),
        })?;
        check_own_certificate(&id.cert_der, &path)?;
        Ok(id)
    }

    fn save(&self, id: &ServerIdentity) -> Result<(), TlsError> {
        create_state_dir(&self.dir).map_err(|source| TlsError::WriteFile {
            what: "state directory",
            path: self.dir.clone(),
            source,
        })?;
        let path = self.identity_path();
        let mut text = id.cert_pem.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&id.key_pem);
        write_atomically(&path, text.as_bytes(), true).map_err(|source| TlsError::WriteFile {
            what: "researcher identity",
            path,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_identity_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let ids = IdentityDir::new(dir.path());
        ids.load_or_generate(None, &["127.0.0.1"]).unwrap();
        let text = std::fs::read_to_string(ids.identity_path()).unwrap();
        let cut = text.find("-----BEGIN PRIVATE KEY").unwrap();
        std::fs::write(ids.identity_path(), &text[..cut]).unwrap();
        let e = ids.load_or_generate(None, &["127.0.0.1"]).unwrap_err();
        let shown = crate::ErrorChain(&e).to_string();
        assert!(
            shown.contains(&ids.identity_path().display().to_string()),
            "{shown}"
        );
    }

    #[test]
    fn a_stored_identity_for_another_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ids = IdentityDir::new(dir.path());
        ids.load_or_generate(Some("RESEARCHER_a"), &["127.0.0.1"])
            .unwrap();
        assert!(matches!(
            ids.load_or_generate(Some("RESEARCHER_b"), &["127.0.0.1"]),
            Err(TlsError::IdentityMismatch { .. })
        ));
    }

    #[test]
    fn a_rotation_keeps_the_previous_certificate_and_a_valid_proof() {
        let dir = tempfile::tempdir().unwrap();
        let ids = IdentityDir::new(dir.path());
        let first = ids.load_or_generate(None, &["127.0.0.1"]).unwrap();
        let second = ids.rotate(&["127.0.0.1"]).unwrap();
        super::super::rotation::verify_rotation(
            &first.cert_der,
            &second.cert_der,
            &first.researcher_id,
        )
        .unwrap();
        let kept = std::fs::read_to_string(dir.path().join(IdentityDir::PREVIOUS)).unwrap();
        assert_eq!(kept, certificate_to_pem(&first.cert_der));
        assert_eq!(
            ids.load_or_generate(None, &["127.0.0.1"]).unwrap().cert_der,
            second.cert_der
        );
    }
}
