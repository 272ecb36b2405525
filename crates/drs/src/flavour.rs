//! Header flavours: how a given server hands out a Crypt4GH header re-encrypted for a client key,
//! and where the matching body is.
//!
//! A [`HeaderFlavour`] only *plans* (which URL or access id, which request header carries the
//! key); the [`Client`](crate::Client) executes the plan with its retries, limits and credential
//! rules. Three flavours are provided:
//!
//! - [`Crypt4ghDrs`] — this project's protocol (`docs/drs-crypt4gh.md`): access ids
//!   `crypt4gh-header` / `crypt4gh-body` on the DRS object;
//! - [`SdaV2`] — NeIC SDA v2 download: `/files/{id}/header` and `/files/{id}/content`;
//! - [`KeyHeaderUrl`] — a header URL pattern with the key in a configurable request header
//!   (htsget-rs uses `Htsget-Context-Public-Key`), body from the object's `https` access method.
//!
//! Which one a server gets is configuration: a [`FlavourChoice`] per `host[:port]` in
//! [`ServerFlavours`] (the sidecar's `--server-flavour` / `C4GH_SERVER_FLAVOURS`, a policy's
//! `serverFlavours`). SDA v2 has no lookup by file id: its files are named
//! `drs://host/{datasetId}/{filePath}` and [`SdaV2::object_ref`] maps that to SDA's only DRS route,
//! `/objects/{datasetId}/{filePath}`.
//!
//! ```
//! use drs::flavour::ClientPublicKey;
//!
//! let key = ClientPublicKey::from_raw([7u8; 32]);
//! let again = ClientPublicKey::from_pem(key.pem()).unwrap();
//! assert_eq!(again.raw(), &[7u8; 32]);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;

use crate::error::{Error, Result};
use crate::resolve::{ObjectRef, join};
use crate::types::{
    AccessType, AccessUrl, BODY_ACCESS_ID, DrsObject, HEADER_ACCESS_ID, PUBLIC_KEY_HEADER,
};
use crate::uri::{HostnameUri, ParseOptions, encode_segment};

/// Request header htsget-rs (and SDA v2, as an alternative) reads the key from.
pub const HTSGET_PUBLIC_KEY_HEADER: &str = "Htsget-Context-Public-Key";

const PEM_BEGIN: &str = "-----BEGIN CRYPT4GH PUBLIC KEY-----";
const PEM_END: &str = "-----END CRYPT4GH PUBLIC KEY-----";

/// The X25519 public key a header is re-encrypted for, with its Crypt4GH PEM form.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientPublicKey {
    raw: [u8; 32],
    pem: String,
}

impl ClientPublicKey {
    /// From the 32 raw key bytes.
    pub fn from_raw(raw: [u8; 32]) -> Self {
        let pem = format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", STANDARD.encode(raw));
        Self { raw, pem }
    }

    /// From a Crypt4GH PEM public key file's text.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the text is not a Crypt4GH public key.
    pub fn from_pem(pem: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config {
            what: format!("not a Crypt4GH public key: {why}"),
        };
        let lines: Vec<&str> = pem
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let [begin, body @ .., end] = lines.as_slice() else {
            return Err(bad("expected BEGIN line, base64, END line"));
        };
        if *begin != PEM_BEGIN || *end != PEM_END {
            return Err(bad(
                "missing `-----BEGIN/END CRYPT4GH PUBLIC KEY-----` lines",
            ));
        }
        let bytes = STANDARD
            .decode(body.concat())
            .map_err(|_| bad("the key is not valid base64"))?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        Ok(Self::from_raw(raw))
    }

    /// The 32 raw bytes.
    pub fn raw(&self) -> &[u8; 32] {
        &self.raw
    }

    /// The canonical PEM text.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The request header value: base64 of the PEM text.
    pub fn header_value(&self) -> String {
        STANDARD.encode(self.pem.as_bytes())
    }
}

impl fmt::Debug for ClientPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: String = self.raw[..4].iter().map(|b| format!("{b:02x}")).collect();
        write!(f, "ClientPublicKey({hex}…)")
    }
}

/// Where to get something: a URL to call directly, an access id to exchange, or an AccessUrl
/// already in hand.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Locator {
    /// Call this URL (the client's credential is sent only if it has the object's origin).
    Url(Url),
    /// Exchange via `GET|POST {object}/access/{access_id}`.
    AccessId(String),
    /// An AccessUrl from the object (its headers, if any, replace the client's credential).
    AccessUrl(AccessUrl),
}

/// How a server hands out re-encrypted headers and bodies.
pub trait HeaderFlavour: Send + Sync + fmt::Debug {
    /// Short name for logs and errors.
    fn name(&self) -> &'static str;

    /// Request header that carries [`ClientPublicKey::header_value`].
    fn key_header(&self) -> &str;

    /// Where the header is.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the object does not offer it.
    fn header_locator(&self, obj: &ObjectRef, object: &DrsObject) -> Result<Locator>;

    /// Where the encrypted body is.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] when the object does not offer it.
    fn body_locator(&self, obj: &ObjectRef, object: &DrsObject) -> Result<Locator>;

    /// Whether passports are sent as a JSON POST body to the header URL.
    fn passports_in_post(&self) -> bool {
        false
    }
}

/// This project's protocol (`docs/drs-crypt4gh.md`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Crypt4ghDrs;

impl HeaderFlavour for Crypt4ghDrs {
    fn name(&self) -> &'static str {
        "crypt4gh-drs"
    }

    fn key_header(&self) -> &str {
        PUBLIC_KEY_HEADER
    }

    fn header_locator(&self, _obj: &ObjectRef, object: &DrsObject) -> Result<Locator> {
        match object.access_method(HEADER_ACCESS_ID) {
            Some(m) if m.r#type == AccessType::Https => Ok(match &m.access_url {
                Some(u) => Locator::AccessUrl(u.clone()),
                None => Locator::AccessId(HEADER_ACCESS_ID.to_owned()),
            }),
            _ => Err(Error::Unsupported {
                object: object.id.clone(),
                what: format!(
                    "header re-encryption (no `https` access method `{HEADER_ACCESS_ID}`)"
                ),
                hint: "the server does not speak this project's protocol; choose its flavour \
                       (`--server-flavour HOST=sda-v2` or `HOST=key-header:URL`, env \
                       C4GH_SERVER_FLAVOURS, policy spec.serverFlavours), or ask its operator to \
                       enable the protocol",
            }),
        }
    }

    fn body_locator(&self, _obj: &ObjectRef, object: &DrsObject) -> Result<Locator> {
        https_body(object)
    }

    fn passports_in_post(&self) -> bool {
        true
    }
}

/// The body: access id `crypt4gh-body`, else the first `https` access method with a URL.
fn https_body(object: &DrsObject) -> Result<Locator> {
    if let Some(m) = object.access_method(BODY_ACCESS_ID) {
        return Ok(match &m.access_url {
            Some(u) => Locator::AccessUrl(u.clone()),
            None => Locator::AccessId(BODY_ACCESS_ID.to_owned()),
        });
    }
    object
        .access_methods
        .iter()
        .filter(|m| m.r#type == AccessType::Https && m.available != Some(false))
        .filter(|m| m.access_id.as_deref() != Some(HEADER_ACCESS_ID))
        .find_map(|m| match (&m.access_url, &m.access_id) {
            (Some(u), _) => Some(Locator::AccessUrl(u.clone())),
            (None, Some(id)) => Some(Locator::AccessId(id.clone())),
            (None, None) => None,
        })
        .ok_or_else(|| Error::Unsupported {
            object: object.id.clone(),
            what: "an https body download".into(),
            hint: "the DRS object lists no usable `https` access method",
        })
}

/// NeIC SDA v2 download API.
#[derive(Debug, Clone, Default)]
pub struct SdaV2 {
    /// Base URL of `/files/…`; default: the origin of the object URL.
    pub files_base: Option<Url>,
}

impl SdaV2 {
    /// The DRS object of an SDA file named `drs://host/{datasetId}/{filePath}`: SDA's only DRS
    /// route, `{scheme}://host/objects/{datasetId}/{filePath}` (each path segment
    /// percent-encoded). The dataset id is everything before the first `/`.
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when the id has no `/` (a bare file id: SDA v2 cannot look files up by
    /// id, and the `drs://host/{fileId}` in its `self_uri` does not resolve).
    pub fn object_ref(h: &HostnameUri, opts: &ParseOptions) -> Result<ObjectRef> {
        let Some((dataset, path)) = h.id().split_once('/') else {
            return Err(Error::Resolve {
                uri: h.to_string(),
                detail: format!(
                    "SDA v2 cannot look a file up by id: name it by dataset and path, \
                     drs://{}/DATASET_ID/FILE_PATH (e.g. drs://{}/EGAD00000000001/samples/a.bam.c4gh)",
                    h.authority(),
                    h.authority()
                ),
            });
        };
        let segments: Vec<String> = path.split('/').map(encode_segment).collect();
        let url = format!(
            "{}://{}/objects/{}/{}",
            h.scheme(),
            h.authority(),
            encode_segment(dataset),
            segments.join("/")
        );
        ObjectRef::from_url(&url, h.id(), &h.to_string(), opts)
    }

    fn files(&self, obj: &ObjectRef, object: &DrsObject, leaf: &str) -> Locator {
        let base = self.files_base.clone().unwrap_or_else(|| {
            let mut u = obj.url().clone();
            u.set_path("/");
            u
        });
        Locator::Url(join(&base, &["files", &object.id, leaf]))
    }
}

impl HeaderFlavour for SdaV2 {
    fn name(&self) -> &'static str {
        "sda-v2"
    }

    fn key_header(&self) -> &str {
        PUBLIC_KEY_HEADER
    }

    fn header_locator(&self, obj: &ObjectRef, object: &DrsObject) -> Result<Locator> {
        Ok(self.files(obj, object, "header"))
    }

    fn body_locator(&self, obj: &ObjectRef, object: &DrsObject) -> Result<Locator> {
        Ok(self.files(obj, object, "content"))
    }
}

/// A header URL pattern (`{id}` = percent-encoded object id) with the key in a configurable
/// request header, e.g. htsget-rs style `Htsget-Context-Public-Key`.
#[derive(Debug, Clone)]
pub struct KeyHeaderUrl {
    /// e.g. `https://h.example/c4gh/{id}/header`.
    pub header_pattern: String,
    /// e.g. [`HTSGET_PUBLIC_KEY_HEADER`].
    pub key_header: String,
}

impl HeaderFlavour for KeyHeaderUrl {
    fn name(&self) -> &'static str {
        "key-header-url"
    }

    fn key_header(&self) -> &str {
        &self.key_header
    }

    fn header_locator(&self, _obj: &ObjectRef, object: &DrsObject) -> Result<Locator> {
        let url = self
            .header_pattern
            .replace("{id}", &crate::uri::encode_segment(&object.id));
        Url::parse(&url)
            .map(Locator::Url)
            .map_err(|e| Error::Config {
                what: format!("header URL pattern `{}`: {e}", self.header_pattern),
            })
    }

    fn body_locator(&self, _obj: &ObjectRef, object: &DrsObject) -> Result<Locator> {
        https_body(object)
    }
}

/// A server's protocol, as configured: `auto`, `crypt4gh-drs`, `sda-v2` or
/// `key-header:URL_PATTERN` (the pattern contains `{id}`; the key goes in
/// `Htsget-Context-Public-Key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FlavourChoice {
    /// Ask the server: `/ga4gh/drs/v1/service-info` with a `crypt4gh` block is this project's
    /// protocol; `/service-info` named `SDA Download` is SDA v2; otherwise this project's
    /// protocol (whose errors name the fix).
    #[default]
    Auto,
    /// [`Crypt4ghDrs`].
    Crypt4ghDrs,
    /// [`SdaV2`] (files named `drs://host/{datasetId}/{filePath}`).
    SdaV2,
    /// [`KeyHeaderUrl`] with this header URL pattern and [`HTSGET_PUBLIC_KEY_HEADER`].
    KeyHeader {
        /// e.g. `https://h.example/c4gh/{id}/header`.
        header_pattern: String,
    },
}

/// The accepted forms, for error messages.
pub const FLAVOUR_FORMS: &str = "auto, crypt4gh-drs, sda-v2 or key-header:URL_WITH_{id}";

impl FlavourChoice {
    /// The flavour to use; `None` for [`FlavourChoice::Auto`] (detect first).
    pub fn flavour(&self) -> Option<Box<dyn HeaderFlavour>> {
        match self {
            FlavourChoice::Auto => None,
            FlavourChoice::Crypt4ghDrs => Some(Box::new(Crypt4ghDrs)),
            FlavourChoice::SdaV2 => Some(Box::new(SdaV2::default())),
            FlavourChoice::KeyHeader { header_pattern } => Some(Box::new(KeyHeaderUrl {
                header_pattern: header_pattern.clone(),
                key_header: HTSGET_PUBLIC_KEY_HEADER.to_owned(),
            })),
        }
    }
}

impl FromStr for FlavourChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        match s {
            "auto" => return Ok(FlavourChoice::Auto),
            "crypt4gh-drs" => return Ok(FlavourChoice::Crypt4ghDrs),
            "sda-v2" => return Ok(FlavourChoice::SdaV2),
            _ => {}
        }
        let bad = |why: String| Error::Config {
            what: format!("flavour `{s}`: {why}"),
        };
        let Some(pattern) = s.strip_prefix("key-header:") else {
            return Err(bad(format!("expected {FLAVOUR_FORMS}")));
        };
        if !pattern.contains("{id}") {
            return Err(bad("the header URL pattern has no `{id}`".into()));
        }
        if pattern.contains(',') {
            return Err(bad("the header URL pattern must not contain `,`".into()));
        }
        let url = Url::parse(&pattern.replace("{id}", "x"))
            .map_err(|e| bad(format!("the header URL pattern is not a URL: {e}")))?;
        if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
            return Err(bad("the header URL pattern must be an https URL".into()));
        }
        Ok(FlavourChoice::KeyHeader {
            header_pattern: pattern.to_owned(),
        })
    }
}

impl fmt::Display for FlavourChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlavourChoice::Auto => f.write_str("auto"),
            FlavourChoice::Crypt4ghDrs => f.write_str("crypt4gh-drs"),
            FlavourChoice::SdaV2 => f.write_str("sda-v2"),
            FlavourChoice::KeyHeader { header_pattern } => {
                write!(f, "key-header:{header_pattern}")
            }
        }
    }
}

/// `host[:port]` → [`FlavourChoice`]; hosts not listed get the default (normally `auto`).
///
/// The text form is `host=flavour` entries separated by `,`
/// (`sda.example.org=sda-v2,drs.example.org=crypt4gh-drs`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerFlavours {
    by_host: BTreeMap<String, FlavourChoice>,
    default: FlavourChoice,
}

impl ServerFlavours {
    /// Parses `host=flavour` entries (a bare flavour without `host=` sets the default).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the bad entry.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut map = Self::default();
        for entry in entries.into_iter().flat_map(|e| e.split(',')) {
            let entry = entry.trim();
            if entry.is_empty() {
                continue;
            }
            match entry.split_once('=') {
                Some((host, flavour)) => {
                    let host = host.trim().to_ascii_lowercase();
                    if host.is_empty() || host.contains('/') {
                        return Err(Error::Config {
                            what: format!(
                                "server flavour `{entry}`: expected host[:port]=flavour ({FLAVOUR_FORMS})"
                            ),
                        });
                    }
                    map.by_host.insert(host, flavour.parse()?);
                }
                None => map.default = entry.parse()?,
            }
        }
        Ok(map)
    }

    /// Sets the flavour of hosts that are not listed.
    pub fn with_default(mut self, default: FlavourChoice) -> Self {
        self.default = default;
        self
    }

    /// The flavour configured for `authority` (`host` or `host:port`, lowercase); an https
    /// authority without a port also matches a `host:443` entry.
    pub fn get(&self, authority: &str) -> &FlavourChoice {
        self.by_host
            .get(authority)
            .or_else(|| {
                (!authority.contains(':') || authority.ends_with(']'))
                    .then(|| self.by_host.get(&format!("{authority}:443")))
                    .flatten()
            })
            .unwrap_or(&self.default)
    }

    /// The listed hosts and their flavours.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &FlavourChoice)> {
        self.by_host.iter().map(|(h, f)| (h.as_str(), f))
    }
}

impl fmt::Display for ServerFlavours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .by_host
            .iter()
            .map(|(h, c)| format!("{h}={c}"))
            .collect();
        if self.default != FlavourChoice::Auto {
            parts.push(self.default.to_string());
        }
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::ParseOptions;

    fn object(methods: serde_json::Value) -> DrsObject {
        serde_json::from_value(serde_json::json!({
            "id": "EGA/1", "self_uri": "drs://h.org/EGA%2F1", "size": 1,
            "created_time": "2024-01-01T00:00:00Z", "checksums": [],
            "access_methods": methods
        }))
        .unwrap()
    }

    fn obj_ref() -> ObjectRef {
        ObjectRef::from_url(
            "https://h.org:8443/ga4gh/drs/v1/objects/EGA%2F1",
            "EGA/1",
            "drs://h.org/EGA%2F1",
            &ParseOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn public_key_pem_forms() {
        let k = ClientPublicKey::from_raw([1; 32]);
        assert!(k.pem().starts_with(PEM_BEGIN));
        let decoded = STANDARD.decode(k.header_value()).unwrap();
        assert_eq!(decoded, k.pem().as_bytes());
        let crlf = k.pem().replace('\n', "\r\n");
        assert_eq!(ClientPublicKey::from_pem(&crlf).unwrap(), k);
        for bad in [
            "",
            "-----BEGIN CRYPT4GH PUBLIC KEY-----\n-----END CRYPT4GH PUBLIC KEY-----",
            "-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAAA\n-----END CRYPT4GH PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n-----END PUBLIC KEY-----",
            "-----BEGIN CRYPT4GH PUBLIC KEY-----\n!!!\n-----END CRYPT4GH PUBLIC KEY-----",
        ] {
            assert!(ClientPublicKey::from_pem(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{k:?}"), "ClientPublicKey(01010101…)");
    }

    #[test]
    fn crypt4gh_drs_locators() {
        let o = object(serde_json::json!([
            {"type": "https", "access_id": "crypt4gh-header"},
            {"type": "https", "access_id": "crypt4gh-body"}
        ]));
        let f = Crypt4ghDrs;
        assert_eq!(
            f.header_locator(&obj_ref(), &o).unwrap(),
            Locator::AccessId("crypt4gh-header".into())
        );
        assert_eq!(
            f.body_locator(&obj_ref(), &o).unwrap(),
            Locator::AccessId("crypt4gh-body".into())
        );
        let inline = object(serde_json::json!([
            {"type": "https", "access_id": "crypt4gh-header"},
            {"type": "s3", "access_url": {"url": "s3://b/k"}},
            {"type": "https", "access_url": {"url": "https://cdn/x"}, "available": false},
            {"type": "https", "access_url": {"url": "https://signed/x?sig=1"}}
        ]));
        match f.body_locator(&obj_ref(), &inline).unwrap() {
            Locator::AccessUrl(u) => assert_eq!(u.url, "https://signed/x?sig=1"),
            other => panic!("{other:?}"),
        }
        let plain =
            object(serde_json::json!([{"type": "https", "access_url": {"url": "https://x"}}]));
        let e = f.header_locator(&obj_ref(), &plain).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }));
        assert!(
            e.to_string().contains("--server-flavour HOST=sda-v2"),
            "{e}"
        );
        let none = object(serde_json::json!([{"type": "https", "access_id": "crypt4gh-header"}]));
        assert!(matches!(
            f.body_locator(&obj_ref(), &none).unwrap_err(),
            Error::Unsupported { .. }
        ));
    }

    #[test]
    fn sda_and_key_header_locators() {
        let o =
            object(serde_json::json!([{"type": "https", "access_url": {"url": "https://b/x"}}]));
        let sda = SdaV2::default();
        assert_eq!(
            sda.header_locator(&obj_ref(), &o).unwrap(),
            Locator::Url(Url::parse("https://h.org:8443/files/EGA%2F1/header").unwrap())
        );
        let sda = SdaV2 {
            files_base: Some(Url::parse("https://dl.example/api/").unwrap()),
        };
        assert_eq!(
            sda.body_locator(&obj_ref(), &o).unwrap(),
            Locator::Url(Url::parse("https://dl.example/api/files/EGA%2F1/content").unwrap())
        );
        let kh = KeyHeaderUrl {
            header_pattern: "https://hts.example/c4gh/{id}/header".into(),
            key_header: HTSGET_PUBLIC_KEY_HEADER.into(),
        };
        assert_eq!(kh.key_header(), "Htsget-Context-Public-Key");
        assert_eq!(
            kh.header_locator(&obj_ref(), &o).unwrap(),
            Locator::Url(Url::parse("https://hts.example/c4gh/EGA%2F1/header").unwrap())
        );
        assert!(matches!(
            kh.body_locator(&obj_ref(), &o).unwrap(),
            Locator::AccessUrl(_)
        ));
    }

    #[test]
    fn sda_object_ref_names_dataset_and_path() {
        let opts = ParseOptions {
            allow_port: true,
            allow_http: false,
        };
        let crate::uri::DrsUri::Hostname(h) = crate::uri::DrsUri::parse(
            "drs://localhost:8443/EGAD00000000001/samples/big%20one.c4gh",
            &opts,
        )
        .unwrap() else {
            panic!("not a hostname URI")
        };
        let o = SdaV2::object_ref(&h, &opts).unwrap();
        assert_eq!(
            o.url().as_str(),
            "https://localhost:8443/objects/EGAD00000000001/samples/big%20one.c4gh"
        );
        assert_eq!(o.authority(), "localhost:8443");
        let crate::uri::DrsUri::Hostname(bare) =
            crate::uri::DrsUri::parse("drs://localhost:8443/EGAF00000000001", &opts).unwrap()
        else {
            panic!("not a hostname URI")
        };
        let e = SdaV2::object_ref(&bare, &opts).unwrap_err().to_string();
        assert!(e.contains("DATASET_ID/FILE_PATH"), "{e}");
    }

    #[test]
    fn flavour_choices_parse_and_print() {
        for s in [
            "auto",
            "crypt4gh-drs",
            "sda-v2",
            "key-header:https://hts.example/c4gh/{id}/header",
        ] {
            assert_eq!(s.parse::<FlavourChoice>().unwrap().to_string(), s);
        }
        for bad in [
            "sda",
            "key-header:https://x/no-id",
            "key-header:ftp://x/{id}",
            "",
        ] {
            let e = bad.parse::<FlavourChoice>().unwrap_err().to_string();
            assert!(e.contains("flavour"), "{e}");
        }
        let m =
            ServerFlavours::parse(["sda.example.org=sda-v2, localhost:8443=crypt4gh-drs"]).unwrap();
        assert_eq!(m.get("sda.example.org"), &FlavourChoice::SdaV2);
        assert_eq!(m.get("localhost:8443"), &FlavourChoice::Crypt4ghDrs);
        assert_eq!(m.get("other.org"), &FlavourChoice::Auto);
        let m = ServerFlavours::parse(["h.org:443=sda-v2", "crypt4gh-drs"]).unwrap();
        assert_eq!(m.get("h.org"), &FlavourChoice::SdaV2);
        assert_eq!(m.get("x.org"), &FlavourChoice::Crypt4ghDrs);
        assert_eq!(m.to_string(), "h.org:443=sda-v2,crypt4gh-drs");
        assert!(ServerFlavours::parse(["=sda-v2"]).is_err());
        assert!(ServerFlavours::parse(["h=nope"]).is_err());
    }
}
