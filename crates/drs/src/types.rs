//! GA4GH DRS 1.5 JSON types, this project's service-info extension, and problem+json errors.
//!
//! Deserialisation is tolerant where the spec lets servers vary (unknown fields are ignored,
//! unknown enum values are kept as `Other`) and strict where a client depends on a field: a
//! [`DrsObject`] without `id`, `self_uri`, `size`, `created_time` or `checksums` does not parse.
//! [`DrsObject::validate`] adds the checks serde cannot express (non-empty id and checksums).
//!
//! Types that can carry credentials (signed URLs, `Authorization` headers in
//! [`AccessUrl::headers`], passports) print them elided in `Debug`.
//!
//! ```
//! use drs::types::DrsObject;
//!
//! let obj: DrsObject = serde_json::from_str(r#"{
//!     "id": "EGAF1", "self_uri": "drs://drs.example.org/EGAF1", "size": 124,
//!     "created_time": "2024-01-01T00:00:00Z",
//!     "checksums": [{"checksum": "ab", "type": "sha-256"}],
//!     "some_future_field": true
//! }"#).unwrap();
//! assert_eq!(obj.checksum("sha-256"), Some("ab"));
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// `application/problem+json` (RFC 9457), the media type of this project's error bodies.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A DRS object (`GET /objects/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrsObject {
    /// The object id on this server.
    pub id: String,
    /// Optional file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `drs://` URI of this object; prefer it over the URI the client was given.
    pub self_uri: String,
    /// Size in bytes of the blob the access methods deliver.
    pub size: u64,
    /// RFC 3339 creation time.
    pub created_time: String,
    /// RFC 3339 update time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_time: Option<String>,
    /// Server-defined version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Media type of the blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// Checksums of the blob the access methods deliver (for Crypt4GH objects: the encrypted
    /// body; see `docs/drs-crypt4gh.md`).
    pub checksums: Vec<Checksum>,
    /// How to fetch the bytes; absent for bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access_methods: Vec<AccessMethod>,
    /// Members of a bundle.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<ContentsObject>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Other names for the object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
}

impl DrsObject {
    /// The checksum of the given type (`sha-256`, `md5`, …; compared case-insensitively).
    pub fn checksum(&self, kind: &str) -> Option<&str> {
        self.checksums
            .iter()
            .find(|c| c.r#type.eq_ignore_ascii_case(kind))
            .map(|c| c.checksum.as_str())
    }

    /// The access method with this `access_id`.
    pub fn access_method(&self, access_id: &str) -> Option<&AccessMethod> {
        self.access_methods
            .iter()
            .find(|m| m.access_id.as_deref() == Some(access_id))
    }

    /// Checks the spec rules serde cannot: non-empty `id` and `self_uri`, at least one checksum,
    /// every access method has an `access_url` or an `access_id`.
    ///
    /// # Errors
    ///
    /// [`InvalidObject`] naming the rule broken.
    pub fn validate(&self) -> Result<(), InvalidObject> {
        let fail = |rule: &'static str| {
            Err(InvalidObject {
                id: self.id.clone(),
                rule,
            })
        };
        if self.id.is_empty() {
            return fail("`id` is empty");
        }
        if self.self_uri.is_empty() {
            return fail("`self_uri` is empty");
        }
        if self.checksums.is_empty() {
            return fail("`checksums` is empty (DRS requires at least one)");
        }
        if self
            .access_methods
            .iter()
            .any(|m| m.access_url.is_none() && m.access_id.is_none())
        {
            return fail("an access method has neither `access_url` nor `access_id`");
        }
        Ok(())
    }
}

/// A [`DrsObject`] that parsed but breaks a DRS rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DRS object `{id}` is invalid: {rule}")]
pub struct InvalidObject {
    /// The object id (may be empty).
    pub id: String,
    /// The rule broken.
    pub rule: &'static str,
}

/// A checksum of the object's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    /// Hex digest.
    pub checksum: String,
    /// Algorithm name from the IANA/“Hash Function Textual Names” registry, e.g. `sha-256`.
    pub r#type: String,
}

/// One way to fetch an object's bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessMethod {
    /// Transport type.
    pub r#type: AccessType,
    /// A URL usable directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_url: Option<AccessUrl>,
    /// An id to exchange for an [`AccessUrl`] via `/objects/{id}/access/{access_id}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_id: Option<String>,
    /// Cloud provider name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<String>,
    /// Cloud region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Whether the method is currently usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// Authorisation needed for this method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizations: Option<Authorizations>,
}

/// Access method type. DRS 1.5 closes the enum; unknown values are kept in `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum AccessType {
    /// `s3`
    S3,
    /// `gs`
    Gs,
    /// `ftp`
    Ftp,
    /// `gsiftp`
    Gsiftp,
    /// `globus`
    Globus,
    /// `htsget`
    Htsget,
    /// `https`
    Https,
    /// `file`
    File,
    /// Any other value (kept verbatim).
    Other(String),
}

impl AccessType {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            AccessType::S3 => "s3",
            AccessType::Gs => "gs",
            AccessType::Ftp => "ftp",
            AccessType::Gsiftp => "gsiftp",
            AccessType::Globus => "globus",
            AccessType::Htsget => "htsget",
            AccessType::Https => "https",
            AccessType::File => "file",
            AccessType::Other(s) => s,
        }
    }
}

impl From<String> for AccessType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "s3" => AccessType::S3,
            "gs" => AccessType::Gs,
            "ftp" => AccessType::Ftp,
            "gsiftp" => AccessType::Gsiftp,
            "globus" => AccessType::Globus,
            "htsget" => AccessType::Htsget,
            "https" => AccessType::Https,
            "file" => AccessType::File,
            _ => AccessType::Other(s),
        }
    }
}

impl From<AccessType> for String {
    fn from(t: AccessType) -> Self {
        t.as_str().to_owned()
    }
}

/// A URL to fetch bytes from, with headers to send. Both may hold credentials (signed query
/// strings, `Authorization:` headers), so `Debug` shows only the URL without its query and the
/// header names.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessUrl {
    /// The URL.
    pub url: String,
    /// `Name: value` headers to send with the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

impl fmt::Debug for AccessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .headers
            .iter()
            .map(|h| h.split_once(':').map_or("[malformed]", |(n, _)| n.trim()))
            .collect();
        f.debug_struct("AccessUrl")
            .field("url", &redact_url(&self.url))
            .field("headers", &names)
            .finish()
    }
}

/// The URL without query string or userinfo, for logs: signed URLs carry credentials there.
pub fn redact_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or("");
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let elided = if no_query.len() < url.len() {
                "?[query elided]"
            } else {
                ""
            };
            format!("{scheme}://{host}{path}{elided}")
        }
        None => no_query.to_owned(),
    }
}

/// Authorisation requirements (`OPTIONS /objects/{id}`, or inside an access method).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Authorizations {
    /// The object these apply to (bulk responses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drs_object_id: Option<String>,
    /// Accepted authorisation types.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_types: Vec<AuthType>,
    /// Passport issuers accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passport_auth_issuers: Vec<String>,
    /// Bearer token issuers accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bearer_auth_issuers: Vec<String>,
}

/// Authorisation type; unknown values kept in `Other`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum AuthType {
    /// `None`
    None,
    /// `BasicAuth`
    BasicAuth,
    /// `BearerAuth`
    BearerAuth,
    /// `PassportAuth`
    PassportAuth,
    /// Any other value (kept verbatim).
    Other(String),
}

impl From<String> for AuthType {
    fn from(s: String) -> Self {
        match s.as_str() {
            "None" => AuthType::None,
            "BasicAuth" => AuthType::BasicAuth,
            "BearerAuth" => AuthType::BearerAuth,
            "PassportAuth" => AuthType::PassportAuth,
            _ => AuthType::Other(s),
        }
    }
}

impl From<AuthType> for String {
    fn from(t: AuthType) -> Self {
        match t {
            AuthType::None => "None".into(),
            AuthType::BasicAuth => "BasicAuth".into(),
            AuthType::BearerAuth => "BearerAuth".into(),
            AuthType::PassportAuth => "PassportAuth".into(),
            AuthType::Other(s) => s,
        }
    }
}

/// A member of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentsObject {
    /// Name within the bundle.
    pub name: String,
    /// DRS id of the member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `drs://` URIs of the member.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drs_uri: Vec<String>,
    /// Nested members (when `expand=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<ContentsObject>,
}

/// Body of `POST /objects/{id}` and `POST /objects/{id}/access/{access_id}`.
///
/// The passports field name is configurable in the client because the spec text and schema
/// disagree (`passports` vs `tokens`); this type serialises the schema's `passports`.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PostObjectBody {
    /// Expand bundles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expand: bool,
    /// GA4GH passport JWTs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passports: Vec<String>,
}

impl fmt::Debug for PostObjectBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostObjectBody")
            .field("expand", &self.expand)
            .field(
                "passports",
                &format_args!("[{} elided]", self.passports.len()),
            )
            .finish()
    }
}

/// Body of `POST /objects` (bulk object lookup).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BulkObjectRequest {
    /// Ids to look up.
    pub bulk_object_ids: Vec<String>,
    /// Expand bundles.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expand: bool,
    /// GA4GH passport JWTs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passports: Vec<String>,
}

impl fmt::Debug for BulkObjectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkObjectRequest")
            .field("bulk_object_ids", &self.bulk_object_ids)
            .field("expand", &self.expand)
            .field(
                "passports",
                &format_args!("[{} elided]", self.passports.len()),
            )
            .finish()
    }
}

/// Response of `POST /objects`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BulkObjectResponse {
    /// Counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Ids that could not be resolved, grouped by error code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_drs_objects: Vec<Unresolved>,
    /// Resolved objects (the spec's field name is singular).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_drs_object: Vec<DrsObject>,
}

/// Counts in bulk responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Ids requested.
    #[serde(default)]
    pub requested: u64,
    /// Ids resolved.
    #[serde(default)]
    pub resolved: u64,
    /// Ids not resolved.
    #[serde(default)]
    pub unresolved: u64,
}

/// Ids not resolved in a bulk request, with the HTTP-style error code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    /// e.g. 404, 403.
    pub error_code: u16,
    /// The ids.
    #[serde(default)]
    pub object_ids: Vec<String>,
}

/// Body of `POST /objects/access` (bulk access).
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BulkAccessRequest {
    /// Object ids and the access ids wanted for each.
    pub bulk_object_access_ids: Vec<BulkObjectAccessId>,
    /// GA4GH passport JWTs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passports: Vec<String>,
}

impl fmt::Debug for BulkAccessRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkAccessRequest")
            .field("bulk_object_access_ids", &self.bulk_object_access_ids)
            .field(
                "passports",
                &format_args!("[{} elided]", self.passports.len()),
            )
            .finish()
    }
}

/// One object's access ids in a [`BulkAccessRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkObjectAccessId {
    /// Object id.
    pub bulk_object_id: String,
    /// Access ids.
    #[serde(default)]
    pub bulk_access_ids: Vec<String>,
}

/// Response of `POST /objects/access`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BulkAccessResponse {
    /// Counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Unresolved ids by error code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_drs_objects: Vec<Unresolved>,
    /// Resolved URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_drs_object_access_urls: Vec<BulkAccessUrl>,
}

/// One resolved URL in a [`BulkAccessResponse`]. `Debug` elides credentials like [`AccessUrl`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkAccessUrl {
    /// Object id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drs_object_id: Option<String>,
    /// Access id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drs_access_id: Option<String>,
    /// The URL.
    pub url: String,
    /// Headers to send.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
}

impl fmt::Debug for BulkAccessUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkAccessUrl")
            .field("drs_object_id", &self.drs_object_id)
            .field("drs_access_id", &self.drs_access_id)
            .field(
                "access_url",
                &AccessUrl {
                    url: self.url.clone(),
                    headers: self.headers.clone(),
                },
            )
            .finish()
    }
}

/// Response of bulk `OPTIONS /objects`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BulkOptionsResponse {
    /// Counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Summary>,
    /// Unresolved ids by error code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_drs_objects: Vec<Unresolved>,
    /// Authorisations per object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_drs_object: Vec<Authorizations>,
}

/// GA4GH service-info (`GET /service-info`) with the DRS 1.5 and Crypt4GH extensions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Reverse-domain service id.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// `{group, artifact: "drs", version}`.
    pub r#type: ServiceType,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Operating organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// Contact URL (may be `mailto:`).
    #[serde(
        rename = "contactUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub contact_url: Option<String>,
    /// Documentation URL.
    #[serde(
        rename = "documentationUrl",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub documentation_url: Option<String>,
    /// RFC 3339.
    #[serde(rename = "createdAt", default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// RFC 3339.
    #[serde(rename = "updatedAt", default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// `prod`, `test`, ….
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Implementation version.
    pub version: String,
    /// DRS 1.5 extension (`maxBulkRequestLength`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drs: Option<DrsServiceExt>,
    /// This project's extension: present iff the server re-encrypts Crypt4GH headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypt4gh: Option<Crypt4ghServiceExt>,
}

/// `type` of a service-info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceType {
    /// e.g. `org.ga4gh`.
    pub group: String,
    /// `drs`.
    pub artifact: String,
    /// Spec version, e.g. `1.5.0`.
    pub version: String,
}

/// Organisation in a service-info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Name.
    pub name: String,
    /// URL.
    pub url: String,
}

/// DRS 1.5 `drs` block of service-info.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DrsServiceExt {
    /// Longest accepted `bulk_object_ids` / `bulk_object_access_ids` (longer → 413).
    #[serde(
        rename = "maxBulkRequestLength",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bulk_request_length: Option<u64>,
    /// Objects served.
    #[serde(
        rename = "objectCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub object_count: Option<u64>,
    /// Total bytes served.
    #[serde(
        rename = "totalObjectSize",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub total_object_size: Option<u64>,
}

/// `crypt4gh` block of service-info (see `docs/drs-crypt4gh.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crypt4ghServiceExt {
    /// Protocol version; this crate speaks `1`.
    pub protocol_version: u32,
    /// Request header carrying the client's public key: `X-C4GH-Public-Key`.
    #[serde(default = "default_public_key_header")]
    pub public_key_header: String,
    /// Access id whose access URL returns the re-encrypted header: `crypt4gh-header`.
    #[serde(default = "default_header_access_id")]
    pub header_access_id: String,
    /// Access id whose access URL returns the unchanged encrypted body: `crypt4gh-body`.
    #[serde(default = "default_body_access_id")]
    pub body_access_id: String,
    /// Largest header the server returns, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_bytes: Option<u64>,
    /// Whether the SDA v2-compatible `/files/{id}/header` and `/files/{id}/content` are served.
    #[serde(default)]
    pub sda_compatible: bool,
}

impl Default for Crypt4ghServiceExt {
    fn default() -> Self {
        Self {
            protocol_version: 1,
            public_key_header: default_public_key_header(),
            header_access_id: default_header_access_id(),
            body_access_id: default_body_access_id(),
            max_header_bytes: None,
            sda_compatible: false,
        }
    }
}

/// Name of the request header carrying the client's Crypt4GH public key.
pub const PUBLIC_KEY_HEADER: &str = "X-C4GH-Public-Key";
/// Access id of the re-encrypted header access method.
pub const HEADER_ACCESS_ID: &str = "crypt4gh-header";
/// Access id of the encrypted body access method.
pub const BODY_ACCESS_ID: &str = "crypt4gh-body";
/// Response header tying a re-encrypted header to the body it belongs to (value: body ETag).
pub const CONTENT_ETAG_HEADER: &str = "X-C4GH-Content-ETag";
/// Media type of a bare Crypt4GH header.
pub const HEADER_MEDIA_TYPE: &str = "application/vnd.ga4gh.crypt4gh.header";

fn default_public_key_header() -> String {
    PUBLIC_KEY_HEADER.into()
}

fn default_header_access_id() -> String {
    HEADER_ACCESS_ID.into()
}

fn default_body_access_id() -> String {
    BODY_ACCESS_ID.into()
}

/// DRS 1.5 `Error` body (`{msg, status_code}`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DrsError {
    /// Message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// RFC 9457 problem details, the error body of this project's servers.
///
/// To stay readable by plain DRS clients, servers also fill the DRS `msg` and `status_code`
/// fields with the same `detail` and `status`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Problem {
    /// URI reference naming the problem type (`about:blank` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Short summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Explanation specific to this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// URI of this occurrence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Machine-readable code (see [`ProblemCode`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// NeIC SDA v2's name for the same code (`errorCode`, e.g. `KEY_MISSING`); read when `code`
    /// is absent.
    #[serde(rename = "errorCode", default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// DRS `Error.msg`, duplicated for DRS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg: Option<String>,
    /// DRS `Error.status_code`, duplicated for DRS clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

impl Problem {
    /// A problem with `status`, `code`, `title` from the code and `detail`; DRS fields filled.
    pub fn new(status: u16, code: ProblemCode, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self {
            r#type: Some(format!("https://c4gh.dev/problems/{}", code.as_str())),
            title: Some(code.title().to_owned()),
            status: Some(status),
            detail: Some(detail.clone()),
            instance: None,
            code: Some(code.as_str().to_owned()),
            error_code: None,
            msg: Some(detail),
            status_code: Some(status),
        }
    }

    /// The code (`code`, else SDA's `errorCode`) parsed into a [`ProblemCode`] (unknown codes →
    /// `None`).
    pub fn problem_code(&self) -> Option<ProblemCode> {
        self.code
            .as_deref()
            .or(self.error_code.as_deref())
            .and_then(ProblemCode::from_code)
    }

    /// The best human-readable explanation: `detail`, else `msg`, else `title`.
    pub fn message(&self) -> Option<&str> {
        self.detail
            .as_deref()
            .or(self.msg.as_deref())
            .or(self.title.as_deref())
    }
}

/// Machine-readable error codes of the Crypt4GH DRS protocol (`docs/drs-crypt4gh.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemCode {
    /// 400: no public key header on a header request.
    KeyMissing,
    /// 400: both `X-C4GH-Public-Key` and `Htsget-Context-Public-Key` were sent.
    KeyConflict,
    /// 400: the public key is not base64 of a Crypt4GH PEM public key (or of 32 raw bytes).
    KeyInvalid,
    /// 400: malformed object id.
    InvalidId,
    /// 400: malformed request body or parameter.
    BadRequest,
    /// 401: no credentials or credentials rejected.
    Unauthenticated,
    /// 403: authenticated but not allowed this object.
    Forbidden,
    /// 404: no such object or access id.
    NotFound,
    /// 413: bulk request longer than `maxBulkRequestLength`.
    BulkTooLarge,
    /// 416: Range not satisfiable.
    RangeNotSatisfiable,
    /// 422: the stored file is not Crypt4GH, or its header cannot be opened with the server key.
    NotCrypt4gh,
    /// 500: server-side failure (details logged, not returned).
    Internal,
    /// 503: temporarily unavailable; retry after `Retry-After`.
    Unavailable,
}

impl ProblemCode {
    const ALL: [ProblemCode; 13] = [
        ProblemCode::KeyMissing,
        ProblemCode::KeyConflict,
        ProblemCode::KeyInvalid,
        ProblemCode::InvalidId,
        ProblemCode::BadRequest,
        ProblemCode::Unauthenticated,
        ProblemCode::Forbidden,
        ProblemCode::NotFound,
        ProblemCode::BulkTooLarge,
        ProblemCode::RangeNotSatisfiable,
        ProblemCode::NotCrypt4gh,
        ProblemCode::Internal,
        ProblemCode::Unavailable,
    ];

    /// Wire form, e.g. `KEY_MISSING`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemCode::KeyMissing => "KEY_MISSING",
            ProblemCode::KeyConflict => "KEY_CONFLICT",
            ProblemCode::KeyInvalid => "KEY_INVALID",
            ProblemCode::InvalidId => "INVALID_ID",
            ProblemCode::BadRequest => "BAD_REQUEST",
            ProblemCode::Unauthenticated => "UNAUTHENTICATED",
            ProblemCode::Forbidden => "FORBIDDEN",
            ProblemCode::NotFound => "NOT_FOUND",
            ProblemCode::BulkTooLarge => "BULK_TOO_LARGE",
            ProblemCode::RangeNotSatisfiable => "RANGE_NOT_SATISFIABLE",
            ProblemCode::NotCrypt4gh => "NOT_CRYPT4GH",
            ProblemCode::Internal => "INTERNAL",
            ProblemCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// Parses the wire form.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }

    /// Short title for problem+json.
    pub fn title(self) -> &'static str {
        match self {
            ProblemCode::KeyMissing => "Public key missing",
            ProblemCode::KeyConflict => "Conflicting public key headers",
            ProblemCode::KeyInvalid => "Invalid public key",
            ProblemCode::InvalidId => "Invalid object id",
            ProblemCode::BadRequest => "Bad request",
            ProblemCode::Unauthenticated => "Authentication required",
            ProblemCode::Forbidden => "Access denied",
            ProblemCode::NotFound => "Not found",
            ProblemCode::BulkTooLarge => "Bulk request too large",
            ProblemCode::RangeNotSatisfiable => "Range not satisfiable",
            ProblemCode::NotCrypt4gh => "Object is not a readable Crypt4GH file",
            ProblemCode::Internal => "Internal server error",
            ProblemCode::Unavailable => "Service unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object_json() -> serde_json::Value {
        json!({
            "id": "EGAF1",
            "self_uri": "drs://drs.example.org/EGAF1",
            "size": 1000,
            "created_time": "2024-01-01T00:00:00Z",
            "checksums": [{"checksum": "AB12", "type": "SHA-256"}],
            "access_methods": [
                {"type": "https", "access_id": "crypt4gh-header"},
                {"type": "https", "access_url": {"url": "https://s3.example/b?X-Amz-Signature=sekrit",
                 "headers": ["Authorization: Bearer sekrit"]}},
                {"type": "crypt4gh", "access_id": "x", "future": 1}
            ],
            "unknown_top_level": {"nested": true}
        })
    }

    #[test]
    fn object_is_tolerant_of_unknown_fields_and_enum_values() {
        let obj: DrsObject = serde_json::from_value(object_json()).unwrap();
        assert_eq!(obj.checksum("sha-256"), Some("AB12"));
        assert_eq!(obj.access_methods[0].r#type, AccessType::Https);
        assert_eq!(
            obj.access_methods[2].r#type,
            AccessType::Other("crypt4gh".into())
        );
        assert!(obj.access_method("crypt4gh-header").is_some());
        obj.validate().unwrap();
        let back = serde_json::to_value(&obj).unwrap();
        assert_eq!(back["access_methods"][2]["type"], "crypt4gh");
        assert!(back.get("unknown_top_level").is_none());
    }

    #[test]
    fn object_requires_the_required_fields() {
        for field in ["id", "self_uri", "size", "created_time", "checksums"] {
            let mut v = object_json();
            v.as_object_mut().unwrap().remove(field);
            let err = serde_json::from_value::<DrsObject>(v).unwrap_err();
            assert!(
                err.to_string().contains(field),
                "missing {field} must be named: {err}"
            );
        }
        let mut v = object_json();
        v["size"] = json!(-1);
        assert!(serde_json::from_value::<DrsObject>(v).is_err());
    }

    #[test]
    fn validate_rejects_what_serde_cannot() {
        let base: DrsObject = serde_json::from_value(object_json()).unwrap();
        let mut o = base.clone();
        o.checksums.clear();
        assert!(o.validate().unwrap_err().to_string().contains("checksums"));
        let mut o = base.clone();
        o.id.clear();
        assert!(o.validate().is_err());
        let mut o = base;
        o.access_methods[0].access_id = None;
        assert!(o.validate().unwrap_err().to_string().contains("access_url"));
    }

    #[test]
    fn debug_elides_credentials() {
        let obj: DrsObject = serde_json::from_value(object_json()).unwrap();
        let dbg = format!("{obj:?}");
        assert!(!dbg.contains("sekrit"), "{dbg}");
        assert!(dbg.contains("https://s3.example/b?[query elided]"), "{dbg}");
        assert!(dbg.contains("Authorization"), "{dbg}");
        let body = BulkObjectRequest {
            bulk_object_ids: vec!["a".into()],
            expand: false,
            passports: vec!["eyJsekrit".into()],
        };
        assert!(!format!("{body:?}").contains("sekrit"));
        let p = PostObjectBody {
            expand: true,
            passports: vec!["eyJsekrit".into()],
        };
        assert!(!format!("{p:?}").contains("sekrit"));
        let b = BulkAccessRequest {
            bulk_object_access_ids: vec![],
            passports: vec!["eyJsekrit".into()],
        };
        assert!(!format!("{b:?}").contains("sekrit"));
        let u = BulkAccessUrl {
            drs_object_id: None,
            drs_access_id: None,
            url: "https://u:sekrit@h/p?sig=sekrit".into(),
            headers: vec!["X-Token: sekrit".into()],
        };
        assert!(!format!("{u:?}").contains("sekrit"), "{u:?}");
    }

    #[test]
    fn redact_url_cases() {
        let cases = [
            ("https://h/p", "https://h/p"),
            ("https://h/p?sig=1", "https://h/p?[query elided]"),
            ("https://u:p@h:1/p#f", "https://h:1/p?[query elided]"),
            ("https://h", "https://h"),
            ("not a url?x", "not a url"),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
        }
    }

    #[test]
    fn bulk_types_use_spec_field_names() {
        let resp: BulkObjectResponse = serde_json::from_value(json!({
            "summary": {"requested": 2, "resolved": 1, "unresolved": 1},
            "unresolved_drs_objects": [{"error_code": 404, "object_ids": ["nope"]}],
            "resolved_drs_object": [object_json()]
        }))
        .unwrap();
        assert_eq!(resp.summary.unwrap().unresolved, 1);
        assert_eq!(resp.unresolved_drs_objects[0].object_ids, ["nope"]);
        assert_eq!(resp.resolved_drs_object[0].id, "EGAF1");
        let req = BulkAccessRequest {
            bulk_object_access_ids: vec![BulkObjectAccessId {
                bulk_object_id: "a".into(),
                bulk_access_ids: vec!["crypt4gh-body".into()],
            }],
            passports: vec![],
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            json!({"bulk_object_access_ids": [{"bulk_object_id": "a", "bulk_access_ids": ["crypt4gh-body"]}]})
        );
        let acc: BulkAccessResponse = serde_json::from_value(json!({
            "resolved_drs_object_access_urls": [{"drs_object_id": "a", "drs_access_id": "b", "url": "https://x"}]
        }))
        .unwrap();
        assert_eq!(acc.resolved_drs_object_access_urls[0].url, "https://x");
    }

    #[test]
    fn service_info_with_extensions() {
        let si: ServiceInfo = serde_json::from_value(json!({
            "id": "org.example.drs", "name": "x", "version": "1",
            "type": {"group": "org.ga4gh", "artifact": "drs", "version": "1.5.0"},
            "drs": {"maxBulkRequestLength": 100},
            "crypt4gh": {"protocol_version": 1},
            "contactUrl": "mailto:a@b"
        }))
        .unwrap();
        assert_eq!(si.drs.unwrap().max_bulk_request_length, Some(100));
        let c = si.crypt4gh.unwrap();
        assert_eq!(c, Crypt4ghServiceExt::default());
        assert_eq!(c.public_key_header, "X-C4GH-Public-Key");
        assert_eq!(si.contact_url.as_deref(), Some("mailto:a@b"));
    }

    #[test]
    fn problem_round_trip_and_codes() {
        let p = Problem::new(400, ProblemCode::KeyMissing, "send X-C4GH-Public-Key");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["code"], "KEY_MISSING");
        assert_eq!(v["status"], 400);
        assert_eq!(v["status_code"], 400);
        assert_eq!(v["msg"], "send X-C4GH-Public-Key");
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back.problem_code(), Some(ProblemCode::KeyMissing));
        for code in ProblemCode::ALL {
            assert_eq!(ProblemCode::from_code(code.as_str()), Some(code));
        }
        // What the real SDA v2 sends (docs/drs-crypt4gh.md §9): `errorCode`, not `code`.
        let sda: Problem = serde_json::from_value(json!({
            "title": "Bad Request", "status": 400,
            "detail": "only one of X-C4GH-Public-Key or Htsget-Context-Public-Key may be provided",
            "errorCode": "KEY_CONFLICT", "correlationId": "9e4900aa"
        }))
        .unwrap();
        assert_eq!(sda.problem_code(), Some(ProblemCode::KeyConflict));
        assert!(sda.message().unwrap().starts_with("only one of"));
        let titled: Problem =
            serde_json::from_value(json!({"title": "Bad Request", "status": 400})).unwrap();
        assert_eq!(titled.message(), Some("Bad Request"));
        assert_eq!(titled.problem_code(), None);
        let drs_only: Problem =
            serde_json::from_value(json!({"msg": "no such object", "status_code": 404})).unwrap();
        assert_eq!(drs_only.message(), Some("no such object"));
    }
}
