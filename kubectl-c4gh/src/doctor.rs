//! `kubectl c4gh doctor`: checks an installation the way `linkerd check` does, one line per
//! check: the API server, the CRD, the MutatingWebhookConfiguration (both webhooks, failure
//! policy, caBundle), the operator (its Deployment, or the URL it serves when it runs outside
//! the cluster), the certificates (every CA in the caBundle, and the serving certificate verified
//! against the caBundle for the name the API server calls, with expiry) and every
//! Crypt4ghPolicy's Ready condition.
//!
//! The serving certificate is checked the way the API server checks it: a TLS handshake with
//! the caBundle as the only trust anchor when the webhook is registered by URL; and (always, as
//! the only check for a Service the client cannot reach) the certificate in the operator's
//! Secret, verified with the same verifier for the name the API server calls.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use c4gh_operator::annotations;
use c4gh_operator::controller::READY;
use c4gh_operator::policy::Crypt4ghPolicy;
use c4gh_operator::webhook_config::{TESK_FILER_WEBHOOK_NAME, TESK_WEBHOOK_NAME, WEBHOOK_NAME};
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, WebhookClientConfig,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::cli::DoctorArgs;
use crate::report::Report;

/// Name of the CRD.
pub const CRD_NAME: &str = "crypt4ghpolicies.c4gh.dev";
/// Secrets the operator's serving certificate lives in: self-managed, then cert-manager.
pub const CERT_SECRETS: &[&str] = &["c4gh-operator-webhook-tls", "c4gh-operator-serving-tls"];

/// Runs every check against the cluster behind `client`.
pub async fn doctor(client: &Client, args: &DoctorArgs) -> Report {
    let mut report = Report::default();
    report.section("kubernetes-api");
    match client.apiserver_version().await {
        Ok(v) => report.ok(format!(
            "can reach the API server (Kubernetes {})",
            v.git_version
        )),
        Err(e) => {
            report.fail(
                format!("cannot reach the API server: {e}"),
                "check --kubeconfig / --context and that the cluster is up",
            );
            return report;
        }
    }

    report.section("c4gh-crd");
    crd(client, &mut report).await;

    report.section("c4gh-webhook");
    let config = webhook_configuration(client, args, &mut report).await;

    report.section("c4gh-operator");
    let target = config.as_ref().and_then(|c| {
        c.webhooks
            .iter()
            .flatten()
            .find(|w| w.name == WEBHOOK_NAME)
            .map(|w| w.client_config.clone())
    });
    operator(client, args, target.as_ref(), &mut report).await;

    report.section("c4gh-certificates");
    if let Some(client_config) = &target {
        certificates(client, args, client_config, &mut report).await;
    } else {
        report.fail(
            "no webhook to check certificates for",
            "apply the manifests first (see the c4gh-webhook section)",
        );
    }

    report.section("c4gh-policies");
    policies(client, &mut report).await;
    report
}

async fn crd(client: &Client, report: &mut Report) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.get_opt(CRD_NAME).await {
        Ok(Some(crd)) => {
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Established" && c.status == "True");
            let versions: Vec<&str> = crd
                .spec
                .versions
                .iter()
                .filter(|v| v.served)
                .map(|v| v.name.as_str())
                .collect();
            if established {
                report.ok(format!(
                    "CRD {CRD_NAME} is established (served: {})",
                    versions.join(", ")
                ));
            } else {
                report.fail(
                    format!("CRD {CRD_NAME} exists but is not established"),
                    format!("kubectl describe crd {CRD_NAME}"),
                );
            }
        }
        Ok(None) => report.fail(
            format!("CRD {CRD_NAME} is not installed"),
            "kubectl apply -k manifests/overlays/self-managed-certs (or another overlay)",
        ),
        Err(e) => report.fail(
            format!("cannot read CRD {CRD_NAME}: {e}"),
            "doctor needs get on customresourcedefinitions",
        ),
    }
}

async fn webhook_configuration(
    client: &Client,
    args: &DoctorArgs,
    report: &mut Report,
) -> Option<MutatingWebhookConfiguration> {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let name = &args.webhook_config;
    let config = match api.get_opt(name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            report.fail(
                format!("MutatingWebhookConfiguration {name} does not exist"),
                "apply the manifests, or start the operator with --webhook-url (it creates it)",
            );
            return None;
        }
        Err(e) => {
            report.fail(
                format!("cannot read MutatingWebhookConfiguration {name}: {e}"),
                "doctor needs get on mutatingwebhookconfigurations",
            );
            return None;
        }
    };
    report.ok(format!("MutatingWebhookConfiguration {name} exists"));
    for webhook_name in [WEBHOOK_NAME, TESK_WEBHOOK_NAME, TESK_FILER_WEBHOOK_NAME] {
        let Some(webhook) = config
            .webhooks
            .iter()
            .flatten()
            .find(|w| w.name == webhook_name)
        else {
            report.fail(
                format!("webhook {webhook_name} is missing from {name}"),
                "re-apply manifests/base/webhook.yaml",
            );
            continue;
        };
        let target = describe_target(&webhook.client_config);
        match webhook.failure_policy.as_deref() {
            Some("Fail") | None => report.ok(format!(
                "webhook {webhook_name} calls {target} (failurePolicy Fail)"
            )),
            Some(other) => report.warn(
                format!("webhook {webhook_name} calls {target} with failurePolicy {other}"),
                "with Ignore, pods are created without the sidecar while the operator is down; \
                 the manifests set Fail",
            ),
        }
        let bundle = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        match pem_certs(&bundle) {
            Ok(certs) if !certs.is_empty() => report.ok(format!(
                "webhook {webhook_name} has a caBundle ({} certificate(s))",
                certs.len()
            )),
            Ok(_) => report.fail(
                format!("webhook {webhook_name} has no caBundle"),
                "self-managed certificates: the operator's leader writes it within 30 s of \
                 starting; cert-manager: check the cainjector and the annotation \
                 cert-manager.io/inject-ca-from",
            ),
            Err(e) => report.fail(
                format!("the caBundle of webhook {webhook_name} is not PEM certificates: {e}"),
                "delete the caBundle field; the operator (or cert-manager's injector) writes it again",
            ),
        }
    }
    Some(config)
}

fn describe_target(client_config: &WebhookClientConfig) -> String {
    match (&client_config.url, &client_config.service) {
        (Some(url), _) => url.clone(),
        (None, Some(s)) => format!(
            "service {}/{}:{}{}",
            s.namespace,
            s.name,
            s.port.unwrap_or(443),
            s.path.as_deref().unwrap_or("")
        ),
        (None, None) => "nothing (no url, no service)".to_owned(),
    }
}

async fn operator(
    client: &Client,
    args: &DoctorArgs,
    target: Option<&WebhookClientConfig>,
    report: &mut Report,
) {
    if let Some(url) = target.and_then(|t| t.url.as_deref()) {
        report.ok(format!(
            "the webhook is registered by URL ({url}): the operator runs outside the cluster, \
             no Deployment to check"
        ));
        return;
    }
    let (ns, name) = (&args.operator_namespace, &args.operator);
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await {
        Ok(Some(d)) => {
            let want = d.spec.replicas.unwrap_or(1);
            let available = d
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            if available >= 1 {
                report.ok(format!(
                    "Deployment {ns}/{name}: {available}/{want} replicas available"
                ));
            } else {
                report.fail(
                    format!("Deployment {ns}/{name}: no replica available (0/{want})"),
                    format!(
                        "kubectl -n {ns} describe deployment {name}; kubectl -n {ns} logs deploy/{name}"
                    ),
                );
            }
        }
        Ok(None) => report.fail(
            format!("Deployment {ns}/{name} does not exist"),
            "apply the manifests, or pass --operator-namespace / --operator",
        ),
        Err(e) => report.fail(
            format!("cannot read Deployment {ns}/{name}: {e}"),
            "doctor needs get on deployments in the operator's namespace",
        ),
    }
}

/// PEM certificates in `bytes` (DER each).
fn pem_certs(bytes: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut &bytes[..])
        .collect::<Result<Vec<_>, _>>()
        .context("malformed PEM")
}

/// Subject and not-after (seconds since the epoch) of a certificate.
fn describe_cert(der: &[u8]) -> anyhow::Result<(String, i64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((
        cert.subject().to_string(),
        cert.validity().not_after.timestamp(),
    ))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn date(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Reports the expiry of one certificate: ✔, ‼ within `warn_days`, ✘ expired.
fn expiry(report: &mut Report, what: &str, not_after: i64, warn_days: u32) {
    let left = not_after - now_secs();
    let days = left / 86_400;
    if left <= 0 {
        report.fail(
            format!("{what} expired on {}", date(not_after)),
            "self-managed: the operator re-issues it when it runs as leader (check its logs); \
             cert-manager: kubectl describe certificate -n c4gh-system",
        );
    } else if days < i64::from(warn_days) {
        report.warn(
            format!("{what} expires on {} (in {days} days)", date(not_after)),
            "the operator renews a third of the lifetime before expiry; if that has passed, \
             check the operator's logs",
        );
    } else {
        report.ok(format!(
            "{what} is valid until {} ({days} days)",
            date(not_after)
        ));
    }
}

fn roots(certs: &[CertificateDer<'static>]) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        let _ = roots.add(cert.clone());
    }
    roots
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn certificates(
    client: &Client,
    args: &DoctorArgs,
    client_config: &WebhookClientConfig,
    report: &mut Report,
) {
    let bundle = client_config
        .ca_bundle
        .as_ref()
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let cas = pem_certs(&bundle).unwrap_or_default();
    for ca in &cas {
        match describe_cert(ca) {
            Ok((subject, not_after)) => expiry(
                report,
                &format!("CA {subject} in the caBundle"),
                not_after,
                args.warn_days,
            ),
            Err(e) => report.fail(
                format!("a caBundle certificate does not parse: {e}"),
                "delete the caBundle field; the operator writes it again",
            ),
        }
    }
    if cas.is_empty() {
        report.fail(
            "no CA to verify the serving certificate with",
            "see the caBundle line above",
        );
        return;
    }
    let roots = Arc::new(roots(&cas));
    if let Some(url) = &client_config.url {
        served_certificate(url, Arc::clone(&roots), args, report).await;
        if let Some(host) = c4gh_operator::config::url_host(url) {
            let stored = Stored {
                namespace: &args.operator_namespace,
                dns_name: &host,
                report_expiry: false,
            };
            stored_certificate(client, &stored, roots, args, report).await;
        }
    } else if let Some(service) = &client_config.service {
        let name = format!("{}.{}.svc", service.name, service.namespace);
        let stored = Stored {
            namespace: &service.namespace,
            dns_name: &name,
            report_expiry: true,
        };
        stored_certificate(client, &stored, roots, args, report).await;
    }
}

/// Handshakes with the webhook URL trusting only the caBundle, as the API server does.
async fn served_certificate(
    url: &str,
    roots: Arc<rustls::RootCertStore>,
    args: &DoctorArgs,
    report: &mut Report,
) {
    let Some(host) = c4gh_operator::config::url_host(url) else {
        report.fail(
            format!("webhook URL {url} is not https://HOST[:PORT]/PATH"),
            "fix the operator's --webhook-url",
        );
        return;
    };
    let authority = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default();
    let port = authority
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(']') || authority.starts_with('['))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(443);
    let config = match rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots).with_no_client_auth(),
        Err(e) => {
            report.fail(format!("TLS setup failed: {e}"), "report this as a bug");
            return;
        }
    };
    let Ok(server_name) = ServerName::try_from(host.clone()) else {
        report.fail(
            format!("{host} is not a valid TLS server name"),
            "fix --webhook-url",
        );
        return;
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let attempt = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("cannot connect to {host}:{port}"))?;
        let tls = connector
            .connect(server_name, tcp)
            .await
            .context("the TLS handshake fails with the caBundle as the only trusted CA")?;
        let chain = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(<[CertificateDer<'_>]>::to_vec)
            .unwrap_or_default();
        anyhow::Ok(chain)
    };
    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
        Ok(Ok(chain)) => {
            report.ok(format!(
                "the webhook at {url} presents a certificate the caBundle verifies for {host}"
            ));
            if let Some(Ok((_, not_after))) = chain.first().map(|c| describe_cert(c)) {
                expiry(report, "the serving certificate", not_after, args.warn_days);
            }
        }
        Ok(Err(e)) if e.is::<std::io::Error>() || e.to_string().starts_with("cannot connect") => {
            report.fail(
                format!("webhook {url}: {e:#}"),
                "the API server cannot call the webhook, so pods that opt in are rejected: \
                 is the operator running and listening there? (its --webhook-addr)",
            );
        }
        Ok(Err(e)) => report.fail(
            format!("webhook {url}: {e:#}"),
            "the API server cannot call the webhook, so pods that opt in are rejected: \
             self-managed certificates are republished into caBundle by the operator within \
             30 s (check its logs); with cert-manager check the CA injector",
        ),
        Err(_) => report.fail(
            format!("webhook {url} did not answer within 10 s"),
            "is the operator running and listening there?",
        ),
    }
}

/// Which stored certificate to verify, for which name.
struct Stored<'a> {
    /// Namespace of the Secret.
    namespace: &'a str,
    /// The name the API server calls.
    dns_name: &'a str,
    /// Report its expiry (not when the served certificate's was already reported).
    report_expiry: bool,
}

/// Verifies the certificate stored in the operator's Secret for the name the API server calls.
async fn stored_certificate(
    client: &Client,
    stored: &Stored<'_>,
    roots: Arc<rustls::RootCertStore>,
    args: &DoctorArgs,
    report: &mut Report,
) {
    let (namespace, dns_name) = (stored.namespace, stored.dns_name);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let names: Vec<&str> = match &args.cert_secret {
        Some(n) => vec![n.as_str()],
        None => CERT_SECRETS.to_vec(),
    };
    let mut found = None;
    for name in &names {
        match api.get_opt(name).await {
            Ok(Some(secret)) => {
                found = Some(((*name).to_owned(), secret));
                break;
            }
            Ok(None) => {}
            Err(e) => {
                report.warn(
                    format!("cannot read Secret {namespace}/{name}: {e}"),
                    "the serving certificate is not checked; doctor needs get on that Secret",
                );
                return;
            }
        }
    }
    let Some((name, secret)) = found else {
        report.fail(
            format!(
                "no serving certificate Secret in {namespace} ({})",
                names.join(", ")
            ),
            "the operator has not issued a certificate yet: check its logs",
        );
        return;
    };
    let crt = secret
        .data
        .as_ref()
        .and_then(|d| d.get("tls.crt"))
        .map(|b| b.0.clone())
        .unwrap_or_default();
    let chain = pem_certs(&crt).unwrap_or_default();
    let Some((leaf, intermediates)) = chain.split_first() else {
        report.fail(
            format!("Secret {namespace}/{name} holds no tls.crt"),
            "the operator re-issues it; check its logs",
        );
        return;
    };
    let verified = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|verifier| {
            let server_name = ServerName::try_from(dns_name.to_owned())?;
            verifier
                .verify_server_cert(leaf, intermediates, &server_name, &[], UnixTime::now())
                .map_err(|e| anyhow::anyhow!("{e}"))
        });
    match verified {
        Ok(_) => report.ok(format!(
            "the serving certificate in Secret {namespace}/{name} verifies against the caBundle for {dns_name}"
        )),
        Err(e) => report.fail(
            format!(
                "the serving certificate in Secret {namespace}/{name} does not verify against the caBundle for {dns_name}: {e}"
            ),
            "the API server cannot call the webhook: self-managed certificates are republished \
             by the operator within 30 s (check its logs); with cert-manager check the CA injector",
        ),
    }
    if let Some(Ok((_, not_after))) = stored.report_expiry.then(|| describe_cert(leaf)) {
        expiry(report, "the serving certificate", not_after, args.warn_days);
    }
}

async fn policies(client: &Client, report: &mut Report) {
    let api: Api<Crypt4ghPolicy> = Api::all(client.clone());
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            report.fail(
                format!("cannot list Crypt4ghPolicy objects: {e}"),
                "is the CRD installed? doctor needs list on crypt4ghpolicies",
            );
            return;
        }
    };
    if list.is_empty() {
        report.warn(
            "no Crypt4ghPolicy in any namespace",
            "every opted-in pod is denied until its namespace has one: \
             kubectl apply -n NS -f manifests/samples/policy-default.yaml",
        );
    }
    for policy in &list {
        let id = format!(
            "{}/{}",
            policy.namespace().unwrap_or_default(),
            policy.name_any()
        );
        let status = policy.status.as_ref();
        let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == READY));
        let observed = status.and_then(|s| s.observed_generation);
        match ready {
            Some(c) if observed != policy.metadata.generation => report.warn(
                format!(
                    "Crypt4ghPolicy {id}: status is for generation {}, the policy is at {}",
                    observed.unwrap_or(0),
                    policy.metadata.generation.unwrap_or(0)
                ),
                format!(
                    "the operator has not reconciled the latest change yet (last: {} {})",
                    c.status, c.reason
                ),
            ),
            Some(c) if c.status == "True" => report.ok(format!("Crypt4ghPolicy {id} is Ready")),
            Some(c) => report.fail(
                format!(
                    "Crypt4ghPolicy {id} is not Ready ({}): {}",
                    c.reason, c.message
                ),
                format!(
                    "pods using it are denied; fix the spec (kubectl edit crypt4ghpolicy -n {} {})",
                    policy.namespace().unwrap_or_default(),
                    policy.name_any()
                ),
            ),
            None => report.warn(
                format!("Crypt4ghPolicy {id} has no Ready condition"),
                "the operator has not reconciled it: is the operator running?",
            ),
        }
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let selector = format!(
        "{}={}",
        annotations::TESK_NAMESPACE_LABEL,
        annotations::INJECT_ENABLED
    );
    if let Ok(tesk) = namespaces
        .list(&ListParams::default().labels(&selector))
        .await
    {
        for ns in tesk.items {
            let ns = ns.name_any();
            let has_default = list.iter().any(|p| {
                p.namespace().as_deref() == Some(ns.as_str())
                    && p.name_any() == annotations::DEFAULT_POLICY_NAME
            });
            if has_default {
                report.ok(format!(
                    "TESK namespace {ns} has Crypt4ghPolicy {}",
                    annotations::DEFAULT_POLICY_NAME
                ));
            } else {
                report.fail(
                    format!(
                        "TESK namespace {ns} (label {selector}) has no Crypt4ghPolicy {}",
                        annotations::DEFAULT_POLICY_NAME
                    ),
                    "TES tasks with drs:// inputs are refused there until it exists",
                );
            }
        }
    }
}
