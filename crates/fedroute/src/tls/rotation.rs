//! Certificate rotation proofs: how a researcher that changes its key tells
//! the nodes that trusted the old one that the new certificate is its own.
//!
//! A rotated researcher certificate carries one non-critical X.509
//! extension, [`ROTATION_PROOF_OID`], whose value is the DER of
//!
//! ```text
//! RotationProof ::= SEQUENCE {
//!     version      INTEGER (1),
//!     previous     OCTET STRING (SIZE (32)), -- SHA-256 of the previous certificate's DER
//!     scheme       INTEGER (0..65535),       -- TLS SignatureScheme of the signature
//!     signature    OCTET STRING              -- by the previous certificate's key
//! }
//! ```
//!
//! The signature covers `"fedroute rotation proof v1\0"`, the researcher id
//! as a 2-byte big-endian length and its UTF-8 bytes, then the new
//! certificate's SubjectPublicKeyInfo DER. Binding the id and the new public
//! key means a proof cannot be moved to another certificate, another key or
//! another researcher. Fed-BioMed (and any other TLS stack) ignores the
//! extension: it is not critical.
//!
//! The proof links one certificate to the one before it. A node that was
//! away for two rotations knows neither intermediate key and refuses the
//! newest certificate as changed; the operator then accepts it with
//! `fedroute trust forget`.

use rcgen::{CertificateParams, CustomExtension, KeyPair, PublicKeyData};
use rustls::SignatureScheme;
use rustls_pki_types::CertificateDer;

use super::fingerprint::Fingerprint;
use super::identity::{researcher_params, ServerIdentity};
use super::{crypto_provider, TlsError};

/// The OID of the rotation-proof extension. A GUID-based OID
/// (1.2.840.113556.1.8000.2554 is the arc for OIDs made from a GUID without
/// registration), then `.1` for "rotation proof, version 1".
pub(crate) const ROTATION_PROOF_OID: &[u64] = &[
    1, 2, 840, 113556, 1, 8000, 2554, 8673, 23043, 21551, 18031, 42806, 15484626, 16672492, 1,
];

/// The version of the proof structure this code writes and reads.
const PROOF_VERSION: u8 = 1;

/// The domain-separation prefix of the signed message.
const SIGNED_PREFIX: &[u8] = b"fedroute rotation proof v1\0";

/// The largest proof accepted: a 32-byte fingerprint and a signature of an
/// RSA-8192 key fit with room to spare. Longer is malformed.
const MAX_PROOF_BYTES: usize = 2048;

/// Why a rotation proof was not accepted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationError {
    /// The certificate has no proof.
    #[error("the new certificate carries no rotation proof")]
    Absent,
    /// The extension does not parse.
    #[error("the rotation proof is malformed: {0}")]
    Malformed(String),
    /// The proof was made by another key than the recorded one.
    #[error("the rotation proof was signed by the key of certificate {signed_by}, not by the recorded one")]
    OtherKey {
        /// The fingerprint the proof names.
        signed_by: Fingerprint,
    },
    /// The signature does not verify with the recorded certificate's key
    /// over this certificate's key and researcher id.
    #[error("the rotation proof's signature does not verify with the recorded key (wrong key, other researcher id or other certificate key)")]
    BadSignature,
}

/// The fingerprint of the certificate whose key signed `cert`'s rotation
/// proof, if it has one (not checked).
pub(crate) fn parse_proof_signer(cert: &[u8]) -> Result<Option<Fingerprint>, RotationError> {
    Ok(parse(cert)?.map(|p| p.previous))
}

/// Checks that `new` carries a valid proof by the key of `previous` for
/// `researcher_id` (which the caller has checked is `new`'s subject O=).
pub(crate) fn verify_rotation(
    previous: &CertificateDer<'_>,
    new: &CertificateDer<'_>,
    researcher_id: &str,
) -> Result<(), RotationError> {
    let proof = parse(new)?.ok_or(RotationError::Absent)?;
    if proof.previous != Fingerprint::of(previous) {
        return Err(RotationError::OtherKey {
            signed_by: proof.previous,
        });
    }
    let spki = subject_public_key_info(new).map_err(RotationError::Malformed)?;
    let message = signed_message(researcher_id, &spki).map_err(RotationError::Malformed)?;
    let scheme = SignatureScheme::from(proof.scheme);
    let algorithms = crypto_provider()
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .map(|(_, algs)| *algs)
        .ok_or_else(|| {
            RotationError::Malformed(format!("unsupported signature scheme {scheme:?}"))
        })?;
    let signer = webpki::EndEntityCert::try_from(previous)
        .map_err(|e| RotationError::Malformed(format!("the recorded certificate: {e}")))?;
    if algorithms.iter().any(|alg| {
        signer
            .verify_signature(*alg, &message, &proof.signature)
            .is_ok()
    }) {
        Ok(())
    } else {
        Err(RotationError::BadSignature)
    }
}

/// A new identity for the same researcher: a fresh key, a certificate for
/// `hosts` with the same researcher id, carrying a proof signed by
/// `previous`'s key.
pub(crate) fn rotate(
    previous: &ServerIdentity,
    hosts: &[&str],
) -> Result<ServerIdentity, TlsError> {
    let key = KeyPair::generate().map_err(|source| TlsError::Generate {
        what: "researcher key pair",
        source,
    })?;
    let proof = sign_proof(
        previous,
        &previous.researcher_id,
        &key.subject_public_key_info(),
    )?;
    let mut params: CertificateParams = researcher_params(&previous.researcher_id, hosts)?;
    let mut extension = CustomExtension::from_oid_content(ROTATION_PROOF_OID, proof);
    extension.set_criticality(false);
    params.custom_extensions.push(extension);
    let cert = params
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: "rotated researcher certificate",
            source,
        })?;
    Ok(ServerIdentity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        researcher_id: previous.researcher_id.clone(),
    })
}

/// The DER of a proof by `signer`'s key for `researcher_id` and `spki`.
pub(crate) fn sign_proof(
    signer: &ServerIdentity,
    researcher_id: &str,
    spki: &[u8],
) -> Result<Vec<u8>, TlsError> {
    let cannot = |reason: String| TlsError::Rotation { reason };
    let key = signer.private_key()?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| cannot(format!("the current key cannot sign: {e}")))?;
    let schemes: Vec<SignatureScheme> = crypto_provider()
        .signature_verification_algorithms
        .supported_schemes();
    let signer_for = signing
        .choose_scheme(&schemes)
        .ok_or_else(|| cannot("the current key supports no usable signature scheme".into()))?;
    let message = signed_message(researcher_id, spki).map_err(cannot)?;
    let signature = signer_for
        .sign(&message)
        .map_err(|e| cannot(format!("signing failed: {e}")))?;
    let scheme = u16::from(signer_for.scheme());
    let previous = Fingerprint::of(&signer.cert_der);
    Ok(yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_u8(PROOF_VERSION);
            w.next().write_bytes(previous.as_bytes());
            w.next().write_u16(scheme);
            w.next().write_bytes(&signature);
        })
    }))
}

fn signed_message(researcher_id: &str, spki: &[u8]) -> Result<Vec<u8>, String> {
    let id = researcher_id.as_bytes();
    let len = u16::try_from(id.len()).map_err(|_| "the researcher id is too long".to_string())?;
    let mut m = Vec::with_capacity(SIGNED_PREFIX.len() + 2 + id.len() + spki.len());
    m.extend_from_slice(SIGNED_PREFIX);
    m.extend_from_slice(&len.to_be_bytes());
    m.extend_from_slice(id);
    m.extend_from_slice(spki);
    Ok(m)
}

struct Parsed {
    previous: Fingerprint,
    scheme: u16,
    signature: Vec<u8>,
}

/// The proof extension of `cert`, parsed; `None` without one.
fn parse(cert: &[u8]) -> Result<Option<Parsed>, RotationError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert)
        .map_err(|e| RotationError::Malformed(format!("the certificate: {e}")))?;
    let mut found = None;
    for ext in parsed.extensions() {
        let is_proof = ext
            .oid
            .iter()
            .is_some_and(|arcs| arcs.eq(ROTATION_PROOF_OID.iter().copied()));
        if is_proof {
            if found.is_some() {
                return Err(RotationError::Malformed("two rotation proofs".into()));
            }
            found = Some(ext.value);
        }
    }
    let Some(value) = found else {
        return Ok(None);
    };
    if value.len() > MAX_PROOF_BYTES {
        return Err(RotationError::Malformed(format!(
            "{} bytes, above the maximum of {MAX_PROOF_BYTES}",
            value.len()
        )));
    }
    let (version, previous, scheme, signature) = yasna::parse_der(value, |r| {
        r.read_sequence(|r| {
            let version = r.next().read_u8()?;
            let previous = r.next().read_bytes()?;
            let scheme = r.next().read_u16()?;
            let signature = r.next().read_bytes()?;
            Ok((version, previous, scheme, signature))
        })
    })
    .map_err(|e| RotationError::Malformed(format!("not the expected DER structure ({e})")))?;
    if version != PROOF_VERSION {
        return Err(RotationError::Malformed(format!(
            "version {version}, this fedroute reads version {PROOF_VERSION}"
        )));
    }
    let previous = Fingerprint::from_slice(&previous).ok_or_else(|| {
        RotationError::Malformed(format!(
            "a previous-certificate fingerprint of {} bytes, not 32",
            previous.len()
        ))
    })?;
    Ok(Some(Parsed {
        previous,
        scheme,
        signature,
    }))
}

/// The SubjectPublicKeyInfo DER of a certificate.
fn subject_public_key_info(cert: &[u8]) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) =
        X509Certificate::from_der(cert).map_err(|e| format!("the new certificate: {e}"))?;
    Ok(parsed.tbs_certificate.subject_pki.raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::generate_researcher_identity;

    fn pair() -> (ServerIdentity, ServerIdentity) {
        let old = generate_researcher_identity(None, "127.0.0.1").unwrap();
        let new = rotate(&old, &["127.0.0.1"]).unwrap();
        (old, new)
    }

    #[test]
    fn a_rotated_certificate_verifies_against_the_previous_one() {
        let (old, new) = pair();
        assert_eq!(new.researcher_id, old.researcher_id);
        assert_ne!(new.cert_der, old.cert_der);
        assert_eq!(
            parse_proof_signer(&new.cert_der).unwrap(),
            Some(Fingerprint::of(&old.cert_der))
        );
        verify_rotation(&old.cert_der, &new.cert_der, &old.researcher_id).unwrap();
        assert_eq!(parse_proof_signer(&old.cert_der).unwrap(), None);
    }

    #[test]
    fn a_proof_by_another_key_is_refused() {
        let (old, _) = pair();
        let stranger = generate_researcher_identity(Some(&old.researcher_id), "127.0.0.1").unwrap();
        let forged = rotate(&stranger, &["127.0.0.1"]).unwrap();
        assert!(matches!(
            verify_rotation(&old.cert_der, &forged.cert_der, &old.researcher_id),
            Err(RotationError::OtherKey { .. })
        ));
    }

    #[test]
    fn a_proof_for_another_id_or_key_does_not_verify() {
        let (old, new) = pair();
        assert_eq!(
            verify_rotation(&old.cert_der, &new.cert_der, "RESEARCHER_other"),
            Err(RotationError::BadSignature)
        );
        // The old key's proof over another key, put into a certificate for a
        // third key: the fingerprint matches but the signature covers
        // another public key.
        let other = KeyPair::generate().unwrap();
        let proof = sign_proof(&old, &old.researcher_id, &other.subject_public_key_info()).unwrap();
        let third = KeyPair::generate().unwrap();
        let mut params = researcher_params(&old.researcher_id, &["127.0.0.1"]).unwrap();
        params
            .custom_extensions
            .push(CustomExtension::from_oid_content(ROTATION_PROOF_OID, proof));
        let moved = params.self_signed(&third).unwrap();
        assert_eq!(
            verify_rotation(&old.cert_der, moved.der(), &old.researcher_id),
            Err(RotationError::BadSignature)
        );
    }

    #[test]
    fn truncated_and_oversized_proofs_are_malformed() {
        let (old, _) = pair();
        let key = KeyPair::generate().unwrap();
        let mut proof =
            sign_proof(&old, &old.researcher_id, &key.subject_public_key_info()).unwrap();
        for bad in [
            {
                proof.truncate(proof.len() - 5);
                proof.clone()
            },
            vec![0x30; MAX_PROOF_BYTES + 1],
            Vec::new(),
        ] {
            let mut params = researcher_params(&old.researcher_id, &["127.0.0.1"]).unwrap();
            params
                .custom_extensions
                .push(CustomExtension::from_oid_content(ROTATION_PROOF_OID, bad));
            let cert = params.self_signed(&key).unwrap();
            assert!(
                matches!(
                    verify_rotation(&old.cert_der, cert.der(), &old.researcher_id),
                    Err(RotationError::Malformed(_))
                ),
                "{:?}",
                verify_rotation(&old.cert_der, cert.der(), &old.researcher_id)
            );
        }
    }

    #[test]
    fn a_fed_biomed_rsa_key_can_sign_a_rotation() {
        // Fed-BioMed researchers hold RSA-2048 keys (PKCS#1 PEM).
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/");
        let old = crate::tls::load_researcher_identity(
            format!("{dir}fedbiomed_researcher_cert.pem").as_ref(),
            format!("{dir}fedbiomed_researcher_key.pem").as_ref(),
        )
        .unwrap();
        let new = rotate(&old, &["127.0.0.1"]).unwrap();
        verify_rotation(&old.cert_der, &new.cert_der, &old.researcher_id).unwrap();
    }
}
