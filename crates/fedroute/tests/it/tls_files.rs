//! Loading certificates and keys from files: bad files give errors that
//! name the file, never panics.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedroute::tls::{
    ca_client_config, certificate_pem, load_researcher_identity, researcher_id_of,
    server_rustls_config, server_tls_config, trusted_client_config, ClientIdentity, TlsError,
    TrustPolicy,
};
use fedroute_testkit::ca::CertificateAuthority;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The error's message names the file.
fn names(err: &TlsError, path: &Path) -> bool {
    err.to_string().contains(&path.display().to_string())
}

#[test]
fn a_missing_certificate_or_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let key = fixture("fedbiomed_researcher_key.pem");
    let err = load_researcher_identity(&missing, &key).unwrap_err();
    assert!(matches!(err, TlsError::ReadFile { .. }), "{err}");
    assert!(names(&err, &missing), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    let cert = fixture("fedbiomed_researcher_cert.pem");
    let err = load_researcher_identity(&cert, &missing).unwrap_err();
    assert!(names(&err, &missing), "{err}");
    assert!(err.to_string().contains("private key"), "{err}");
}

#[test]
fn garbage_pem_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(dir.path(), "garbage.pem", "this is not PEM\n");
    let cert = fixture("fedbiomed_researcher_cert.pem");
    let key = fixture("fedbiomed_researcher_key.pem");

    let err = load_researcher_identity(&garbage, &key).unwrap_err();
    assert!(matches!(err, TlsError::BadPem { .. }), "{err}");
    assert!(names(&err, &garbage), "{err}");

    let err = load_researcher_identity(&cert, &garbage).unwrap_err();
    assert!(matches!(err, TlsError::BadPem { .. }), "{err}");
    assert!(names(&err, &garbage), "{err}");

    // Certificate and key swapped.
    let err = load_researcher_identity(&key, &cert).unwrap_err();
    assert!(names(&err, &key), "{err}");

    // A PEM section that is cut off.
    let text = std::fs::read_to_string(&cert).unwrap();
    let truncated = write(dir.path(), "cut.pem", &text[..text.len() / 2]);
    let err = load_researcher_identity(&truncated, &key).unwrap_err();
    assert!(names(&err, &truncated), "{err}");
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = fedroute::tls::generate_researcher_identity(Some("R"), "127.0.0.1").unwrap();
    let other_key = write(dir.path(), "other.key", &other.key_pem);
    let err = load_researcher_identity(&fixture("fedbiomed_researcher_cert.pem"), &other_key)
        .unwrap_err();
    assert!(matches!(err, TlsError::Config { .. }), "{err}");
}

#[test]
fn a_certificate_without_organization_has_no_researcher_id() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::generate("CA").unwrap();
    let node = ca.issue_node_identity("NODE_1").unwrap();
    let (cert, key) = (dir.path().join("n.pem"), dir.path().join("n.key"));
    node.write_pem(&cert, &key).unwrap();
    let err = load_researcher_identity(&cert, &key).unwrap_err();
    assert!(
        matches!(err, TlsError::MissingSubjectAttribute { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("O="), "{err}");
}

#[test]
fn fedbiomed_certificate_loads_with_its_researcher_id() {
    let id = load_researcher_identity(
        &fixture("fedbiomed_researcher_cert.pem"),
        &fixture("fedbiomed_researcher_key.pem"),
    )
    .unwrap();
    assert_eq!(
        researcher_id_of(&id.cert_der).unwrap(),
        "RESEARCHER_5a7c0f64-2f0e-4b4e-9d0c-3f5e8c1b2a90"
    );
    assert!(server_rustls_config(&id, None).is_ok());
}

#[test]
fn written_identities_load_back() {
    let dir = tempfile::tempdir().unwrap();
    let id = fedroute::tls::generate_researcher_identity(None, "localhost").unwrap();
    let (cert, key) = (dir.path().join("r.pem"), dir.path().join("r.key"));
    id.write_pem(&cert, &key).unwrap();
    let back = load_researcher_identity(&cert, &key).unwrap();
    assert_eq!(back.cert_der, id.cert_der);
    assert_eq!(back.researcher_id, id.researcher_id);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the key file is readable by others: {mode:o}"
        );
    }

    // A fetched DER saved as PEM is a valid pinned-certificate file.
    let pinned = write(dir.path(), "pinned.pem", &certificate_pem(&id.cert_der));
    let back = fedroute::tls::ClientIdentity::load(&cert, &key);
    assert!(
        back.is_ok(),
        "a researcher cert also works as a client identity"
    );
    let text = std::fs::read_to_string(&pinned).unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(&cert)
            .unwrap()
            .replace("\r\n", "\n")
    );
}

#[test]
fn bad_ca_bundles_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let id = fedroute::tls::generate_researcher_identity(None, "127.0.0.1").unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let garbage = write(dir.path(), "ca.pem", "garbage");

    for bundle in [&missing, &garbage] {
        let err = server_tls_config(&id, Some(bundle)).unwrap_err();
        assert!(names(&err, bundle), "{err}");
        let err = ca_client_config(bundle, None).unwrap_err();
        assert!(names(&err, bundle), "{err}");
    }
}

#[test]
fn bad_client_identity_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write(dir.path(), "node.pem", "garbage");
    let key = fixture("fedbiomed_researcher_key.pem");
    let err = ClientIdentity::load(&garbage, &key).unwrap_err();
    assert!(names(&err, &garbage), "{err}");
    let missing = dir.path().join("node.key");
    let err =
        ClientIdentity::load(&fixture("fedbiomed_researcher_cert.pem"), &missing).unwrap_err();
    assert!(names(&err, &missing), "{err}");
}

#[test]
fn a_missing_pinned_certificate_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("pinned.pem");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let err = rt
        .block_on(async {
            tokio::time::timeout(
                Duration::from_secs(5),
                trusted_client_config(
                    &TrustPolicy::PinnedCertificate(missing.clone()),
                    "127.0.0.1",
                    1,
                    None,
                    Duration::from_secs(1),
                ),
            )
            .await
        })
        .expect("no network needed")
        .unwrap_err();
    assert!(names(&err, &missing), "{err}");
}
