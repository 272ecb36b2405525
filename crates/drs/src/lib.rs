//! GA4GH DRS 1.5 for the crypt4gh sidecar: wire types, `drs://` URIs, and an async client that
//! obtains Crypt4GH headers re-encrypted for a client key and streams the unchanged body.
//!
//! - [`uri`] parses `drs://host/id` and compact `drs://[provider/]prefix:accession` URIs;
//! - [`types`] holds the DRS 1.5 JSON types and the problem+json error body;
//! - [`resolve`] maps URIs to object URLs (prefix map, identifiers.org / n2t.net with a cache);
//! - [`auth`] holds the secret credential types (bearer token, passports);
//! - [`flavour`] plans header requests for this project's protocol, SDA v2 and key-header URLs;
//! - [`Client`] executes them with retries, deadlines, size caps, resume and checksums.
//!
//! The protocol is specified in `docs/drs-crypt4gh.md`.
//!
//! ```
//! use drs::uri::{DrsUri, ParseOptions};
//!
//! let uri = DrsUri::parse("drs://drs.example.org/EGAF0001", &ParseOptions::default()).unwrap();
//! assert_eq!(uri.host(), Some("drs.example.org"));
//! assert_eq!(
//!     uri.object_url().unwrap(),
//!     "https://drs.example.org/ga4gh/drs/v1/objects/EGAF0001"
//! );
//! ```
//!
//! Typical use (not run here: it needs a server):
//!
//! ```no_run
//! # async fn demo() -> drs::Result<()> {
//! use drs::{Client, ClientConfig, flavour::{ClientPublicKey, Crypt4ghDrs}};
//!
//! let client = Client::new(ClientConfig::default())?;
//! let obj = client.locate_str("drs://drs.example.org/EGAF0001").await?;
//! let object = client.object(&obj).await?;
//! let key = ClientPublicKey::from_raw([9; 32]);
//! let report = client
//!     .fetch_to_file(&Crypt4ghDrs, &obj, &object, &key, "/data/x.c4gh".as_ref(), None)
//!     .await?;
//! println!("{} body bytes", report.body.bytes);
//! # Ok(()) }
//! ```

pub mod auth;
mod body;
mod client;
mod error;
pub mod flavour;
pub mod resolve;
pub mod types;
pub mod uri;

pub use body::{
    BodyExpectation, BodyHashes, BodyInspector, BodyReader, BodyReport, ChecksumKind,
    ExpectedChecksum, FetchReport, MAX_BODY_RESTARTS, MAX_INVALID_BODY_RESPONSES, MAX_RESUMES,
    PIPELINE_BATCH_BYTES, PIPELINE_DEPTH, PipelineError, Progress, ProgressFn, ResumeFrom,
    part_path, write_all_vectored,
};
pub use client::{
    Client, ClientConfig, DEFAULT_MAX_HEADER_BYTES, FetchedHeader, MAX_INVALID_RESPONSES,
    RetryObserver, RetryPolicy, RetryReason, SDA_CONTENT_ETAG_HEADER, Target, Timeouts,
};
pub use error::{Error, Result};
