//! The output list: the value of the `c4gh.dev/outputs` annotation and of `C4GH_OUTPUTS`, a JSON
//! list of [`OutputEntry`] objects naming what leaves the pod encrypted and for whom.
//!
//! A `path` is a file, or a directory (every regular file under it). `recipients` are Crypt4GH
//! public keys (the PEM file's text, or the base64 line inside it). In the annotation
//! `recipients` may be left out when the namespace's `Crypt4ghPolicy` names default recipients;
//! in `C4GH_OUTPUTS`, written by the operator after validation, every entry lists every
//! recipient (the policy's required ones included) as the base64 of the 32-byte key.
//!
//! Parsing is strict (unknown fields are errors); what a valid key or path is, is checked by each
//! side on top.

use serde::{Deserialize, Serialize};

/// One entry of the output list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputEntry {
    /// Absolute path of an output file or directory.
    pub path: String,
    /// Crypt4GH public keys the output is encrypted for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

impl OutputEntry {
    /// Parses a JSON output list (shape only; the list may be empty).
    ///
    /// # Errors
    ///
    /// The JSON error (with line and column) for anything but a list of `{path, recipients?}`.
    pub fn parse_list(json: &str) -> Result<Vec<OutputEntry>, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Serializes a list as JSON (the form of `C4GH_OUTPUTS`).
    pub fn list_to_json(list: &[OutputEntry]) -> String {
        serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_strict() {
        let json = r#"[{"path":"/data/out","recipients":["AAAA"]},{"path":"/data/x.vcf"}]"#;
        let list = OutputEntry::parse_list(json).unwrap();
        assert_eq!(list[1].recipients, Vec::<String>::new());
        assert_eq!(OutputEntry::list_to_json(&list), json);
        let err = OutputEntry::parse_list(r#"[{"path":"/p","recipient":["k"]}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
