//! `drs://` URIs: parsing, validation and the HTTPS object URL they stand for.
//!
//! DRS 1.5 defines two forms:
//!
//! - **hostname** `drs://<host>/<id>` → `https://<host>/ga4gh/drs/v1/objects/<id>`;
//! - **compact identifier** `drs://[<provider>/]<prefix>:<accession>`, resolved through a
//!   prefix map or a meta-resolver (identifiers.org, n2t.net) to a URL pattern.
//!
//! The spec forbids a port in hostname URIs and always means HTTPS. Development servers need both,
//! so [`ParseOptions`] has explicit, default-off switches for them.
//!
//! How the two forms are told apart (the spec leaves it open for `provider/prefix:accession`):
//!
//! 1. no `/` after the authority → compact (`drs://ega:EGAF0001`);
//! 2. the part before the first `/` contains `:` → a host with a port if the part after the last
//!    `:` is numeric and the part before it is a host (contains `.`, is `localhost`, an IP literal
//!    or a bracketed IPv6 address); otherwise compact with an accession containing `/`;
//! 3. the part before the first `/` has no `.`, is not `localhost`, and what follows looks like
//!    `prefix:accession` → compact with a provider code (`drs://ebi/ega:EGAF0001`);
//! 4. anything else → hostname. Use a fully qualified host name when your ids contain `:`.
//!
//! Identifiers are percent-decoded once when parsed and percent-encoded (everything but RFC 3986
//! unreserved characters, so `/` becomes `%2F`) when put into a URL, so an id can never add path
//! segments to the object URL. Ids with `.`/`..`/empty segments, control characters, userinfo,
//! queries and fragments are rejected.
//!
//! ```
//! use drs::uri::{DrsUri, ParseOptions, UriErrorKind};
//!
//! let opts = ParseOptions::default();
//! let uri = DrsUri::parse("drs://ebi/ega:EGAF0001", &opts).unwrap();
//! assert!(matches!(uri, DrsUri::Compact(_)));
//!
//! let err = DrsUri::parse("drs://localhost:8443/obj", &opts).unwrap_err();
//! assert!(matches!(err.kind(), UriErrorKind::PortNotAllowed { port: 8443 }));
//!
//! let dev = ParseOptions { allow_port: true, allow_http: true };
//! let uri = DrsUri::parse("drs://localhost:8443/a%2Fb", &dev).unwrap();
//! assert_eq!(uri.object_url().unwrap(), "http://localhost:8443/ga4gh/drs/v1/objects/a%2Fb");
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Longest `drs://` URI accepted, in bytes.
pub const MAX_URI_LEN: usize = 4096;
/// Longest decoded object id or accession accepted, in bytes.
pub const MAX_ID_LEN: usize = 1024;
/// Path of the DRS API below the host.
pub const DRS_API_PATH: &str = "/ga4gh/drs/v1";

/// Characters encoded when an id becomes one URL path segment: all but RFC 3986 unreserved.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Characters encoded when printing a URI back in canonical form (keeps `/` and `:` readable).
const DISPLAY: &AsciiSet = &SEGMENT.remove(b'/').remove(b':');
/// As [`DISPLAY`] but encoding `:` (ids after a host that looks like a provider code).
const DISPLAY_NO_COLON: &AsciiSet = &SEGMENT.remove(b'/');
/// As [`DISPLAY`] but encoding `/` (compact accessions).
const DISPLAY_NO_SLASH: &AsciiSet = &SEGMENT.remove(b':');

/// Percent-encodes `s` as a single URL path segment (`/` becomes `%2F`).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Options that relax the DRS 1.5 rules for development. Both default to `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Accept a port in hostname URIs (`drs://localhost:8443/id`). The spec forbids ports.
    pub allow_port: bool,
    /// Resolve hostname URIs to `http://` instead of `https://` and accept `http://` URLs from
    /// prefix maps. Never enable this outside development: tokens and headers travel in clear.
    pub allow_http: bool,
}

/// A parsed `drs://` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DrsUri {
    /// `drs://host[:port]/id`.
    Hostname(HostnameUri),
    /// `drs://[provider/]prefix:accession`.
    Compact(CompactUri),
}

impl DrsUri {
    /// Parses and validates a `drs://` URI.
    ///
    /// # Errors
    ///
    /// [`UriError`] naming the URI and what is wrong with it (see [`UriErrorKind`]).
    pub fn parse(input: &str, opts: &ParseOptions) -> Result<Self, UriError> {
        parse(input, opts).map_err(|kind| UriError::new(input, kind))
    }

    /// The host of a hostname URI (lowercase; IPv6 in brackets, e.g. `[::1]`), for policy checks.
    /// `None` for compact identifiers: their host is known only after resolution.
    pub fn host(&self) -> Option<&str> {
        match self {
            DrsUri::Hostname(h) => Some(h.host()),
            DrsUri::Compact(_) => None,
        }
    }

    /// `host` or `host:port` of a hostname URI, the form used in allowed-host lists.
    pub fn authority(&self) -> Option<String> {
        match self {
            DrsUri::Hostname(h) => Some(h.authority()),
            DrsUri::Compact(_) => None,
        }
    }

    /// The object URL of a hostname URI.
    ///
    /// # Errors
    ///
    /// [`UriErrorKind::NeedsResolution`] for a compact identifier: resolve it first.
    pub fn object_url(&self) -> Result<String, UriError> {
        match self {
            DrsUri::Hostname(h) => Ok(h.object_url()),
            DrsUri::Compact(c) => Err(UriError::new(&c.to_string(), UriErrorKind::NeedsResolution)),
        }
    }
}

impl fmt::Display for DrsUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DrsUri::Hostname(h) => h.fmt(f),
            DrsUri::Compact(c) => c.fmt(f),
        }
    }
}

/// A hostname-form URI `drs://host[:port]/id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostnameUri {
    host: String,
    port: Option<u16>,
    id: String,
    http: bool,
}

impl HostnameUri {
    /// Lowercase host name, IPv4 address, or bracketed IPv6 address (`[::1]`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, when [`ParseOptions::allow_port`] let one through.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `host` or `host:port`.
    pub fn authority(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// The object id, percent-decoded.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `https` (or `http` under [`ParseOptions::allow_http`]).
    pub fn scheme(&self) -> &'static str {
        if self.http { "http" } else { "https" }
    }

    /// Base URL of the DRS API: `https://host[:port]/ga4gh/drs/v1`.
    pub fn api_base(&self) -> String {
        format!("{}://{}{DRS_API_PATH}", self.scheme(), self.authority())
    }

    /// `https://host[:port]/ga4gh/drs/v1/objects/{percent-encoded id}`.
    pub fn object_url(&self) -> String {
        format!("{}/objects/{}", self.api_base(), encode_segment(&self.id))
    }
}

impl fmt::Display for HostnameUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // After a host that could be a provider code, a raw `:` would make the URI read as a
        // compact identifier (rule 3), so it is encoded there.
        let set = if is_provider_code(&self.host) {
            DISPLAY_NO_COLON
        } else {
            DISPLAY
        };
        write!(
            f,
            "drs://{}/{}",
            self.authority(),
            utf8_percent_encode(&self.id, set)
        )
    }
}

/// A compact-identifier URI `drs://[provider/]prefix:accession`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompactUri {
    provider: Option<String>,
    prefix: String,
    accession: String,
}

impl CompactUri {
    /// The provider code, lowercase, if the URI names one.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The namespace prefix, lowercase (prefixes are case-insensitive).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The accession, percent-decoded.
    pub fn accession(&self) -> &str {
        &self.accession
    }

    /// Substitutes the percent-encoded accession into a URL pattern holding `{id}` (this
    /// project's prefix maps) or `{$id}` (identifiers.org `urlPattern`).
    ///
    /// # Errors
    ///
    /// [`UriErrorKind::BadPattern`] when the pattern holds no placeholder.
    pub fn expand(&self, pattern: &str) -> Result<String, UriError> {
        let encoded = encode_segment(&self.accession);
        if pattern.contains("{$id}") {
            Ok(pattern.replace("{$id}", &encoded))
        } else if pattern.contains("{id}") {
            Ok(pattern.replace("{id}", &encoded))
        } else {
            Err(UriError::new(
                &self.to_string(),
                UriErrorKind::BadPattern {
                    pattern: pattern.to_owned(),
                },
            ))
        }
    }
}

impl fmt::Display for CompactUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("drs://")?;
        if let Some(p) = &self.provider {
            write!(f, "{p}/")?;
        }
        // `/` is encoded so the URI cannot read as `host:port/id` (rule 2); an all-digit accession
        // after a host-like prefix gets its first digit encoded for the same reason (rule 1).
        let mut acc = utf8_percent_encode(&self.accession, DISPLAY_NO_SLASH).to_string();
        if looks_like_host_port(&self.prefix, &acc) {
            acc = format!("%{:02X}{}", acc.as_bytes()[0], &acc[1..]);
        }
        write!(f, "{}:{acc}", self.prefix)
    }
}

/// A `drs://` URI that could not be used, with the URI (shortened) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid DRS URI `{uri}`: {kind}")]
pub struct UriError {
    uri: String,
    kind: UriErrorKind,
}

impl UriError {
    fn new(uri: &str, kind: UriErrorKind) -> Self {
        const SHOWN: usize = 200;
        let mut shown: String = uri
            .chars()
            .take(SHOWN)
            .map(|c| if c.is_control() { '\u{fffd}' } else { c })
            .collect();
        if uri.chars().count() > SHOWN {
            shown.push('…');
        }
        Self { uri: shown, kind }
    }

    /// The offending URI (at most 200 characters, control characters replaced).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// What is wrong.
    pub fn kind(&self) -> &UriErrorKind {
        &self.kind
    }
}

/// Why a `drs://` URI was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriErrorKind {
    /// The scheme is not `drs`.
    #[error("scheme must be `drs://` (found `{scheme}`)")]
    NotDrs {
        /// The scheme found, empty when there was none.
        scheme: String,
    },
    /// Longer than [`MAX_URI_LEN`] bytes or an id longer than [`MAX_ID_LEN`].
    #[error("too long ({len} bytes; at most {max})")]
    TooLong {
        /// Length found.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// A character that may not appear (whitespace, control, or outside RFC 3986 path chars).
    #[error("character {ch:?} at byte {at} is not allowed; percent-encode it")]
    InvalidCharacter {
        /// The character.
        ch: char,
        /// Byte offset in the URI (or in the decoded id for encoded control characters).
        at: usize,
    },
    /// No host after `drs://`.
    #[error("no host after `drs://`")]
    MissingHost,
    /// `user@host` — credentials do not belong in DRS URIs.
    #[error("userinfo (`user@`) is not allowed in DRS URIs")]
    Userinfo,
    /// `?query` or `#fragment`.
    #[error("query strings and fragments are not allowed; percent-encode `?` and `#` in ids")]
    QueryOrFragment,
    /// The host is not a valid DNS name or IP address.
    #[error("`{host}` is not a valid host name or IP address")]
    InvalidHost {
        /// The host as written.
        host: String,
    },
    /// A port without [`ParseOptions::allow_port`].
    #[error(
        "port {port} is not allowed in DRS URIs (enable the development option to allow ports)"
    )]
    PortNotAllowed {
        /// The port found.
        port: u16,
    },
    /// A port that is not a number in 1..=65535.
    #[error("`{port}` is not a valid port")]
    InvalidPort {
        /// The port as written.
        port: String,
    },
    /// `drs://host` or `drs://host/` without an id.
    #[error("no object id after the host")]
    MissingId,
    /// A malformed `%XX` escape or an escape that decodes to invalid UTF-8.
    #[error("bad percent-encoding: {detail}")]
    BadPercentEncoding {
        /// What is wrong.
        detail: &'static str,
    },
    /// The id has a `.`, `..` or empty `/`-separated segment.
    #[error("object id `{id}` has a `.`, `..` or empty path segment")]
    DotOrEmptySegment {
        /// The decoded id.
        id: String,
    },
    /// A compact identifier without a prefix (`drs://:x`) or with invalid prefix characters.
    #[error("`{prefix}` is not a valid compact-identifier prefix (letters, digits, `.`, `_`, `-`)")]
    InvalidPrefix {
        /// The prefix as written.
        prefix: String,
    },
    /// A compact identifier without an accession (`drs://ega:`).
    #[error("no accession after the prefix")]
    MissingAccession,
    /// An object URL was asked of a compact identifier.
    #[error("compact identifiers must be resolved (prefix map or resolver) before use")]
    NeedsResolution,
    /// A resolver URL pattern without `{id}` / `{$id}`.
    #[error("URL pattern `{pattern}` has no `{{id}}` or `{{$id}}` placeholder")]
    BadPattern {
        /// The pattern.
        pattern: String,
    },
}

fn parse(input: &str, opts: &ParseOptions) -> Result<DrsUri, UriErrorKind> {
    if input.len() > MAX_URI_LEN {
        return Err(UriErrorKind::TooLong {
            len: input.len(),
            max: MAX_URI_LEN,
        });
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err(UriErrorKind::NotDrs {
            scheme: input.split_once(':').map(|(s, _)| s).unwrap_or("").into(),
        });
    };
    if !scheme.eq_ignore_ascii_case("drs") {
        return Err(UriErrorKind::NotDrs {
            scheme: scheme.into(),
        });
    }
    let offset = scheme.len() + 3;
    if rest.contains(['?', '#']) {
        return Err(UriErrorKind::QueryOrFragment);
    }
    for (i, ch) in rest.char_indices() {
        if !is_uri_char(ch) {
            return Err(UriErrorKind::InvalidCharacter { ch, at: offset + i });
        }
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err(UriErrorKind::MissingHost);
    }
    let (first, tail) = match rest.split_once('/') {
        Some((f, t)) => (f, Some(t)),
        None => (rest, None),
    };
    if first.contains('@') {
        return Err(UriErrorKind::Userinfo);
    }
    let Some(tail) = tail else {
        // Rule 1: no `/` → compact, or a host without id.
        return match first.split_once(':') {
            Some((prefix, accession)) if !looks_like_host_port(prefix, accession) => {
                compact(None, prefix, accession)
            }
            _ => Err(UriErrorKind::MissingId),
        };
    };
    if first.starts_with('[') {
        return hostname(first, tail, opts);
    }
    if let Some((prefix, after)) = first.split_once(':') {
        // Rule 2.
        let (h, p) = first.rsplit_once(':').unwrap_or((prefix, after));
        if looks_like_host_port(h, p) {
            return hostname(first, tail, opts);
        }
        return compact(None, prefix, &format!("{after}/{tail}"));
    }
    // Rule 3.
    if is_provider_code(first)
        && let Some((prefix, accession)) = tail.split_once(':')
        && !prefix.is_empty()
        && prefix.bytes().all(is_prefix_byte)
    {
        return compact(Some(first), prefix, accession);
    }
    hostname(first, tail, opts)
}

/// RFC 3986 `pchar` plus `/` and `%`: what may appear unencoded after `drs://`.
fn is_uri_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%[]".contains(ch)
}

fn looks_like_host_port(host: &str, port: &str) -> bool {
    !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && (host.eq_ignore_ascii_case("localhost")
            || host.starts_with('[')
            || host.parse::<Ipv4Addr>().is_ok()
            || host
                .rsplit_once('.')
                .is_some_and(|(_, tld)| has_letter(tld)))
}

/// DNS top-level labels are never all-numeric, so `dg.4503:0123/x` is a compact identifier.
fn has_letter(label: &str) -> bool {
    label.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_provider_code(s: &str) -> bool {
    !s.is_empty()
        && !s.eq_ignore_ascii_case("localhost")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_prefix_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'
}

fn compact(provider: Option<&str>, prefix: &str, accession: &str) -> Result<DrsUri, UriErrorKind> {
    if prefix.is_empty() || !prefix.bytes().all(is_prefix_byte) {
        return Err(UriErrorKind::InvalidPrefix {
            prefix: prefix.into(),
        });
    }
    if accession.is_empty() {
        return Err(UriErrorKind::MissingAccession);
    }
    if accession.contains(['[', ']']) {
        let at = accession.find(['[', ']']).unwrap_or(0);
        return Err(UriErrorKind::InvalidCharacter {
            ch: accession[at..].chars().next().unwrap_or('['),
            at,
        });
    }
    let accession = decode_id(accession)?;
    Ok(DrsUri::Compact(CompactUri {
        provider: provider.map(str::to_ascii_lowercase),
        prefix: prefix.to_ascii_lowercase(),
        accession,
    }))
}

fn hostname(authority: &str, tail: &str, opts: &ParseOptions) -> Result<DrsUri, UriErrorKind> {
    let (host, port) = split_host_port(authority)?;
    if let Some(port) = port
        && !opts.allow_port
    {
        return Err(UriErrorKind::PortNotAllowed { port });
    }
    if tail.is_empty() {
        return Err(UriErrorKind::MissingId);
    }
    if let Some(at) = tail.find(['[', ']']) {
        return Err(UriErrorKind::InvalidCharacter {
            ch: tail[at..].chars().next().unwrap_or('['),
            at,
        });
    }
    let id = decode_id(tail)?;
    if id
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(UriErrorKind::DotOrEmptySegment { id });
    }
    Ok(DrsUri::Hostname(HostnameUri {
        host,
        port,
        id,
        http: opts.allow_http,
    }))
}

fn split_host_port(authority: &str) -> Result<(String, Option<u16>), UriErrorKind> {
    let invalid = || UriErrorKind::InvalidHost {
        host: authority.into(),
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (inner, after) = rest.split_once(']').ok_or_else(invalid)?;
        let addr: Ipv6Addr = inner.parse().map_err(|_| invalid())?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(invalid)?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        (canonical_host(h).ok_or_else(invalid)?, p)
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_port(p: &str) -> Result<u16, UriErrorKind> {
    let bad = || UriErrorKind::InvalidPort { port: p.into() };
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(n) => Ok(n),
    }
}

/// Lowercase DNS name (labels of `[a-z0-9-]`, 1–63 bytes, no leading/trailing `-`, ≤ 253 bytes)
/// or dotted-quad IPv4. Numeric-looking names that are not valid IPv4 are rejected.
fn canonical_host(h: &str) -> Option<String> {
    if h.is_empty() || h.len() > 253 {
        return None;
    }
    if h.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return h.parse::<Ipv4Addr>().ok().map(|a| a.to_string());
    }
    let lower = h.to_ascii_lowercase();
    let tld_ok = lower.rsplit('.').next().is_some_and(has_letter);
    let ok = tld_ok
        && lower.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    ok.then_some(lower)
}

fn decode_id(raw: &str) -> Result<String, UriErrorKind> {
    let bytes = raw.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(UriErrorKind::BadPercentEncoding {
                detail: "`%` must be followed by two hex digits",
            });
        }
    }
    let id = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| UriErrorKind::BadPercentEncoding {
            detail: "decodes to invalid UTF-8",
        })?
        .into_owned();
    if id.len() > MAX_ID_LEN {
        return Err(UriErrorKind::TooLong {
            len: id.len(),
            max: MAX_ID_LEN,
        });
    }
    if let Some((at, ch)) = id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(UriErrorKind::InvalidCharacter { ch, at });
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: ParseOptions = ParseOptions {
        allow_port: false,
        allow_http: false,
    };
    const DEV: ParseOptions = ParseOptions {
        allow_port: true,
        allow_http: true,
    };
    const PORT: ParseOptions = ParseOptions {
        allow_port: true,
        allow_http: false,
    };

    /// Hostname URIs that parse: (input, options, host, authority, id, object URL).
    #[test]
    fn hostname_uris() {
        let cases: &[(&str, ParseOptions, &str, &str, &str, &str)] = &[
            (
                "drs://drs.example.org/EGAF0001",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "EGAF0001",
                "https://drs.example.org/ga4gh/drs/v1/objects/EGAF0001",
            ),
            (
                "DRS://DRS.Example.ORG/MixedCase",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "MixedCase",
                "https://drs.example.org/ga4gh/drs/v1/objects/MixedCase",
            ),
            (
                "drs://drs.example.org/dataset/file.c4gh",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "dataset/file.c4gh",
                "https://drs.example.org/ga4gh/drs/v1/objects/dataset%2Ffile.c4gh",
            ),
            (
                "drs://drs.example.org/a%2Fb",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "a/b",
                "https://drs.example.org/ga4gh/drs/v1/objects/a%2Fb",
            ),
            (
                "drs://drs.example.org/with%20space",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "with space",
                "https://drs.example.org/ga4gh/drs/v1/objects/with%20space",
            ),
            (
                "drs://drs.example.org/q%3Fx%23y",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "q?x#y",
                "https://drs.example.org/ga4gh/drs/v1/objects/q%3Fx%23y",
            ),
            (
                "drs://drs.example.org/%C3%A9t%C3%A9",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "été",
                "https://drs.example.org/ga4gh/drs/v1/objects/%C3%A9t%C3%A9",
            ),
            (
                "drs://drs.example.org/urn:uuid:0a1b",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "urn:uuid:0a1b",
                "https://drs.example.org/ga4gh/drs/v1/objects/urn%3Auuid%3A0a1b",
            ),
            (
                "drs://drs.example.org/...x",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "...x",
                "https://drs.example.org/ga4gh/drs/v1/objects/...x",
            ),
            (
                "drs://10.0.0.7/obj",
                STRICT,
                "10.0.0.7",
                "10.0.0.7",
                "obj",
                "https://10.0.0.7/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://localhost/obj",
                STRICT,
                "localhost",
                "localhost",
                "obj",
                "https://localhost/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://localhost:8443/obj",
                PORT,
                "localhost",
                "localhost:8443",
                "obj",
                "https://localhost:8443/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://localhost:8443/obj",
                DEV,
                "localhost",
                "localhost:8443",
                "obj",
                "http://localhost:8443/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://[::1]/obj",
                STRICT,
                "[::1]",
                "[::1]",
                "obj",
                "https://[::1]/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://[2001:DB8:0:0::1]:9000/obj",
                PORT,
                "[2001:db8::1]",
                "[2001:db8::1]:9000",
                "obj",
                "https://[2001:db8::1]:9000/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://127.0.0.1:65535/obj",
                PORT,
                "127.0.0.1",
                "127.0.0.1:65535",
                "obj",
                "https://127.0.0.1:65535/ga4gh/drs/v1/objects/obj",
            ),
            (
                "drs://drs-server/obj1",
                STRICT,
                "drs-server",
                "drs-server",
                "obj1",
                "https://drs-server/ga4gh/drs/v1/objects/obj1",
            ),
            (
                "drs://drs.example.org/ega:EGAF01",
                STRICT,
                "drs.example.org",
                "drs.example.org",
                "ega:EGAF01",
                "https://drs.example.org/ga4gh/drs/v1/objects/ega%3AEGAF01",
            ),
        ];
        for (input, opts, host, authority, id, url) in cases {
            let uri = DrsUri::parse(input, opts).unwrap_or_else(|e| panic!("{input}: {e}"));
            let DrsUri::Hostname(h) = &uri else {
                panic!("{input}: expected hostname form, got {uri:?}")
            };
            assert_eq!(uri.host(), Some(*host), "{input}");
            assert_eq!(uri.authority().as_deref(), Some(*authority), "{input}");
            assert_eq!(h.id(), *id, "{input}");
            assert_eq!(uri.object_url().unwrap(), *url, "{input}");
            let again = DrsUri::parse(&uri.to_string(), opts).unwrap();
            assert_eq!(again, uri, "{input}: display must round-trip");
        }
    }

    /// Compact URIs that parse: (input, provider, prefix, accession).
    #[test]
    fn compact_uris() {
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            ("drs://ega:EGAF00001", None, "ega", "EGAF00001"),
            ("drs://EGA:EGAF00001", None, "ega", "EGAF00001"),
            ("drs://taxonomy:9606", None, "taxonomy", "9606"),
            ("drs://ebi/ega:EGAF00001", Some("ebi"), "ega", "EGAF00001"),
            (
                "drs://n2t/dg.4503:abc-123",
                Some("n2t"),
                "dg.4503",
                "abc-123",
            ),
            ("drs://dg.4503:0a1b/2c3d", None, "dg.4503", "0a1b/2c3d"),
            ("drs://ark:/13030/tf5p", None, "ark", "/13030/tf5p"),
            ("drs://ega:a%20b", None, "ega", "a b"),
            ("drs://ega:a:b", None, "ega", "a:b"),
            ("drs://taxonomy:9606/x", None, "taxonomy", "9606/x"),
            ("drs://dg.4503:0123/abc", None, "dg.4503", "0123/abc"),
        ];
        for (input, provider, prefix, accession) in cases {
            let uri = DrsUri::parse(input, &STRICT).unwrap_or_else(|e| panic!("{input}: {e}"));
            let DrsUri::Compact(c) = &uri else {
                panic!("{input}: expected compact form, got {uri:?}")
            };
            assert_eq!(c.provider(), *provider, "{input}");
            assert_eq!(c.prefix(), *prefix, "{input}");
            assert_eq!(c.accession(), *accession, "{input}");
            assert_eq!(uri.host(), None, "{input}");
            assert!(
                matches!(
                    uri.object_url().unwrap_err().kind(),
                    UriErrorKind::NeedsResolution
                ),
                "{input}"
            );
            let again = DrsUri::parse(&uri.to_string(), &STRICT).unwrap();
            assert_eq!(again, uri, "{input}: display must round-trip");
        }
    }

    /// Rejected inputs and the error each must give.
    #[test]
    fn rejected_uris() {
        use UriErrorKind as K;
        let long_id = format!("drs://h.org/{}", "a".repeat(MAX_URI_LEN));
        let long_decoded = format!("drs://h.org/{}", "%41".repeat(MAX_ID_LEN + 1));
        type Check = fn(&UriErrorKind) -> bool;
        let cases: Vec<(&str, ParseOptions, Check)> = vec![
            ("", STRICT, |k| matches!(k, K::NotDrs { .. })),
            ("drs.example.org/x", STRICT, |k| {
                matches!(k, K::NotDrs { .. })
            }),
            (
                "https://drs.example.org/x",
                STRICT,
                |k| matches!(k, K::NotDrs { scheme } if scheme == "https"),
            ),
            (
                "drs:ega:1",
                STRICT,
                |k| matches!(k, K::NotDrs { scheme } if scheme == "drs"),
            ),
            ("drs://", STRICT, |k| matches!(k, K::MissingHost)),
            ("drs:///obj", STRICT, |k| matches!(k, K::MissingHost)),
            ("drs://drs.example.org", STRICT, |k| {
                matches!(k, K::MissingId)
            }),
            ("drs://drs.example.org/", STRICT, |k| {
                matches!(k, K::MissingId)
            }),
            ("drs://localhost:8443", DEV, |k| matches!(k, K::MissingId)),
            ("drs://user@drs.example.org/x", STRICT, |k| {
                matches!(k, K::Userinfo)
            }),
            ("drs://user:pw@drs.example.org/x", STRICT, |k| {
                matches!(k, K::Userinfo)
            }),
            ("drs://drs.example.org/x?y=1", STRICT, |k| {
                matches!(k, K::QueryOrFragment)
            }),
            ("drs://drs.example.org/x#frag", STRICT, |k| {
                matches!(k, K::QueryOrFragment)
            }),
            ("drs://drs.example.org/a b", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: ' ', at: 23 })
            }),
            (" drs://drs.example.org/x", STRICT, |k| {
                matches!(k, K::NotDrs { .. })
            }),
            ("drs://drs.example.org/x\n", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: '\n', .. })
            }),
            ("drs://drs.example.org/x%0D%0AHost:evil", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: '\r', at: 1 })
            }),
            ("drs://drs.example.org/a\\b", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: '\\', .. })
            }),
            ("drs://drs.example.org/é", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: 'é', .. })
            }),
            ("drs://drs.example.org/..", STRICT, |k| {
                matches!(k, K::DotOrEmptySegment { .. })
            }),
            ("drs://drs.example.org/.", STRICT, |k| {
                matches!(k, K::DotOrEmptySegment { .. })
            }),
            (
                "drs://drs.example.org/%2E%2E",
                STRICT,
                |k| matches!(k, K::DotOrEmptySegment { id } if id == ".."),
            ),
            ("drs://drs.example.org/a/../b", STRICT, |k| {
                matches!(k, K::DotOrEmptySegment { .. })
            }),
            ("drs://drs.example.org/a%2F..%2Fb", STRICT, |k| {
                matches!(k, K::DotOrEmptySegment { .. })
            }),
            ("drs://drs.example.org/a//b", STRICT, |k| {
                matches!(k, K::DotOrEmptySegment { .. })
            }),
            ("drs://drs.example.org/a/", STRICT, |k| {
                matches!(k, K::DotOrEmptySegment { .. })
            }),
            ("drs://drs.example.org/%", STRICT, |k| {
                matches!(k, K::BadPercentEncoding { .. })
            }),
            ("drs://drs.example.org/%zz", STRICT, |k| {
                matches!(k, K::BadPercentEncoding { .. })
            }),
            ("drs://drs.example.org/%FF", STRICT, |k| {
                matches!(k, K::BadPercentEncoding { .. })
            }),
            ("drs://drs.example.org/%00", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: '\0', .. })
            }),
            ("drs://drs.example.org:443/x", STRICT, |k| {
                matches!(k, K::PortNotAllowed { port: 443 })
            }),
            ("drs://[::1]:8443/x", STRICT, |k| {
                matches!(k, K::PortNotAllowed { port: 8443 })
            }),
            ("drs://localhost:0/x", DEV, |k| {
                matches!(k, K::InvalidPort { .. })
            }),
            ("drs://localhost:65536/x", DEV, |k| {
                matches!(k, K::InvalidPort { .. })
            }),
            ("drs://localhost:0443000/x", DEV, |k| {
                matches!(k, K::InvalidPort { .. })
            }),
            ("drs://h.org:99999/x", DEV, |k| {
                matches!(k, K::InvalidPort { .. })
            }),
            ("drs://a.4503/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://[::1/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://[::1]x/y", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://[fe80::1%25eth0]/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://[not-v6]/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://-bad.org/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://bad-.org/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://a..org/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://drs.example.org./x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://under_score.org/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://h%41st.org/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://999.1.1.1/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://1.2.3/x", STRICT, |k| {
                matches!(k, K::InvalidHost { .. })
            }),
            ("drs://exämple.org/x", STRICT, |k| {
                matches!(k, K::InvalidCharacter { .. })
            }),
            ("drs://:abc", STRICT, |k| {
                matches!(k, K::InvalidPrefix { .. })
            }),
            ("drs://ega:", STRICT, |k| matches!(k, K::MissingAccession)),
            ("drs://e*a:x", STRICT, |k| {
                matches!(k, K::InvalidPrefix { .. })
            }),
            ("drs://ega:a[1]", STRICT, |k| {
                matches!(k, K::InvalidCharacter { ch: '[', .. })
            }),
            ("drs://ega:%", STRICT, |k| {
                matches!(k, K::BadPercentEncoding { .. })
            }),
            (&long_id, STRICT, |k| matches!(k, K::TooLong { .. })),
            (&long_decoded, STRICT, |k| {
                matches!(
                    k,
                    K::TooLong {
                        max: MAX_ID_LEN,
                        ..
                    }
                )
            }),
        ];
        for (input, opts, check) in cases {
            match DrsUri::parse(input, &opts) {
                Ok(uri) => panic!("{input:?} must be rejected, parsed as {uri:?}"),
                Err(e) => {
                    assert!(
                        check(e.kind()),
                        "{input:?}: unexpected error {:?}",
                        e.kind()
                    );
                    assert!(e.to_string().starts_with("invalid DRS URI `"), "{e}");
                }
            }
        }
    }

    #[test]
    fn error_messages_name_the_uri_and_the_fix() {
        let e = DrsUri::parse("drs://localhost:8443/x", &STRICT).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid DRS URI `drs://localhost:8443/x`: port 8443 is not allowed in DRS URIs \
             (enable the development option to allow ports)"
        );
        let e = DrsUri::parse("drs://h.org/x\r\nEvil: 1", &STRICT).unwrap_err();
        assert!(!e.uri().contains('\r') && !e.uri().contains('\n'), "{e}");
        let e = DrsUri::parse(&format!("drs://h.org/{}", "x".repeat(5000)), &STRICT).unwrap_err();
        assert!(
            e.uri().chars().count() <= 201,
            "shortened: {}",
            e.uri().len()
        );
    }

    /// Found by `cargo fuzz run uri`: printing must not turn one form into the other.
    #[test]
    fn display_never_switches_form() {
        for input in [
            "drs://i/.-%3AN3+r:/:",
            "drs://a.b:1%2Fx",
            "drs://a.b:%312",
            "drs://ark:/13030/tf5p",
            "drs://localhost/a:b",
        ] {
            for opts in [STRICT, DEV] {
                let uri = DrsUri::parse(input, &opts).unwrap();
                let shown = uri.to_string();
                assert_eq!(
                    DrsUri::parse(&shown, &opts).unwrap(),
                    uri,
                    "{input} → {shown}"
                );
            }
        }
    }

    #[test]
    fn expand_patterns() {
        let DrsUri::Compact(c) = DrsUri::parse("drs://ega:EGA%2F1", &STRICT).unwrap() else {
            panic!("compact")
        };
        assert_eq!(
            c.expand("https://drs.example.org/ga4gh/drs/v1/objects/{id}")
                .unwrap(),
            "https://drs.example.org/ga4gh/drs/v1/objects/EGA%2F1"
        );
        assert_eq!(
            c.expand("https://r.example/objects/{$id}").unwrap(),
            "https://r.example/objects/EGA%2F1"
        );
        assert!(matches!(
            c.expand("https://r.example/objects/").unwrap_err().kind(),
            UriErrorKind::BadPattern { .. }
        ));
    }

    /// Random inputs from an alphabet of URI-significant characters: parsing never panics, and
    /// whatever parses prints back to an equal value and yields a URL whose path the id cannot
    /// escape (no raw `/`, `?`, `#`, `..` segments after `/objects/`).
    #[test]
    fn random_inputs_never_panic_and_round_trip() {
        use rand::{Rng, SeedableRng};
        let alphabet: Vec<char> = "drs:/.%2F5E0aZ-_~@[]?#: \\\t\né".chars().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..24);
            let tail: String = (0..len)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            for input in [
                format!("drs://{tail}"),
                format!("drs://h.org/{tail}"),
                tail.clone(),
            ] {
                for opts in [STRICT, DEV] {
                    let Ok(uri) = DrsUri::parse(&input, &opts) else {
                        continue;
                    };
                    let again = DrsUri::parse(&uri.to_string(), &opts)
                        .unwrap_or_else(|e| panic!("{input:?} → {uri} does not re-parse: {e}"));
                    assert_eq!(again, uri, "{input:?}");
                    if let Ok(url) = uri.object_url() {
                        let id_part = url.rsplit_once("/objects/").unwrap().1;
                        assert!(
                            !id_part.contains(['/', '?', '#', ' '])
                                && id_part != ".."
                                && id_part != ".",
                            "{input:?} → {url}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn hostname_api_base_and_scheme() {
        let DrsUri::Hostname(h) = DrsUri::parse("drs://localhost:9/x", &DEV).unwrap() else {
            panic!("hostname")
        };
        assert_eq!(h.scheme(), "http");
        assert_eq!(h.port(), Some(9));
        assert_eq!(h.api_base(), "http://localhost:9/ga4gh/drs/v1");
    }
}
