//! The node's side of trust on first use: one [`TrustStore`] for all links,
//! consulted with the certificate a link fetched before anything is sent
//! over the connection.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;

use super::config::ControllerConfig;
use super::error::NodeError;
use crate::tls::{Acceptance, ChangeRule, Decision, TrustPolicy, TrustStore};

/// The trust store every link of a controller shares.
#[derive(Clone, Debug)]
pub(super) struct NodeTrust {
    store: Arc<Mutex<TrustStore>>,
    /// Where the store lives, for the "how to accept" hint.
    state_dir: Option<PathBuf>,
}

impl NodeTrust {
    /// Opens the store of `config.state_dir` (in memory without one).
    pub(super) fn open(config: &ControllerConfig) -> Result<NodeTrust, NodeError> {
        let store = match &config.state_dir {
            None => TrustStore::in_memory(),
            Some(dir) => TrustStore::open(&dir.join(TrustStore::FILE_NAME)).map_err(|e| {
                NodeError::TrustStore {
                    source: Box::new(e),
                }
            })?,
        };
        if let Some(path) = store.path() {
            log::info!(
                "trust store {}: {} researcher endpoint(s) known",
                path.display(),
                store.entries().count()
            );
        }
        Ok(NodeTrust {
            store: Arc::new(Mutex::new(store)),
            state_dir: config.state_dir.clone(),
        })
    }

    /// Decides on `cert`, presented at `endpoint` with subject O=
    /// `researcher_id`, under `policy`, and records what is accepted.
    /// Refusals are errors: nothing may be sent to that server.
    pub(super) async fn admit(
        &self,
        endpoint: &str,
        cert: CertificateDer<'static>,
        researcher_id: Option<String>,
        policy: &TrustPolicy,
    ) -> Result<(), NodeError> {
        let rule = match policy {
            TrustPolicy::TrustSameResearcherId => ChangeRule::SameResearcherId,
            _ => ChangeRule::RotationProof,
        };
        let this = self.clone();
        let endpoint = endpoint.to_string();
        // The store may write (and fsync) its file: off the event loop.
        tokio::task::spawn_blocking(move || this.admit_now(&endpoint, &cert, researcher_id, rule))
            .await
            .map_err(|e| NodeError::Mailbox {
                actor: "trust store check",
                reason: e.to_string(),
            })?
    }

    fn admit_now(
        &self,
        endpoint: &str,
        cert: &CertificateDer<'static>,
        researcher_id: Option<String>,
        rule: ChangeRule,
    ) -> Result<(), NodeError> {
        let now = SystemTime::now();
        let started = std::time::Instant::now();
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store.refresh().map_err(|e| NodeError::TrustStore {
            source: Box::new(e),
        })?;
        let previous = store.get(endpoint).map(|e| e.fingerprint);
        let id = researcher_id.as_deref();
        let decision = store.decide(endpoint, cert, id, rule, now);
        match &decision {
            Decision::Changed {
                recorded,
                presented,
                why,
            } => {
                return Err(NodeError::CertificateChanged {
                    endpoint: endpoint.to_string(),
                    recorded: *recorded,
                    presented: *presented,
                    why: Box::new(why.clone()),
                    accept: self.accept_hint(endpoint),
                })
            }
            Decision::OtherResearcher { expected, found } => {
                return Err(NodeError::ResearcherIdChanged {
                    endpoint: endpoint.to_string(),
                    expected: expected.clone(),
                    found: crate::wire::echo(found),
                    seen_in: "server certificate",
                })
            }
            Decision::Invalid(validity) => {
                return Err(NodeError::CertificateNotValid {
                    endpoint: endpoint.to_string(),
                    validity: validity.to_string(),
                })
            }
            Decision::Known | Decision::Accept(_) => {}
        }
        let soon = store
            .record(endpoint, cert, id, &decision, now)
            .map_err(|e| NodeError::TrustStore {
                source: Box::new(e),
            })?;
        let fingerprint = crate::tls::Fingerprint::of(cert);
        let who = id.unwrap_or("(no researcher id in the certificate)");
        match (&decision, previous) {
            (Decision::Accept(Acceptance::FirstUse), _) => log::info!(
                "{endpoint}: trusting researcher {who} on first use, certificate SHA-256 {fingerprint}"
            ),
            (Decision::Accept(Acceptance::RotationProof), Some(old)) => log::info!(
                "{endpoint}: researcher {who} rotated its certificate; accepted by its rotation proof (SHA-256 {old} -> {fingerprint})"
            ),
            (Decision::Accept(Acceptance::SameResearcherId), Some(old)) => log::warn!(
                "{endpoint}: accepting a different certificate (SHA-256 {old} -> {fingerprint}) only because it names the same researcher id {who} (trust same id, as Fed-BioMed does)"
            ),
            _ => {}
        }
        if let Some(validity) = soon {
            log::warn!("{endpoint}: the researcher's certificate {validity}");
        }
        log::debug!("{endpoint}: trust store check took {:?}", started.elapsed());
        Ok(())
    }

    /// The researcher id recorded for `endpoint`, if any.
    pub(super) fn researcher_id(&self, endpoint: &str) -> Option<String> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store.get(endpoint).and_then(|e| e.researcher_id.clone())
    }

    /// How the trusted certificate of `endpoint` was accepted, if known.
    pub(super) fn acceptance(&self, endpoint: &str) -> Option<Acceptance> {
        let store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        store.get(endpoint).map(|e| e.accepted)
    }

    fn accept_hint(&self, endpoint: &str) -> String {
        match &self.state_dir {
            Some(dir) => format!(
                "accept it with: fedroute trust forget {endpoint} --state-dir {}",
                dir.display()
            ),
            None => "restart the node to trust it anew (its trust store is in memory: no state directory)".to_string(),
        }
    }
}
