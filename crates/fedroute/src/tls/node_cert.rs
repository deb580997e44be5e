//! Self-signed node certificates for registration with a researcher's
//! directory of trusted nodes (`ListenSettings::trusted_nodes`).
//!
//! Like Fed-BioMed's node certificates: the node id in the subject's O=
//! (and in CN=, for readers of older habits), client authentication as the
//! only extended key usage, valid for five years from now. The key is
//! ECDSA P-256, as fedroute's researcher certificates.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

use super::identity::ClientIdentity;
use super::TlsError;
use crate::wire::{check_id, IdKind};

/// How long a generated node certificate is valid: five years, as
/// Fed-BioMed's.
pub(crate) const NODE_CERT_VALIDITY: time::Duration = time::Duration::days(5 * 365);

/// A node certificate and its key, from [`generate_node_identity`]: copy
/// [`NodeCertificate::cert_pem`] into the researcher's trusted-nodes
/// directory, and give both files to the node as its client identity.
#[derive(Clone)]
pub struct NodeCertificate {
    /// The node id (subject O= and CN=).
    pub node_id: String,
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The private key as PEM (PKCS#8). Never logged: `Debug` hides it.
    pub key_pem: String,
    /// The certificate as DER.
    pub cert_der: CertificateDer<'static>,
}

impl fmt::Debug for NodeCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCertificate")
            .field("node_id", &self.node_id)
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

impl NodeCertificate {
    /// The identity a node presents with this certificate.
    pub fn client_identity(&self) -> Result<ClientIdentity, TlsError> {
        ClientIdentity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// Writes `<node id>.pem` and `<node id>.key` (mode 0600 on Unix) into
    /// `dir`, refusing to overwrite either; returns their paths
    /// (certificate, key).
    pub fn write_new(&self, dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert_path = dir.join(format!("{}.pem", self.node_id));
        let key_path = dir.join(format!("{}.key", self.node_id));
        // Both checked before either is written, so that a refusal leaves
        // nothing behind.
        for path in [&cert_path, &key_path] {
            if path.exists() {
                return Err(TlsError::FileExists { path: path.clone() });
            }
        }
        write_new_file(&key_path, "private key", &self.key_pem, 0o600)?;
        write_new_file(&cert_path, "certificate", &self.cert_pem, 0o644)?;
        Ok((cert_path, key_path))
    }
}

/// Generates a self-signed node certificate (see the module documentation)
/// for `node_id`, which must be a valid node identifier (ASCII letters,
/// digits and `_ - . : @ +`, at most 256 bytes).
///
/// ```
/// let node = fedroute::tls::generate_node_identity("NODE_1")?;
/// assert_eq!(node.client_identity()?.node_id()?, "NODE_1");
/// assert!(node.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
/// # Ok::<(), fedroute::tls::TlsError>(())
/// ```
pub fn generate_node_identity(node_id: &str) -> Result<NodeCertificate, TlsError> {
    check_id(IdKind::Node, node_id).map_err(|source| TlsError::BadNodeId { source })?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, node_id);
    dn.push(DnType::CommonName, node_id);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + NODE_CERT_VALIDITY;
    let key = KeyPair::generate().map_err(|source| TlsError::Generate {
        what: "node key pair",
        source,
    })?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: "node certificate",
            source,
        })?;
    Ok(NodeCertificate {
        node_id: node_id.to_string(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
    })
}

/// Creates `path` (it must not exist) holding `text`, with `mode` on Unix.
fn write_new_file(path: &Path, what: &'static str, text: &str, mode: u32) -> Result<(), TlsError> {
    let err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            TlsError::FileExists {
                path: path.to_path_buf(),
            }
        } else {
            TlsError::WriteFile {
                what,
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    #[test]
    fn a_node_certificate_names_its_node_in_o_and_cn_for_client_auth_for_five_years() {
        let node = generate_node_identity("NODE_x").unwrap();
        let (_, cert) = X509Certificate::from_der(&node.cert_der).unwrap();
        let subject = cert.subject();
        let o: Vec<_> = subject
            .iter_organization()
            .map(|a| a.as_str().unwrap())
            .collect();
        let cn: Vec<_> = subject
            .iter_common_name()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!((o, cn), (vec!["NODE_x"], vec!["NODE_x"]));
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let validity = cert.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert!((5 * 365..=5 * 365 + 1).contains(&days), "{days} days");
        assert!(node.key_pem.contains("BEGIN PRIVATE KEY"));
        assert_eq!(node.client_identity().unwrap().node_id().unwrap(), "NODE_x");
    }

    #[test]
    fn bad_node_ids_are_refused() {
        for id in ["", "../etc", "NODE x"] {
            assert!(
                matches!(generate_node_identity(id), Err(TlsError::BadNodeId { .. })),
                "{id:?}"
            );
        }
    }

    #[test]
    fn write_new_refuses_to_overwrite_and_keeps_the_key_private() {
        let dir = tempfile::tempdir().unwrap();
        let node = generate_node_identity("NODE_w").unwrap();
        let (cert, key) = node.write_new(dir.path()).unwrap();
        assert_eq!(cert, dir.path().join("NODE_w.pem"));
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), node.cert_pem);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = generate_node_identity("NODE_w").unwrap();
        match again.write_new(dir.path()) {
            Err(TlsError::FileExists { path }) => assert_eq!(path, cert),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(&cert).unwrap(), node.cert_pem);
    }
}
