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
//! ```
//! use drs::flavour::ClientPublicKey;
//!
//! let key = ClientPublicKey::from_raw([7u8; 32]);
//! let again = ClientPublicKey::from_pem(key.pem()).unwrap();
//! assert_eq!(again.raw(), &[7u8; 32]);
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::Url;

use crate::error::{Error, Result};
use crate::resolve::{ObjectRef, join};
use crate::types::{
    AccessType, AccessUrl, BODY_ACCESS_ID, DrsObject, HEADER_ACCESS_ID, PUBLIC_KEY_HEADER,
};

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
                hint: "the server does not speak this project's protocol; configure the SDA v2 or \
                       key-header flavour for it, or ask the operator to enable it",
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
        assert!(e.to_string().contains("SDA v2"), "{e}");
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
}
