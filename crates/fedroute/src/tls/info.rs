//! What a certificate says, for operators (`fedroute cert show`) and logs:
//! ids, fingerprint, validity and rotation proof in one read.

use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::fingerprint::Fingerprint;
use super::rotation::{parse_proof_signer, verify_rotation, RotationError};
use super::validity::{not_after_of, validity_of};
use super::TlsError;

/// The fields of a certificate fedroute cares about.
///
/// ```
/// use fedroute::tls::{self, CertificateInfo};
///
/// let id = tls::generate_researcher_identity(None, "127.0.0.1")?;
/// let info = CertificateInfo::read(&id.cert_der)?;
/// assert_eq!(info.organization.as_deref(), Some(id.researcher_id.as_str()));
/// assert!(info.rotation_proof_by.is_none());
/// # Ok::<(), tls::TlsError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The subject's Organization (O=): the researcher or node id.
    pub organization: Option<String>,
    /// The subject's Common Name (CN=).
    pub common_name: Option<String>,
    /// The SHA-256 fingerprint of the DER.
    pub fingerprint: Fingerprint,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
    /// When the certificate carries a rotation proof: the fingerprint of the
    /// certificate whose key signed it (check it with
    /// [`CertificateInfo::verify_rotation_from`]); a proof that does not
    /// parse is the error.
    pub rotation_proof_by: Option<Result<Fingerprint, RotationError>>,
    /// How its validity stands now, in words ("valid", "expired on ...",
    /// "expires on ... (in less than 30 days)").
    pub validity: String,
    der: CertificateDer<'static>,
}

impl CertificateInfo {
    /// Reads a DER certificate.
    pub fn read(der: &CertificateDer<'_>) -> Result<CertificateInfo, TlsError> {
        let (organization, common_name) = subject_attributes(der)?;
        let (not_before, not_after) =
            not_after_of(der).ok_or_else(|| TlsError::BadCertificate {
                reason: "no readable validity period".into(),
            })?;
        Ok(CertificateInfo {
            organization,
            common_name,
            fingerprint: Fingerprint::of(der),
            not_before,
            not_after,
            rotation_proof_by: parse_proof_signer(der).transpose(),
            validity: validity_of(der, SystemTime::now()).to_string(),
            der: der.clone().into_owned(),
        })
    }

    /// Checks this certificate's rotation proof against the certificate it
    /// replaces (same researcher id, signed by `previous`'s key).
    pub fn verify_rotation_from(&self, previous: &CertificateDer<'_>) -> Result<(), RotationError> {
        let id = self.organization.as_deref().unwrap_or_default();
        verify_rotation(previous, &self.der, id)
    }
}

/// The first non-empty O= and CN= of a certificate's subject.
fn subject_attributes(der: &[u8]) -> Result<(Option<String>, Option<String>), TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| TlsError::BadCertificate {
        reason: e.to_string(),
    })?;
    let first = |mut values: Box<dyn Iterator<Item = Option<&str>> + '_>| {
        values.find_map(|v| v.filter(|v| !v.is_empty()).map(str::to_string))
    };
    let subject = cert.subject();
    Ok((
        first(Box::new(
            subject.iter_organization().map(|a| a.as_str().ok()),
        )),
        first(Box::new(
            subject.iter_common_name().map(|a| a.as_str().ok()),
        )),
    ))
}
