//! [`EffectivePolicy`]: a validated `Crypt4ghPolicy` with every default filled in. Building one is
//! the single validation both the policy controller (status conditions) and the webhook (denials)
//! use, so the two cannot disagree.

use std::collections::BTreeMap;

use drs::flavour::FlavourChoice;
use drs::uri::{DrsUri, ParseOptions};
use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::policy::{Crypt4ghPolicySpec, UnmountedPaths};
use c4gh_contract::Mode;

/// Default sidecar image when neither the policy nor the operator names one.
pub const DEFAULT_SIDECAR_IMAGE: &str =
    concat!("ghcr.io/c4gh/c4gh-sidecar:", env!("CARGO_PKG_VERSION"));

/// Default gate timeout (seconds).
pub const DEFAULT_GATE_TIMEOUT: u32 = 3600;

/// Default parallel fetches of the sidecar.
pub const DEFAULT_CONCURRENCY: u32 = 4;

/// Minimum lifetime of a projected ServiceAccount token (the API server's own minimum).
pub const MIN_TOKEN_SECONDS: i64 = 600;

/// Operator-wide defaults (from the operator's flags).
#[derive(Clone, Debug)]
pub struct OperatorDefaults {
    /// Sidecar image used when the policy names none.
    pub sidecar_image: String,
    /// `C4GH_LOG_FORMAT` given to the sidecar and the gate.
    pub sidecar_log_format: String,
}

impl Default for OperatorDefaults {
    fn default() -> Self {
        Self {
            sidecar_image: DEFAULT_SIDECAR_IMAGE.to_owned(),
            sidecar_log_format: "json".to_owned(),
        }
    }
}

/// Where the sidecar's bearer token comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenSource {
    /// A key of a Secret.
    Secret {
        /// Secret name.
        name: String,
        /// Key.
        key: String,
    },
    /// A projected ServiceAccount token.
    ServiceAccount {
        /// Audience.
        audience: String,
        /// Lifetime in seconds.
        expiration_seconds: i64,
    },
}

/// A validated policy with defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct EffectivePolicy {
    /// The policy's name.
    pub name: String,
    /// Allowed `host` / `host:port` entries (lowercase).
    pub allowed_hosts: Vec<String>,
    /// ConfigMap name and key of the DRS CA bundle.
    pub ca_bundle: Option<(String, String)>,
    /// Compact-identifier prefix map.
    pub prefix_map: BTreeMap<String, String>,
    /// `host[:port]` → flavour (`C4GH_SERVER_FLAVOURS`), validated.
    pub server_flavours: BTreeMap<String, String>,
    /// Bearer token source.
    pub token: Option<TokenSource>,
    /// Secret name and key holding passports.
    pub passports: Option<(String, String)>,
    /// Allowed modes.
    pub allowed_modes: Vec<Mode>,
    /// Mode of inputs that do not name one.
    pub default_mode: Mode,
    /// Plaintext size limit per input.
    pub max_plaintext_bytes: Option<u64>,
    /// Inputs outside task mounts.
    pub unmounted_paths: UnmountedPaths,
    /// Containers that never get the key.
    pub exclude_containers: Vec<String>,
    /// Sidecar image.
    pub image: String,
    /// Image pull policy.
    pub image_pull_policy: Option<String>,
    /// Sidecar and gate resources.
    pub resources: ResourceRequirements,
    /// Parallel fetches.
    pub concurrency: u32,
    /// Gate timeout (seconds).
    pub gate_timeout_seconds: u32,
    /// Development: ports in URIs.
    pub allow_port: bool,
    /// Development: plain HTTP.
    pub allow_http: bool,
    /// Sidecar log format.
    pub log_format: String,
    /// Recipients of outputs that name none (base64 of the 32-byte keys).
    pub output_default_recipients: Vec<String>,
    /// Recipients added to every output (base64 of the 32-byte keys).
    pub output_required_recipients: Vec<String>,
    /// Least `terminationGracePeriodSeconds` of a pod with outputs.
    pub output_grace_seconds: u32,
}

/// Default of `spec.outputs.gracePeriodSeconds`.
pub const DEFAULT_OUTPUT_GRACE_SECONDS: u32 = 1800;

/// Parses a list of Crypt4GH public keys from policy field `field`, as base64 of the raw keys.
fn recipient_keys(problems: &mut Vec<String>, field: &str, keys: &[String]) -> Vec<String> {
    keys.iter()
        .enumerate()
        .filter_map(|(i, k)| match crate::outputs::canonical_key(k) {
            Ok(key) => Some(key),
            Err(e) => {
                problems.push(format!(
                    "{field}[{i}] is not a Crypt4GH public key ({e}); give the PEM text of a crypt4gh-keygen .pub file or its base64 line"
                ));
                None
            }
        })
        .collect()
}

impl EffectivePolicy {
    /// Validates `spec` and fills in defaults.
    ///
    /// # Errors
    ///
    /// Every problem found, each a sentence saying which field is wrong and how to fix it.
    pub fn from_spec(
        name: &str,
        spec: &Crypt4ghPolicySpec,
        defaults: &OperatorDefaults,
    ) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let opts = ParseOptions {
            allow_port: spec.allow_port,
            allow_http: spec.allow_http,
        };
        if spec.allowed_hosts.is_empty() {
            problems.push("spec.allowedHosts is empty; list the DRS hosts pods may use".to_owned());
        }
        let mut allowed_hosts = Vec::new();
        for h in &spec.allowed_hosts {
            let lower = h.to_ascii_lowercase();
            match DrsUri::parse(&format!("drs://{lower}/x"), &opts) {
                Ok(u) if u.authority().as_deref() == Some(lower.as_str()) => {
                    allowed_hosts.push(lower)
                }
                Ok(_) => problems.push(format!(
                    "spec.allowedHosts entry {h:?} is not in canonical host[:port] form"
                )),
                Err(e) => problems.push(format!(
                    "spec.allowedHosts entry {h:?} is not a host or host:port ({}){}",
                    e.kind(),
                    if lower.contains(':') && !spec.allow_port {
                        "; ports need spec.allowPort: true"
                    } else {
                        ""
                    }
                )),
            }
        }
        for (prefix, pattern) in &spec.prefix_map {
            if prefix.is_empty()
                || !prefix
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_')
            {
                problems.push(format!(
                    "spec.prefixMap key {prefix:?} is not a compact-identifier prefix (lowercase letters, digits, `.`, `_`)"
                ));
            }
            match pattern_authority(pattern, spec.allow_http) {
                Ok(authority) if allowed_hosts.contains(&authority) => {}
                Ok(authority) => problems.push(format!(
                    "spec.prefixMap[{prefix}] points at host {authority:?}, which is not in spec.allowedHosts; add it there"
                )),
                Err(why) => problems.push(format!("spec.prefixMap[{prefix}] {why}")),
            }
        }
        let mut server_flavours = BTreeMap::new();
        for (host, flavour) in &spec.server_flavours {
            let host_lower = host.to_ascii_lowercase();
            if !allowed_hosts.contains(&host_lower) {
                problems.push(format!(
                    "spec.serverFlavours key {host:?} is not in spec.allowedHosts; add it there or remove the entry"
                ));
            }
            match flavour.parse::<FlavourChoice>() {
                Ok(choice) => {
                    server_flavours.insert(host_lower, choice.to_string());
                }
                Err(e) => problems.push(format!("spec.serverFlavours[{host}]: {e}")),
            }
        }
        let ca_bundle = spec.ca_bundle.as_ref().map(|c| {
            check_name(&mut problems, "spec.caBundle.name", &c.name);
            (
                c.name.clone(),
                c.key.clone().unwrap_or_else(|| "ca.crt".to_owned()),
            )
        });
        let mut token = None;
        let mut passports = None;
        if let Some(auth) = &spec.auth {
            match (&auth.bearer_token_secret, &auth.service_account_token) {
                (Some(_), Some(_)) => problems.push(
                    "spec.auth sets both bearerTokenSecret and serviceAccountToken; choose one"
                        .to_owned(),
                ),
                (Some(s), None) => {
                    check_name(&mut problems, "spec.auth.bearerTokenSecret.name", &s.name);
                    token = Some(TokenSource::Secret {
                        name: s.name.clone(),
                        key: s.key.clone().unwrap_or_else(|| "token".to_owned()),
                    });
                }
                (None, Some(sa)) => {
                    if sa.audience.trim().is_empty() {
                        problems.push(
                            "spec.auth.serviceAccountToken.audience is empty; set the audience the DRS server expects".to_owned(),
                        );
                    }
                    let expiration_seconds = sa.expiration_seconds.unwrap_or(MIN_TOKEN_SECONDS);
                    if expiration_seconds < MIN_TOKEN_SECONDS {
                        problems.push(format!(
                            "spec.auth.serviceAccountToken.expirationSeconds is {expiration_seconds}; the minimum is {MIN_TOKEN_SECONDS}"
                        ));
                    }
                    token = Some(TokenSource::ServiceAccount {
                        audience: sa.audience.clone(),
                        expiration_seconds,
                    });
                }
                (None, None) => {}
            }
            if let Some(p) = &auth.passports_secret {
                check_name(&mut problems, "spec.auth.passportsSecret.name", &p.name);
                passports = Some((
                    p.name.clone(),
                    p.key.clone().unwrap_or_else(|| "passports".to_owned()),
                ));
            }
        }
        let allowed_modes = spec
            .allowed_modes
            .clone()
            .unwrap_or_else(|| vec![Mode::Encrypted]);
        if allowed_modes.is_empty() {
            problems.push("spec.allowedModes is empty; allow at least `encrypted`".to_owned());
        }
        let default_mode = spec.default_mode.unwrap_or(Mode::Encrypted);
        if !allowed_modes.is_empty() && !allowed_modes.contains(&default_mode) {
            problems.push(format!(
                "spec.defaultMode {:?} is not in spec.allowedModes; add it or choose an allowed default",
                default_mode.as_str()
            ));
        }
        if allowed_modes.contains(&Mode::Plaintext) {
            match spec.max_plaintext_bytes {
                None => problems.push(
                    "spec.allowedModes includes plaintext but spec.maxPlaintextBytes is not set; plaintext is kept in memory, so set a size limit".to_owned(),
                ),
                Some(0) => problems.push("spec.maxPlaintextBytes must be greater than 0".to_owned()),
                Some(_) => {}
            }
        }
        let sidecar = spec.sidecar.clone().unwrap_or_default();
        let image = sidecar
            .image
            .clone()
            .unwrap_or_else(|| defaults.sidecar_image.clone());
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            problems.push(format!(
                "spec.sidecar.image {image:?} is not an image reference"
            ));
        }
        if let Some(p) = &sidecar.image_pull_policy
            && !matches!(p.as_str(), "Always" | "IfNotPresent" | "Never")
        {
            problems.push(format!(
                "spec.sidecar.imagePullPolicy {p:?} must be Always, IfNotPresent or Never"
            ));
        }
        let concurrency = sidecar.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if !(1..=64).contains(&concurrency) {
            problems.push(format!(
                "spec.sidecar.concurrency {concurrency} must be between 1 and 64"
            ));
        }
        let gate_timeout_seconds = spec.gate_timeout_seconds.unwrap_or(DEFAULT_GATE_TIMEOUT);
        if !(1..=86_400).contains(&gate_timeout_seconds) {
            problems.push(format!(
                "spec.gateTimeoutSeconds {gate_timeout_seconds} must be between 1 and 86400"
            ));
        }
        let outputs = spec.outputs.clone().unwrap_or_default();
        let output_default_recipients = recipient_keys(
            &mut problems,
            "spec.outputs.defaultRecipients",
            &outputs.default_recipients,
        );
        let output_required_recipients = recipient_keys(
            &mut problems,
            "spec.outputs.requiredRecipients",
            &outputs.required_recipients,
        );
        let output_grace_seconds = outputs
            .grace_period_seconds
            .unwrap_or(DEFAULT_OUTPUT_GRACE_SECONDS);
        if !(1..=86_400).contains(&output_grace_seconds) {
            problems.push(format!(
                "spec.outputs.gracePeriodSeconds {output_grace_seconds} must be between 1 and 86400"
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            output_default_recipients,
            output_required_recipients,
            output_grace_seconds,
            name: name.to_owned(),
            allowed_hosts,
            ca_bundle,
            prefix_map: spec.prefix_map.clone(),
            server_flavours,
            token,
            passports,
            allowed_modes,
            default_mode,
            max_plaintext_bytes: spec.max_plaintext_bytes,
            unmounted_paths: spec.unmounted_paths.unwrap_or(UnmountedPaths::EmptyDir),
            exclude_containers: spec
                .exclude_containers
                .clone()
                .unwrap_or_else(|| vec!["istio-proxy".to_owned(), "linkerd-proxy".to_owned()]),
            image,
            image_pull_policy: sidecar.image_pull_policy,
            resources: sidecar.resources.unwrap_or_else(default_resources),
            concurrency,
            gate_timeout_seconds,
            allow_port: spec.allow_port,
            allow_http: spec.allow_http,
            log_format: defaults.sidecar_log_format.clone(),
        })
    }

    /// Whether `authority` (`host` or `host:port`, lowercase) is allowed.
    pub fn host_allowed(&self, authority: &str) -> bool {
        self.allowed_hosts.iter().any(|h| h == authority)
    }
}

/// Default sidecar resources: requests 10m CPU / 32Mi, memory limit 128Mi.
pub fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity("10m".to_owned())),
            ("memory".to_owned(), Quantity("32Mi".to_owned())),
        ])),
        limits: Some(BTreeMap::from([(
            "memory".to_owned(),
            Quantity("128Mi".to_owned()),
        )])),
        ..ResourceRequirements::default()
    }
}

/// Checks a Kubernetes object name (RFC 1123 subdomain).
fn check_name(problems: &mut Vec<String>, field: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        problems.push(format!(
            "{field} {name:?} is not a valid object name (lowercase letters, digits, `-`, `.`)"
        ));
    }
}

/// The `host[:port]` of a prefix-map URL pattern, which must be `https://host[:port]/…{id}…`
/// (or `http://` with `allowHttp`).
fn pattern_authority(pattern: &str, allow_http: bool) -> Result<String, String> {
    if !pattern.contains("{id}") {
        return Err(format!("{pattern:?} does not contain `{{id}}`"));
    }
    let rest = if let Some(r) = pattern.strip_prefix("https://") {
        r
    } else if let Some(r) = pattern.strip_prefix("http://").filter(|_| allow_http) {
        r
    } else {
        return Err(format!(
            "{pattern:?} must start with https:// (http:// only with spec.allowHttp: true)"
        ));
    };
    let authority = rest
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if authority.is_empty() || authority.contains('{') {
        return Err(format!("{pattern:?} has no host"));
    }
    Ok(authority)
}
