//! Golden tests over the payloads captured from Fed-BioMed 6.4.1.
use bytes::Bytes;
use fedroute::wire::{decode_value, encode_to_bytes, json, Envelope};

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "msgpack"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_fixture_decodes_and_re_encodes_to_identical_bytes() {
    let files = fixtures();
    assert!(files.len() >= 5);
    for f in files {
        let raw = Bytes::from(std::fs::read(&f).unwrap());
        let v = decode_value(&raw).unwrap();
        assert_eq!(encode_to_bytes(&v), raw, "{}", f.display());
        let env = Envelope::decode(raw.clone()).unwrap();
        assert_eq!(env.to_bytes(), raw);
        env.check_version().unwrap();
        let view: serde_json::Value =
            serde_json::from_slice(&std::fs::read(f.with_extension("msgpack.json")).unwrap())
                .unwrap();
        assert_eq!(json::to_json(&v), view["decoded"], "{}", f.display());
    }
}
