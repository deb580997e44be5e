//! Researcher and node identities: generating and loading certificates, and
//! reading the ids they carry.
//!
//! A Fed-BioMed researcher certificate is self-signed, with the researcher id
//! in the subject's Organization (`O=RESEARCHER_<uuid4>`) and the host in the
//! Common Name. Nodes learn the researcher id from it (trust on first use).
//! fedroute adds a Subject Alternative Name for the host (grpc-python checks
//! host names against it). Node certificates, used only for mutual TLS, carry
//! the node id in the Common Name.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::pem::{
    certificates_from_pem, load_certificates, load_private_key, private_key_from_pem, write_file,
};
use super::{crypto_provider, TlsError};

/// The prefix of generated researcher ids, as in Fed-BioMed.
pub const RESEARCHER_ID_PREFIX: &str = "RESEARCHER_";

/// A fresh researcher id: `RESEARCHER_<uuid4>`.
pub fn new_researcher_id() -> String {
    format!("{RESEARCHER_ID_PREFIX}{}", uuid::Uuid::new_v4())
}

/// The certificate and key a researcher server presents, with the researcher
/// id read from (or written into) the certificate subject's O=.
#[derive(Clone)]
pub struct ServerIdentity {
    /// The certificate (or chain, leaf first) as PEM.
    pub cert_pem: String,
    /// The private key as PEM. Never logged: `Debug` hides it.
    pub key_pem: String,
    /// The leaf certificate as DER (what nodes pin).
    pub cert_der: CertificateDer<'static>,
    /// The researcher id (subject O=).
    pub researcher_id: String,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("researcher_id", &self.researcher_id)
            .field("cert_der_len", &self.cert_der.len())
            .field("key_pem", &"<hidden>")
            .finish()
    }
}

impl ServerIdentity {
    /// Builds an identity from PEM texts, reading the researcher id from the
    /// leaf's subject O= and checking that the key parses.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ServerIdentity, TlsError> {
        let certs = certificates_from_pem(cert_pem.as_bytes(), "the certificate PEM text")?;
        let key = private_key_from_pem(key_pem.as_bytes(), "the private key PEM text")?;
        let cert_der = certs[0].clone();
        let researcher_id = researcher_id_of(&cert_der)?;
        check_server_key(certs, key)?;
        Ok(ServerIdentity {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            cert_der,
            researcher_id,
        })
    }

    /// The certificate chain as DER, leaf first.
    pub fn cert_chain(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        certificates_from_pem(self.cert_pem.as_bytes(), "the server certificate PEM")
    }

    /// The private key as DER.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        private_key_from_pem(self.key_pem.as_bytes(), "the server private key PEM")
    }

    /// Writes the certificate and key as PEM files (the key file is created
    /// with mode 0600 on Unix).
    pub fn write_pem(&self, cert_path: &Path, key_path: &Path) -> Result<(), TlsError> {
        write_file(cert_path, "certificate", &self.cert_pem)?;
        write_private_key(key_path, &self.key_pem)
    }
}

/// Generates a self-signed researcher certificate (ECDSA P-256): subject
/// O = `researcher_id` (a fresh `RESEARCHER_<uuid4>` when `None`), CN = `host`,
/// and a Subject Alternative Name for `host` (an IP SAN when it parses as an
/// IP address, a DNS SAN otherwise).
pub fn generate_researcher_identity(
    researcher_id: Option<&str>,
    host: &str,
) -> Result<ServerIdentity, TlsError> {
    generate_researcher_identity_for_hosts(researcher_id, &[host])
}

/// Like [`generate_researcher_identity`] for a server reached under several
/// names (for example `localhost`, `127.0.0.1` and the machine's DNS name
/// when it listens on all interfaces): CN = the first host, one SAN per host.
/// At least one host is required.
pub fn generate_researcher_identity_for_hosts(
    researcher_id: Option<&str>,
    hosts: &[&str],
) -> Result<ServerIdentity, TlsError> {
    let researcher_id = match researcher_id {
        Some("") => return Err(TlsError::EmptyId),
        Some(id) => id.to_string(),
        None => new_researcher_id(),
    };
    let params = researcher_params(&researcher_id, hosts)?;
    let key = KeyPair::generate().map_err(|source| TlsError::Generate {
        what: "researcher key pair",
        source,
    })?;
    let cert = params
        .self_signed(&key)
        .map_err(|source| TlsError::Generate {
            what: "researcher certificate",
            source,
        })?;
    Ok(ServerIdentity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert_der: cert.der().clone(),
        researcher_id,
    })
}

/// Certificate parameters of a researcher server certificate.
pub(crate) fn researcher_params(
    researcher_id: &str,
    hosts: &[&str],
) -> Result<CertificateParams, TlsError> {
    let Some(first) = hosts.first() else {
        return Err(TlsError::BadHostName {
            host: String::new(),
        });
    };
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, *first);
    dn.push(DnType::OrganizationName, researcher_id);
    params.distinguished_name = dn;
    params.subject_alt_names = hosts
        .iter()
        .map(|h| host_san(h))
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    // Five years, as Fed-BioMed's; a day back for clocks that lag.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(5 * 365);
    Ok(params)
}

/// The SAN for a host: an IP address SAN when it parses as one, else a DNS name.
fn host_san(host: &str) -> Result<SanType, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let name = host.try_into().map_err(|_| TlsError::BadHostName {
        host: host.to_string(),
    })?;
    Ok(SanType::DnsName(name))
}

/// Loads a researcher certificate and key from PEM files (for example those
/// Fed-BioMed generated: RSA-2048, self-signed), reading the researcher id
/// from the certificate subject's O=. The key must match the certificate.
pub fn load_researcher_identity(cert: &Path, key: &Path) -> Result<ServerIdentity, TlsError> {
    let cert_pem_bytes = super::pem::read_file(cert, "certificate")?;
    let key_pem_bytes = super::pem::read_file(key, "private key")?;
    let certs = certificates_from_pem(&cert_pem_bytes, &cert.display().to_string())?;
    let private_key = private_key_from_pem(&key_pem_bytes, &key.display().to_string())?;
    let cert_pem = String::from_utf8(cert_pem_bytes).map_err(|_| TlsError::BadPem {
        what: "certificate",
        origin: cert.display().to_string(),
        reason: "the file is not UTF-8 text".to_string(),
    })?;
    let key_pem = String::from_utf8(key_pem_bytes).map_err(|_| TlsError::BadPem {
        what: "private key",
        origin: key.display().to_string(),
        reason: "the file is not UTF-8 text".to_string(),
    })?;
    let cert_der = certs[0].clone();
    let researcher_id = researcher_id_of(&cert_der)?;
    check_server_key(certs, private_key)?;
    super::validity::check_own_certificate(&cert_der, cert)?;
    Ok(ServerIdentity {
        cert_pem,
        key_pem,
        cert_der,
        researcher_id,
    })
}

/// Catches a key that does not belong to its certificate now rather than at
/// the first handshake (rustls compares the public keys).
fn check_server_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<(), TlsError> {
    rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map(drop)
        .map_err(|source| TlsError::Config {
            what: "server identity",
            source,
        })
}

/// The researcher id in a certificate: the subject's Organization (O=).
pub fn researcher_id_of(cert_der: &[u8]) -> Result<String, TlsError> {
    subject_attribute(cert_der, Attribute::Organization)
}

/// The node id in a client certificate (mutual TLS): the subject's
/// Organization (O=), as in Fed-BioMed's node certificates, or its Common
/// Name (CN=) when the subject has no O=.
///
/// ```
/// let node = fedroute::tls::generate_node_identity("NODE_1")?;
/// assert_eq!(fedroute::tls::node_id_of_client_cert(&node.cert_der)?, "NODE_1");
/// # Ok::<(), fedroute::tls::TlsError>(())
/// ```
pub fn node_id_of_client_cert(cert_der: &[u8]) -> Result<String, TlsError> {
    match subject_attribute(cert_der, Attribute::Organization) {
        Err(TlsError::MissingSubjectAttribute { .. }) => {
            subject_attribute(cert_der, Attribute::CommonName).map_err(|e| match e {
                TlsError::MissingSubjectAttribute { subject, .. } => {
                    TlsError::MissingSubjectAttribute {
                        attribute: "Organization (O=) or Common Name (CN=)",
                        subject,
                    }
                }
                other => other,
            })
        }
        found => found,
    }
}

/// The Common Name (CN=) of a certificate subject (for a researcher: the host).
#[cfg(test)]
pub(crate) fn common_name_of(cert_der: &[u8]) -> Result<String, TlsError> {
    subject_attribute(cert_der, Attribute::CommonName)
}

#[derive(Clone, Copy)]
enum Attribute {
    Organization,
    CommonName,
}

fn subject_attribute(cert_der: &[u8], which: Attribute) -> Result<String, TlsError> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| TlsError::BadCertificate {
        reason: e.to_string(),
    })?;
    let subject = cert.subject();
    let (values, attribute): (Vec<Option<&str>>, _) = match which {
        Attribute::Organization => (
            subject
                .iter_organization()
                .map(|a| a.as_str().ok())
                .collect(),
            "Organization (O=)",
        ),
        Attribute::CommonName => (
            subject
                .iter_common_name()
                .map(|a| a.as_str().ok())
                .collect(),
            "Common Name (CN=)",
        ),
    };
    let found = values.into_iter().flatten().find(|v| !v.is_empty());
    match found {
        Some(v) => Ok(v.to_string()),
        None => Err(TlsError::MissingSubjectAttribute {
            attribute,
            subject: crate::wire::echo(&subject.to_string()),
        }),
    }
}

/// A certificate and key a node presents to researchers that require mutual
/// TLS. Build it with [`ClientIdentity::load`] or [`ClientIdentity::from_pem`].
pub struct ClientIdentity {
    cert_chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        ClientIdentity {
            cert_chain: self.cert_chain.clone(),
            key: Arc::clone(&self.key),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("node_id", &self.node_id().ok())
            .field("chain_len", &self.cert_chain.len())
            .field("key", &"<hidden>")
            .finish()
    }
}

impl ClientIdentity {
    /// Loads a node certificate (chain, leaf first) and key from PEM files.
    /// A certificate outside its validity period is refused; one that
    /// expires within 30 days is warned about.
    pub fn load(cert: &Path, key: &Path) -> Result<ClientIdentity, TlsError> {
        let cert_chain = load_certificates(cert)?;
        super::validity::check_own_certificate(&cert_chain[0], cert)?;
        let key = load_private_key(key)?;
        ClientIdentity::new(cert_chain, key)
    }

    /// Builds a node identity from PEM texts.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<ClientIdentity, TlsError> {
        let cert_chain = certificates_from_pem(cert_pem.as_bytes(), "the node certificate PEM")?;
        let key = private_key_from_pem(key_pem.as_bytes(), "the node private key PEM")?;
        ClientIdentity::new(cert_chain, key)
    }

    fn new(
        cert_chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<ClientIdentity, TlsError> {
        // Check the key matches the certificate now rather than at the handshake.
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(
                        super::verify::AcceptAnyServerCert::new(None),
                    ))
                    .with_client_auth_cert(cert_chain.clone(), key.clone_key())
            })
            .map_err(|source| TlsError::Config {
                what: "client identity",
                source,
            })?;
        Ok(ClientIdentity {
            cert_chain,
            key: Arc::new(key),
        })
    }

    /// The certificate chain, leaf first.
    pub fn cert_chain(&self) -> &[CertificateDer<'static>] {
        &self.cert_chain
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // `new` only ever receives chains from `certificates_from_pem`, which
        // refuses empty ones, so index 0 exists.
        &self.cert_chain[0]
    }

    /// The node id in the leaf certificate (subject O=, else CN=; see
    /// [`node_id_of_client_cert`]).
    pub fn node_id(&self) -> Result<String, TlsError> {
        node_id_of_client_cert(self.leaf())
    }

    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

/// Writes a private key PEM, readable by the owner only on Unix.
pub(crate) fn write_private_key(path: &Path, key_pem: &str) -> Result<(), TlsError> {
    let err = |source| TlsError::WriteFile {
        what: "private key",
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(err)?;
        file.write_all(key_pem.as_bytes()).map_err(err)
    }
    #[cfg(not(unix))]
    {
        std::fs::write(path, key_pem).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_carries_the_given_id_and_host() {
        let id = generate_researcher_identity(Some("RESEARCHER_x"), "127.0.0.1").unwrap();
        assert_eq!(id.researcher_id, "RESEARCHER_x");
        assert_eq!(researcher_id_of(&id.cert_der).unwrap(), "RESEARCHER_x");
        assert_eq!(common_name_of(&id.cert_der).unwrap(), "127.0.0.1");
        let back = ServerIdentity::from_pem(&id.cert_pem, &id.key_pem).unwrap();
        assert_eq!(back.cert_der, id.cert_der);
    }

    #[test]
    fn generated_identity_without_id_gets_a_fresh_researcher_id() {
        let id = generate_researcher_identity(None, "localhost").unwrap();
        let uuid = id.researcher_id.strip_prefix(RESEARCHER_ID_PREFIX).unwrap();
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{}", id.researcher_id);
    }

    #[test]
    fn san_is_ip_for_addresses_and_dns_otherwise() {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
        for (host, want_ip) in [
            ("10.1.2.3", true),
            ("::1", true),
            ("researcher.example", false),
        ] {
            let id = generate_researcher_identity(Some("R"), host).unwrap();
            let (_, cert) = X509Certificate::from_der(&id.cert_der).unwrap();
            let san = cert.subject_alternative_name().unwrap().unwrap();
            let names = &san.value.general_names;
            assert_eq!(names.len(), 1);
            match (&names[0], want_ip) {
                (GeneralName::IPAddress(_), true) => {}
                (GeneralName::DNSName(n), false) => assert_eq!(*n, host),
                (other, _) => panic!("{host}: unexpected SAN {other:?}"),
            }
        }
    }

    #[test]
    fn several_hosts_give_several_sans() {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let id =
            generate_researcher_identity_for_hosts(Some("R"), &["localhost", "127.0.0.1", "::1"])
                .unwrap();
        assert_eq!(common_name_of(&id.cert_der).unwrap(), "localhost");
        let (_, cert) = X509Certificate::from_der(&id.cert_der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(san.value.general_names.len(), 3);
        assert!(generate_researcher_identity_for_hosts(Some("R"), &[]).is_err());
    }

    #[test]
    fn empty_id_and_bad_host_are_errors() {
        assert!(matches!(
            generate_researcher_identity(Some(""), "localhost"),
            Err(TlsError::EmptyId)
        ));
        assert!(matches!(
            generate_researcher_identity(Some("R"), "h\u{f6}st.example"),
            Err(TlsError::BadHostName { .. })
        ));
    }

    /// A self-signed certificate with the given subject attributes.
    fn cert_with_subject(attributes: &[(DnType, &str)]) -> CertificateDer<'static> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        for (kind, value) in attributes {
            dn.push(kind.clone(), *value);
        }
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_node_id_is_the_organization_and_the_common_name_only_without_one() {
        // Fed-BioMed's node certificates: O=NODE_<uuid>, CN=*.
        let fedbiomed = cert_with_subject(&[
            (DnType::CommonName, "*"),
            (DnType::OrganizationName, "NODE_o"),
        ]);
        assert_eq!(node_id_of_client_cert(&fedbiomed).unwrap(), "NODE_o");
        let cn_only = cert_with_subject(&[(DnType::CommonName, "NODE_cn")]);
        assert_eq!(node_id_of_client_cert(&cn_only).unwrap(), "NODE_cn");
        let nothing = cert_with_subject(&[(DnType::CountryName, "FR")]);
        let e = node_id_of_client_cert(&nothing).unwrap_err();
        assert!(
            e.to_string()
                .contains("Organization (O=) or Common Name (CN=)"),
            "{e}"
        );
    }

    #[test]
    fn garbage_der_is_an_error_not_a_panic() {
        assert!(matches!(
            researcher_id_of(b"not a certificate"),
            Err(TlsError::BadCertificate { .. })
        ));
        assert!(node_id_of_client_cert(&[]).is_err());
    }

    #[test]
    fn from_pem_refuses_a_key_of_another_certificate() {
        let a = generate_researcher_identity(Some("A"), "localhost").unwrap();
        let b = generate_researcher_identity(Some("B"), "localhost").unwrap();
        assert!(matches!(
            ServerIdentity::from_pem(&a.cert_pem, &b.key_pem),
            Err(TlsError::Config { .. })
        ));
    }

    #[test]
    fn debug_hides_the_key() {
        let id = generate_researcher_identity(Some("R"), "localhost").unwrap();
        let text = format!("{id:?}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }
}
