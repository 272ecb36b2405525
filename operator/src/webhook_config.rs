//! The MutatingWebhookConfiguration: one definition used when the operator writes it itself
//! (`--webhook-url`); `manifests/base/webhook.yaml` carries the same rules and a test keeps the
//! two equal.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations, ServiceReference,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::annotations;
use crate::webhook::MUTATE_PATH;

/// Name of the single webhook in the configuration.
pub const WEBHOOK_NAME: &str = "pods.c4gh.dev";

/// Namespaces never sent to the webhook (besides the operator's own).
pub const SYSTEM_NAMESPACES: &[&str] = &["kube-system", "kube-public", "kube-node-lease"];

/// `clientConfig` for a URL (operator outside the cluster).
pub fn client_config_url(url: &str, ca_bundle: ByteString) -> WebhookClientConfig {
    WebhookClientConfig {
        url: Some(url.to_owned()),
        ca_bundle: Some(ca_bundle),
        service: None,
    }
}

/// `clientConfig` for the in-cluster Service.
pub fn client_config_service(namespace: &str, service: &str) -> WebhookClientConfig {
    WebhookClientConfig {
        url: None,
        ca_bundle: None,
        service: Some(ServiceReference {
            name: service.to_owned(),
            namespace: namespace.to_owned(),
            path: Some(MUTATE_PATH.to_owned()),
            port: Some(443),
        }),
    }
}

/// The configuration: CREATE of pods carrying the opt-in label, outside system namespaces and
/// the operator's namespace, `failurePolicy: Fail`, `timeoutSeconds: 10`, `sideEffects: None`,
/// `reinvocationPolicy: IfNeeded`.
pub fn configuration(
    name: &str,
    operator_namespace: &str,
    client_config: WebhookClientConfig,
) -> MutatingWebhookConfiguration {
    let mut excluded: Vec<String> = SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect();
    excluded.push(operator_namespace.to_owned());
    let mut c = MutatingWebhookConfiguration {
        webhooks: Some(vec![MutatingWebhook {
            name: WEBHOOK_NAME.to_owned(),
            admission_review_versions: vec!["v1".to_owned()],
            client_config,
            failure_policy: Some("Fail".to_owned()),
            match_policy: Some("Equivalent".to_owned()),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".to_owned(),
                    operator: "NotIn".to_owned(),
                    values: Some(excluded),
                }]),
                match_labels: None,
            }),
            object_selector: Some(LabelSelector {
                match_expressions: None,
                match_labels: Some(BTreeMap::from([(
                    annotations::INJECT_LABEL.to_owned(),
                    annotations::INJECT_ENABLED.to_owned(),
                )])),
            }),
            reinvocation_policy: Some("IfNeeded".to_owned()),
            rules: Some(vec![RuleWithOperations {
                api_groups: Some(vec![String::new()]),
                api_versions: Some(vec!["v1".to_owned()]),
                operations: Some(vec!["CREATE".to_owned()]),
                resources: Some(vec!["pods".to_owned()]),
                scope: Some("Namespaced".to_owned()),
            }]),
            side_effects: "None".to_owned(),
            timeout_seconds: Some(10),
            ..MutatingWebhook::default()
        }]),
        ..MutatingWebhookConfiguration::default()
    };
    c.metadata.name = Some(name.to_owned());
    c.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/name".to_owned(),
        "c4gh-operator".to_owned(),
    )]));
    c
}
