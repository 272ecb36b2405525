//! The `c4gh.dev/outputs` annotation: parsing and validation against an [`EffectivePolicy`].
//!
//! Each output keeps its recipients (or gets the policy's `defaultRecipients` when it names
//! none) and always gets the policy's `requiredRecipients`; every key is checked here, so a bad
//! or missing key denies the pod at admission instead of failing it after the task ran. The
//! sidecar receives the result in `C4GH_OUTPUTS` with every key as base64 of its 32 bytes.

use c4gh::PublicKey;
use c4gh_contract::OutputEntry;
use c4gh_contract::pod::RESERVED_DIR;

use crate::denial::Denial;
use crate::effective::EffectivePolicy;

/// Most outputs one pod may list.
pub const MAX_OUTPUTS: usize = 256;

/// Most recipients one output may list.
pub const MAX_RECIPIENTS: usize = 32;

/// A Crypt4GH public key (PEM text, its base64 line, or base64 of the PEM) as base64 of the 32
/// raw bytes, the form the sidecar receives.
///
/// # Errors
///
/// The parser's message when it is not a Crypt4GH public key.
pub fn canonical_key(text: &str) -> Result<String, String> {
    let key = PublicKey::from_pem(text).map_err(|e| e.to_string())?;
    let pem = key.to_pem();
    Ok(pem.lines().nth(1).map(str::to_owned).unwrap_or_default())
}

/// Parses and validates the outputs annotation value (`None`: no outputs).
///
/// # Errors
///
/// A [`Denial`] for malformed JSON, an invalid or duplicate path, an output without
/// recipients (and no policy default), or a recipient that is not a Crypt4GH public key.
pub fn parse(value: Option<&str>, policy: &EffectivePolicy) -> Result<Vec<OutputEntry>, Denial> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let raw = OutputEntry::parse_list(value).map_err(|e| Denial::MalformedOutputs {
        error: e.to_string(),
    })?;
    if raw.len() > MAX_OUTPUTS {
        return Err(Denial::MalformedOutputs {
            error: format!(
                "it lists {} outputs; at most {MAX_OUTPUTS} are allowed",
                raw.len()
            ),
        });
    }
    let mut out: Vec<OutputEntry> = Vec::with_capacity(raw.len());
    for (index, entry) in raw.into_iter().enumerate() {
        let path = check_path(index, &entry.path)?;
        if let Some(other) = out.iter().find(|o| overlaps(&o.path, &path)) {
            return Err(Denial::InvalidOutputPath {
                index,
                path,
                why: format!(
                    "it overlaps output {:?}; list each file or directory once",
                    other.path
                ),
            });
        }
        if entry.recipients.len() > MAX_RECIPIENTS {
            return Err(Denial::MalformedOutputs {
                error: format!(
                    "output {index} lists {} recipients; at most {MAX_RECIPIENTS} are allowed",
                    entry.recipients.len()
                ),
            });
        }
        let mut recipients = Vec::new();
        for (recipient, key) in entry.recipients.iter().enumerate() {
            let key = canonical_key(key).map_err(|error| Denial::BadOutputRecipient {
                index,
                path: path.clone(),
                recipient,
                error,
            })?;
            if !recipients.contains(&key) {
                recipients.push(key);
            }
        }
        if recipients.is_empty() {
            if policy.output_default_recipients.is_empty() {
                return Err(Denial::NoOutputRecipient {
                    index,
                    path,
                    policy: policy.name.clone(),
                });
            }
            recipients.clone_from(&policy.output_default_recipients);
        }
        for key in &policy.output_required_recipients {
            if !recipients.contains(key) {
                recipients.push(key.clone());
            }
        }
        out.push(OutputEntry { path, recipients });
    }
    Ok(out)
}

/// Whether one path is the other or lies under it.
fn overlaps(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    a == b || under(a, b) || under(b, a)
}

/// A normalized absolute path (a trailing `/` is dropped), not `/` itself, not under
/// [`RESERVED_DIR`].
fn check_path(index: usize, path: &str) -> Result<String, Denial> {
    let bad = |why: &str| Denial::InvalidOutputPath {
        index,
        path: path.chars().take(200).collect(),
        why: why.to_owned(),
    };
    if path.len() > crate::inputs::MAX_PATH_LEN || path.chars().any(char::is_control) {
        return Err(bad(
            "it is longer than 4096 bytes or contains control characters",
        ));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let Some(rest) = trimmed.strip_prefix('/') else {
        return Err(bad("it is not absolute; use a path starting with `/`"));
    };
    if rest.is_empty() {
        return Err(bad(
            "`/` is not an output; name a file or directory on a volume",
        ));
    }
    if rest
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(bad(
            "it has an empty, `.` or `..` component; use a normalized absolute path",
        ));
    }
    if trimmed == RESERVED_DIR
        || trimmed
            .strip_prefix(RESERVED_DIR)
            .is_some_and(|r| r.starts_with('/'))
    {
        return Err(bad(
            "`/c4gh` is reserved for the sidecar's key and credentials",
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::OperatorDefaults;
    use crate::policy::{Crypt4ghPolicySpec, OutputsSpec};

    fn key() -> (String, String) {
        let pk = c4gh::SecretKey::generate().public_key();
        let pem = pk.to_pem();
        let line = pem.lines().nth(1).unwrap().to_owned();
        (pem, line)
    }

    fn policy(default: &[String], required: &[String]) -> EffectivePolicy {
        let spec = Crypt4ghPolicySpec {
            allowed_hosts: vec!["drs.example.org".into()],
            outputs: Some(OutputsSpec {
                default_recipients: default.to_vec(),
                required_recipients: required.to_vec(),
                grace_period_seconds: None,
            }),
            ..Default::default()
        };
        EffectivePolicy::from_spec("default", &spec, &OperatorDefaults::default()).unwrap()
    }

    #[test]
    fn recipients_come_from_the_pod_and_the_policy() {
        let (alice_pem, alice) = key();
        let (_, group) = key();
        let (_, archive) = key();
        let p = policy(std::slice::from_ref(&group), std::slice::from_ref(&archive));
        let json = serde_json::json!([
            {"path": "/data/out/", "recipients": [alice_pem, alice]},
            {"path": "/data/x.vcf"},
        ])
        .to_string();
        let out = parse(Some(&json), &p).unwrap();
        assert_eq!(out[0].path, "/data/out");
        assert_eq!(out[0].recipients, [alice.clone(), archive.clone()]);
        assert_eq!(out[1].recipients, [group, archive]);
    }

    #[test]
    fn bad_and_missing_keys_are_denied() {
        let p = policy(&[], &[]);
        let (_, alice) = key();
        for (json, want) in [
            (
                r#"[{"path": "/data/o"}]"#.to_owned(),
                "output 0 (/data/o) names no recipient and Crypt4ghPolicy \"default\" has no spec.outputs.defaultRecipients",
            ),
            (
                r#"[{"path": "/data/o", "recipients": ["bm9wZQ=="]}]"#.to_owned(),
                "output 0 (/data/o), recipient 0: not a Crypt4GH public key",
            ),
            (
                format!(
                    r#"[{{"path": "/data/o", "recipients": ["{alice}"]}}, {{"path": "/data/o/x", "recipients": ["{alice}"]}}]"#
                ),
                "output 1: path \"/data/o/x\" is not valid: it overlaps output \"/data/o\"",
            ),
            (
                format!(r#"[{{"path": "data/o", "recipients": ["{alice}"]}}]"#),
                "it is not absolute",
            ),
            (
                format!(r#"[{{"path": "/c4gh/key", "recipients": ["{alice}"]}}]"#),
                "reserved",
            ),
            (
                r#"{"path": "/o"}"#.to_owned(),
                "annotation c4gh.dev/outputs is not valid",
            ),
        ] {
            let err = parse(Some(&json), &p).unwrap_err().to_string();
            assert!(err.contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn bad_policy_keys_make_the_policy_invalid() {
        let spec = Crypt4ghPolicySpec {
            allowed_hosts: vec!["drs.example.org".into()],
            outputs: Some(OutputsSpec {
                required_recipients: vec!["not a key".into()],
                ..Default::default()
            }),
            ..Default::default()
        };
        let problems =
            EffectivePolicy::from_spec("p", &spec, &OperatorDefaults::default()).unwrap_err();
        assert!(
            problems[0]
                .starts_with("spec.outputs.requiredRecipients[0] is not a Crypt4GH public key"),
            "{problems:?}"
        );
    }
}
