//! Reading PEM files into DER certificates and keys, with errors that name
//! the file.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Reads a whole file, naming it (and what it should hold) on failure.
pub(crate) fn read_file(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a whole file, naming it on failure.
pub(crate) fn write_file(path: &Path, what: &'static str, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::WriteFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Parses every certificate of a PEM text; at least one is required.
pub(crate) fn certificates_from_pem(
    pem: &[u8],
    origin: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadPem {
            what: "certificate",
            origin: origin.to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::BadPem {
            what: "certificate",
            origin: origin.to_string(),
            reason: "no \"BEGIN CERTIFICATE\" section found".to_string(),
        });
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) of a PEM text.
pub(crate) fn private_key_from_pem(
    pem: &[u8],
    origin: &str,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::BadPem {
        what: "private key",
        origin: origin.to_string(),
        reason: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" section found"
                    .to_string()
            }
            other => other.to_string(),
        },
    })
}

/// Reads a PEM certificate file (one or more certificates).
pub(crate) fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, "certificate")?;
    certificates_from_pem(&pem, &path.display().to_string())
}

/// Reads a PEM private key file.
pub(crate) fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path, "private key")?;
    private_key_from_pem(&pem, &path.display().to_string())
}

/// Encodes a DER certificate as PEM text.
pub(crate) fn certificate_to_pem(der: &[u8]) -> String {
    use std::fmt::Write as _;
    const LINE: usize = 64;
    let b64 = base64_encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / LINE + 64);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(LINE) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        let _ = writeln!(out, "{}", String::from_utf8_lossy(chunk));
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Standard base64 with padding (small, to avoid a dependency for one use).
fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let symbols = [(n >> 18) & 63, (n >> 12) & 63, (n >> 6) & 63, n & 63];
        for (i, s) in symbols.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[*s as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn certificate_pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = certificate_to_pem(&der);
        let back = certificates_from_pem(pem.as_bytes(), "test").unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), der.as_slice());
    }

    #[test]
    fn empty_pem_is_a_clear_error() {
        let err = certificates_from_pem(b"hello", "x.pem").unwrap_err();
        assert!(err.to_string().contains("x.pem"), "{err}");
        let err = private_key_from_pem(b"hello", "k.pem").unwrap_err();
        assert!(err.to_string().contains("k.pem"), "{err}");
    }
}
