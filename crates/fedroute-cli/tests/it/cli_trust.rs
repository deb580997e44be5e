//! The trust commands end to end with `fedroute` processes: a node
//! remembers the researcher's certificate in its state directory; a
//! researcher restarted from its state directory keeps its certificate;
//! `--rotate-cert` is accepted by its proof; another process with the same
//! id is refused until `fedroute trust forget`, which the running node
//! reads; `trust list` shows the record.

use crate::cli_support;
use crate::hostile_support::Process;

use cli_support::*;

fn researcher(port: u16, state: &std::path::Path, extra: &[&str]) -> Process {
    let addr = format!("127.0.0.1:{port}");
    let mut args = vec![
        "researcher",
        "--listen",
        &addr,
        "--state-dir",
        state.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Process::start(&args, "info")
}

fn trust(args: &[&str]) -> String {
    let child = fedroute(args, "warn").spawn().unwrap();
    let (status, stdout, stderr) = output_bounded(child, PROCESS_BOUND);
    assert!(status.success(), "{args:?}: {status}\n{stdout}\n{stderr}");
    stdout
}

#[actix_rt::test]
async fn the_node_remembers_accepts_a_rotation_and_refuses_an_impostor_until_forgotten() {
    let port = free_port();
    let endpoint = format!("127.0.0.1:{port}");
    let researcher_state = tempfile::tempdir().unwrap();
    let node_state = tempfile::tempdir().unwrap();
    let node_dir = node_state.path().to_str().unwrap();

    let r = researcher(port, researcher_state.path(), &["--id", "RESEARCHER_cli"]);
    r.wait_line("listening on").await;
    let node = Process::start(
        &[
            "node",
            "--researcher",
            &endpoint,
            "--id",
            "NODE_trust",
            "--state-dir",
            node_dir,
            "--connect-timeout",
            "0",
        ],
        "info",
    );
    node.wait_line("on first use").await;
    node.wait_line("connected").await;
    let listed = trust(&["trust", "list", "--state-dir", node_dir]);
    assert!(listed.contains(&endpoint), "{listed}");
    assert!(listed.contains("RESEARCHER_cli"), "{listed}");
    assert!(listed.contains("accepted by first use"), "{listed}");

    // Restarted from its state directory: the same certificate.
    drop(r);
    let r = researcher(port, researcher_state.path(), &[]);
    r.wait_line("listening on").await;
    node.wait_lines("reconnected", 1).await;
    // Rotated: accepted by its proof.
    drop(r);
    let r = researcher(port, researcher_state.path(), &["--rotate-cert"]);
    r.wait_line("listening on").await;
    node.wait_line("accepted by its rotation proof").await;
    node.wait_lines("reconnected", 2).await;
    drop(r);

    // Another process with the same id and its own key: refused.
    let other_state = tempfile::tempdir().unwrap();
    let impostor = researcher(port, other_state.path(), &["--id", "RESEARCHER_cli"]);
    impostor.wait_line("listening on").await;
    node.wait_line("instead of the trusted").await;
    let tail = node.tail();
    assert!(
        tail.contains(&format!(
            "fedroute trust forget {endpoint} --state-dir {node_dir}"
        )),
        "{tail}"
    );
    assert!(
        !impostor.tail().contains("NODE_trust connected"),
        "{}",
        impostor.tail()
    );
    // The operator accepts it; the running node reads the store again.
    let forgot = trust(&["trust", "forget", &endpoint, "--state-dir", node_dir]);
    assert!(forgot.contains("forgot"), "{forgot}");
    impostor.wait_line("NODE_trust connected").await;
    node.wait_lines("on first use", 2).await;
}

#[test]
fn cert_show_prints_the_id_fingerprint_validity_and_checks_a_rotation_proof() {
    let state = tempfile::tempdir().unwrap();
    let ids = fedroute::tls::IdentityDir::new(state.path());
    let first = ids
        .load_or_generate(Some("RESEARCHER_show"), &["127.0.0.1"])
        .unwrap();
    let rotated = ids.rotate(&["127.0.0.1"]).unwrap();
    let current = ids.identity_path();
    let previous = state.path().join("researcher-previous-certificate.pem");
    let stranger = tempfile::tempdir().unwrap();
    let other = fedroute::tls::IdentityDir::new(stranger.path());
    other
        .load_or_generate(Some("RESEARCHER_show"), &["127.0.0.1"])
        .unwrap();
    let show = |extra: &[&str]| {
        let mut args = vec!["cert", "show", current.to_str().unwrap()];
        args.extend_from_slice(extra);
        trust(&args)
    };
    let plain = show(&[]);
    assert!(plain.contains("RESEARCHER_show"), "{plain}");
    let fp = fedroute::tls::Fingerprint::of(&rotated.cert_der).to_string();
    assert!(plain.contains(&fp), "{plain}");
    assert!(plain.contains("(valid)"), "{plain}");
    let by = fedroute::tls::Fingerprint::of(&first.cert_der).to_string();
    assert!(
        plain.contains(&format!("present, signed by the key of certificate {by}")),
        "{plain}"
    );
    let checked = show(&["--previous", previous.to_str().unwrap()]);
    assert!(checked.contains("rotation proof valid"), "{checked}");
    let wrong = show(&["--previous", other.identity_path().to_str().unwrap()]);
    assert!(wrong.contains("rotation proof NOT valid"), "{wrong}");
    let none = trust(&["cert", "show", previous.to_str().unwrap()]);
    assert!(none.contains("rotation proof none"), "{none}");
}
