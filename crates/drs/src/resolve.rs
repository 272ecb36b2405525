//! From a `drs://` URI to the URL of a DRS object: [`ObjectRef`], prefix maps and meta-resolvers.
//!
//! Hostname URIs map directly. Compact identifiers go through, in order:
//!
//! 1. the configured [`PrefixMap`] (`{"ega": "https://drs.example.org/ga4gh/drs/v1/objects/{id}"}`;
//!    a key may also be `provider/prefix`), which needs no network and is what locked-down
//!    clusters use;
//! 2. optionally a [`MetaResolver`] (identifiers.org's resolver API or n2t.net), answers cached
//!    for 24 hours in memory.
//!
//! Either way the result is checked like a hostname URI (https unless explicitly allowed, a
//! real host, no userinfo), and the caller checks [`ObjectRef::authority`] against its policy.
//!
//! ```
//! use drs::resolve::PrefixMap;
//! use drs::uri::{DrsUri, ParseOptions};
//!
//! let map = PrefixMap::from_json(
//!     r#"{"ega": "https://drs.example.org/ga4gh/drs/v1/objects/{id}"}"#,
//!     &ParseOptions::default(),
//! ).unwrap();
//! let DrsUri::Compact(c) = DrsUri::parse("drs://ega:EGAF1", &ParseOptions::default()).unwrap()
//! else { unreachable!() };
//! assert_eq!(map.pattern_for(&c), Some("https://drs.example.org/ga4gh/drs/v1/objects/{id}"));
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::uri::{CompactUri, HostnameUri, ParseOptions, encode_segment};

/// Where a DRS object lives: its object URL and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    url: Url,
    id: String,
    uri: String,
}

impl ObjectRef {
    /// The object of a hostname URI.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if the URL cannot be built (not expected for parsed URIs).
    pub fn from_hostname(h: &HostnameUri) -> Result<Self> {
        let url = Url::parse(&h.object_url()).map_err(|e| Error::Config {
            what: format!("cannot build the object URL of {h}: {e}"),
        })?;
        Ok(Self {
            url,
            id: h.id().to_owned(),
            uri: h.to_string(),
        })
    }

    /// An object at an explicit URL (a resolved compact identifier, a configured endpoint).
    ///
    /// # Errors
    ///
    /// [`Error::Resolve`] when the URL is not `https` (or `http` with
    /// [`ParseOptions::allow_http`]), has no host, or carries userinfo, a query or a fragment.
    pub fn from_url(url: &str, id: &str, uri: &str, opts: &ParseOptions) -> Result<Self> {
        let fail = |detail: String| Error::Resolve {
            uri: uri.to_owned(),
            detail,
        };
        let parsed = Url::parse(url).map_err(|e| fail(format!("`{url}` is not a URL: {e}")))?;
        check_url(&parsed, opts).map_err(fail)?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(fail(format!(
                "object URL `{url}` must not have a query or fragment"
            )));
        }
        Ok(Self {
            url: parsed,
            id: id.to_owned(),
            uri: uri.to_owned(),
        })
    }

    /// The object URL (`…/ga4gh/drs/v1/objects/{id}`).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The object id (the accession for compact identifiers).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `drs://` URI this object came from.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Host of the object URL, for policy checks (IPv6 in brackets).
    pub fn host(&self) -> String {
        match self.url.host() {
            Some(url::Host::Ipv6(a)) => format!("[{a}]"),
            Some(h) => h.to_string(),
            None => String::new(),
        }
    }

    /// `host` or `host:port` (only an explicit, non-default port is shown), for policy checks.
    pub fn authority(&self) -> String {
        match self.url.port() {
            Some(p) => format!("{}:{p}", self.host()),
            None => self.host(),
        }
    }

    /// The DRS API base (`…/ga4gh/drs/v1`) when the object URL ends in `/objects/{id}`.
    pub fn api_base(&self) -> Option<Url> {
        let path = self.url.path();
        let idx = path.rfind("/objects/")?;
        if path[idx + "/objects/".len()..].contains('/') {
            return None;
        }
        let mut base = self.url.clone();
        base.set_path(&path[..idx]);
        Some(base)
    }

    /// `{object URL}/access/{access_id}`.
    pub fn access_endpoint(&self, access_id: &str) -> Url {
        join(&self.url, &["access", access_id])
    }
}

/// Appends percent-encoded segments to a URL's path.
pub(crate) fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    let mut path = url.path().trim_end_matches('/').to_owned();
    for s in segments {
        path.push('/');
        path.push_str(&encode_segment(s));
    }
    url.set_path(&path);
    url
}

/// Checks scheme, host and userinfo of a URL the client is about to use.
pub(crate) fn check_url(url: &Url, opts: &ParseOptions) -> std::result::Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if opts.allow_http => {}
        "http" => {
            return Err(format!(
                "`{}` uses plain http; only https is allowed (a development option permits http)",
                crate::types::redact_url(url.as_str())
            ));
        }
        other => return Err(format!("scheme `{other}` is not supported; use https")),
    }
    if url.host().is_none() {
        return Err("URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not carry userinfo (credentials)".into());
    }
    Ok(())
}

/// Compact-identifier prefix → URL pattern with `{id}` (or `{$id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixMap(BTreeMap<String, String>);

impl PrefixMap {
    /// Parses the JSON object form used by `C4GH_PREFIX_MAP`, validating every pattern.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the bad entry.
    pub fn from_json(json: &str, opts: &ParseOptions) -> Result<Self> {
        let raw: BTreeMap<String, String> =
            serde_json::from_str(json).map_err(|e| Error::Config {
                what: format!(
                    "the prefix map must be a JSON object of prefix → URL pattern with {{id}}: {e}"
                ),
            })?;
        let mut map = Self::default();
        for (k, v) in raw {
            map.insert(&k, &v, opts)?;
        }
        Ok(map)
    }

    /// Adds `prefix` (or `provider/prefix`) → `pattern`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the key is not a prefix or the pattern has no placeholder, is not
    /// an https URL (http only with [`ParseOptions::allow_http`]) or carries userinfo.
    pub fn insert(&mut self, prefix: &str, pattern: &str, opts: &ParseOptions) -> Result<()> {
        let bad = |why: String| Error::Config {
            what: format!("prefix map entry `{prefix}`: {why}"),
        };
        let key = prefix.to_ascii_lowercase();
        let valid_part = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        let key_ok = match key.split_once('/') {
            Some((prov, pre)) => valid_part(prov) && valid_part(pre),
            None => valid_part(&key),
        };
        if !key_ok {
            return Err(bad(
                "the key must be `prefix` or `provider/prefix` (letters, digits, `.`, `_`, `-`)"
                    .into(),
            ));
        }
        if !pattern.contains("{id}") && !pattern.contains("{$id}") {
            return Err(bad(format!(
                "pattern `{pattern}` has no `{{id}}` placeholder"
            )));
        }
        let sample = pattern.replace("{$id}", "x").replace("{id}", "x");
        let url = Url::parse(&sample).map_err(|e| bad(format!("`{pattern}` is not a URL: {e}")))?;
        check_url(&url, opts).map_err(bad)?;
        self.0.insert(key, pattern.to_owned());
        Ok(())
    }

    /// The pattern for a compact URI: `provider/prefix` first, then `prefix`.
    pub fn pattern_for(&self, c: &CompactUri) -> Option<&str> {
        c.provider()
            .and_then(|p| self.0.get(&format!("{p}/{}", c.prefix())))
            .or_else(|| self.0.get(c.prefix()))
            .map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A meta-resolver for compact identifiers not in the prefix map.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetaResolver {
    /// identifiers.org resolver API: `GET {base}{[provider/]prefix:accession}` →
    /// JSON `payload.resolvedResources[].compactIdentifierResolvedUrl`.
    IdentifiersOrg {
        /// Base URL, ending in `/` (default `https://resolver.api.identifiers.org/`).
        base: Url,
    },
    /// n2t.net: `GET {base}{prefix:accession}` → a redirect whose `Location` is the object URL.
    N2t {
        /// Base URL, ending in `/` (default `https://n2t.net/`).
        base: Url,
    },
}

impl MetaResolver {
    /// identifiers.org with an explicit base URL (tests, mirrors).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `base` is not a URL.
    pub fn identifiers_org(base: &str) -> Result<Self> {
        Ok(MetaResolver::IdentifiersOrg {
            base: parse_base(base)?,
        })
    }

    /// n2t.net with an explicit base URL.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when `base` is not a URL.
    pub fn n2t(base: &str) -> Result<Self> {
        Ok(MetaResolver::N2t {
            base: parse_base(base)?,
        })
    }

    /// The public identifiers.org resolver.
    pub fn identifiers_org_default() -> Result<Self> {
        Self::identifiers_org("https://resolver.api.identifiers.org/")
    }

    /// The public n2t.net resolver.
    pub fn n2t_default() -> Result<Self> {
        Self::n2t("https://n2t.net/")
    }

    /// The request URL for a compact identifier.
    pub(crate) fn request_url(&self, c: &CompactUri) -> Result<Url> {
        let (base, with_provider) = match self {
            MetaResolver::IdentifiersOrg { base } => (base, true),
            MetaResolver::N2t { base } => (base, false),
        };
        // `./` keeps `prefix:accession` from parsing as a URL with scheme `prefix`.
        let mut tail = String::from("./");
        if with_provider && let Some(p) = c.provider() {
            tail.push_str(p);
            tail.push('/');
        }
        tail.push_str(c.prefix());
        tail.push(':');
        tail.push_str(&encode_segment(c.accession()));
        base.join(&tail).map_err(|e| Error::Config {
            what: format!("cannot build resolver URL for {c}: {e}"),
        })
    }
}

fn parse_base(base: &str) -> Result<Url> {
    let with_slash = if base.ends_with('/') {
        base.to_owned()
    } else {
        format!("{base}/")
    };
    Url::parse(&with_slash).map_err(|e| Error::Config {
        what: format!("resolver base `{base}` is not a URL: {e}"),
    })
}

/// identifiers.org resolver API response (the fields this client reads).
#[derive(Debug, Deserialize)]
pub(crate) struct IdentifiersOrgResponse {
    #[serde(default)]
    pub(crate) payload: Option<IdentifiersOrgPayload>,
    #[serde(default, rename = "errorMessage")]
    pub(crate) error_message: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct IdentifiersOrgPayload {
    #[serde(default, rename = "resolvedResources")]
    pub(crate) resolved_resources: Vec<ResolvedResource>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ResolvedResource {
    #[serde(rename = "compactIdentifierResolvedUrl")]
    pub(crate) url: String,
    #[serde(default, rename = "providerCode")]
    pub(crate) provider_code: Option<String>,
    #[serde(default)]
    pub(crate) official: bool,
}

impl IdentifiersOrgResponse {
    /// The provider's URL if one is named, else the official resource, else the first.
    pub(crate) fn pick(&self, provider: Option<&str>) -> Option<&str> {
        let resources = &self.payload.as_ref()?.resolved_resources;
        let chosen = match provider {
            Some(p) => resources.iter().find(|r| {
                r.provider_code
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(p))
            }),
            None => resources
                .iter()
                .find(|r| r.official)
                .or_else(|| resources.first()),
        };
        chosen.map(|r| r.url.as_str())
    }
}

/// Time-bounded, size-bounded in-memory cache of resolved compact identifiers.
#[derive(Debug)]
pub(crate) struct ResolverCache {
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<String, (Instant, String)>>,
}

impl ResolverCache {
    pub(crate) fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<String> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    pub(crate) fn put(&self, key: String, value: String) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uri::DrsUri;

    const STRICT: ParseOptions = ParseOptions {
        allow_port: false,
        allow_http: false,
    };

    fn compact(s: &str) -> CompactUri {
        match DrsUri::parse(s, &STRICT).unwrap() {
            DrsUri::Compact(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefix_map_validation() {
        let cases: &[(&str, bool)] = &[
            (
                r#"{"ega": "https://h.org/ga4gh/drs/v1/objects/{id}"}"#,
                true,
            ),
            (r#"{"ebi/ega": "https://h.org/objects/{$id}"}"#, true),
            (r#"{"ega": "https://h.org/objects/"}"#, false),
            (r#"{"ega": "http://h.org/objects/{id}"}"#, false),
            (r#"{"ega": "ftp://h.org/objects/{id}"}"#, false),
            (r#"{"ega": "https://u:p@h.org/objects/{id}"}"#, false),
            (r#"{"e ga": "https://h.org/objects/{id}"}"#, false),
            (r#"{"": "https://h.org/objects/{id}"}"#, false),
            (r#"["not", "an object"]"#, false),
            (r#"{"ega": 5}"#, false),
        ];
        for (json, ok) in cases {
            assert_eq!(PrefixMap::from_json(json, &STRICT).is_ok(), *ok, "{json}");
        }
        let dev = ParseOptions {
            allow_port: true,
            allow_http: true,
        };
        assert!(PrefixMap::from_json(r#"{"ega": "http://h.org:8080/o/{id}"}"#, &dev).is_ok());
    }

    #[test]
    fn prefix_map_prefers_provider_entry() {
        let map = PrefixMap::from_json(
            r#"{"ega": "https://a.org/objects/{id}", "ebi/ega": "https://b.org/objects/{id}", "EGA2": "https://c.org/{id}"}"#,
            &STRICT,
        )
        .unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(
            map.pattern_for(&compact("drs://ega:1")),
            Some("https://a.org/objects/{id}")
        );
        assert_eq!(
            map.pattern_for(&compact("drs://ebi/ega:1")),
            Some("https://b.org/objects/{id}")
        );
        assert_eq!(
            map.pattern_for(&compact("drs://other/ega:1")),
            Some("https://a.org/objects/{id}")
        );
        assert_eq!(
            map.pattern_for(&compact("drs://ega2:1")),
            Some("https://c.org/{id}")
        );
        assert_eq!(map.pattern_for(&compact("drs://nope:1")), None);
    }

    #[test]
    fn object_ref_parts() {
        let DrsUri::Hostname(h) = DrsUri::parse(
            "drs://[::1]:8443/a%2Fb",
            &ParseOptions {
                allow_port: true,
                allow_http: false,
            },
        )
        .unwrap() else {
            panic!()
        };
        let o = ObjectRef::from_hostname(&h).unwrap();
        assert_eq!(o.host(), "[::1]");
        assert_eq!(o.authority(), "[::1]:8443");
        assert_eq!(
            o.url().as_str(),
            "https://[::1]:8443/ga4gh/drs/v1/objects/a%2Fb"
        );
        assert_eq!(
            o.api_base().unwrap().as_str(),
            "https://[::1]:8443/ga4gh/drs/v1"
        );
        assert_eq!(
            o.access_endpoint("crypt4gh-header").as_str(),
            "https://[::1]:8443/ga4gh/drs/v1/objects/a%2Fb/access/crypt4gh-header"
        );
        let o = ObjectRef::from_url("https://h.org:443/x/y", "y", "drs://p:y", &STRICT).unwrap();
        assert_eq!(o.authority(), "h.org");
        assert_eq!(o.api_base(), None);
        for bad in [
            "http://h.org/o",
            "https://u@h.org/o",
            "https://h.org/o?x=1",
            "file:///etc/passwd",
            "not a url",
        ] {
            let e = ObjectRef::from_url(bad, "o", "drs://p:o", &STRICT).unwrap_err();
            assert!(matches!(e, Error::Resolve { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn resolver_urls_and_picking() {
        let r = MetaResolver::identifiers_org("https://res.example").unwrap();
        assert_eq!(
            r.request_url(&compact("drs://ebi/ega:A%2FB"))
                .unwrap()
                .as_str(),
            "https://res.example/ebi/ega:A%2FB"
        );
        let n = MetaResolver::n2t("https://n2t.example/").unwrap();
        assert_eq!(
            n.request_url(&compact("drs://ebi/ega:A")).unwrap().as_str(),
            "https://n2t.example/ega:A"
        );
        let resp: IdentifiersOrgResponse = serde_json::from_str(
            r#"{"payload": {"resolvedResources": [
                {"compactIdentifierResolvedUrl": "https://x/1", "providerCode": "ebi"},
                {"compactIdentifierResolvedUrl": "https://y/1", "providerCode": "n", "official": true}
            ]}}"#,
        )
        .unwrap();
        assert_eq!(resp.pick(None), Some("https://y/1"));
        assert_eq!(resp.pick(Some("EBI")), Some("https://x/1"));
        assert_eq!(resp.pick(Some("zzz")), None);
    }

    #[test]
    fn cache_expires_and_is_bounded() {
        let c = ResolverCache::new(Duration::from_millis(50), 2);
        c.put("a".into(), "1".into());
        assert_eq!(c.get("a").as_deref(), Some("1"));
        c.put("b".into(), "2".into());
        c.put("c".into(), "3".into());
        assert!(c.entries.lock().unwrap().len() <= 2);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.get("c"), None);
    }
}
