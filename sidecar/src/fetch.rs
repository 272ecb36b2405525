//! Fetching one input with [`drs::Client`]: locate the object, check its host against the allow
//! list, choose the server's flavour (configured per host, else detected once per host from its
//! service-info), fetch the header re-encrypted for our key and check that it opens, then deliver
//! the body in the input's mode.
//!
//! Under the SDA v2 flavour a hostname URI names a file by dataset and path,
//! `drs://host/{datasetId}/{filePath}`, because SDA's only DRS route is
//! `/objects/{datasetId}/{filePath}`.
//!
//! - `encrypted`: header ‖ body into `.NAME.part`, renamed once the body's size, ETag and sha-256
//!   checked out and every segment's tag verified (Poly1305 on the receiving task, next to the
//!   hashing; no decryption). A partial body left by an earlier run is continued when its
//!   record still matches and its prefix re-verifies ([`crate::resume`]); a failed body's
//!   partial is kept for that (in pod mode until a graceful shutdown). If a file with a verified body is already there (a later pod on a shared
//!   volume), only a new header is fetched and written over the old one in place (same length),
//!   after checking that it decrypts the body's first segment.
//! - `plaintext`: the body is decrypted while it streams (download and decryption run
//!   concurrently, joined by a bounded in-memory pipe) into `.NAME.part`; renamed only when the
//!   download verified *and* every segment authenticated; `C4GH_MAX_PLAINTEXT_BYTES` is enforced
//!   up front from the object size and again while writing.
//! - `stream`: a FIFO is created; a [`Feeder`] streams plaintext into it each time a reader opens
//!   it.

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use c4gh::header::{EncryptedHeader, OpenedHeader};
use drs::flavour::{ClientPublicKey, FlavourChoice, HeaderFlavour, SdaV2, ServerFlavours};
use drs::resolve::{ObjectRef, PrefixMap};
use drs::types::DrsObject;
use drs::uri::{DrsUri, ParseOptions};
use drs::{BodyExpectation, Client, ClientConfig, FetchedHeader, PipelineError, Progress};
use tokio::io::AsyncReadExt;

use crate::cleanup::Cleanup;
use crate::cli::DrsArgs;
use crate::inputs::{Input, Mode};
use crate::key::EphemeralKey;
use crate::output::{self, OutputError, PartFile};
use crate::resume::{self, PartialRecord};
use crate::telemetry::Metrics;

/// Bytes buffered between the download and the decryption of a plaintext or stream input.
const PIPE_BYTES: usize = 1 << 20;
/// How often a fetch starts over (fresh DRS object, header and body) because the body
/// changed on the server meanwhile or failed a check (length, checksum, segment tag).
const MAX_RESTARTS: u32 = 3;
/// Smallest `encrypted` body that gets a resume record ([`crate::resume`]); a smaller one is
/// fetched from byte 0 by a later run.
const RESUME_MIN_BYTES: u64 = 1 << 20;
/// Permission bits of plaintext outputs and FIFOs (group: the pod's fsGroup).
const PLAINTEXT_MODE: u32 = 0o640;
/// Permission bits of encrypted outputs.
const ENCRYPTED_MODE: u32 = 0o644;

/// Why an input could not be fetched. The message is what `status.json` and the gate report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The fetcher's configuration is unusable.
    #[error("{reason}")]
    Config {
        /// What is wrong and what to change.
        reason: String,
    },
    /// The DRS client failed (URI, resolution, HTTP status, transport, size, checksum …).
    #[error(transparent)]
    Drs(#[from] drs::Error),
    /// SDA v2 refused the file. It answers 403 both for files the token may not read and for
    /// names that do not exist.
    #[error(
        "{source}; SDA v2 answers 403 both when the token may not read the dataset and when DATASET_ID/FILE_PATH does not exist: check the name (drs://HOST/DATASET_ID/FILE_PATH) and the datasets the token grants"
    )]
    SdaForbidden {
        /// The status error.
        #[source]
        source: Box<drs::Error>,
    },
    /// The server has no SDA v2 DRS route for the file.
    #[error(
        "{source}; SDA v2 serves files at /objects/DATASET_ID/FILE_PATH: if {authority} is not SDA v2, set its flavour (--server-flavour {authority}=crypt4gh-drs, env C4GH_SERVER_FLAVOURS, policy spec.serverFlavours)"
    )]
    SdaNotFound {
        /// `host[:port]`.
        authority: String,
        /// The status error.
        #[source]
        source: Box<drs::Error>,
    },
    /// A server asked with this project's protocol has no object with a `DATASET/PATH`-like
    /// id; it may be SDA v2.
    #[error(
        "{source}; if {authority} is a NeIC SDA v2 download service, set its flavour (--server-flavour {authority}=sda-v2, env C4GH_SERVER_FLAVOURS, policy spec.serverFlavours) and name the file drs://{authority}/DATASET_ID/FILE_PATH"
    )]
    NotFoundMaybeSda {
        /// `host[:port]`.
        authority: String,
        /// The status error.
        #[source]
        source: Box<drs::Error>,
    },
    /// The object's host is not allowed.
    #[error(
        "DRS host {authority} of {url} is not in C4GH_ALLOWED_HOSTS ({allowed}); the policy must allow it"
    )]
    HostNotAllowed {
        /// The URI.
        url: String,
        /// Its `host[:port]`.
        authority: String,
        /// The allow list.
        allowed: String,
    },
    /// The header the server sent does not open with our key.
    #[error(
        "the Crypt4GH header sent for object `{object}` does not open with the requested key (the ephemeral key, or --sk): {source}; the header was tampered with or made for another key"
    )]
    HeaderDoesNotOpen {
        /// Object id.
        object: String,
        /// Why.
        #[source]
        source: c4gh::Error,
    },
    /// An `encrypted`-mode body failed segment authentication with the header's data key.
    #[error(
        "object `{object}`: the body failed authentication with the header's data key ({detail}); the body is corrupt — in transit or on the server — or belongs to another header; report it to the data steward if it persists"
    )]
    Corrupt {
        /// Object id.
        object: String,
        /// Which segment, and why.
        detail: String,
    },
    /// The body could not be decrypted with the header's data key.
    #[error("object `{object}`: the body does not decrypt with the header's data key: {detail}")]
    Decrypt {
        /// Object id.
        object: String,
        /// Why.
        detail: String,
    },
    /// The plaintext is larger than allowed.
    #[error(
        "object `{object}` has {size} plaintext bytes, more than C4GH_MAX_PLAINTEXT_BYTES ({limit}); use mode \"encrypted\" or raise the policy's plaintext limit"
    )]
    PlaintextTooLarge {
        /// Object id.
        object: String,
        /// Its plaintext size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Writing the destination failed.
    #[error("object `{object}`: {source}")]
    Output {
        /// Object id.
        object: String,
        /// Why.
        #[source]
        source: OutputError,
    },
    /// The FIFO could not be created.
    #[error("cannot create the FIFO {path}: {source}")]
    Fifo {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: nix::Error,
    },
}

/// What asking a server for its flavour gave.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Detection {
    /// The server said what it is.
    Found(FlavourChoice),
    /// It could not be asked (why); this project's protocol is used, not remembered.
    Fallback(String),
}

/// What a successful fetch produced.
#[derive(Debug)]
pub struct Fetched {
    /// Body bytes written (encrypted: the body; plaintext: plaintext bytes; stream: 0).
    pub bytes: u64,
    /// For `stream` inputs: the task feeding the FIFO.
    pub feeder: Option<Feeder>,
    /// The checks the delivered bytes passed (see `status.json`'s `checks`).
    pub checks: Vec<String>,
}

/// The checks a finished body download passed, plus `segments` when every segment was
/// authenticated.
fn checks_of(report: &drs::BodyReport, segments: bool) -> Vec<String> {
    let mut checks = vec!["size".to_owned()];
    if report.etag.is_some() {
        checks.push("etag".into());
    }
    checks.extend(report.verified.iter().map(|k| k.name().to_owned()));
    if segments {
        checks.push("segments".into());
    }
    checks
}

/// Fetches inputs; shared by all fetch tasks.
#[derive(Debug)]
pub struct Fetcher {
    client: Arc<Client>,
    flavours: ServerFlavours,
    detected: Mutex<HashMap<String, FlavourChoice>>,
    /// Held while a server's flavour is being detected, so that inputs starting together ask
    /// the server once rather than once each (the first detection also opens the connection
    /// the others then share).
    detecting: tokio::sync::Mutex<()>,
    key: Arc<EphemeralKey>,
    public: ClientPublicKey,
    allowed_hosts: Vec<String>,
    max_plaintext: Option<u64>,
    remove_plaintext: bool,
    cleanup: Arc<Cleanup>,
    metrics: Arc<Metrics>,
}

impl Fetcher {
    /// Registers plaintext outputs with the [`Cleanup`] so they are removed at shutdown (pod
    /// mode), and leaves the partial of a failed `encrypted` body registered too. Without it
    /// both stay (the `fetch` command, whose rerun continues the partial).
    pub fn remove_plaintext_on_shutdown(mut self) -> Self {
        self.remove_plaintext = true;
        self
    }

    /// Builds the DRS client from the command-line options.
    pub async fn new(
        args: &DrsArgs,
        key: Arc<EphemeralKey>,
        cleanup: Arc<Cleanup>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, FetchError> {
        let uri_options = ParseOptions {
            allow_port: args.drs_allow_port,
            allow_http: args.drs_allow_http,
        };
        let prefix_map = match &args.prefix_map {
            Some(json) => PrefixMap::from_json(json, &uri_options)?,
            None => PrefixMap::default(),
        };
        let passports = match &args.passports_file {
            Some(path) => Some(drs::auth::Passports::from_file(path).await?),
            None => None,
        };
        let observer_metrics = Arc::clone(&metrics);
        let config = ClientConfig {
            retry: drs::RetryPolicy {
                max_elapsed: args.retry_budget,
                max_backoff: args.retry_max_backoff,
                ..drs::RetryPolicy::default()
            },
            timeouts: drs::Timeouts {
                response: args.response_timeout,
                idle: args.idle_timeout,
                ..drs::Timeouts::default()
            },
            on_retry: Some(drs::RetryObserver(Arc::new(move |reason| {
                observer_metrics.retry(reason)
            }))),
            uri_options,
            ca_bundle: args.ca_bundle.clone(),
            auth: match &args.token_file {
                Some(path) => drs::auth::Auth::TokenFile(path.clone()),
                None => drs::auth::Auth::None,
            },
            passports,
            prefix_map,
            user_agent: concat!("c4gh-sidecar/", env!("CARGO_PKG_VERSION")).into(),
            ..ClientConfig::default()
        };
        let client = Client::new(config)?;
        let flavours = ServerFlavours::parse(args.server_flavours.iter().map(String::as_str))?;
        let public = ClientPublicKey::from_raw(*key.public().as_bytes());
        Ok(Fetcher {
            client: Arc::new(client),
            flavours,
            detected: Mutex::new(HashMap::new()),
            detecting: tokio::sync::Mutex::new(()),
            key,
            public,
            allowed_hosts: args
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            max_plaintext: args.max_plaintext_bytes,
            remove_plaintext: false,
            cleanup,
            metrics,
        })
    }

    /// Fetches one input; `progress` receives body byte increments.
    pub async fn fetch(
        &self,
        input: &Input,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fetched, FetchError> {
        self.fetch_sized(input, &|_| (), progress).await
    }

    /// Like [`Fetcher::fetch`]; `on_size` learns the body size once the object is resolved.
    pub async fn fetch_sized(
        &self,
        input: &Input,
        on_size: &(dyn Fn(u64) + Sync),
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fetched, FetchError> {
        let started = Instant::now();
        self.metrics.in_flight.inc();
        let counted = |n: u64| {
            self.metrics.bytes.inc_by(n);
            progress(n);
        };
        let result = self.fetch_inner(input, on_size, &counted).await;
        self.metrics.in_flight.dec();
        self.metrics.object_done(
            input.mode.as_str(),
            result.is_ok(),
            started.elapsed().as_secs_f64(),
        );
        match &result {
            Ok(fetched) => tracing::info!(
                url = %input.url,
                path = %input.path.display(),
                mode = %input.mode,
                bytes = fetched.bytes,
                seconds = started.elapsed().as_secs_f64(),
                "input in place"
            ),
            Err(e) => tracing::debug!(url = %input.url, error = %e, "fetch failed"),
        }
        result
    }

    async fn fetch_inner(
        &self,
        input: &Input,
        on_size: &(dyn Fn(u64) + Sync),
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fetched, FetchError> {
        let opts = self.client.config().uri_options;
        let parsed = DrsUri::parse(&input.url, &opts).map_err(drs::Error::from)?;
        let mut obj = self.client.locate(&parsed).await?;
        self.check_host(&input.url, &obj)?;
        let choice = self.flavour_for(&obj).await;
        let sda = choice == FlavourChoice::SdaV2;
        if sda && let DrsUri::Hostname(h) = &parsed {
            obj = SdaV2::object_ref(h, &opts)?;
        }
        let flavour: Arc<dyn HeaderFlavour> = match choice.flavour() {
            Some(f) => Arc::from(f),
            None => Arc::new(drs::flavour::Crypt4ghDrs),
        };
        let result = async {
            let object = self.client.object(&obj).await?;
            on_size(object.size);
            let f = &*flavour;
            match input.mode {
                Mode::Encrypted => self.encrypted(f, &obj, &object, input, progress).await,
                Mode::Plaintext => {
                    self.plaintext(f, &obj, &object, &input.path, progress)
                        .await
                }
                Mode::Stream => {
                    self.stream(flavour.clone(), obj.clone(), object, &input.path)
                        .await
                }
            }
        }
        .await;
        match result {
            Err(FetchError::Drs(source)) if sda && source.status() == Some(403) => {
                Err(FetchError::SdaForbidden {
                    source: Box::new(source),
                })
            }
            Err(FetchError::Drs(source)) if sda && source.status() == Some(404) => {
                Err(FetchError::SdaNotFound {
                    authority: obj.authority(),
                    source: Box::new(source),
                })
            }
            Err(FetchError::Drs(source))
                if choice == FlavourChoice::Crypt4ghDrs
                    && source.status() == Some(404)
                    && obj.id().contains('/') =>
            {
                Err(FetchError::NotFoundMaybeSda {
                    authority: obj.authority(),
                    source: Box::new(source),
                })
            }
            other => other,
        }
    }

    /// The configured flavour of the object's server; `auto` is detected from the server, and
    /// a positive detection is remembered per server. A fallback (the server could not be
    /// asked) is not: the next input to that server asks again.
    async fn flavour_for(&self, obj: &ObjectRef) -> FlavourChoice {
        let authority = obj.authority().to_ascii_lowercase();
        let configured = self.flavours.get(&authority);
        if *configured != FlavourChoice::Auto {
            return configured.clone();
        }
        if let Some(known) = self.detected_lock().get(&authority) {
            return known.clone();
        }
        let _detecting = self.detecting.lock().await;
        if let Some(known) = self.detected_lock().get(&authority) {
            return known.clone();
        }
        match self.detect(obj).await {
            Detection::Found(detected) => {
                tracing::info!(server = %authority, flavour = %detected, "server flavour detected");
                self.detected_lock().insert(authority, detected.clone());
                detected
            }
            Detection::Fallback(reason) => {
                tracing::warn!(
                    server = %authority,
                    reason = %reason,
                    "server flavour not detected; using crypt4gh-drs for this input and asking again for the next (set --server-flavour to skip detection)"
                );
                FlavourChoice::Crypt4ghDrs
            }
        }
    }

    fn detected_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, FlavourChoice>> {
        self.detected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `/ga4gh/drs/v1/service-info` with a `crypt4gh` block: this project's protocol;
    /// `/service-info` named `SDA Download` (what NeIC SDA v2 serves): SDA v2; another root
    /// service-info, or none (404/405): this project's protocol, whose errors name the flavour
    /// setting. A root service-info that could not be fetched (transport, 5xx, 401/403, …) is
    /// a [`Detection::Fallback`].
    async fn detect(&self, obj: &ObjectRef) -> Detection {
        let mut origin = obj.url().clone();
        origin.set_path("/");
        let mut api = origin.clone();
        api.set_path(drs::uri::DRS_API_PATH);
        match self.client.service_info(&api).await {
            Ok(info) if info.crypt4gh.is_some() => {
                return Detection::Found(FlavourChoice::Crypt4ghDrs);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "no DRS service-info"),
        }
        match self.client.service_info(&origin).await {
            Ok(info) if info.name == "SDA Download" && info.r#type.artifact == "drs" => {
                Detection::Found(FlavourChoice::SdaV2)
            }
            Ok(_) => Detection::Found(FlavourChoice::Crypt4ghDrs),
            Err(e) if matches!(e.status(), Some(404 | 405)) => {
                tracing::debug!(error = %e, "no root service-info");
                Detection::Found(FlavourChoice::Crypt4ghDrs)
            }
            Err(e) => Detection::Fallback(e.to_string()),
        }
    }

    fn check_host(&self, url: &str, obj: &ObjectRef) -> Result<(), FetchError> {
        if self.allowed_hosts.is_empty() {
            return Ok(());
        }
        let authority = obj.authority().to_ascii_lowercase();
        let host = obj.host().to_ascii_lowercase();
        let https_default = obj.url().port().is_none() && obj.url().scheme() == "https";
        let allowed = self
            .allowed_hosts
            .iter()
            .any(|entry| *entry == authority || (https_default && *entry == format!("{host}:443")));
        if allowed {
            Ok(())
        } else {
            Err(FetchError::HostNotAllowed {
                url: url.to_owned(),
                authority,
                allowed: self.allowed_hosts.join(","),
            })
        }
    }

    /// Fetches the header for our key and checks that it opens.
    async fn header(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
    ) -> Result<(FetchedHeader, OpenedHeader), FetchError> {
        let header = self
            .client
            .fetch_header(flavour, obj, object, &self.public)
            .await?;
        let opened = open_header(&header.bytes, self.key.secret(), &object.id)?;
        Ok((header, opened))
    }

    async fn body_target(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
    ) -> Result<drs::Target, FetchError> {
        Ok(self
            .client
            .target(obj, flavour.body_locator(obj, object)?)
            .await?)
    }

    async fn encrypted(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
        input: &Input,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fetched, FetchError> {
        let path = input.path.as_path();
        let out_err = |source| FetchError::Output {
            object: object.id.clone(),
            source,
        };
        match output::inspect_existing(path).await {
            Ok(Some(existing)) if body_matches(&existing, object) => {
                let (header, opened) = self.header(flavour, obj, object).await?;
                check_first_segment(path, existing.header_len, &opened, &object.id).await?;
                let in_place = output::replace_header(
                    path,
                    existing.header_len,
                    &header.bytes,
                    Arc::clone(&self.cleanup),
                )
                .await
                .map_err(out_err)?;
                tracing::info!(
                    object = %object.id,
                    path = %path.display(),
                    in_place,
                    "verified body already present; {}",
                    if in_place { "header replaced in place" } else { "file rewritten with the new header" }
                );
                return Ok(Fetched {
                    bytes: existing.body_len,
                    feeder: None,
                    checks: vec!["size".into(), "sha-256".into()],
                });
            }
            Ok(Some(_)) => {
                tracing::info!(path = %path.display(), "existing file does not match the object; fetching again");
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "existing file unusable; fetching again");
            }
        }
        let mut restarts = 0;
        let mut refreshed: Option<DrsObject> = None;
        let record_path = resume::record_path(path);
        loop {
            let object = refreshed.as_ref().unwrap_or(object);
            let (header, opened) = self.header(flavour, obj, object).await?;
            let target = self.body_target(flavour, obj, object).await?;
            let expect = BodyExpectation::for_object(object, Some(&header));
            // A small body is fetched again faster than its record is written and fsynced.
            let record = (object.size >= RESUME_MIN_BYTES)
                .then(|| {
                    PartialRecord::new(
                        &input.url,
                        &obj.authority(),
                        object,
                        &expect,
                        header.bytes.len(),
                    )
                })
                .flatten();
            // Only the first attempt continues an earlier run's partial; a restart after a
            // failed check starts from byte 0.
            let resume = match &record {
                Some(record) if restarts == 0 => {
                    self.resumable(path, record, &header, &expect).await
                }
                _ => None,
            };
            let offset = resume.as_ref().map_or(0, |r| r.offset);
            let mut part = match &resume {
                Some(r) => PartFile::reopen(
                    path,
                    header.bytes.len() as u64 + r.offset,
                    &header.bytes,
                    Arc::clone(&self.cleanup),
                )
                .await
                .map_err(out_err)?,
                None => {
                    let mut part =
                        PartFile::create(path, ENCRYPTED_MODE, Arc::clone(&self.cleanup))
                            .await
                            .map_err(out_err)?;
                    part.write_all(&header.bytes).await.map_err(out_err)?;
                    part
                }
            };
            self.cleanup.register(&record_path);
            let recorded = match &record {
                Some(record) => match record.write(path) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "cannot write the resume record; a rerun will fetch this body from byte 0");
                        false
                    }
                },
                None => {
                    let _ = crate::atomic::remove_if_exists(&record_path);
                    if object.size >= RESUME_MIN_BYTES {
                        tracing::debug!(object = %object.id, "the server named no strong ETag with the header; a rerun cannot resume this body");
                    }
                    false
                }
            };
            let file = part.take_file().await.map_err(out_err)?;
            let part_path = part.part_path().to_owned();
            let increments = Increments::starting_at(progress, offset);
            let check = output::SegmentCheck::new(&opened).map_err(out_err)?;
            let report = self
                .client
                .download_body_blocking_inspected(
                    &object.id,
                    &target,
                    &expect,
                    resume,
                    check,
                    Some(&|p: Progress| increments.update(p.done)),
                    move |body| output::write_body(body, file, &part_path),
                )
                .await;
            let failure = match report {
                Ok((report, (file, bytes))) => {
                    let segments = bytes.div_ceil(c4gh::body::CIPHER_SEGMENT_SIZE as u64);
                    part.commit_synced(file).await.map_err(out_err)?;
                    let _ = crate::atomic::remove_if_exists(&record_path);
                    self.cleanup.forget(&record_path);
                    let checks = checks_of(&report, true);
                    tracing::info!(
                        object = %object.id,
                        segments,
                        resumed_at = offset,
                        checks = %checks.join(","),
                        unverified = %report.unverified.join(","),
                        "encrypted body verified"
                    );
                    return Ok(Fetched {
                        bytes: report.bytes,
                        feeder: None,
                        checks,
                    });
                }
                Err(PipelineError::Consumer(OutputError::Crypt4gh(e))) => FetchError::Corrupt {
                    object: object.id.clone(),
                    detail: e.to_string(),
                },
                Err(PipelineError::Consumer(e)) => {
                    drop(part);
                    let _ = crate::atomic::remove_if_exists(&record_path);
                    return Err(consumer_error(&object.id, e));
                }
                Err(PipelineError::Download(e)) if e.is_corruption() => e.into(),
                Err(PipelineError::Download(e)) if recorded => {
                    let sweep = self.remove_plaintext;
                    part.keep(sweep);
                    if !sweep {
                        self.cleanup.forget(&record_path);
                    }
                    tracing::warn!(
                        object = %object.id,
                        path = %crate::atomic::part_path(path).display(),
                        "partial body kept; running the same fetch again continues it"
                    );
                    return Err(e.into());
                }
                Err(PipelineError::Download(e)) => {
                    drop(part);
                    let _ = crate::atomic::remove_if_exists(&record_path);
                    return Err(e.into());
                }
            };
            drop(part);
            let _ = crate::atomic::remove_if_exists(&record_path);
            refreshed = Some(self.restart(obj, object, &mut restarts, failure).await?);
        }
    }

    /// Whether the partial body an earlier run left for `path` can continue into the download
    /// described by `now` with the new header `header` (see [`crate::resume`]); a partial
    /// that cannot is discarded, with a log line saying why.
    async fn resumable(
        &self,
        path: &Path,
        now: &PartialRecord,
        header: &FetchedHeader,
        expect: &BodyExpectation,
    ) -> Option<drs::ResumeFrom> {
        let part = crate::atomic::part_path(path);
        let discard = |reason: &str| {
            tracing::warn!(path = %part.display(), reason, "partial body from an earlier run discarded; fetching from byte 0");
            resume::discard(path);
        };
        let kept = match PartialRecord::read(path) {
            Ok(Some(kept)) => kept,
            Ok(None) => return None,
            Err(reason) => {
                discard(&reason);
                return None;
            }
        };
        if let Some(reason) = kept.mismatch(now) {
            discard(&reason);
            return None;
        }
        let len = match std::fs::metadata(&part) {
            Ok(m) => m.len(),
            Err(e) => {
                discard(&format!("the partial body is unreadable: {e}"));
                return None;
            }
        };
        let Some(offset) = resume::usable_prefix(len, now.header_len, now.size) else {
            discard("less than one whole segment was kept");
            return None;
        };
        let (part_path, header_len, etag, expect) = (
            part.clone(),
            now.header_len,
            now.etag.clone(),
            expect.clone(),
        );
        let (key, header, object) = (
            Arc::clone(&self.key),
            header.bytes.clone(),
            now.object.clone(),
        );
        let checked = tokio::task::spawn_blocking(move || {
            let opened = open_header(&header, key.secret(), &object).map_err(|e| e.to_string())?;
            resume::verify_prefix(&part_path, header_len, offset, &etag, &opened, &expect)
        })
        .await
        .unwrap_or_else(|e| Err(format!("the verification did not finish: {e}")));
        match checked {
            Ok(from) => {
                tracing::info!(
                    path = %part.display(),
                    offset,
                    size = now.size,
                    "partial body from an earlier run verified (validator unchanged, every kept segment authenticated); resuming"
                );
                Some(from)
            }
            Err(reason) => {
                discard(&reason);
                None
            }
        }
    }

    /// Counts a restart after `failure` (a body that changed or failed a check) and fetches
    /// the DRS object again; `failure` itself once [`MAX_RESTARTS`] are used up.
    async fn restart(
        &self,
        obj: &ObjectRef,
        object: &DrsObject,
        restarts: &mut u32,
        failure: FetchError,
    ) -> Result<DrsObject, FetchError> {
        if *restarts >= MAX_RESTARTS {
            return Err(failure);
        }
        *restarts += 1;
        tracing::warn!(
            object = %object.id,
            restart = *restarts,
            error = %failure,
            "body failed a check or changed; starting over with a fresh object, header and body"
        );
        self.client.record_retry(drs::RetryReason::Integrity);
        Ok(self.client.object(obj).await?)
    }

    async fn plaintext(
        &self,
        flavour: &dyn HeaderFlavour,
        obj: &ObjectRef,
        object: &DrsObject,
        path: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Fetched, FetchError> {
        if let (Some(limit), Some(size)) =
            (self.max_plaintext, c4gh::body::plaintext_len(object.size))
            && size > limit
        {
            return Err(FetchError::PlaintextTooLarge {
                object: object.id.clone(),
                size,
                limit,
            });
        }
        let out_err = |source| FetchError::Output {
            object: object.id.clone(),
            source,
        };
        let mut restarts = 0;
        let mut refreshed: Option<DrsObject> = None;
        loop {
            let object = refreshed.as_ref().unwrap_or(object);
            let (header, opened) = self.header(flavour, obj, object).await?;
            let target = self.body_target(flavour, obj, object).await?;
            let expect = BodyExpectation::for_object(object, Some(&header));
            let mut part = PartFile::create(path, PLAINTEXT_MODE, Arc::clone(&self.cleanup))
                .await
                .map_err(out_err)?;
            let file = part.take_file().await.map_err(out_err)?;
            let part_path = part.part_path().to_owned();
            let limit = self.max_plaintext;
            let increments = Increments::new(progress);
            let result = self
                .client
                .download_body_blocking(
                    &object.id,
                    &target,
                    &expect,
                    Some(&|p: Progress| increments.update(p.done)),
                    move |body| output::decrypt_body(body, file, &part_path, &opened, limit),
                )
                .await;
            let failure = match result {
                Ok((report, (file, bytes))) => {
                    if self.remove_plaintext {
                        self.cleanup.register(path);
                    }
                    part.commit_synced(file).await.map_err(out_err)?;
                    return Ok(Fetched {
                        bytes,
                        feeder: None,
                        checks: checks_of(&report, true),
                    });
                }
                Err(PipelineError::Consumer(e @ OutputError::Crypt4gh(_))) => {
                    consumer_error(&object.id, e)
                }
                Err(PipelineError::Consumer(e)) => return Err(consumer_error(&object.id, e)),
                Err(PipelineError::Download(e)) if e.is_corruption() => e.into(),
                Err(PipelineError::Download(e)) => return Err(e.into()),
            };
            drop(part);
            refreshed = Some(self.restart(obj, object, &mut restarts, failure).await?);
        }
    }

    async fn stream(
        &self,
        flavour: Arc<dyn HeaderFlavour>,
        obj: ObjectRef,
        object: DrsObject,
        path: &Path,
    ) -> Result<Fetched, FetchError> {
        let (header, opened) = self.header(&*flavour, &obj, &object).await?;
        output::create_parent(path)
            .await
            .map_err(|source| FetchError::Output {
                object: object.id.clone(),
                source,
            })?;
        self.cleanup.register(path);
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_fifo()) {
            let _ = std::fs::remove_file(path);
        }
        nix::unistd::mkfifo(
            path,
            nix::sys::stat::Mode::from_bits_truncate(PLAINTEXT_MODE),
        )
        .map_err(|source| FetchError::Fifo {
            path: path.to_owned(),
            source,
        })?;
        Ok(Fetched {
            bytes: 0,
            checks: Vec::new(),
            feeder: Some(Feeder {
                fetcher: FeederContext {
                    client: Arc::clone(&self.client),
                    flavour,
                    obj,
                    expect: BodyExpectation::for_object(&object, Some(&header)),
                    object,
                    opened,
                },
                path: path.to_owned(),
            }),
        })
    }
}

/// Maps a consumer failure to the fetch error the user should see.
fn consumer_error(object_id: &str, e: OutputError) -> FetchError {
    match e {
        OutputError::Body(io) => FetchError::Decrypt {
            object: object_id.to_owned(),
            detail: io.to_string(),
        },
        OutputError::Crypt4gh(e) => FetchError::Decrypt {
            object: object_id.to_owned(),
            detail: e.to_string(),
        },
        OutputError::TooLarge { limit } => FetchError::PlaintextTooLarge {
            object: object_id.to_owned(),
            size: limit.saturating_add(1),
            limit,
        },
        other => FetchError::Output {
            object: object_id.to_owned(),
            source: other,
        },
    }
}

fn open_header(
    bytes: &[u8],
    key: &c4gh::SecretKey,
    object: &str,
) -> Result<OpenedHeader, FetchError> {
    EncryptedHeader::parse(bytes)
        .and_then(|h| h.open(&[key], None))
        .map_err(|source| FetchError::HeaderDoesNotOpen {
            object: object.to_owned(),
            source,
        })
}

fn body_matches(existing: &output::ExistingFile, object: &DrsObject) -> bool {
    existing.body_len == object.size
        && object
            .checksum("sha-256")
            .is_some_and(|c| c.eq_ignore_ascii_case(&existing.body_sha256))
}

/// Decrypts the first body segment of the file at `path` with the new header's keys, so a
/// header is only swapped in when it belongs to the body on disk.
async fn check_first_segment(
    path: &Path,
    header_len: usize,
    opened: &OpenedHeader,
    object: &str,
) -> Result<(), FetchError> {
    let fail = |detail: String| FetchError::Decrypt {
        object: object.to_owned(),
        detail,
    };
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut skip = vec![0u8; header_len];
    file.read_exact(&mut skip)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let segment = (&mut file).take(c4gh::body::CIPHER_SEGMENT_SIZE as u64);
    let mut plain = c4gh::body_async::AsyncDecryptor::new(segment, &opened.data_keys, None)
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = vec![0u8; c4gh::body::SEGMENT_SIZE];
    loop {
        match plain.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

/// Turns the client's cumulative progress into increments.
struct Increments<'a> {
    sink: &'a (dyn Fn(u64) + Sync),
    last: AtomicU64,
}

impl<'a> Increments<'a> {
    fn new(sink: &'a (dyn Fn(u64) + Sync)) -> Self {
        Self::starting_at(sink, 0)
    }

    /// Increments of a download that continues at `offset` (only new bytes are counted).
    fn starting_at(sink: &'a (dyn Fn(u64) + Sync), offset: u64) -> Self {
        Increments {
            sink,
            last: AtomicU64::new(offset),
        }
    }

    fn update(&self, done: u64) {
        let last = self.last.swap(done, Ordering::Relaxed);
        if done > last {
            (self.sink)(done - last);
        }
    }
}

#[derive(Debug)]
struct FeederContext {
    client: Arc<Client>,
    flavour: Arc<dyn HeaderFlavour>,
    obj: ObjectRef,
    object: DrsObject,
    opened: OpenedHeader,
    expect: BodyExpectation,
}

/// Feeds a `stream` input's FIFO: each time a reader opens it, the body is downloaded, decrypted
/// and written into it from the start.
#[derive(Debug)]
pub struct Feeder {
    fetcher: FeederContext,
    path: PathBuf,
}

impl Feeder {
    /// Serves readers until cancelled; `progress` receives plaintext byte increments.
    pub async fn serve(self, progress: &(dyn Fn(u64) + Sync)) {
        loop {
            let sender = loop {
                match tokio::net::unix::pipe::OpenOptions::new().open_sender(&self.path) {
                    Ok(sender) => break sender,
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => {
                        tracing::error!(path = %self.path.display(), error = %e, "cannot open the FIFO; stream stopped");
                        return;
                    }
                }
            };
            match self.stream_once(sender, progress).await {
                Ok(bytes) => {
                    tracing::info!(path = %self.path.display(), bytes, "stream delivered")
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "stream interrupted; the reader saw a short read")
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stream_once(
        &self,
        mut sender: tokio::net::unix::pipe::Sender,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, FetchError> {
        let ctx = &self.fetcher;
        let target = ctx
            .client
            .target(&ctx.obj, ctx.flavour.body_locator(&ctx.obj, &ctx.object)?)
            .await?;
        let (mut tx, rx) = tokio::io::duplex(PIPE_BYTES);
        let mut plain = c4gh::body_async::AsyncDecryptor::new(
            rx,
            &ctx.opened.data_keys,
            ctx.opened.edit_list.as_deref(),
        )
        .map_err(|e| FetchError::Decrypt {
            object: ctx.object.id.clone(),
            detail: e.to_string(),
        })?;
        let download = async {
            let report = ctx
                .client
                .download_body(&ctx.object.id, &target, &ctx.expect, &mut tx, None)
                .await;
            drop(tx);
            report
        };
        let path = self.path.clone();
        let feed = async move {
            let result = output::copy(&mut plain, &mut sender, &path, None, progress).await;
            drop(plain);
            result
        };
        let (report, fed) = tokio::join!(download, feed);
        match (report, fed) {
            (Ok(_), Ok(n)) => Ok(n),
            (Err(drs::Error::Write { .. }), Err(e)) | (Ok(_), Err(e)) => {
                Err(consumer_error(&ctx.object.id, e))
            }
            (Err(e), _) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::get;
    use clap::Parser;

    use crate::cli::{Cli, Command};

    /// A server whose root `/service-info` fails with 503 until `up` is set, then says it is
    /// SDA v2; it has no DRS service-info.
    async fn flaky_sda() -> (String, Arc<AtomicBool>) {
        let up = Arc::new(AtomicBool::new(false));
        let state = Arc::clone(&up);
        let app = Router::new().route(
            "/service-info",
            get(move || {
                let up = state.load(Ordering::SeqCst);
                async move {
                    let (status, body) = if up {
                        (
                            StatusCode::OK,
                            r#"{"id":"neicnordic.sda.download","name":"SDA Download","type":{"group":"org.ga4gh","artifact":"drs","version":"1.5.0"},"version":"v3.4.3"}"#,
                        )
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, r#"{"status":503}"#)
                    };
                    (
                        status,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr.to_string(), up)
    }

    async fn fetcher() -> Fetcher {
        let cli = Cli::try_parse_from([
            "c4gh-sidecar",
            "fetch",
            "drs://h/x",
            "-o",
            "x",
            "--decrypt",
            "--drs-allow-port",
            "--drs-allow-http",
            "--retry-budget",
            "300ms",
        ])
        .unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("not fetch")
        };
        Fetcher::new(
            &args.drs,
            Arc::new(EphemeralKey::generate()),
            Arc::default(),
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_transient_detection_failure_is_not_remembered() {
        let (authority, up) = flaky_sda().await;
        let fetcher = fetcher().await;
        let uri = format!("drs://{authority}/EGAD1/a.c4gh");
        let opts = fetcher.client.config().uri_options;
        let obj = fetcher
            .client
            .locate(&DrsUri::parse(&uri, &opts).unwrap())
            .await
            .unwrap();
        assert_eq!(fetcher.flavour_for(&obj).await, FlavourChoice::Crypt4ghDrs);
        assert!(fetcher.detected_lock().is_empty(), "a fallback was cached");
        up.store(true, Ordering::SeqCst);
        assert_eq!(fetcher.flavour_for(&obj).await, FlavourChoice::SdaV2);
        // Remembered now: the server going away again does not change the answer.
        up.store(false, Ordering::SeqCst);
        assert_eq!(fetcher.flavour_for(&obj).await, FlavourChoice::SdaV2);
    }
}
