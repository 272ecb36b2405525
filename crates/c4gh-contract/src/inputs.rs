//! The input list: the value of the `c4gh.dev/inputs` annotation and of `C4GH_INPUTS`, a JSON
//! list of [`InputEntry`] objects.
//!
//! Parsing is strict (unknown fields are errors), so a typo never turns into a silently ignored
//! input. What a valid path is, which hosts and modes are allowed, is checked by each side on top
//! (the operator against the policy, the sidecar against its file system).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How the sidecar delivers an input.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A Crypt4GH file for the ephemeral key (tools decrypt with `C4GH_SECRET_KEY`); the header
    /// is re-encrypted, the body is unchanged.
    #[default]
    Encrypted,
    /// Decrypted into a memory-backed volume (policy-gated, size-limited).
    Plaintext,
    /// A FIFO fed with plaintext each time the task opens it.
    Stream,
}

impl Mode {
    /// The lowercase name used in the input list, in policies and in metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Encrypted => "encrypted",
            Mode::Plaintext => "plaintext",
            Mode::Stream => "stream",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the input list.
///
/// In the annotation `mode` may be left out (the policy's default applies); in `C4GH_INPUTS`,
/// written by the operator after validation, it is always set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputEntry {
    /// The `drs://` URI.
    pub url: String,
    /// Absolute path where the task reads the input.
    pub path: String,
    /// Delivery mode; `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
}

impl InputEntry {
    /// Parses a JSON input list (shape only; the list may be empty).
    ///
    /// # Errors
    ///
    /// The JSON error (with line and column) for anything but a list of `{url, path, mode?}`.
    pub fn parse_list(json: &str) -> Result<Vec<InputEntry>, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Serializes a list as JSON (the form of `C4GH_INPUTS`).
    pub fn list_to_json(list: &[InputEntry]) -> String {
        serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_strict() {
        let list = InputEntry::parse_list(
            r#"[{"url":"drs://a/1","path":"/d/a"},{"url":"drs://a/2","path":"/d/b","mode":"stream"}]"#,
        )
        .unwrap();
        assert_eq!(list[0].mode, None);
        assert_eq!(list[1].mode, Some(Mode::Stream));
        assert_eq!(
            InputEntry::list_to_json(&list),
            r#"[{"url":"drs://a/1","path":"/d/a"},{"url":"drs://a/2","path":"/d/b","mode":"stream"}]"#
        );
        let err = InputEntry::parse_list(r#"[{"url":"u","path":"/p","modes":"stream"}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
        assert_eq!(Mode::default().to_string(), "encrypted");
    }
}
