//! The command line of `c4gh-drs-server`: `serve` and `add`, every flag also an environment
//! variable. In the library so that completions and man pages are generated from it
//! ([`command`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::admin::{AddOptions, add_file, add_to_store};
use crate::auth::jwt::{JwksSource, JwtConfig};
use crate::auth::passport::{PassportConfig, VisaIssuer};
use crate::auth::tokenreview::{IN_CLUSTER_DIR, ReviewerCredential, TokenReviewConfig};
use crate::auth::tokens::StaticTokens;
use crate::credentials::{SharedFiles, StsSettings};
use crate::secret::SecretString;
use crate::store::{S3Config, S3Store};
use crate::telemetry::LogFormat;
use crate::tls::TlsConfig;
use crate::{Config, Settings};
use anyhow::{Context, bail};
use c4gh::keys::{PublicKey, SecretKey};
use clap::{Args, CommandFactory, Parser, Subcommand};
use zeroize::Zeroizing;

/// Examples shown after `c4gh-drs-server --help`.
const EXAMPLES: &str = "\
EXAMPLES:
  c4gh keygen --sk server.sec --pk server.pub
  c4gh-drs-server add --catalog /srv/catalog --file sample.bam --id sample1 --public-key server.pub
  AWS_PROFILE=archive c4gh-drs-server add --catalog /srv/catalog --s3-bucket bodies \\
      --file sample.bam --id sample2 --public-key server.pub
  C4GH_DRS_PASSPHRASE=... c4gh-drs-server serve --catalog /srv/catalog --secret-key server.sec \\
      --tls-cert tls.crt --tls-key tls.key --tokens-file tokens.json
  curl -H 'Authorization: Bearer TOKEN' https://localhost:8443/ga4gh/drs/v1/objects/sample1";

/// The command-line definition (for completions and man pages).
pub fn command() -> clap::Command {
    Cli::command()
}

/// A GA4GH DRS 1.5 server for Crypt4GH objects that re-encrypts headers for each requester.
#[derive(Parser)]
#[command(name = "c4gh-drs-server", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Log line format.
    #[arg(
        long,
        env = "C4GH_DRS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    /// Log filter in RUST_LOG syntax.
    #[arg(long, env = "C4GH_DRS_LOG", default_value = "info", global = true)]
    pub log_filter: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the catalog over HTTPS.
    Serve(Box<ServeArgs>),
    /// Encrypt a plain file for the server key and register it in the catalog.
    Add(Box<AddArgs>),
}

#[derive(Args)]
struct KeyArgs {
    /// The server's Crypt4GH secret key file (crypt4gh-keygen format).
    #[arg(long, env = "C4GH_DRS_SECRET_KEY")]
    secret_key: Option<PathBuf>,
    /// File holding the secret key's passphrase (first line).
    #[arg(long, env = "C4GH_DRS_PASSPHRASE_FILE", conflicts_with = "passphrase")]
    passphrase_file: Option<PathBuf>,
    /// The secret key's passphrase. Prefer the environment variable or --passphrase-file: a
    /// flag is visible in the process list.
    #[arg(long, env = "C4GH_DRS_PASSPHRASE", hide_env_values = true)]
    passphrase: Option<String>,
}

impl KeyArgs {
    fn load(&mut self) -> anyhow::Result<SecretKey> {
        let Some(path) = &self.secret_key else {
            bail!("give the server's Crypt4GH secret key with --secret-key (C4GH_DRS_SECRET_KEY)");
        };
        let passphrase = match (&self.passphrase_file, self.passphrase.take()) {
            (Some(file), _) => Some(read_passphrase(file)?),
            (None, Some(value)) => Some(Zeroizing::new(
                SecretString::new(value).expose().as_bytes().to_vec(),
            )),
            (None, None) => None,
        };
        SecretKey::read_file(path, || passphrase).with_context(|| {
            format!(
                "loading the server's secret key {} (for an encrypted key set \
                 C4GH_DRS_PASSPHRASE or --passphrase-file)",
                path.display()
            )
        })
    }
}

fn read_passphrase(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("reading the passphrase file {}", path.display()))?,
    );
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Ok(Zeroizing::new(line.to_vec()))
}

/// Where the bodies are when they are in an S3-compatible object store.
#[derive(Args)]
struct S3Args {
    /// Keep the bodies in this S3 bucket instead of the catalog directory: readers get a
    /// short-lived pre-signed URL of the body, and the add command uploads bodies there. Credentials:
    /// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else web identity
    /// (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN [+ AWS_ROLE_SESSION_NAME], exchanged with STS
    /// and refreshed before expiry), else the profile of ~/.aws/credentials or ~/.aws/config
    /// (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE).
    #[arg(long, env = "C4GH_DRS_S3_BUCKET")]
    s3_bucket: Option<String>,
    /// Prefix of the body keys in the bucket (e.g. archive/); a body is PREFIX + ID.c4gh-body.
    #[arg(long, env = "C4GH_DRS_S3_PREFIX", default_value = "")]
    s3_prefix: String,
    /// Region the requests are signed for.
    #[arg(long, env = "C4GH_DRS_S3_REGION", default_value = "us-east-1")]
    s3_region: String,
    /// S3 endpoint (default: https://s3.REGION.amazonaws.com), e.g. http://127.0.0.1:8333 for
    /// a SeaweedFS or MinIO.
    #[arg(long, env = "C4GH_DRS_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
    /// Path-style URLs (ENDPOINT/BUCKET/KEY) instead of virtual-host style; most self-hosted
    /// stores (SeaweedFS, MinIO, Ceph) and IP-address endpoints need it.
    #[arg(long, env = "C4GH_DRS_S3_PATH_STYLE")]
    s3_path_style: bool,
    /// The profile of the shared credentials/config files (default: AWS_PROFILE, else default).
    #[arg(long, env = "C4GH_DRS_S3_PROFILE")]
    s3_profile: Option<String>,
    /// STS endpoint for web identity credentials (default: AWS_ENDPOINT_URL_STS, else
    /// AWS_ENDPOINT_URL, else https://sts.REGION.amazonaws.com).
    #[arg(long, env = "C4GH_DRS_S3_STS_ENDPOINT")]
    s3_sts_endpoint: Option<String>,
    /// DurationSeconds asked of STS for web identity credentials (default: STS's, one hour on
    /// AWS; 900 to the role's maximum).
    #[arg(long, env = "C4GH_DRS_S3_STS_DURATION_SECONDS")]
    s3_sts_duration_seconds: Option<u64>,
    /// Lifetime in seconds of the pre-signed body URLs handed to readers (a client whose URL
    /// expires mid-download asks for a new one and resumes).
    #[arg(long, env = "C4GH_DRS_SIGNED_URL_SECONDS", default_value_t = 300)]
    signed_url_seconds: u64,
}

impl S3Args {
    /// The store, if a bucket is given, with its credentials resolved (one STS exchange for web
    /// identity) and their refresh started on the current runtime.
    async fn store(&self) -> anyhow::Result<Option<Arc<S3Store>>> {
        let Some(bucket) = &self.s3_bucket else {
            return Ok(None);
        };
        let endpoint = self
            .s3_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.s3_region));
        let endpoint = reqwest::Url::parse(&endpoint)
            .with_context(|| format!("--s3-endpoint {endpoint:?} is not a URL"))?;
        let config = S3Config {
            endpoint,
            bucket: bucket.clone(),
            prefix: self.s3_prefix.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            url_lifetime: Duration::from_secs(self.signed_url_seconds),
        };
        let sts = StsSettings {
            endpoint: self.s3_sts_endpoint.clone(),
            region: self.s3_region.clone(),
            duration: self.s3_sts_duration_seconds.map(Duration::from_secs),
        };
        let credentials =
            crate::credentials::resolve(self.s3_profile.as_deref(), &SharedFiles::from_env(), &sts)
                .await?;
        credentials.spawn_refresh();
        Ok(Some(Arc::new(S3Store::with_provider(
            &config,
            credentials,
        )?)))
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "C4GH_DRS_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// The catalog directory.
    #[arg(long, env = "C4GH_DRS_CATALOG")]
    catalog: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
    /// TLS certificate chain (PEM).
    #[arg(
        long,
        env = "C4GH_DRS_TLS_CERT",
        required_unless_present = "insecure_plain_http"
    )]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        env = "C4GH_DRS_TLS_KEY",
        required_unless_present = "insecure_plain_http"
    )]
    tls_key: Option<PathBuf>,
    /// Seconds between checks for changed TLS files (0: never reload).
    #[arg(long, env = "C4GH_DRS_TLS_RELOAD_SECONDS", default_value_t = 60)]
    tls_reload_seconds: u64,
    /// Serve plain HTTP without TLS (development only).
    #[arg(long, env = "C4GH_DRS_INSECURE_PLAIN_HTTP", conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_plain_http: bool,
    /// Static bearer tokens: a JSON list of {"subject", "token"}.
    #[arg(long, env = "C4GH_DRS_TOKENS_FILE")]
    tokens_file: Option<PathBuf>,
    /// Accept JWTs from this issuer (exact iss claim), e.g. a Kubernetes ServiceAccount issuer.
    #[arg(long, env = "C4GH_DRS_OIDC_ISSUER", requires = "oidc_audience")]
    oidc_issuer: Option<String>,
    /// Accepted JWT audiences (comma-separated); a token must name one.
    #[arg(long, env = "C4GH_DRS_OIDC_AUDIENCE", value_delimiter = ',')]
    oidc_audience: Vec<String>,
    /// JWKS URL (default: the issuer's discovery document's jwks_uri).
    #[arg(long, env = "C4GH_DRS_JWKS_URL", conflicts_with = "jwks_file")]
    jwks_url: Option<String>,
    /// JWKS file (e.g. the output of kubectl get --raw /openid/v1/jwks), re-read on refresh.
    #[arg(long, env = "C4GH_DRS_JWKS_FILE")]
    jwks_file: Option<PathBuf>,
    /// PEM CA bundle trusted (besides the web PKI roots) for discovery and JWKS fetches.
    #[arg(long, env = "C4GH_DRS_OIDC_CA_FILE")]
    oidc_ca_file: Option<PathBuf>,
    /// Bearer token file sent with discovery and JWKS fetches (e.g. a ServiceAccount token when
    /// the API server requires authentication for /openid/v1/jwks).
    #[arg(long, env = "C4GH_DRS_OIDC_TOKEN_FILE")]
    oidc_token_file: Option<PathBuf>,
    /// Trust a GA4GH passport broker or visa issuer (repeatable): ISSUER=JWKS_URL, e.g.
    /// https://login.elixir-czech.org/oidc/=https://login.elixir-czech.org/oidc/jwk.
    #[arg(
        long = "visa-issuer",
        env = "C4GH_DRS_VISA_ISSUERS",
        value_delimiter = ','
    )]
    visa_issuers: Vec<String>,
    /// PEM CA bundle trusted (besides the web PKI roots) for the visa issuers' JWKS.
    #[arg(long, env = "C4GH_DRS_VISA_CA_FILE")]
    visa_ca_file: Option<PathBuf>,
    /// Check Kubernetes ServiceAccount tokens with the cluster's TokenReview API, requiring
    /// these audiences (comma-separated; what the tasks' projected tokens are issued for): a
    /// token stops working when its pod is deleted. The server's ServiceAccount needs the
    /// system:auth-delegator ClusterRole.
    #[arg(
        long = "tokenreview-audience",
        env = "C4GH_DRS_TOKENREVIEW_AUDIENCE",
        value_delimiter = ','
    )]
    tokenreview_audiences: Vec<String>,
    /// The apiserver for TokenReview.
    #[arg(
        long,
        env = "C4GH_DRS_TOKENREVIEW_API_SERVER",
        default_value = "https://kubernetes.default.svc"
    )]
    tokenreview_api_server: String,
    /// PEM CA bundle of the apiserver (default: the pod's ServiceAccount ca.crt).
    #[arg(long, env = "C4GH_DRS_TOKENREVIEW_CA_FILE")]
    tokenreview_ca_file: Option<PathBuf>,
    /// This server's own token for calling TokenReview, re-read for every review (default: the
    /// pod's ServiceAccount token).
    #[arg(long, env = "C4GH_DRS_TOKENREVIEW_TOKEN_FILE")]
    tokenreview_token_file: Option<PathBuf>,
    /// Seconds a TokenReview answer is reused (never past the token's exp): also the longest a
    /// deleted pod's token stays accepted. 0 asks the apiserver on every request.
    #[arg(long, env = "C4GH_DRS_TOKENREVIEW_CACHE_SECONDS", default_value_t = 10)]
    tokenreview_cache_seconds: u64,
    /// Let subjects matching PATTERN read every object of DATASET (repeatable):
    /// DATASET=PATTERN, PATTERN as in an object's readers, e.g.
    /// EGAD00000000001=system:serviceaccount:lab:* (every ServiceAccount of namespace lab).
    #[arg(
        long = "dataset-reader",
        env = "C4GH_DRS_DATASET_READERS",
        value_delimiter = ','
    )]
    dataset_readers: Vec<String>,
    /// Lifetime in seconds of the body tokens a passport holder's crypt4gh-body access URL
    /// carries (capped by the passports' exp).
    #[arg(long, env = "C4GH_DRS_BODY_TOKEN_SECONDS", default_value_t = 3600)]
    body_token_seconds: u64,
    /// Public base URL used in self_uri and access URLs (default: from the Host header).
    #[arg(long, env = "C4GH_DRS_PUBLIC_URL")]
    public_url: Option<String>,
    /// Header requests must use the key the same identity (pod UID of a ServiceAccount token,
    /// else token subject) presented first, until its token expires; another key → 403.
    #[arg(long, env = "C4GH_DRS_BIND_KEYS")]
    bind_keys: bool,
    /// Most identities bound at once with --bind-keys (when full of unexpired bindings, new
    /// identities get 503).
    #[arg(long, env = "C4GH_DRS_MAX_KEY_BINDINGS", default_value_t = crate::binding::DEFAULT_MAX_BINDINGS)]
    max_key_bindings: usize,
    /// Seconds a static token (which has no expiry) stays bound to its first key.
    #[arg(long, env = "C4GH_DRS_STATIC_BINDING_TTL_SECONDS", default_value_t = 12 * 3600)]
    static_binding_ttl_seconds: u64,
    /// Most items in one bulk request (more → 413).
    #[arg(long, env = "C4GH_DRS_MAX_BULK", default_value_t = 100)]
    max_bulk: usize,
    /// Seconds to let in-flight requests finish on shutdown.
    #[arg(long, env = "C4GH_DRS_SHUTDOWN_TIMEOUT_SECONDS", default_value_t = 10)]
    shutdown_timeout_seconds: u64,
    /// Most simultaneous connections.
    #[arg(long, env = "C4GH_DRS_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    #[command(flatten)]
    s3: S3Args,
}

#[derive(Args)]
struct AddArgs {
    /// The catalog directory.
    #[arg(long, env = "C4GH_DRS_CATALOG")]
    catalog: PathBuf,
    /// The plain file to encrypt and register.
    #[arg(long)]
    file: PathBuf,
    /// The object ID (letters, digits, . _ ~ : -; at most 128).
    #[arg(long)]
    id: String,
    /// Name reported in the DRS object (default: the file name).
    #[arg(long)]
    name: Option<String>,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Media type of the plaintext.
    #[arg(long)]
    mime_type: Option<String>,
    /// The dataset the object belongs to (e.g. EGAD00000000001), named in the audit trail.
    #[arg(long)]
    dataset: Option<String>,
    /// Who may read it (repeatable): a subject, a prefix ending in *, or * for any
    /// authenticated caller.
    #[arg(long = "reader", default_value = "*")]
    readers: Vec<String>,
    /// The server's Crypt4GH public key file (alternatively --secret-key).
    #[arg(long, env = "C4GH_DRS_PUBLIC_KEY")]
    public_key: Option<PathBuf>,
    #[command(flatten)]
    key: KeyArgs,
    #[command(flatten)]
    s3: S3Args,
}

impl Cli {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => serve(*args),
            Command::Add(args) => add(*args),
        }
    }
}

fn add(mut args: AddArgs) -> anyhow::Result<()> {
    let public = match &args.public_key {
        Some(path) => PublicKey::read_file(path)
            .with_context(|| format!("reading the server's public key {}", path.display()))?,
        None => args.key.load()?.public_key(),
    };
    let options = AddOptions {
        id: args.id.clone(),
        name: args.name.take(),
        description: args.description.take(),
        mime_type: args.mime_type.take(),
        dataset: args.dataset.take(),
        readers: args.readers.clone(),
    };
    let record = if args.s3.s3_bucket.is_some() {
        tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(async {
                let Some(store) = args.s3.store().await? else {
                    bail!("no object store configured");
                };
                Ok(add_to_store(&args.catalog, &public, &args.file, &options, &store).await?)
            })?
    } else {
        add_file(&args.catalog, &public, &args.file, &options)?
    };
    println!("{}", serde_json::to_string_pretty(&record)?);
    Ok(())
}

fn serve(mut args: ServeArgs) -> anyhow::Result<()> {
    let server_key = args.key.load()?;
    let tls = if args.insecure_plain_http {
        tracing::warn!("serving plain HTTP (--insecure-plain-http): for development only");
        None
    } else {
        let (Some(cert), Some(key)) = (args.tls_cert.take(), args.tls_key.take()) else {
            bail!("give --tls-cert and --tls-key, or --insecure-plain-http for development");
        };
        Some(TlsConfig::Files {
            cert,
            key,
            reload_interval: (args.tls_reload_seconds > 0)
                .then(|| Duration::from_secs(args.tls_reload_seconds)),
        })
    };
    let tokens = match &args.tokens_file {
        Some(path) => StaticTokens::load(path)?,
        None => StaticTokens::default(),
    };
    let jwt = match args.oidc_issuer.take() {
        Some(issuer) => {
            let mut jwt = JwtConfig::new(issuer, args.oidc_audience.clone());
            if let Some(url) = args.jwks_url.take() {
                jwt.jwks = JwksSource::Url(url);
            } else if let Some(file) = args.jwks_file.take() {
                jwt.jwks = JwksSource::File(file);
            }
            if let Some(ca) = &args.oidc_ca_file {
                jwt.ca_pem =
                    Some(std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?);
            }
            if let Some(file) = &args.oidc_token_file {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                jwt.fetch_token = Some(SecretString::new(text.trim().to_owned()));
            }
            Some(jwt)
        }
        None => None,
    };
    let passports = if args.visa_issuers.is_empty() {
        None
    } else {
        let mut issuers = Vec::new();
        for entry in &args.visa_issuers {
            let Some((issuer, rest)) = entry.split_once("=https://") else {
                bail!("--visa-issuer {entry:?} must be ISSUER=JWKS_URL with an https:// JWKS URL");
            };
            if issuer.is_empty() {
                bail!("--visa-issuer {entry:?}: the issuer is empty");
            }
            issuers.push(VisaIssuer {
                issuer: issuer.to_owned(),
                jwks_url: format!("https://{rest}"),
            });
        }
        let mut config = PassportConfig::new(issuers);
        if let Some(path) = &args.visa_ca_file {
            config.ca_pem = Some(
                std::fs::read(path)
                    .with_context(|| format!("reading the visa CA bundle {}", path.display()))?,
            );
        }
        Some(config)
    };
    let token_review = if args.tokenreview_audiences.is_empty() {
        None
    } else {
        let mut config = TokenReviewConfig::in_cluster(args.tokenreview_audiences.clone());
        config.api_server = args.tokenreview_api_server.clone();
        let ca = args
            .tokenreview_ca_file
            .clone()
            .unwrap_or_else(|| Path::new(IN_CLUSTER_DIR).join("ca.crt"));
        config.ca_pem = Some(std::fs::read(&ca).with_context(|| {
            format!(
                "reading the apiserver CA bundle {} for --tokenreview-audience (give \
                 --tokenreview-ca-file outside a pod)",
                ca.display()
            )
        })?);
        if let Some(file) = &args.tokenreview_token_file {
            config.credential = ReviewerCredential::TokenFile(file.clone());
        }
        config.cache_ttl = Duration::from_secs(args.tokenreview_cache_seconds);
        Some(config)
    };
    let mut dataset_readers = Vec::new();
    for entry in &args.dataset_readers {
        match entry.split_once('=') {
            Some((dataset, pattern)) if !dataset.is_empty() && !pattern.is_empty() => {
                dataset_readers.push((dataset.to_owned(), pattern.to_owned()));
            }
            _ => bail!(
                "--dataset-reader {entry:?} must be DATASET=PATTERN, e.g. \
                 EGAD00000000001=system:serviceaccount:lab:*"
            ),
        }
    }
    if tokens.is_empty() && jwt.is_none() && passports.is_none() && token_review.is_none() {
        bail!(
            "no way to authenticate callers: give --tokens-file, --oidc-issuer with \
             --oidc-audience, --tokenreview-audience, and/or --visa-issuer"
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let body_store = runtime.block_on(args.s3.store())?;
    let mut config = Config::new(args.catalog.clone(), server_key, tls);
    config.listen = args.listen;
    config.tokens = tokens;
    config.jwt = jwt;
    config.passports = passports;
    config.token_review = token_review;
    config.settings = Settings {
        public_url: args.public_url.take(),
        max_bulk: args.max_bulk,
        bind_keys: args.bind_keys,
        max_key_bindings: args.max_key_bindings,
        static_binding_ttl: Duration::from_secs(args.static_binding_ttl_seconds),
        dataset_readers,
        body_token_ttl: Duration::from_secs(args.body_token_seconds),
        body_store,
        ..Settings::default()
    };
    config.shutdown_timeout = Duration::from_secs(args.shutdown_timeout_seconds);
    config.max_connections = args.max_connections;
    runtime.block_on(crate::serve(config, shutdown_signal()))?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
