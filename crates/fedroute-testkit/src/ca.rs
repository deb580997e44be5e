//! A small certificate authority for the tests of mutual TLS and CA-bundle
//! set-ups: it signs node certificates (subject CN = node id only, so the
//! researcher reads the id from CN=, its fallback without O=) and researcher
//! server certificates. Fixtures only: the library itself never issues
//! certificates signed by a CA (operators bring theirs).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use fedroute::tls::{ClientIdentity, ServerIdentity, TlsError};
use rcgen::SanType;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::CertificateDer;

/// What can go wrong making fixtures (a bad name, rcgen, a file write).
pub type CaError = Box<dyn std::error::Error + Send + Sync>;

/// A self-signed CA (ECDSA P-256) that issues node and researcher
/// certificates. Give its certificate file to a researcher as `client_ca`
/// (mutual TLS) or to nodes as a [`TrustPolicy::CaBundle`](fedroute::tls::TrustPolicy).
pub struct CertificateAuthority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("cert_der_len", &self.issuer.der().len())
            .field("key", &"<hidden>")
            .finish()
    }
}

/// A node certificate signed by a [`CertificateAuthority`], with its key.
#[derive(Clone)]
pub struct NodeIdentity {
    /// The node id (subject CN=).
    pub node_id: String,
    /// The certificate as PEM.
    pub cert_pem: String,
    /// The private key as PEM. Never logged: `Debug` hides it.
    pub key_pem: String,
    /// The certificate as DER.
    pub cert_der: CertificateDer<'static>,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("node_id", &self.node_id)
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

impl NodeIdentity {
    /// The identity a client configuration presents.
    pub fn client_identity(&self) -> Result<ClientIdentity, TlsError> {
        ClientIdentity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// Writes the certificate and key as PEM files (key mode 0600 on Unix).
    pub fn write_pem(&self, cert_path: &Path, key_path: &Path) -> Result<(), CaError> {
        std::fs::write(cert_path, &self.cert_pem)?;
        write_private_key(key_path, &self.key_pem)
    }
}

impl CertificateAuthority {
    /// A fresh CA whose subject is CN = `name`.
    pub fn generate(name: &str) -> Result<CertificateAuthority, CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "fedroute");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().map_err(|e| format!("CA key pair: {e}"))?;
        let issuer = CertifiedIssuer::self_signed(params, key)
            .map_err(|e| format!("CA certificate: {e}"))?;
        Ok(CertificateAuthority { issuer })
    }

    /// The CA certificate as PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate as DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// Writes the CA certificate (not its key) as a PEM file.
    pub fn write_cert_pem(&self, path: &Path) -> Result<(), CaError> {
        Ok(std::fs::write(path, self.cert_pem())?)
    }

    /// Issues a client certificate for a node: subject CN = `node_id`,
    /// extended key usage client authentication.
    pub fn issue_node_identity(&self, node_id: &str) -> Result<NodeIdentity, CaError> {
        if node_id.is_empty() {
            return Err("empty node id".into());
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| format!("node key pair: {e}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("node certificate: {e}"))?;
        Ok(NodeIdentity {
            node_id: node_id.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// Issues a client certificate whose subject names no node (neither O=
    /// nor CN=), for the refusal of certificates that identify nobody.
    pub fn issue_unnamed_identity(&self) -> Result<NodeIdentity, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| format!("node key pair: {e}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("node certificate: {e}"))?;
        Ok(NodeIdentity {
            node_id: String::new(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
        })
    }

    /// Issues a researcher server certificate signed by this CA (for the
    /// CA-bundle trust policy): O = `researcher_id`, CN and SAN = `host`.
    pub fn issue_researcher_identity(
        &self,
        researcher_id: &str,
        host: &str,
    ) -> Result<ServerIdentity, CaError> {
        if researcher_id.is_empty() {
            return Err("empty researcher id".into());
        }
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        dn.push(DnType::OrganizationName, researcher_id);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![host_san(host)?];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().map_err(|e| format!("researcher key pair: {e}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("researcher certificate: {e}"))?;
        Ok(ServerIdentity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            researcher_id: researcher_id.to_string(),
        })
    }
}

/// Issues a node certificate (subject CN = `node_id`) signed by `ca`; the
/// same as [`CertificateAuthority::issue_node_identity`].
pub fn generate_node_identity(
    node_id: &str,
    ca: &CertificateAuthority,
) -> Result<NodeIdentity, CaError> {
    ca.issue_node_identity(node_id)
}

/// The SAN for a host: an IP address SAN when it parses as one, else a DNS name.
fn host_san(host: &str) -> Result<SanType, CaError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    Ok(SanType::DnsName(host.try_into()?))
}

/// Writes a private key readable by its owner only (mode 0600 on Unix).
fn write_private_key(path: &Path, key_pem: &str) -> Result<(), CaError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(key_pem.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedroute::tls::{node_id_of_client_cert, researcher_id_of};

    #[test]
    fn node_certificate_carries_the_node_id() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let node = generate_node_identity("NODE_1", &ca).unwrap();
        assert_eq!(node_id_of_client_cert(&node.cert_der).unwrap(), "NODE_1");
        let client = node.client_identity().unwrap();
        assert_eq!(client.node_id().unwrap(), "NODE_1");
    }

    #[test]
    fn researcher_certificate_from_the_ca_carries_the_id() {
        let ca = CertificateAuthority::generate("test CA").unwrap();
        let id = ca
            .issue_researcher_identity("RESEARCHER_ca", "localhost")
            .unwrap();
        assert_eq!(researcher_id_of(&id.cert_der).unwrap(), "RESEARCHER_ca");
    }
}
