//! Webhook certificates managed by the operator: a CA and a serving certificate (rcgen) kept in
//! a Secret, the CA published as `caBundle` in the MutatingWebhookConfiguration, rotation before
//! expiry, and the served certificate reloaded on every replica without a restart.
//!
//! One replica writes (the holder of a Lease); every replica reads the Secret and loads what it
//! finds into its [`ReloadingResolver`]. During a CA rotation the `caBundle` holds the old and the
//! new CA, so API servers trust both while replicas switch over.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::annotations;
use crate::metrics::Metrics;
use crate::tls::{ReloadingResolver, TlsError, certified_key};
use crate::webhook_config;

/// Secret key of the serving certificate (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// Secret key of the serving private key (PEM).
pub const TLS_KEY: &str = "tls.key";
/// Secret key of the current CA certificate (PEM).
pub const CA_CRT: &str = "ca.crt";
/// Secret key of the current CA private key (PEM).
pub const CA_KEY: &str = "ca.key";
/// Secret key of the CA bundle published as `caBundle` (current CA, then the previous one).
pub const CA_BUNDLE: &str = "ca-bundle.crt";
/// Common name of the operator's CA.
pub const CA_COMMON_NAME: &str = "c4gh-operator webhook CA";

/// Errors of certificate management.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen could not generate or sign.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The API server refused a read or write.
    #[error("{action} {what}: {source}")]
    Api {
        /// What was attempted (`reading`, `writing`, `patching`).
        action: &'static str,
        /// The object, e.g. `Secret c4gh-system/c4gh-operator-webhook-tls`.
        what: String,
        /// The cause.
        source: kube::Error,
    },
    /// The certificate in the Secret cannot be served.
    #[error("certificate in {what}: {source}")]
    Load {
        /// The object or file.
        what: String,
        /// The cause.
        source: TlsError,
    },
    /// A file of `--cert-dir` could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// A CA or serving certificate with its key. The key is zeroized on drop and never printed.
pub struct Issued {
    /// Certificate PEM.
    pub cert_pem: String,
    /// Private key PEM (secret).
    pub key_pem: Zeroizing<String>,
    /// Expiry.
    pub not_after: OffsetDateTime,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"[secret key elided]")
            .field("not_after", &self.not_after)
            .finish()
    }
}

fn ca_params(not_before: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

/// Creates a new self-signed CA valid for `validity` (from one minute ago, for clock skew).
///
/// # Errors
///
/// [`CertError::Generate`].
pub fn new_ca(now: OffsetDateTime, validity: Duration) -> Result<Issued, CertError> {
    let key = KeyPair::generate()?;
    let not_after = now + validity;
    let cert = ca_params(now - Duration::from_secs(60), not_after).self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        not_after,
    })
}

/// Issues a serving certificate for `names` (DNS names or IP addresses) signed by the CA key.
///
/// # Errors
///
/// [`CertError::Generate`] (e.g. an invalid DNS name or an unreadable CA key).
pub fn issue_serving(
    ca_key_pem: &str,
    names: &[String],
    now: OffsetDateTime,
    validity: Duration,
) -> Result<Issued, CertError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::new(ca_params(now, now), ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names
            .first()
            .cloned()
            .unwrap_or_else(|| "c4gh-operator".to_owned()),
    );
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = now - Duration::from_secs(60);
    let not_after = now + validity;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: Zeroizing::new(key.serialize_pem()),
        not_after,
    })
}

/// How long certificates live and when they are renewed.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    /// Lifetime of a serving certificate; renewed when less than a third of it is left.
    pub serving: Duration,
    /// Lifetime of the CA; renewed when less than three serving lifetimes are left.
    pub ca: Duration,
}

impl Lifetimes {
    /// When a serving certificate expiring at `not_after` is renewed.
    pub fn serving_renew_at(&self, not_after: OffsetDateTime) -> OffsetDateTime {
        not_after - self.serving / 3
    }

    /// When a CA expiring at `not_after` is renewed.
    pub fn ca_renew_at(&self, not_after: OffsetDateTime) -> OffsetDateTime {
        not_after - self.serving * 3
    }
}

/// The certificate material stored in the Secret.
#[derive(Debug)]
pub struct Stored {
    /// Current CA.
    pub ca: Issued,
    /// CA bundle (current, then previous CA).
    pub ca_bundle: String,
    /// Serving certificate.
    pub serving: Issued,
    /// Names the serving certificate was issued for.
    pub names: Vec<String>,
}

impl Stored {
    /// Reads the material from a Secret; `None` when anything is missing or unparsable (the
    /// leader then issues everything anew).
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
        };
        let ann = secret.metadata.annotations.as_ref()?;
        let time = |k: &str| {
            ann.get(k)
                .and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok())
        };
        Some(Self {
            ca: Issued {
                cert_pem: text(CA_CRT)?,
                key_pem: Zeroizing::new(text(CA_KEY)?),
                not_after: time(annotations::CA_NOT_AFTER)?,
            },
            ca_bundle: text(CA_BUNDLE)?,
            serving: Issued {
                cert_pem: text(TLS_CRT)?,
                key_pem: Zeroizing::new(text(TLS_KEY)?),
                not_after: time(annotations::SERVING_NOT_AFTER)?,
            },
            names: ann
                .get(annotations::SERVING_NAMES)?
                .split(',')
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The Secret data and annotations holding this material.
    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        let mut secret = Secret {
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(BTreeMap::from([
                (TLS_CRT.to_owned(), bytes(&self.serving.cert_pem)),
                (TLS_KEY.to_owned(), bytes(&self.serving.key_pem)),
                (CA_CRT.to_owned(), bytes(&self.ca.cert_pem)),
                (CA_KEY.to_owned(), bytes(&self.ca.key_pem)),
                (CA_BUNDLE.to_owned(), bytes(&self.ca_bundle)),
            ])),
            ..Secret::default()
        };
        secret.metadata.name = Some(name.to_owned());
        secret.metadata.namespace = Some(namespace.to_owned());
        secret.metadata.labels = Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_owned(),
            "c4gh-operator".to_owned(),
        )]));
        secret.metadata.annotations = Some(BTreeMap::from([
            (annotations::CA_NOT_AFTER.to_owned(), fmt(self.ca.not_after)),
            (
                annotations::SERVING_NOT_AFTER.to_owned(),
                fmt(self.serving.not_after),
            ),
            (annotations::SERVING_NAMES.to_owned(), self.names.join(",")),
        ]));
        secret
    }
}

/// Renews what needs renewing at `now`: returns the new material, or `None` when `current` is
/// good. A missing or unreadable Secret gets a new CA and serving certificate; a CA close to
/// expiry is replaced (the old one stays in the bundle); a serving certificate with a third of
/// its life left, or issued for other names, is re-issued.
///
/// # Errors
///
/// [`CertError::Generate`].
pub fn renew(
    current: Option<&Stored>,
    names: &[String],
    lifetimes: Lifetimes,
    now: OffsetDateTime,
) -> Result<Option<Stored>, CertError> {
    let (ca, ca_bundle, ca_changed) = match current {
        Some(s) if lifetimes.ca_renew_at(s.ca.not_after) > now => (
            Issued {
                cert_pem: s.ca.cert_pem.clone(),
                key_pem: s.ca.key_pem.clone(),
                not_after: s.ca.not_after,
            },
            s.ca_bundle.clone(),
            false,
        ),
        Some(s) => {
            let ca = new_ca(now, lifetimes.ca)?;
            let bundle = format!("{}{}", ca.cert_pem, s.ca.cert_pem);
            (ca, bundle, true)
        }
        None => {
            let ca = new_ca(now, lifetimes.ca)?;
            let bundle = ca.cert_pem.clone();
            (ca, bundle, true)
        }
    };
    let serving_ok = current.is_some_and(|s| {
        !ca_changed && lifetimes.serving_renew_at(s.serving.not_after) > now && s.names == names
    });
    if serving_ok {
        return Ok(None);
    }
    let serving = issue_serving(&ca.key_pem, names, now, lifetimes.serving)?;
    Ok(Some(Stored {
        ca,
        ca_bundle,
        serving,
        names: names.to_vec(),
    }))
}

/// Where the MutatingWebhookConfiguration sends requests.
#[derive(Clone, Debug)]
pub enum Publish {
    /// The in-cluster Service (the configuration comes from the manifests; only `caBundle` is
    /// patched).
    Service,
    /// A URL (operator running outside the cluster): the whole configuration is written by
    /// server-side apply with this URL.
    Url(String),
}

/// Writes `bundle` as `caBundle` into every webhook of `config` (the pod and the TESK webhook
/// alike); returns whether anything changed.
pub fn set_ca_bundle(config: &mut MutatingWebhookConfiguration, bundle: &ByteString) -> bool {
    let mut changed = false;
    for w in config.webhooks.iter_mut().flatten() {
        if w.client_config.ca_bundle.as_ref() != Some(bundle) {
            w.client_config.ca_bundle = Some(bundle.clone());
            changed = true;
        }
    }
    changed
}

/// Self-managed certificates: the loop every replica runs.
pub struct SelfManaged {
    /// API client.
    pub client: Client,
    /// Namespace of the Secret.
    pub namespace: String,
    /// Secret name.
    pub secret_name: String,
    /// Name of the MutatingWebhookConfiguration.
    pub webhook_config_name: String,
    /// How the configuration reaches the webhook.
    pub publish: Publish,
    /// DNS names / IPs of the serving certificate.
    pub names: Vec<String>,
    /// Lifetimes.
    pub lifetimes: Lifetimes,
    /// The TLS resolver to update.
    pub resolver: Arc<ReloadingResolver>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

impl SelfManaged {
    fn secret_desc(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.secret_name)
    }

    /// One pass: as leader, renew and publish; always, load the Secret's certificate. Returns
    /// when the next pass is due.
    ///
    /// # Errors
    ///
    /// API failures and unusable certificates.
    pub async fn reconcile(
        &self,
        leader: bool,
        loaded: &mut String,
    ) -> Result<Duration, CertError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let api_err = |action, source| CertError::Api {
            action,
            what: self.secret_desc(),
            source,
        };
        let secret = api
            .get_opt(&self.secret_name)
            .await
            .map_err(|e| api_err("reading", e))?;
        let mut stored = secret.as_ref().and_then(Stored::from_secret);
        let now = OffsetDateTime::now_utc();
        if leader {
            if let Some(new) = renew(stored.as_ref(), &self.names, self.lifetimes, now)? {
                let mut object = new.to_secret(&self.namespace, &self.secret_name);
                match &secret {
                    Some(old) => {
                        object.metadata.resource_version = old.metadata.resource_version.clone();
                        api.replace(&self.secret_name, &PostParams::default(), &object)
                            .await
                            .map_err(|e| api_err("writing", e))?;
                    }
                    None => {
                        api.create(&PostParams::default(), &object)
                            .await
                            .map_err(|e| api_err("creating", e))?;
                    }
                }
                self.metrics.certificates_issued.inc();
                tracing::info!(
                    secret = self.secret_desc(),
                    not_after = %new.serving.not_after,
                    "issued webhook serving certificate"
                );
                stored = Some(new);
            }
            if let Some(s) = &stored {
                self.publish(&s.ca_bundle).await?;
            }
        }
        let Some(s) = stored else {
            return Ok(Duration::from_secs(2));
        };
        if *loaded != s.serving.cert_pem {
            let key = certified_key(s.serving.cert_pem.as_bytes(), s.serving.key_pem.as_bytes())
                .map_err(|source| CertError::Load {
                    what: self.secret_desc(),
                    source,
                })?;
            self.resolver.set(key);
            loaded.clone_from(&s.serving.cert_pem);
            self.metrics.certificate_reloads.inc();
            self.metrics
                .serving_cert_expiry
                .set(s.serving.not_after.unix_timestamp());
            tracing::info!(not_after = %s.serving.not_after, "serving certificate loaded");
        }
        let until_renewal = self.lifetimes.serving_renew_at(s.serving.not_after) - now;
        let until_renewal = Duration::try_from(until_renewal).unwrap_or(Duration::ZERO);
        Ok(until_renewal.clamp(Duration::from_millis(200), Duration::from_secs(30)))
    }

    /// Writes `caBundle` (and, in URL mode, the whole configuration) to the webhook configuration.
    async fn publish(&self, ca_bundle: &str) -> Result<(), CertError> {
        let api: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let what = format!("MutatingWebhookConfiguration {}", self.webhook_config_name);
        let bundle = ByteString(ca_bundle.as_bytes().to_vec());
        match &self.publish {
            Publish::Url(url) => {
                let desired = webhook_config::configuration(
                    &self.webhook_config_name,
                    &self.namespace,
                    webhook_config::client_config_url(url, bundle),
                );
                let existing = api
                    .get_opt(&self.webhook_config_name)
                    .await
                    .map_err(|source| CertError::Api {
                        action: "reading",
                        what: what.clone(),
                        source,
                    })?;
                // Replace rather than server-side apply: a configuration applied from the
                // manifests carries clientConfig.service, which must go when url is set.
                match existing {
                    Some(e) if e.webhooks == desired.webhooks => return Ok(()),
                    Some(e) => {
                        let mut replaced = desired;
                        replaced.metadata.resource_version = e.metadata.resource_version;
                        api.replace(&self.webhook_config_name, &PostParams::default(), &replaced)
                            .await
                            .map_err(|source| CertError::Api {
                                action: "replacing",
                                what,
                                source,
                            })?;
                    }
                    None => {
                        api.create(&PostParams::default(), &desired)
                            .await
                            .map_err(|source| CertError::Api {
                                action: "creating",
                                what,
                                source,
                            })?;
                    }
                }
                tracing::info!(url, "webhook configuration written");
            }
            Publish::Service => {
                let Some(mut existing) =
                    api.get_opt(&self.webhook_config_name)
                        .await
                        .map_err(|source| CertError::Api {
                            action: "reading",
                            what: what.clone(),
                            source,
                        })?
                else {
                    tracing::warn!(what, "webhook configuration not found; apply the manifests");
                    return Ok(());
                };
                if set_ca_bundle(&mut existing, &bundle) {
                    api.replace(&self.webhook_config_name, &PostParams::default(), &existing)
                        .await
                        .map_err(|source| CertError::Api {
                            action: "patching",
                            what,
                            source,
                        })?;
                    tracing::info!("caBundle published");
                }
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` flips: reconciles on a timer, faster after errors.
    pub async fn run(self, leader: watch::Receiver<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut loaded = String::new();
        loop {
            let is_leader = *leader.borrow();
            let wait = match self.reconcile(is_leader, &mut loaded).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "certificate reconciliation failed; retrying");
                    Duration::from_secs(2)
                }
            };
            let mut leader = leader.clone();
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = leader.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Certificates from files (`--cert-dir` with `tls.crt` and `tls.key`, e.g. a cert-manager
/// Secret mounted as a volume): reloaded whenever their content changes.
pub async fn watch_files(
    dir: std::path::PathBuf,
    resolver: Arc<ReloadingResolver>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut loaded: Vec<u8> = Vec::new();
    loop {
        match load_files(&dir, &loaded).await {
            Ok(Some((cert, key))) => {
                resolver.set(key);
                loaded = cert;
                metrics.certificate_reloads.inc();
                tracing::info!(dir = %dir.display(), "serving certificate loaded from files");
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "cannot load the serving certificate"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Reads `tls.crt`/`tls.key` from `dir`; `None` when the certificate equals `loaded`.
///
/// # Errors
///
/// [`CertError::Io`] or [`CertError::Load`].
pub async fn load_files(
    dir: &std::path::Path,
    loaded: &[u8],
) -> Result<Option<(Vec<u8>, rustls::sign::CertifiedKey)>, CertError> {
    let read = |name: &'static str| {
        let path = dir.join(name);
        async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| CertError::Io {
                    path: path.display().to_string(),
                    source,
                })
        }
    };
    let cert = read(TLS_CRT).await?;
    if cert == loaded {
        return Ok(None);
    }
    let key = Zeroizing::new(read(TLS_KEY).await?);
    let certified = certified_key(&cert, &key).map_err(|source| CertError::Load {
        what: dir.display().to_string(),
        source,
    })?;
    Ok(Some((cert, certified)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_bundle_goes_into_every_webhook() {
        let mut config = webhook_config::configuration(
            "c4gh-operator",
            "c4gh-system",
            webhook_config::client_config_service("c4gh-system", "c4gh-operator"),
        );
        let bundle = ByteString(b"-----BEGIN CERTIFICATE-----".to_vec());
        assert!(set_ca_bundle(&mut config, &bundle));
        let webhooks = config.webhooks.clone().unwrap();
        assert_eq!(webhooks.len(), 3);
        for w in &webhooks {
            assert_eq!(
                w.client_config.ca_bundle.as_ref(),
                Some(&bundle),
                "{}",
                w.name
            );
        }
        assert!(
            !set_ca_bundle(&mut config, &bundle),
            "nothing left to change"
        );
    }
}
