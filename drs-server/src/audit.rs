//! The audit trail of header requests: one structured event (tracing target `audit`) and one
//! count in `c4gh_drs_header_decisions_total{decision, reason}` per header issued or refused.
//!
//! The event names the object, its dataset, the subject, how it authenticated (`auth`:
//! `static_token`, `jwt`, `token_review` or `passport`) and the pod (for projected ServiceAccount
//! tokens), the recipient key's fingerprint ([`crate::crypt::fingerprint`], never
//! the key), the decision (`issued` or `refused`), a short reason, the request ID and the time. It
//! never carries a token or a key. With `--log-format json` each event is one JSON line, so a data
//! steward answers "who could read object X, with which key, when" with `jq` (see
//! docs/drs-server.md).

use std::time::SystemTime;

use crate::auth::Principal;
use crate::metrics::{DecisionLabels, Metrics};
use crate::problem::Problem;

/// The tracing target of audit events.
pub const TARGET: &str = "audit";

/// The request ID assigned by the request middleware (also sent as `X-Request-Id`), available
/// to handlers as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// What is known about one header request, filled in as the request is checked.
#[derive(Debug)]
pub struct HeaderAudit {
    object: String,
    request_id: String,
    dataset: Option<String>,
    subject: Option<String>,
    auth: Option<&'static str>,
    pod_namespace: Option<String>,
    pod_name: Option<String>,
    pod_uid: Option<String>,
    key: Option<String>,
    reason: Option<&'static str>,
}

impl HeaderAudit {
    /// An audit record for a request for object `object`'s header.
    pub fn new(object: &str, request_id: &RequestId) -> Self {
        HeaderAudit {
            object: object.to_owned(),
            request_id: request_id.0.clone(),
            dataset: None,
            subject: None,
            auth: None,
            pod_namespace: None,
            pod_name: None,
            pod_uid: None,
            key: None,
            reason: None,
        }
    }

    /// Records the authenticated caller.
    pub fn principal(&mut self, principal: &Principal) {
        self.subject = Some(principal.subject.clone());
        self.auth = Some(principal.method.as_str());
        if let Some(pod) = &principal.pod {
            self.pod_namespace.clone_from(&pod.namespace);
            self.pod_name = Some(pod.name.clone());
            self.pod_uid = Some(pod.uid.clone());
        }
    }

    /// Records the object's dataset.
    pub fn dataset(&mut self, dataset: Option<&str>) {
        self.dataset = dataset.map(str::to_owned);
    }

    /// Records the recipient key's fingerprint.
    pub fn key(&mut self, fingerprint: String) {
        self.key = Some(fingerprint);
    }

    /// Names why the request is refused (a low-cardinality metrics label); returns `problem`
    /// for use in `map_err`.
    pub fn refuse(&mut self, reason: &'static str, problem: Problem) -> Problem {
        self.reason = Some(reason);
        problem
    }

    /// Emits the event and counts the decision: `issued` when `outcome` is `Ok`, else `refused`
    /// with the reason given to [`refuse`](Self::refuse) (or the problem code in lower case,
    /// e.g. `key_missing`).
    pub fn finish<T>(self, metrics: &Metrics, outcome: &Result<T, Problem>) {
        let (decision, reason) = match outcome {
            Ok(_) => ("issued", "granted".to_owned()),
            Err(problem) => (
                "refused",
                self.reason.map_or_else(
                    || problem.code().as_str().to_ascii_lowercase(),
                    str::to_owned,
                ),
            ),
        };
        metrics
            .header_decisions
            .get_or_create(&DecisionLabels {
                decision: decision.to_owned(),
                reason: reason.clone(),
            })
            .inc();
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        tracing::info!(
            target: TARGET,
            event = "crypt4gh_header",
            object = %self.object,
            dataset = self.dataset.as_deref(),
            subject = self.subject.as_deref(),
            auth = self.auth,
            pod_namespace = self.pod_namespace.as_deref(),
            pod_name = self.pod_name.as_deref(),
            pod_uid = self.pod_uid.as_deref(),
            key_fingerprint = self.key.as_deref(),
            decision,
            reason = %reason,
            request_id = %self.request_id,
            time = %time,
            "crypt4gh header {decision}"
        );
    }
}
