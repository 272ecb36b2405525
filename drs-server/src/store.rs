//! Encrypted bodies in an S3-compatible object store: pre-signed `GET` URLs for readers,
//! streaming multipart uploads for `add`.
//!
//! With a store configured, the catalog directory keeps only each object's record and header;
//! the body is the object `PREFIX` + `ID.c4gh-body` in the bucket, and the `crypt4gh-body`
//! access URL is a SigV4 pre-signed `GET` of it valid for [`S3Config::url_lifetime`] (the
//! client downloads straight from the store, with `Range`, and sends it no credential of its
//! own). The store's ETag of the body is recorded at upload (`store_etag` in the record) and
//! sent as the header's `X-C4GH-Content-ETag`, so a client notices a body that was replaced.
//!
//! Credentials come from the AWS chain (environment keys, web identity through STS, shared
//! profile files) and temporary ones are refreshed: see [`crate::credentials`]. A signed URL
//! never outlives the credentials that signed it. Signing is [`rusty_s3`] (SigV4 only, no HTTP
//! client of its own).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::{StatusCode, Url};
pub use rusty_s3::Credentials;
use rusty_s3::actions::{CompleteMultipartUpload, CreateMultipartUpload};
use rusty_s3::{Bucket, S3Action, UrlStyle};
use tokio::sync::mpsc;

use crate::credentials::CredentialProvider;

/// Default lifetime of a pre-signed body URL.
pub const DEFAULT_URL_LIFETIME: Duration = Duration::from_secs(300);

/// Smallest multipart part S3 accepts (but the last).
pub const MIN_PART_BYTES: usize = 8 << 20;

/// Most parts of one multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// Lifetime of the signatures of the store requests `add` makes itself.
const REQUEST_SIGNATURE: Duration = Duration::from_secs(900);

/// Largest store response read whole (XML answers and error documents).
const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Where the bodies are.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The S3 endpoint, e.g. `https://s3.eu-north-1.amazonaws.com` or `http://127.0.0.1:8333`.
    pub endpoint: Url,
    /// The bucket.
    pub bucket: String,
    /// Prepended to every object key (e.g. `archive/`).
    pub prefix: String,
    /// The region signed for.
    pub region: String,
    /// Path-style URLs (`ENDPOINT/BUCKET/KEY`) instead of virtual-host style
    /// (`BUCKET.ENDPOINT/KEY`); MinIO, SeaweedFS and Ceph usually need it.
    pub path_style: bool,
    /// Lifetime of the pre-signed body URLs handed to readers.
    pub url_lifetime: Duration,
}

/// Why the store could not be configured or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The configuration is not usable.
    #[error("object store configuration: {0}")]
    Config(String),
    /// No credentials were found.
    #[error(
        "no object-store credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or \
         AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN, or give a profile (AWS_PROFILE / \
         --s3-profile) of {credentials} or {config}"
    )]
    NoCredentials {
        /// The shared credentials file looked at.
        credentials: PathBuf,
        /// The shared config file looked at.
        config: PathBuf,
    },
    /// A shared config or credentials file could not be read.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store could not be reached.
    #[error("{what} {key} at {host}: {detail}")]
    Transport {
        /// What was being done.
        what: &'static str,
        /// The object key.
        key: String,
        /// The store's `host:port`.
        host: String,
        /// The cause (no URL: signed URLs carry credentials).
        detail: String,
    },
    /// The store refused a request.
    #[error("{what} {key}: the object store at {host} answered {status}: {code}{hint}")]
    Refused {
        /// What was being done.
        what: &'static str,
        /// The object key.
        key: String,
        /// The store's `host:port`.
        host: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code and message.
        code: String,
        /// What to do.
        hint: &'static str,
    },
    /// The web identity token file could not be read.
    #[error(
        "reading the web identity token {path} (AWS_WEB_IDENTITY_TOKEN_FILE): {source}; in a pod, \
         check the projected service-account token volume"
    )]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// STS refused the web identity.
    #[error(
        "assuming role {role_arn} with the web identity: STS at {host} answered {status}: {code}{hint}"
    )]
    Sts {
        /// The role.
        role_arn: String,
        /// STS's `host:port`.
        host: String,
        /// The HTTP status.
        status: u16,
        /// The STS error code and message.
        code: String,
        /// What to do.
        hint: &'static str,
    },
    /// The temporary credentials expired and could not be refreshed.
    #[error(
        "the object-store credentials expired at {expired} and refreshing them failed: \
         {last_failure}"
    )]
    CredentialsExpired {
        /// When they expired (RFC 3339).
        expired: String,
        /// The last refresh failure.
        last_failure: String,
    },
    /// Reading the parts to upload failed.
    #[error("reading the body to upload as {key}: {source}")]
    Source {
        /// The object key.
        key: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The S3 body store.
pub struct S3Store {
    bucket: Bucket,
    prefix: String,
    credentials: Arc<CredentialProvider>,
    url_lifetime: Duration,
    host: String,
    http: reqwest::Client,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket.name())
            .field("prefix", &self.prefix)
            .field("host", &self.host)
            .field("url_lifetime", &self.url_lifetime)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store for `config` signing with fixed `credentials`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an unusable endpoint, bucket name or lifetime.
    pub fn new(config: &S3Config, credentials: Credentials) -> Result<Self, StoreError> {
        Self::with_provider(config, CredentialProvider::fixed(credentials))
    }

    /// A store for `config` signing with what `credentials` holds at the time of each request
    /// (see [`crate::credentials::resolve`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Config`] for an unusable endpoint, bucket name or lifetime.
    pub fn with_provider(
        config: &S3Config,
        credentials: Arc<CredentialProvider>,
    ) -> Result<Self, StoreError> {
        if config.url_lifetime.is_zero() || config.url_lifetime > Duration::from_secs(7 * 86_400) {
            return Err(StoreError::Config(format!(
                "the signed URL lifetime {} s is not between 1 s and 7 days (SigV4's limit)",
                config.url_lifetime.as_secs()
            )));
        }
        let style = if config.path_style {
            UrlStyle::Path
        } else {
            UrlStyle::VirtualHost
        };
        let bucket = Bucket::new(
            config.endpoint.clone(),
            style,
            config.bucket.clone(),
            config.region.clone(),
        )
        .map_err(|e| {
            StoreError::Config(format!(
                "bucket {:?} at {}: {e} (an IP-address endpoint needs --s3-path-style)",
                config.bucket, config.endpoint
            ))
        })?;
        let host = match (config.endpoint.host_str(), config.endpoint.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(StoreError::Config("the endpoint has no host".into())),
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| StoreError::Config(format!("building the HTTP client: {e}")))?;
        Ok(S3Store {
            bucket,
            prefix: config.prefix.clone(),
            credentials,
            url_lifetime: config.url_lifetime,
            host,
            http,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    /// The key of object `id`'s body: `PREFIX` + `ID.c4gh-body`.
    pub fn key(&self, id: &str) -> String {
        format!("{}{id}.c4gh-body", self.prefix)
    }

    /// Lifetime of the signed body URLs.
    pub fn url_lifetime(&self) -> Duration {
        self.url_lifetime
    }

    /// The credentials (for their metrics and state).
    pub fn credentials(&self) -> &Arc<CredentialProvider> {
        &self.credentials
    }

    /// A pre-signed `GET` of object `id`'s body, valid for [`S3Store::url_lifetime`] or until
    /// the signing credentials expire, whichever is sooner. The URL is a credential until it
    /// expires: never log it.
    ///
    /// # Errors
    ///
    /// [`StoreError::CredentialsExpired`] when temporary credentials expired unrefreshed.
    pub fn signed_get(&self, id: &str) -> Result<Url, StoreError> {
        let key = self.key(id);
        let signing = self.credentials.signing()?;
        let lifetime = match signing.expires() {
            Some(expires) => expires
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .min(self.url_lifetime)
                .max(Duration::from_secs(1)),
            None => self.url_lifetime,
        };
        Ok(self
            .bucket
            .get_object(Some(signing.credentials()), &key)
            .sign(lifetime))
    }

    /// Creates the bucket (first set-up and tests); one that exists already is fine.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transport`], [`StoreError::Refused`].
    pub async fn create_bucket(&self) -> Result<(), StoreError> {
        let signing = self.credentials.signing()?;
        let action = self.bucket.create_bucket(signing.credentials());
        let url = action.sign(REQUEST_SIGNATURE);
        let body = action.body();
        let resp = self
            .send(self.http.put(url).body(body), "creating bucket", "")
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::CONFLICT => Ok(()),
            _ => Err(self.refused(resp, "creating bucket", "").await),
        }
    }

    /// The store's ETag of object `id`'s body (`HEAD`), `None` when there is no such object.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transport`], [`StoreError::Refused`].
    pub async fn etag(&self, id: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(id);
        let signing = self.credentials.signing()?;
        let url = self
            .bucket
            .head_object(Some(signing.credentials()), &key)
            .sign(REQUEST_SIGNATURE);
        let resp = self.send(self.http.head(url), "looking up", &key).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(self.refused(resp, "looking up", &key).await);
        }
        Ok(resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    }

    /// Uploads object `id`'s body as a multipart upload of the parts received from `parts`
    /// (each at least [`MIN_PART_BYTES`] but the last; at most [`MAX_PARTS`]), one part at a
    /// time, so memory holds what the channel holds plus one part. Returns the stored object's
    /// ETag. On any failure the upload is aborted, so no partial object appears.
    ///
    /// # Errors
    ///
    /// [`StoreError::Transport`], [`StoreError::Refused`], and [`StoreError::Source`] when a
    /// part arrives as an error.
    pub async fn upload(
        &self,
        id: &str,
        mut parts: mpsc::Receiver<io::Result<Vec<u8>>>,
    ) -> Result<String, StoreError> {
        let key = self.key(id);
        let signing = self.credentials.signing()?;
        let action = self
            .bucket
            .create_multipart_upload(Some(signing.credentials()), &key);
        let url = action.sign(REQUEST_SIGNATURE);
        let resp = self
            .send(self.http.post(url), "starting the upload of", &key)
            .await?;
        if !resp.status().is_success() {
            return Err(self.refused(resp, "starting the upload of", &key).await);
        }
        let text = read_text(resp)
            .await
            .map_err(|detail| self.transport("starting the upload of", &key, detail))?;
        let created = CreateMultipartUpload::parse_response(&text).map_err(|e| {
            self.transport(
                "starting the upload of",
                &key,
                format!("the answer is not a CreateMultipartUpload result: {e}"),
            )
        })?;
        let upload_id = created.upload_id().to_owned();
        let result = self.upload_parts(&key, &upload_id, &mut parts).await;
        match result {
            Ok(etag) => Ok(etag),
            Err(e) => {
                let signing = self.credentials.current();
                let url = self
                    .bucket
                    .abort_multipart_upload(Some(signing.credentials()), &key, &upload_id)
                    .sign(REQUEST_SIGNATURE);
                if let Err(abort) = self.http.delete(url).send().await {
                    tracing::warn!(key, error = %abort.without_url(), "could not abort the failed multipart upload; the bucket's lifecycle rules must remove it");
                }
                Err(e)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        parts: &mut mpsc::Receiver<io::Result<Vec<u8>>>,
    ) -> Result<String, StoreError> {
        let mut etags = Vec::new();
        while let Some(part) = parts.recv().await {
            let part = part.map_err(|source| StoreError::Source {
                key: key.to_owned(),
                source,
            })?;
            let number = u16::try_from(etags.len() + 1)
                .ok()
                .filter(|n| u64::from(*n) <= MAX_PARTS)
                .ok_or_else(|| {
                    StoreError::Config(format!("{key} needs more than {MAX_PARTS} parts"))
                })?;
            let signing = self.credentials.signing()?;
            let url = self
                .bucket
                .upload_part(Some(signing.credentials()), key, number, upload_id)
                .sign(REQUEST_SIGNATURE);
            let resp = self
                .send(self.http.put(url).body(part), "uploading a part of", key)
                .await?;
            if !resp.status().is_success() {
                return Err(self.refused(resp, "uploading a part of", key).await);
            }
            let etag = resp
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| {
                    self.transport("uploading a part of", key, "no ETag for the part".into())
                })?;
            etags.push(etag);
        }
        let signing = self.credentials.signing()?;
        let action: CompleteMultipartUpload<'_, _> = self.bucket.complete_multipart_upload(
            Some(signing.credentials()),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(REQUEST_SIGNATURE);
        let body = action.body();
        let resp = self
            .send(
                self.http.post(url).body(body),
                "completing the upload of",
                key,
            )
            .await?;
        if !resp.status().is_success() {
            return Err(self.refused(resp, "completing the upload of", key).await);
        }
        // S3 may answer 200 with an error document when completing fails late.
        let text = read_text(resp)
            .await
            .map_err(|detail| self.transport("completing the upload of", key, detail))?;
        if text.contains("<Error>") {
            return Err(StoreError::Refused {
                what: "completing the upload of",
                key: key.to_owned(),
                host: self.host.clone(),
                status: 200,
                code: s3_error_code(&text),
                hint: "",
            });
        }
        let id = key
            .strip_prefix(&self.prefix)
            .and_then(|k| k.strip_suffix(".c4gh-body"))
            .unwrap_or(key);
        self.etag(id).await?.ok_or_else(|| {
            self.transport(
                "completing the upload of",
                key,
                "the completed object is not there".into(),
            )
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &'static str,
        key: &str,
    ) -> Result<reqwest::Response, StoreError> {
        request
            .send()
            .await
            .map_err(|e| self.transport(what, key, e.without_url().to_string()))
    }

    fn transport(&self, what: &'static str, key: &str, detail: String) -> StoreError {
        StoreError::Transport {
            what,
            key: key.to_owned(),
            host: self.host.clone(),
            detail,
        }
    }

    async fn refused(&self, resp: reqwest::Response, what: &'static str, key: &str) -> StoreError {
        let status = resp.status().as_u16();
        let code = read_text(resp)
            .await
            .map(|t| s3_error_code(&t))
            .unwrap_or_default();
        let hint = match (status, code.split(':').next().unwrap_or("")) {
            (_, "SignatureDoesNotMatch" | "InvalidAccessKeyId") => {
                "; check the object-store credentials (AWS_ACCESS_KEY_ID / profile) and --s3-region"
            }
            (_, "NoSuchBucket") => "; create the bucket or fix --s3-bucket",
            (_, "ExpiredToken") => {
                "; the temporary credentials expired (see the credential refresh errors)"
            }
            (403, _) => "; the credentials may not write to this bucket",
            _ => "",
        };
        StoreError::Refused {
            what,
            key: key.to_owned(),
            host: self.host.clone(),
            status,
            code,
            hint,
        }
    }
}

async fn read_text(mut resp: reqwest::Response) -> Result<String, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "the answer is larger than {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `Code: Message` of an S3 XML error document (empty when there is none), printable and
/// bounded.
pub fn s3_error_code(xml: &str) -> String {
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = xml.find(&open)? + open.len();
        let len = xml[start..].find(&close)?;
        Some(xml[start..start + len].to_owned())
    };
    let text = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => String::new(),
    };
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code>\
                   <Message>Request has expired</Message><Key>x</Key></Error>";
        assert_eq!(s3_error_code(xml), "AccessDenied: Request has expired");
        assert_eq!(s3_error_code("<html>"), "");
    }

    #[test]
    fn signed_urls_carry_the_lifetime_and_key() {
        let config = S3Config {
            endpoint: Url::parse("http://127.0.0.1:8333").unwrap(),
            bucket: "archive".into(),
            prefix: "bodies/".into(),
            region: "us-east-1".into(),
            path_style: true,
            url_lifetime: Duration::from_secs(60),
        };
        let store = S3Store::new(&config, Credentials::new("AK", "SK")).unwrap();
        let url = store.signed_get("EGAF1").unwrap();
        assert_eq!(url.path(), "/archive/bodies/EGAF1.c4gh-body");
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert!(
            query.contains(&("X-Amz-Expires".into(), "60".into())),
            "{query:?}"
        );
        assert!(query.iter().any(|(k, _)| k == "X-Amz-Signature"));
        assert!(!format!("{store:?}").contains("SK"));
        let zero = S3Config {
            url_lifetime: Duration::ZERO,
            ..config
        };
        assert!(S3Store::new(&zero, Credentials::new("AK", "SK")).is_err());
    }
}
