//! Object-store credentials: where they come from (the AWS chain) and keeping temporary ones
//! fresh.
//!
//! [`resolve`] tries, in this order (the default chain of the AWS SDKs for Java 2.x, Go v2 and
//! PHP; the AWS SDK for Rust's `aws-config` tries the profile before web identity):
//!
//! 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), used as they are;
//! 2. web identity: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+ `AWS_ROLE_SESSION_NAME`).
//!    The file's JWT (Kubernetes projects a service-account token there, as EKS IRSA and other
//!    workload-identity set-ups do) is exchanged with STS `AssumeRoleWithWebIdentity` (an
//!    unsigned form `POST`; the token is the credential) for temporary credentials of the role;
//! 3. the profile (`--s3-profile`, else `AWS_PROFILE`, else `default`) of the shared credentials
//!    file, then of the shared config file (static keys only).
//!
//! Temporary credentials from STS are refreshed by a background task
//! ([`CredentialProvider::spawn_refresh`]) when 80 % of their lifetime has passed or 5 minutes
//! before they expire, whichever is earlier, but not in the first half of their lifetime. Each
//! refresh reads the token file again (Kubernetes rotates projected tokens). Signing never
//! waits for a refresh: it takes the current credentials from a lock held only to swap them.
//! A failed refresh is logged, counted (`c4gh_drs_s3_credential_refreshes_total{outcome="failed"}`)
//! and retried with back-off from 1 s to 60 s; once the credentials have expired, signing fails
//! with [`StoreError::CredentialsExpired`] naming the last failure.
//!
//! The secret access key is zeroized when dropped, here and in [`rusty_s3::Credentials`]; the
//! session token and the web identity token are zeroized in this module's buffers, but
//! `rusty_s3` keeps its copy of the session token in a plain `String`, and the HTTP client's
//! buffers are not zeroized. (The session token is in every pre-signed URL handed to readers
//! anyway: it is useless without the secret.) None of them is ever logged or in a `Debug`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use reqwest::Url;
use zeroize::Zeroizing;

use crate::store::{Credentials, StoreError, s3_error_code};

/// The STS API version of `AssumeRoleWithWebIdentity`.
const STS_VERSION: &str = "2011-06-15";

/// Largest STS answer read.
const MAX_STS_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest wait between two attempts after failed refreshes.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// How STS is reached for web identity credentials.
#[derive(Debug, Clone, Default)]
pub struct StsSettings {
    /// The STS endpoint (`--s3-sts-endpoint`); default `AWS_ENDPOINT_URL_STS`, else
    /// `AWS_ENDPOINT_URL`, else `https://sts.REGION.amazonaws.com`.
    pub endpoint: Option<String>,
    /// The region of the regional STS endpoint.
    pub region: String,
    /// `DurationSeconds` asked for (STS's default, one hour on AWS, when `None`).
    pub duration: Option<Duration>,
}

/// Where the shared credentials and config files are.
#[derive(Debug, Clone)]
pub struct SharedFiles {
    /// `AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`.
    pub credentials: PathBuf,
    /// `AWS_CONFIG_FILE`, default `~/.aws/config`.
    pub config: PathBuf,
}

impl SharedFiles {
    /// The locations the AWS tools use, from the environment.
    pub fn from_env() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
        let pick = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map_or_else(|| home.join(".aws").join(default), PathBuf::from)
        };
        SharedFiles {
            credentials: pick("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            config: pick("AWS_CONFIG_FILE", "config"),
        }
    }
}

/// The web identity to exchange with STS.
#[derive(Debug, Clone)]
pub struct WebIdentity {
    /// `AWS_WEB_IDENTITY_TOKEN_FILE`: read again for every exchange.
    pub token_file: PathBuf,
    /// `AWS_ROLE_ARN`.
    pub role_arn: String,
    /// `AWS_ROLE_SESSION_NAME`, default `c4gh-drs-server-UNIXTIME`.
    pub session_name: String,
    /// The STS endpoint.
    pub sts_endpoint: Url,
    /// `DurationSeconds` asked for.
    pub duration: Option<Duration>,
}

impl WebIdentity {
    /// The web identity configured by `var` (an environment lookup), if
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` is set.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] when the token file is set without `AWS_ROLE_ARN`, or the session
    /// name or endpoint is not valid.
    pub fn from_lookup(
        var: &dyn Fn(&str) -> Option<String>,
        sts: &StsSettings,
    ) -> Result<Option<Self>, StoreError> {
        let Some(token_file) = var("AWS_WEB_IDENTITY_TOKEN_FILE") else {
            return Ok(None);
        };
        let role_arn = var("AWS_ROLE_ARN").ok_or_else(|| {
            StoreError::Config(format!(
                "AWS_WEB_IDENTITY_TOKEN_FILE is set ({token_file}) but AWS_ROLE_ARN is not: \
                 set the ARN of the role to assume with the token"
            ))
        })?;
        let session_name = match var("AWS_ROLE_SESSION_NAME") {
            Some(name) => name,
            None => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!("c4gh-drs-server-{now}")
            }
        };
        let valid = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
        if !(2..=64).contains(&session_name.len()) || !session_name.chars().all(valid) {
            return Err(StoreError::Config(format!(
                "AWS_ROLE_SESSION_NAME {session_name:?} must be 2 to 64 of A-Z a-z 0-9 _ + = , . @ -"
            )));
        }
        let endpoint = sts
            .endpoint
            .clone()
            .or_else(|| var("AWS_ENDPOINT_URL_STS"))
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", sts.region));
        let sts_endpoint = Url::parse(&endpoint).map_err(|e| {
            StoreError::Config(format!("the STS endpoint {endpoint:?} is not a URL: {e}"))
        })?;
        if !matches!(sts_endpoint.scheme(), "http" | "https") || sts_endpoint.host().is_none() {
            return Err(StoreError::Config(format!(
                "the STS endpoint {endpoint:?} is not an http(s) URL with a host"
            )));
        }
        Ok(Some(WebIdentity {
            token_file: PathBuf::from(token_file),
            role_arn,
            session_name,
            sts_endpoint,
            duration: sts.duration,
        }))
    }
}

/// Resolves the credentials as the AWS chain does (see the [module docs](self)): environment
/// keys, else web identity (one STS exchange now), else the shared files' `profile`.
///
/// # Errors
///
/// [`StoreError::NoCredentials`] when nothing is configured; [`StoreError::File`] for an
/// unreadable shared file; the errors of the first STS exchange
/// ([`StoreError::TokenFile`], [`StoreError::Sts`], [`StoreError::Transport`]).
pub async fn resolve(
    profile: Option<&str>,
    files: &SharedFiles,
    sts: &StsSettings,
) -> Result<Arc<CredentialProvider>, StoreError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(credentials) = from_env_keys(&var) {
        return Ok(CredentialProvider::fixed(credentials));
    }
    if let Some(identity) = WebIdentity::from_lookup(&var, sts)? {
        return CredentialProvider::web_identity(identity).await;
    }
    let credentials = from_profile(profile, files, &var)?;
    Ok(CredentialProvider::fixed(credentials))
}

/// The static keys of the environment: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`.
fn from_env_keys(var: &dyn Fn(&str) -> Option<String>) -> Option<Credentials> {
    let key = var("AWS_ACCESS_KEY_ID")?;
    let secret = Zeroizing::new(var("AWS_SECRET_ACCESS_KEY")?);
    Some(match var("AWS_SESSION_TOKEN").map(Zeroizing::new) {
        Some(token) => Credentials::new_with_token(key, secret.as_str(), token.as_str()),
        None => Credentials::new(key, secret.as_str()),
    })
}

/// `profile` (default: `AWS_PROFILE`, else `default`) of the shared credentials file, else of
/// the shared config file.
fn from_profile(
    profile: Option<&str>,
    files: &SharedFiles,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Credentials, StoreError> {
    let profile = profile
        .map(str::to_owned)
        .or_else(|| var("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    // The credentials file names sections `[NAME]`; the config file `[profile NAME]`, except
    // `[default]`.
    let config_section = if profile == "default" {
        profile.clone()
    } else {
        format!("profile {profile}")
    };
    for (path, section) in [
        (&files.credentials, profile.as_str()),
        (&files.config, config_section.as_str()),
    ] {
        if let Some(credentials) = from_ini_file(path, section)? {
            return Ok(credentials);
        }
    }
    Err(StoreError::NoCredentials {
        credentials: files.credentials.clone(),
        config: files.config.clone(),
    })
}

fn from_ini_file(path: &Path, section: &str) -> Result<Option<Credentials>, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StoreError::File {
                path: path.to_owned(),
                source,
            });
        }
    };
    Ok(ini_credentials(&text, section))
}

/// `aws_access_key_id`, `aws_secret_access_key` and `aws_session_token` of `[section]` in an
/// INI text, when both of the first two are there.
fn ini_credentials(text: &str, section: &str) -> Option<Credentials> {
    let mut inside = false;
    let (mut key, mut secret, mut token) = (None, None::<Zeroizing<String>>, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            continue;
        }
        if !inside {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().to_owned();
        match name.trim() {
            "aws_access_key_id" => key = Some(value),
            "aws_secret_access_key" => secret = Some(Zeroizing::new(value)),
            "aws_session_token" => token = Some(Zeroizing::new(value)),
            _ => {}
        }
    }
    let (key, secret) = (key?, secret?);
    Some(match token {
        Some(token) => Credentials::new_with_token(key, secret.as_str(), token.as_str()),
        None => Credentials::new(key, secret.as_str()),
    })
}

/// The credentials signing now.
pub struct Signing {
    credentials: Credentials,
    expires: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
}

impl Signing {
    /// The credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// When they expire (`None`: static credentials, no known expiry).
    pub fn expires(&self) -> Option<SystemTime> {
        self.expires
    }
}

impl fmt::Debug for Signing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signing")
            .field("access_key_id", &self.credentials.key())
            .field(
                "session_token",
                &self.credentials.token().map(|_| "[elided]"),
            )
            .field(
                "expires",
                &self
                    .expires
                    .map(|t| humantime::format_rfc3339_seconds(t).to_string()),
            )
            .finish_non_exhaustive()
    }
}

/// Labels of the refresh counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `ok` or `failed`.
    outcome: String,
}

/// The credentials the store signs with, refreshed when they come from STS.
pub struct CredentialProvider {
    current: RwLock<Arc<Signing>>,
    web_identity: Option<WebIdentity>,
    http: reqwest::Client,
    last_failure: Mutex<Option<String>>,
    refreshes: Family<OutcomeLabels, Counter>,
    expiry: Gauge,
}

impl fmt::Debug for CredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialProvider")
            .field("web_identity", &self.web_identity)
            .field("current", &*self.current())
            .finish_non_exhaustive()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

impl CredentialProvider {
    /// Credentials that never change.
    pub fn fixed(credentials: Credentials) -> Arc<Self> {
        Arc::new(Self::with(
            Signing {
                credentials,
                expires: None,
                refresh_at: None,
            },
            None,
            http_client(),
        ))
    }

    fn with(current: Signing, web_identity: Option<WebIdentity>, http: reqwest::Client) -> Self {
        let expiry = Gauge::default();
        if let Some(expires) = current.expires {
            expiry.set(unix_seconds(expires));
        }
        CredentialProvider {
            current: RwLock::new(Arc::new(current)),
            web_identity,
            http,
            last_failure: Mutex::new(None),
            refreshes: Family::default(),
            expiry,
        }
    }

    /// Temporary credentials of `identity`'s role, from a first exchange now. Call
    /// [`CredentialProvider::spawn_refresh`] to keep them fresh.
    ///
    /// # Errors
    ///
    /// [`StoreError::TokenFile`], [`StoreError::Sts`], [`StoreError::Transport`].
    pub async fn web_identity(identity: WebIdentity) -> Result<Arc<Self>, StoreError> {
        let http = http_client();
        let exchanged = assume_role_with_web_identity(&http, &identity).await?;
        tracing::info!(
            role_arn = %identity.role_arn,
            subject = exchanged.subject.as_deref().unwrap_or(""),
            expires = %humantime::format_rfc3339_seconds(exchanged.signing.expires.unwrap_or(UNIX_EPOCH)),
            "object-store credentials from STS AssumeRoleWithWebIdentity"
        );
        let provider = Self::with(exchanged.signing, Some(identity), http);
        provider.count(true);
        Ok(Arc::new(provider))
    }

    /// The credentials now, whatever their state.
    pub fn current(&self) -> Arc<Signing> {
        match self.current.read() {
            Ok(current) => Arc::clone(&current),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// The credentials to sign with now.
    ///
    /// # Errors
    ///
    /// [`StoreError::CredentialsExpired`] when they have expired (refreshing failed).
    pub fn signing(&self) -> Result<Arc<Signing>, StoreError> {
        let current = self.current();
        match current.expires {
            Some(expires) if expires <= SystemTime::now() => Err(StoreError::CredentialsExpired {
                expired: humantime::format_rfc3339_seconds(expires).to_string(),
                last_failure: self
                    .last_failure
                    .lock()
                    .map(|f| f.clone())
                    .unwrap_or_default()
                    .unwrap_or_else(|| "no refresh attempted yet".into()),
            }),
            _ => Ok(current),
        }
    }

    /// Starts the background refresh of temporary credentials on the current Tokio runtime
    /// (nothing for static ones). The task ends when the provider is dropped.
    pub fn spawn_refresh(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        self.web_identity.as_ref()?;
        let weak = Arc::downgrade(self);
        Some(tokio::spawn(refresh_loop(weak)))
    }

    /// One exchange with STS now, replacing the current credentials when it succeeds.
    ///
    /// # Errors
    ///
    /// As [`CredentialProvider::web_identity`]; [`StoreError::Config`] for static credentials.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        let Some(identity) = &self.web_identity else {
            return Err(StoreError::Config(
                "static object-store credentials are not refreshed".into(),
            ));
        };
        match assume_role_with_web_identity(&self.http, identity).await {
            Ok(exchanged) => {
                let expires = exchanged.signing.expires.unwrap_or(UNIX_EPOCH);
                self.expiry.set(unix_seconds(expires));
                match self.current.write() {
                    Ok(mut current) => *current = Arc::new(exchanged.signing),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(exchanged.signing),
                }
                if let Ok(mut failure) = self.last_failure.lock() {
                    *failure = None;
                }
                self.count(true);
                tracing::info!(
                    role_arn = %identity.role_arn,
                    subject = exchanged.subject.as_deref().unwrap_or(""),
                    expires = %humantime::format_rfc3339_seconds(expires),
                    "object-store credentials refreshed"
                );
                Ok(())
            }
            Err(err) => {
                if let Ok(mut failure) = self.last_failure.lock() {
                    *failure = Some(err.to_string());
                }
                self.count(false);
                Err(err)
            }
        }
    }

    fn count(&self, ok: bool) {
        self.refreshes
            .get_or_create(&OutcomeLabels {
                outcome: if ok { "ok" } else { "failed" }.to_owned(),
            })
            .inc();
    }

    /// Registers `s3_credential_refreshes` (STS exchanges by outcome) and
    /// `s3_credential_expiry_seconds` (Unix time the current credentials expire; 0 for static
    /// ones) in `registry`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "s3_credential_refreshes",
            "STS AssumeRoleWithWebIdentity exchanges for the object-store credentials, by outcome",
            self.refreshes.clone(),
        );
        registry.register(
            "s3_credential_expiry_seconds",
            "Unix time the object-store credentials expire (0: static credentials)",
            self.expiry.clone(),
        );
    }

    /// How long to wait before the next refresh attempt after `failures` failed ones.
    fn next_delay(&self, failures: u32) -> Duration {
        if failures > 0 {
            return Duration::from_secs(1u64 << (failures - 1).min(6)).min(MAX_BACKOFF);
        }
        let at = self.current().refresh_at.unwrap_or_else(SystemTime::now);
        at.duration_since(SystemTime::now()).unwrap_or_default()
    }
}

async fn refresh_loop(weak: Weak<CredentialProvider>) {
    let mut failures = 0u32;
    loop {
        let Some(delay) = weak.upgrade().map(|p| p.next_delay(failures)) else {
            return;
        };
        tokio::time::sleep(delay).await;
        let Some(provider) = weak.upgrade() else {
            return;
        };
        match provider.refresh().await {
            Ok(()) => failures = 0,
            Err(err) => {
                failures = failures.saturating_add(1);
                let expires = provider.current().expires.unwrap_or(UNIX_EPOCH);
                tracing::error!(
                    error = %err,
                    expires = %humantime::format_rfc3339_seconds(expires),
                    retry_in_s = provider.next_delay(failures).as_secs(),
                    "refreshing the object-store credentials failed; signed URLs stop working \
                     when the current ones expire"
                );
            }
        }
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// When to refresh credentials obtained at `obtained` that expire at `expires`: at 80 % of
/// their lifetime or 5 minutes before expiry, whichever is earlier, but not in the first half.
pub fn refresh_time(obtained: SystemTime, expires: SystemTime) -> SystemTime {
    let lifetime = expires.duration_since(obtained).unwrap_or_default();
    let at = lifetime
        .mul_f64(0.8)
        .min(lifetime.saturating_sub(Duration::from_secs(300)))
        .max(lifetime / 2);
    obtained + at
}

/// What an exchange gave.
struct Exchanged {
    signing: Signing,
    subject: Option<String>,
}

async fn assume_role_with_web_identity(
    http: &reqwest::Client,
    identity: &WebIdentity,
) -> Result<Exchanged, StoreError> {
    let token = read_token(&identity.token_file)?;
    let duration = identity.duration.map(|d| d.as_secs().to_string());
    let mut form = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", STS_VERSION),
        ("RoleArn", identity.role_arn.as_str()),
        ("RoleSessionName", identity.session_name.as_str()),
        ("WebIdentityToken", token.as_str()),
    ];
    if let Some(duration) = &duration {
        form.push(("DurationSeconds", duration.as_str()));
    }
    let host = host_of(&identity.sts_endpoint);
    let transport = |detail: String| StoreError::Transport {
        what: "assuming role",
        key: identity.role_arn.clone(),
        host: host.clone(),
        detail,
    };
    let resp = http
        .post(identity.sts_endpoint.clone())
        .header(reqwest::header::ACCEPT, "application/xml")
        .form(&form)
        .send()
        .await
        .map_err(|e| transport(e.without_url().to_string()))?;
    drop(form);
    drop(token);
    let status = resp.status();
    let body = read_secret_text(resp).await.map_err(&transport)?;
    if !status.is_success() {
        let code = s3_error_code(&body);
        let hint = match code.split(':').next().unwrap_or("") {
            "ExpiredToken" | "ExpiredTokenException" => {
                "; the web identity token has expired: is its file still being rotated?"
            }
            "InvalidIdentityToken" | "InvalidParameterValue" => {
                "; STS does not accept the token: check its issuer and audience against the \
                 OIDC provider STS trusts"
            }
            "AccessDenied" => "; the role's trust policy does not admit this identity",
            _ => "",
        };
        return Err(StoreError::Sts {
            role_arn: identity.role_arn.clone(),
            host,
            status: status.as_u16(),
            code,
            hint,
        });
    }
    let obtained = SystemTime::now();
    let parsed = parse_response(&body).map_err(|detail| {
        transport(format!(
            "the answer is not an AssumeRoleWithWebIdentity result: {detail}"
        ))
    })?;
    if parsed.expires <= obtained {
        return Err(transport(format!(
            "STS gave credentials that expired at {}",
            humantime::format_rfc3339_seconds(parsed.expires)
        )));
    }
    Ok(Exchanged {
        signing: Signing {
            credentials: parsed.credentials,
            expires: Some(parsed.expires),
            refresh_at: Some(refresh_time(obtained, parsed.expires)),
        },
        subject: parsed.subject,
    })
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        (None, _) => String::new(),
    }
}

/// The token in `path`, without surrounding whitespace.
fn read_token(path: &Path) -> Result<Zeroizing<String>, StoreError> {
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|source| StoreError::TokenFile {
            path: path.to_owned(),
            source,
        })?;
    let token = Zeroizing::new(text.trim().to_owned());
    if token.is_empty() {
        return Err(StoreError::TokenFile {
            path: path.to_owned(),
            source: io::Error::new(io::ErrorKind::InvalidData, "the file is empty"),
        });
    }
    Ok(token)
}

async fn read_secret_text(mut resp: reqwest::Response) -> Result<Zeroizing<String>, String> {
    // Allocated once at the largest size read, so growing leaves no copy behind.
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_STS_RESPONSE_BYTES));
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if bytes.len() + chunk.len() > MAX_STS_RESPONSE_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_STS_RESPONSE_BYTES} bytes"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    let bytes = std::mem::take(&mut *bytes);
    String::from_utf8(bytes).map(Zeroizing::new).map_err(|e| {
        let mut bytes = e.into_bytes();
        zeroize::Zeroize::zeroize(&mut bytes);
        "the answer is not UTF-8".to_owned()
    })
}

/// The credentials of an `AssumeRoleWithWebIdentityResponse`.
struct Parsed {
    credentials: Credentials,
    expires: SystemTime,
    subject: Option<String>,
}

/// Parses an `AssumeRoleWithWebIdentityResponse` document: the four children of
/// `AssumeRoleWithWebIdentityResult/Credentials` and `SubjectFromWebIdentityToken`. Error
/// messages never contain element text.
fn parse_response(xml: &str) -> Result<Parsed, String> {
    let result = element(xml, "AssumeRoleWithWebIdentityResult")
        .ok_or("no AssumeRoleWithWebIdentityResult element")?;
    let credentials = element(result, "Credentials").ok_or("no Credentials element")?;
    let field = |name: &str| -> Result<Zeroizing<String>, String> {
        let text = element(credentials, name).ok_or_else(|| format!("no Credentials/{name}"))?;
        let value = unescape(text).ok_or_else(|| format!("Credentials/{name} is not text"))?;
        if value.trim().is_empty() {
            return Err(format!("Credentials/{name} is empty"));
        }
        Ok(value)
    };
    let key = field("AccessKeyId")?;
    let secret = field("SecretAccessKey")?;
    let token = field("SessionToken")?;
    let expiration = field("Expiration")?;
    let expires = parse_rfc3339(expiration.trim()).ok_or_else(|| {
        format!(
            "Credentials/Expiration {:?} is not a time",
            expiration.as_str()
        )
    })?;
    let subject = element(result, "SubjectFromWebIdentityToken")
        .and_then(unescape)
        .map(|s| s.chars().filter(|c| !c.is_control()).take(200).collect());
    Ok(Parsed {
        credentials: Credentials::new_with_token(key.trim(), secret.trim(), token.trim()),
        expires,
        subject,
    })
}

/// The content of the first element `name` in `xml` (no namespace prefix; attributes
/// allowed).
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}");
    let mut from = 0;
    loop {
        let start = from + xml[from..].find(&open)?;
        let after = &xml[start + open.len()..];
        let tag_end = after.find('>')?;
        let attributes = &after[..tag_end];
        if attributes.is_empty() || attributes == "/" || attributes.starts_with(char::is_whitespace)
        {
            if attributes.ends_with('/') {
                return Some("");
            }
            let content = &after[tag_end + 1..];
            let close = format!("</{name}>");
            return content.find(&close).map(|end| &content[..end]);
        }
        from = start + open.len();
    }
}

/// `text` with XML's predefined and numeric character references replaced; `None` for
/// markup (a child element, CDATA) or a malformed reference.
fn unescape(text: &str) -> Option<Zeroizing<String>> {
    if text.contains('<') {
        return None;
    }
    let mut out = Zeroizing::new(String::with_capacity(text.len()));
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let semi = after.find(';')?;
        let c = match &after[..semi] {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            r => {
                let n = match r.strip_prefix("#x") {
                    Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                    None => r.strip_prefix('#')?.parse().ok()?,
                };
                char::from_u32(n)?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// An RFC 3339 time (`2026-12-02T07:10:00Z`, fractional seconds and `±HH:MM` offsets allowed).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let (local, offset_s) = if let Some(local) = text.strip_suffix(['Z', 'z']) {
        (local, 0i64)
    } else {
        let split = text.len().checked_sub(6)?;
        let (local, offset) = (text.get(..split)?, text.get(split..)?);
        let sign = match offset.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let (h, m) = offset[1..].split_once(':')?;
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        (local, sign * (h * 3600 + m * 60))
    };
    let utc = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = Duration::from_secs(offset_s.unsigned_abs());
    if offset_s >= 0 {
        utc.checked_sub(shift)
    } else {
        utc.checked_add(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:archive:drs</SubjectFromWebIdentityToken>
    <AssumedRoleUser><Arn>arn:aws:sts::1:assumed-role/R/s</Arn></AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>
      <SecretAccessKey>s3cr3t&amp;key/+=</SecretAccessKey>
      <SessionToken>FwoGZXIvYXdzE&#x2B;token</SessionToken>
      <Expiration>2026-12-02T09:10:00+02:00</Expiration>
    </Credentials>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#;

    #[test]
    fn parses_an_sts_answer() {
        let parsed = parse_response(RESPONSE).unwrap();
        assert_eq!(parsed.credentials.key(), "ASIAEXAMPLE");
        assert_eq!(parsed.credentials.secret(), "s3cr3t&key/+=");
        assert_eq!(parsed.credentials.token(), Some("FwoGZXIvYXdzE+token"));
        assert_eq!(
            parsed.expires,
            humantime::parse_rfc3339("2026-12-02T07:10:00Z").unwrap()
        );
        assert_eq!(
            parsed.subject.as_deref(),
            Some("system:serviceaccount:archive:drs")
        );
    }

    #[test]
    fn refuses_incomplete_answers_without_echoing_them() {
        let no_secret =
            RESPONSE.replace("<SecretAccessKey>s3cr3t&amp;key/+=</SecretAccessKey>", "");
        let err = parse_response(&no_secret).err().unwrap();
        assert!(err.contains("SecretAccessKey"), "{err}");
        let bad_time = RESPONSE.replace("2026-12-02T09:10:00+02:00", "tomorrow");
        let err = parse_response(&bad_time).err().unwrap();
        assert!(err.contains("Expiration"), "{err}");
        assert!(!err.contains("s3cr3t") && !err.contains("FwoG"), "{err}");
        let markup = RESPONSE.replace("ASIAEXAMPLE", "<![CDATA[x]]>");
        assert!(parse_response(&markup).is_err());
        assert!(parse_response("<ErrorResponse/>").is_err());
    }

    #[test]
    fn rfc3339_times() {
        let z = parse_rfc3339("2026-12-02T07:10:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-12-02T07:10:00.000Z"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-02T02:10:00-05:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-02 07:10"), None);
    }

    #[test]
    fn refresh_schedule() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |lifetime: u64| {
            refresh_time(t0, t0 + Duration::from_secs(lifetime))
                .duration_since(t0)
                .unwrap()
                .as_secs()
        };
        // One hour: 80 % (48 min) is earlier than 5 min before expiry.
        assert_eq!(at(3600), 2880);
        // 15 min (STS's shortest): 5 min before expiry is earlier than 80 %.
        assert_eq!(at(900), 600);
        // 20 s: never in the first half.
        assert_eq!(at(20), 10);
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_chain_order_and_its_settings() {
        let sts = StsSettings {
            endpoint: None,
            region: "eu-north-1".into(),
            duration: Some(Duration::from_secs(900)),
        };
        let keys = env(&[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")]);
        assert_eq!(from_env_keys(&keys).unwrap().key(), "AK");
        let web = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/drs"),
            ("AWS_ROLE_SESSION_NAME", "drs-0"),
        ]);
        assert!(from_env_keys(&web).is_none());
        let identity = WebIdentity::from_lookup(&web, &sts).unwrap().unwrap();
        assert_eq!(
            identity.sts_endpoint.as_str(),
            "https://sts.eu-north-1.amazonaws.com/"
        );
        assert_eq!(identity.session_name, "drs-0");
        let overridden = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/drs"),
            ("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:8333"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
        ]);
        let identity = WebIdentity::from_lookup(&overridden, &sts)
            .unwrap()
            .unwrap();
        assert_eq!(identity.sts_endpoint.as_str(), "http://127.0.0.1:8333/");
        assert!(identity.session_name.starts_with("c4gh-drs-server-"));
        let flag = StsSettings {
            endpoint: Some("http://127.0.0.1:2".into()),
            ..sts.clone()
        };
        let identity = WebIdentity::from_lookup(&overridden, &flag)
            .unwrap()
            .unwrap();
        assert_eq!(identity.sts_endpoint.as_str(), "http://127.0.0.1:2/");
        let no_role = env(&[("AWS_WEB_IDENTITY_TOKEN_FILE", "/t")]);
        let err = WebIdentity::from_lookup(&no_role, &sts).unwrap_err();
        assert!(err.to_string().contains("AWS_ROLE_ARN"), "{err}");
        let bad_name = env(&[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "r"),
            ("AWS_ROLE_SESSION_NAME", "has space"),
        ]);
        assert!(WebIdentity::from_lookup(&bad_name, &sts).is_err());
        assert!(WebIdentity::from_lookup(&env(&[]), &sts).unwrap().is_none());
    }

    #[test]
    fn ini_profiles() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=B\n\n\
                    # comment\n[archive]\naws_access_key_id=C\naws_secret_access_key = D\n\
                    aws_session_token = T\n[profile other]\naws_access_key_id=E\n";
        let default = ini_credentials(text, "default").unwrap();
        assert_eq!((default.key(), default.secret()), ("A", "B"));
        assert_eq!(default.token(), None);
        let archive = ini_credentials(text, "archive").unwrap();
        assert_eq!((archive.key(), archive.secret()), ("C", "D"));
        assert_eq!(archive.token(), Some("T"));
        assert!(
            ini_credentials(text, "profile other").is_none(),
            "no secret"
        );
        assert!(ini_credentials(text, "missing").is_none());
    }

    #[test]
    fn secrets_stay_out_of_debug_and_errors() {
        let parsed = parse_response(RESPONSE).unwrap();
        let expires = parsed.expires;
        let provider = CredentialProvider::with(
            Signing {
                credentials: parsed.credentials,
                expires: Some(expires),
                refresh_at: None,
            },
            Some(WebIdentity {
                token_file: "/t".into(),
                role_arn: "arn:aws:iam::1:role/drs".into(),
                session_name: "s".into(),
                sts_endpoint: Url::parse("https://sts.example").unwrap(),
                duration: None,
            }),
            http_client(),
        );
        let debug = format!("{provider:?} {:?}", provider.current());
        assert!(debug.contains("ASIAEXAMPLE"), "{debug}");
        for secret in ["s3cr3t", "FwoG"] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let signed = format!("{:?}", provider.signing());
        for secret in ["s3cr3t", "FwoG"] {
            assert!(!signed.contains(secret), "{signed}");
        }
    }

    #[tokio::test]
    async fn a_missing_token_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let identity = WebIdentity {
            token_file: dir.path().join("token"),
            role_arn: "arn:aws:iam::1:role/drs".into(),
            session_name: "s".into(),
            sts_endpoint: Url::parse("http://127.0.0.1:9").unwrap(),
            duration: None,
        };
        let err = CredentialProvider::web_identity(identity.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::TokenFile { .. }), "{err}");
        assert!(err.to_string().contains("token"), "{err}");
        std::fs::write(dir.path().join("token"), "  \n").unwrap();
        let err = CredentialProvider::web_identity(identity)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
