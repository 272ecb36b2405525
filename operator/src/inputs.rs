//! The `c4gh.dev/inputs` annotation: parsing and validation against an [`EffectivePolicy`].
//!
//! The same checks run in the webhook (on pods) and are the reason a pod is denied; every error
//! is a [`Denial`] whose message says what to fix.

use std::collections::BTreeSet;

use c4gh_contract::pod::RESERVED_DIR;
use c4gh_contract::{InputEntry, Mode};
use drs::uri::{DrsUri, ParseOptions};

use crate::annotations;
use crate::denial::Denial;
use crate::effective::EffectivePolicy;

/// Most inputs one pod may list.
pub const MAX_INPUTS: usize = 256;

/// Longest input path accepted (bytes).
pub const MAX_PATH_LEN: usize = 4096;

/// A validated input with its effective mode; written to the sidecar's `C4GH_INPUTS` as an
/// [`InputEntry`] with the mode filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Input {
    /// The `drs://` URI.
    pub url: String,
    /// Absolute, normalized path where the task reads the input.
    pub path: String,
    /// Effective mode (the policy default filled in).
    pub mode: Mode,
}

impl Input {
    /// The contract's list entry for this input (mode set).
    pub fn to_entry(&self) -> InputEntry {
        InputEntry {
            url: self.url.clone(),
            path: self.path.clone(),
            mode: Some(self.mode),
        }
    }
}

/// Parses and validates the inputs annotation value (`None`: no annotation → no inputs).
///
/// # Errors
///
/// A [`Denial`] for malformed JSON, a bad URI, a host or prefix the policy does not allow, a mode
/// the policy does not allow, an invalid or duplicate path, or too many inputs.
pub fn parse(value: Option<&str>, policy: &EffectivePolicy) -> Result<Vec<Input>, Denial> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let raw = InputEntry::parse_list(value).map_err(|e| Denial::MalformedInputs {
        key: annotations::INPUTS,
        error: e.to_string(),
    })?;
    if raw.len() > MAX_INPUTS {
        return Err(Denial::TooManyInputs {
            count: raw.len(),
            max: MAX_INPUTS,
        });
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        check_url(index, &r.url, policy)?;
        let path = check_path(index, &r.path)?;
        if !seen.insert(path.clone()) {
            return Err(Denial::DuplicatePath { index, path });
        }
        let mode = r.mode.unwrap_or(policy.default_mode);
        if !policy.allowed_modes.contains(&mode) {
            return Err(Denial::ModeNotAllowed {
                index,
                url: r.url,
                mode: mode.as_str(),
                allowed: policy
                    .allowed_modes
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        out.push(Input {
            url: r.url,
            path,
            mode,
        });
    }
    Ok(out)
}

/// Parses a `drs://` URI with the policy's development options and checks that its host (or its
/// compact-identifier prefix) is allowed.
fn check_url(index: usize, url: &str, policy: &EffectivePolicy) -> Result<(), Denial> {
    let opts = ParseOptions {
        allow_port: policy.allow_port,
        allow_http: policy.allow_http,
    };
    let uri = DrsUri::parse(url, &opts).map_err(|e| Denial::InvalidUrl {
        index,
        error: e.to_string(),
    })?;
    match (&uri, uri.authority()) {
        (_, Some(authority)) => {
            let authority: String = authority;
            if policy.host_allowed(&authority) {
                Ok(())
            } else {
                Err(Denial::HostNotAllowed {
                    index,
                    url: url.to_owned(),
                    host: authority,
                    policy: policy.name.clone(),
                    allowed: policy.allowed_hosts.join(", "),
                })
            }
        }
        (DrsUri::Compact(c), None) => {
            if policy.prefix_map.contains_key(c.prefix()) {
                Ok(())
            } else {
                Err(Denial::UnknownPrefix {
                    index,
                    url: url.to_owned(),
                    prefix: c.prefix().to_owned(),
                    policy: policy.name.clone(),
                })
            }
        }
        (_, None) => Err(Denial::InvalidUrl {
            index,
            error: format!("`{url}` has neither a host nor a compact-identifier prefix"),
        }),
    }
}

/// Checks that a path is absolute and normal (no `.`/`..`, no empty components, no trailing `/`),
/// not directly under `/`, and not under [`RESERVED_DIR`].
fn check_path(index: usize, path: &str) -> Result<String, Denial> {
    let bad = |why: &'static str| Denial::InvalidPath {
        index,
        path: path.chars().take(200).collect(),
        why,
    };
    if path.len() > MAX_PATH_LEN {
        return Err(bad("it is longer than 4096 bytes"));
    }
    if path.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("it is not absolute; use a path starting with `/`"));
    };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.contains(&"..") {
        return Err(bad("it contains `..`; use a normalized absolute path"));
    }
    if parts.iter().any(|p| p.is_empty() || *p == ".") {
        return Err(bad(
            "it has an empty or `.` component (`//`, `/./` or a trailing `/`); use a normalized absolute path",
        ));
    }
    if parts.len() < 2 {
        return Err(bad(
            "a file directly under `/` cannot get its own volume; put it in a directory such as `/data`",
        ));
    }
    if path == RESERVED_DIR
        || path
            .strip_prefix(RESERVED_DIR)
            .is_some_and(|rest| rest.starts_with('/'))
    {
        return Err(bad(
            "`/c4gh` is reserved for the sidecar's key and credentials",
        ));
    }
    Ok(path.to_owned())
}

/// The directory holding an input path (the path is already validated, so it has one).
pub fn parent_dir(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for (p, ok) in [
            ("/data/in.bam", true),
            ("/a/b/c", true),
            ("data/in.bam", false),
            ("/data/../etc/passwd", false),
            ("/data//x", false),
            ("/data/./x", false),
            ("/data/x/", false),
            ("/x", false),
            ("/", false),
            ("/c4gh/key/x", false),
            ("/c4gh", false),
            ("/c4ghx/y", true),
            ("/data/a\nb", false),
        ] {
            assert_eq!(check_path(0, p).is_ok(), ok, "{p}");
        }
        assert_eq!(parent_dir("/data/in/x.bam"), "/data/in");
    }
}
