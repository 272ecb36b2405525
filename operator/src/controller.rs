//! The policy controller: validates every `Crypt4ghPolicy` with the same code the webhook uses
//! ([`EffectivePolicy::from_spec`]) and writes `status.conditions` (`Ready` True/`Valid` or
//! False/`Invalid` with every problem) and `status.observedGeneration`. Its cache is the one the
//! webhook reads policies from.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};

use crate::effective::{EffectivePolicy, OperatorDefaults};
use crate::metrics::{Metrics, Outcome};
use crate::policy::{Crypt4ghPolicy, Crypt4ghPolicyStatus};

/// Condition type written by the controller.
pub const READY: &str = "Ready";

/// Field manager of status writes.
pub const FIELD_MANAGER: &str = "c4gh-operator";

/// The status a policy should have (without timestamps, which [`reconcile`] carries over).
pub fn desired_status(
    policy: &Crypt4ghPolicy,
    defaults: &OperatorDefaults,
) -> Crypt4ghPolicyStatus {
    let name = policy.name_any();
    let (status, reason, message) = match EffectivePolicy::from_spec(&name, &policy.spec, defaults)
    {
        Ok(_) => (
            "True",
            "Valid",
            "policy is valid and used by the webhook".to_owned(),
        ),
        Err(problems) => ("False", "Invalid", problems.join("; ")),
    };
    Crypt4ghPolicyStatus {
        observed_generation: policy.metadata.generation,
        conditions: vec![Condition {
            type_: READY.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: policy.metadata.generation,
            last_transition_time: Time(k8s_openapi::jiff::Timestamp::now()),
        }],
    }
}

/// Errors of one reconciliation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// Writing the status failed.
    #[error("writing status of Crypt4ghPolicy {namespace}/{name}: {source}")]
    Status {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Cause.
        source: kube::Error,
    },
}

/// Context of the controller.
pub struct Context {
    /// API client.
    pub client: Client,
    /// Operator defaults.
    pub defaults: Arc<OperatorDefaults>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// Writes the status when it differs from the desired one (ignoring transition times, which are
/// kept while the condition's status is unchanged).
///
/// # Errors
///
/// [`ReconcileError::Status`].
pub async fn reconcile(
    policy: Arc<Crypt4ghPolicy>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let mut desired = desired_status(&policy, &ctx.defaults);
    let current = policy.status.clone().unwrap_or_default();
    let outcome = if desired.conditions[0].status == "True" {
        "ready"
    } else {
        "invalid"
    };
    if let Some(old) = current.conditions.iter().find(|c| c.type_ == READY)
        && old.status == desired.conditions[0].status
    {
        desired.conditions[0].last_transition_time = old.last_transition_time.clone();
    }
    if current != desired {
        let namespace = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        let api: Api<Crypt4ghPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let patch = serde_json::json!({"status": desired});
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| {
                ctx.metrics
                    .reconciliations
                    .get_or_create(&Outcome { result: "error" })
                    .inc();
                ReconcileError::Status {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                }
            })?;
        tracing::info!(namespace, name, outcome, "policy status written");
    }
    ctx.metrics
        .reconciliations
        .get_or_create(&Outcome { result: outcome })
        .inc();
    Ok(Action::requeue(Duration::from_secs(600)))
}

fn error_policy(_: Arc<Crypt4ghPolicy>, error: &ReconcileError, _: Arc<Context>) -> Action {
    tracing::warn!(%error, "policy reconciliation failed");
    Action::requeue(Duration::from_secs(5))
}

/// Builds the controller; returns its policy cache (for the webhook) and the future that runs it
/// until `shutdown` completes.
pub fn start(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> (Store<Crypt4ghPolicy>, impl std::future::Future<Output = ()>) {
    let api: Api<Crypt4ghPolicy> = Api::all(ctx.client.clone());
    let controller = Controller::new(api, watcher::Config::default());
    let store = controller.store();
    let run = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    (store, run)
}
