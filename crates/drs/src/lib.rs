//! GA4GH DRS 1.5 for the crypt4gh sidecar: wire types, `drs://` URIs and (soon) the client.
//!
//! - [`uri`] parses `drs://host/id` and compact `drs://[provider/]prefix:accession` URIs and turns
//!   hostname URIs into the HTTPS object URL (`https://host/ga4gh/drs/v1/objects/{id}`).
//! - [`types`] holds the DRS 1.5 JSON types (objects, access methods, bulk requests, service-info)
//!   and the RFC 9457 problem+json error body used by this project's servers.
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

pub mod types;
pub mod uri;
