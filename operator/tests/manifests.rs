//! The manifests agree with the code: the webhook configuration equals the one the operator
//! writes in URL mode (apart from `clientConfig`), and the sample policies validate as documented.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::fs;
use std::path::{Path, PathBuf};

use c4gh_operator::effective::{EffectivePolicy, OperatorDefaults};
use c4gh_operator::policy::Crypt4ghPolicy;
use c4gh_operator::webhook_config;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

#[test]
fn webhook_configuration_matches_the_code() {
    let text = fs::read_to_string(manifests().join("base/webhook.yaml")).unwrap();
    let committed: MutatingWebhookConfiguration = serde_yaml_ng::from_str(&text).unwrap();
    let generated = webhook_config::configuration(
        "c4gh-operator",
        "c4gh-system",
        webhook_config::client_config_service("c4gh-system", "c4gh-operator"),
    );
    assert_eq!(committed, generated);
    let w = &generated.webhooks.as_ref().unwrap()[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
    assert!(w.timeout_seconds.unwrap() <= 10);
    assert_eq!(w.side_effects, "None");
    assert_eq!(w.reinvocation_policy.as_deref(), Some("IfNeeded"));
    // The TESK webhook: opted-in namespaces only, TESK task ConfigMaps only.
    let t = &generated.webhooks.as_ref().unwrap()[1];
    assert_eq!(t.name, webhook_config::TESK_WEBHOOK_NAME);
    assert_eq!(t.failure_policy.as_deref(), Some("Fail"));
    assert!(t.timeout_seconds.unwrap() <= 10);
    assert_eq!(t.side_effects, "None");
    assert_eq!(
        t.client_config.service.as_ref().unwrap().path.as_deref(),
        Some("/mutate-tesk")
    );
    let rule = &t.rules.as_ref().unwrap()[0];
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["configmaps".to_owned()][..])
    );
    assert_eq!(rule.operations.as_deref(), Some(&["CREATE".to_owned()][..]));
    assert_eq!(
        t.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .as_ref()
            .unwrap()["c4gh.dev/tesk"],
        "enabled"
    );
    assert_eq!(
        t.match_conditions.as_ref().unwrap()[0].expression,
        webhook_config::TESK_MATCH_CONDITION
    );
    // The outputs filer webhook: the same namespaces, batch/v1 Jobs named …-outputs-filer.
    let f = &generated.webhooks.as_ref().unwrap()[2];
    assert_eq!(f.name, webhook_config::TESK_FILER_WEBHOOK_NAME);
    assert_eq!(f.namespace_selector, t.namespace_selector);
    let rule = &f.rules.as_ref().unwrap()[0];
    assert_eq!(rule.api_groups.as_deref(), Some(&["batch".to_owned()][..]));
    assert_eq!(rule.resources.as_deref(), Some(&["jobs".to_owned()][..]));
    assert_eq!(
        f.match_conditions.as_ref().unwrap()[0].expression,
        webhook_config::TESK_FILER_MATCH_CONDITION
    );
}

#[test]
fn url_mode_serves_both_webhooks_from_one_origin() {
    let config = webhook_config::configuration(
        "c4gh-operator",
        "c4gh-system",
        webhook_config::client_config_url(
            "https://127.0.0.1:8443/mutate-pods",
            k8s_openapi::ByteString(b"ca".to_vec()),
        ),
    );
    let urls: Vec<_> = config
        .webhooks
        .unwrap()
        .into_iter()
        .map(|w| {
            (
                w.client_config.url.unwrap(),
                w.client_config.ca_bundle.unwrap().0,
            )
        })
        .collect();
    assert_eq!(
        urls,
        vec![
            (
                "https://127.0.0.1:8443/mutate-pods".to_owned(),
                b"ca".to_vec()
            ),
            (
                "https://127.0.0.1:8443/mutate-tesk".to_owned(),
                b"ca".to_vec()
            ),
            (
                "https://127.0.0.1:8443/mutate-tesk".to_owned(),
                b"ca".to_vec()
            ),
        ]
    );
    let bare =
        webhook_config::client_config_url("https://op.example", k8s_openapi::ByteString(vec![]));
    assert_eq!(
        webhook_config::with_path(&bare, "/mutate-tesk")
            .url
            .as_deref(),
        Some("https://op.example/mutate-tesk")
    );
}

fn policy(name: &str) -> Result<EffectivePolicy, Vec<String>> {
    let text = fs::read_to_string(manifests().join("samples").join(name)).unwrap();
    let p: Crypt4ghPolicy = serde_yaml_ng::from_str(&text).unwrap();
    EffectivePolicy::from_spec("default", &p.spec, &OperatorDefaults::default())
}

#[test]
fn sample_policies() {
    assert!(policy("policy-default.yaml").is_ok());
    assert!(policy("policy-dev.yaml").is_ok());
    assert_eq!(
        policy("invalid-policy.yaml").unwrap_err(),
        vec![
            "spec.allowedHosts is empty; list the DRS hosts pods may use",
            "spec.defaultMode \"encrypted\" is not in spec.allowedModes; add it or choose an allowed default",
            "spec.allowedModes includes plaintext but spec.maxPlaintextBytes is not set; plaintext is kept in memory, so set a size limit",
        ]
    );
}
