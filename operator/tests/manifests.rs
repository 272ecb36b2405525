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
