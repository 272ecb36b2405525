//! The MutatingWebhookConfiguration: one definition used when the operator writes it itself
//! (`--webhook-url`); `manifests/base/webhook.yaml` carries the same rules and a test keeps the
//! two equal.
//!
//! Two webhooks: [`WEBHOOK_NAME`] injects opted-in pods; [`TESK_WEBHOOK_NAME`] adapts TESK's
//! task ConfigMaps in namespaces labelled `c4gh.dev/tesk: enabled` (see
//! [`crate::tesk_webhook`]). Both are served by the same server, on different paths.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MutatingWebhook, MutatingWebhookConfiguration, RuleWithOperations,
    ServiceReference, WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use crate::annotations;
use crate::tesk_webhook;
use crate::webhook::MUTATE_PATH;

/// Name of the pod injection webhook.
pub const WEBHOOK_NAME: &str = "pods.c4gh.dev";

/// Name of the TESK ConfigMap webhook.
pub const TESK_WEBHOOK_NAME: &str = "tesk.c4gh.dev";

/// Name of the TESK outputs-filer webhook.
pub const TESK_FILER_WEBHOOK_NAME: &str = "tesk-filer.c4gh.dev";

/// CEL condition selecting the Jobs the TESK webhook handles: TESK's outputs filer, and the
/// taskmaster Job of a tesk-api before 2023-01-24, whose container carries the task JSON in the
/// `JSON_INPUT` environment variable, named `task-ID` (not the filer and executor Jobs,
/// `task-ID-…`: the filers carry the variable too in that era, and an executor may).
pub const TESK_FILER_MATCH_CONDITION: &str = "has(object.metadata.name) && (object.metadata.name.endsWith('-outputs-filer') || (object.metadata.name.matches('^task-[^-]+$') && object.spec.template.spec.containers.exists(c, has(c.env) && c.env.exists(e, e.name == 'JSON_INPUT'))))";

/// CEL condition selecting TESK task ConfigMaps: named `task-…` and holding the taskmaster's
/// input, so ordinary ConfigMaps in an opted-in namespace never reach the operator.
pub const TESK_MATCH_CONDITION: &str = "has(object.metadata.name) && object.metadata.name.startsWith('task-') && ((has(object.binaryData) && 'JSON_INPUT.gz' in object.binaryData) || (has(object.data) && ('JSON_INPUT' in object.data || 'JSON_INPUT.gz' in object.data)))";

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

/// `client_config` with its path replaced by `path` (the URL's path, or the Service's).
pub fn with_path(client_config: &WebhookClientConfig, path: &str) -> WebhookClientConfig {
    let mut c = client_config.clone();
    if let Some(url) = &mut c.url {
        let authority_end = url
            .find("://")
            .map(|i| i + 3)
            .and_then(|start| url[start..].find('/').map(|j| start + j))
            .unwrap_or(url.len());
        url.truncate(authority_end);
        url.push_str(path);
    }
    if let Some(service) = &mut c.service {
        service.path = Some(path.to_owned());
    }
    c
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

/// The configuration. Pods: CREATE of pods carrying the opt-in label, outside system
/// namespaces and the operator's namespace. TESK: CREATE of ConfigMaps matching
/// [`TESK_MATCH_CONDITION`] in namespaces labelled `c4gh.dev/tesk: enabled` (same exclusions),
/// and there Jobs matching [`TESK_FILER_MATCH_CONDITION`] (TESK's outputs filer; an older
/// tesk-api's taskmaster),
/// at `client_config`'s origin with path [`tesk_webhook::MUTATE_PATH`]. Both: `failurePolicy:
/// Fail`, `timeoutSeconds: 10`, `sideEffects: None`, `reinvocationPolicy: IfNeeded`.
pub fn configuration(
    name: &str,
    operator_namespace: &str,
    client_config: WebhookClientConfig,
) -> MutatingWebhookConfiguration {
    let mut excluded: Vec<String> = SYSTEM_NAMESPACES.iter().map(|s| (*s).to_owned()).collect();
    excluded.push(operator_namespace.to_owned());
    let not_excluded = LabelSelectorRequirement {
        key: "kubernetes.io/metadata.name".to_owned(),
        operator: "NotIn".to_owned(),
        values: Some(excluded),
    };
    let rule = |resource: &str| RuleWithOperations {
        api_groups: Some(vec![String::new()]),
        api_versions: Some(vec!["v1".to_owned()]),
        operations: Some(vec!["CREATE".to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        scope: Some("Namespaced".to_owned()),
    };
    let common = MutatingWebhook {
        admission_review_versions: vec!["v1".to_owned()],
        failure_policy: Some("Fail".to_owned()),
        match_policy: Some("Equivalent".to_owned()),
        reinvocation_policy: Some("IfNeeded".to_owned()),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(10),
        ..MutatingWebhook::default()
    };
    let tesk = MutatingWebhook {
        name: TESK_WEBHOOK_NAME.to_owned(),
        client_config: with_path(&client_config, tesk_webhook::MUTATE_PATH),
        match_conditions: Some(vec![MatchCondition {
            name: "tesk-task-configmap".to_owned(),
            expression: TESK_MATCH_CONDITION.to_owned(),
        }]),
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![not_excluded.clone()]),
            match_labels: Some(BTreeMap::from([(
                annotations::TESK_NAMESPACE_LABEL.to_owned(),
                annotations::INJECT_ENABLED.to_owned(),
            )])),
        }),
        // TESK's ConfigMaps carry no label of ours: the match condition does the narrowing.
        object_selector: Some(LabelSelector::default()),
        rules: Some(vec![rule("configmaps")]),
        ..common.clone()
    };
    let tesk_filer = MutatingWebhook {
        name: TESK_FILER_WEBHOOK_NAME.to_owned(),
        match_conditions: Some(vec![MatchCondition {
            name: "tesk-jobs".to_owned(),
            expression: TESK_FILER_MATCH_CONDITION.to_owned(),
        }]),
        rules: Some(vec![RuleWithOperations {
            api_groups: Some(vec!["batch".to_owned()]),
            resources: Some(vec!["jobs".to_owned()]),
            ..rule("jobs")
        }]),
        ..tesk.clone()
    };
    let pods = MutatingWebhook {
        name: WEBHOOK_NAME.to_owned(),
        client_config,
        namespace_selector: Some(LabelSelector {
            match_expressions: Some(vec![not_excluded]),
            match_labels: None,
        }),
        object_selector: Some(LabelSelector {
            match_expressions: None,
            match_labels: Some(BTreeMap::from([(
                annotations::INJECT_LABEL.to_owned(),
                annotations::INJECT_ENABLED.to_owned(),
            )])),
        }),
        rules: Some(vec![rule("pods")]),
        ..common
    };
    let mut c = MutatingWebhookConfiguration {
        webhooks: Some(vec![pods, tesk, tesk_filer]),
        ..MutatingWebhookConfiguration::default()
    };
    c.metadata.name = Some(name.to_owned());
    c.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/name".to_owned(),
        "c4gh-operator".to_owned(),
    )]));
    c
}
