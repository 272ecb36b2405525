//! The typed input list: the `c4gh.dev/inputs` annotation value, a JSON list of
//! [`c4gh_contract::InputEntry`] (`{"url": "drs://…", "path": "/abs/path", "mode": …}`).
//!
//! The list reaches the sidecar either in `C4GH_INPUTS` (the operator copies the annotation) or in
//! a file (`C4GH_INPUTS_FILE`, the downward API). Parsing is strict: unknown fields, duplicate
//! paths and a path that lies inside another input's path are errors, so a typo never turns into a
//! silently ignored input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use c4gh_contract::InputEntry;

pub use c4gh_contract::Mode;

/// One input of the task: where it comes from, where it goes, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The `drs://` URI as given.
    pub url: String,
    /// The absolute destination path in the task's file system.
    pub path: PathBuf,
    /// The delivery mode.
    pub mode: Mode,
}

/// Why the input list was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputsError {
    /// The list is not valid JSON of the expected shape.
    #[error(
        "the input list is not a JSON list of {{\"url\", \"path\", \"mode\"}} objects: {source}"
    )]
    Json {
        /// The JSON error (line and column included).
        #[source]
        source: serde_json::Error,
    },
    /// The input list file could not be read.
    #[error("cannot read the input list file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Neither the inline list nor the file was given.
    #[error("no input list: set C4GH_INPUTS (JSON) or C4GH_INPUTS_FILE (a file holding it)")]
    Missing,
    /// One input has an empty URL.
    #[error("input #{index} (path {path}) has an empty \"url\"")]
    EmptyUrl {
        /// Position in the list, from 0.
        index: usize,
        /// Its path.
        path: String,
    },
    /// Two inputs name the same destination, or one lies inside another.
    #[error(
        "inputs #{first} and #{second} overlap: {path} is used by both; give each input its own path"
    )]
    Overlap {
        /// Position of the earlier input.
        first: usize,
        /// Position of the later input.
        second: usize,
        /// The contested path.
        path: PathBuf,
    },
}

/// Parses the JSON list. Paths are not checked here beyond being present; see
/// [`crate::roots::Roots::check`] for the file-system checks.
pub fn parse(json: &str) -> Result<Vec<Input>, InputsError> {
    let raw = InputEntry::parse_list(json).map_err(|source| InputsError::Json { source })?;
    let inputs: Vec<Input> = raw
        .into_iter()
        .enumerate()
        .map(|(index, r)| {
            if r.url.trim().is_empty() {
                return Err(InputsError::EmptyUrl {
                    index,
                    path: r.path,
                });
            }
            Ok(Input {
                url: r.url,
                path: PathBuf::from(r.path),
                mode: r.mode.unwrap_or_default(),
            })
        })
        .collect::<Result<_, _>>()?;
    check_overlaps(&inputs)?;
    Ok(inputs)
}

/// Loads the list from the inline value if given, else from the file.
pub fn load(inline: Option<&str>, file: Option<&Path>) -> Result<Vec<Input>, InputsError> {
    match (inline, file) {
        (Some(json), _) if !json.trim().is_empty() => parse(json),
        (_, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| InputsError::File {
                path: path.to_owned(),
                source,
            })?;
            parse(&text)
        }
        _ => Err(InputsError::Missing),
    }
}

fn check_overlaps(inputs: &[Input]) -> Result<(), InputsError> {
    let mut seen: BTreeSet<(&Path, usize)> = BTreeSet::new();
    for (second, input) in inputs.iter().enumerate() {
        for &(other, first) in &seen {
            if input.path.starts_with(other) || other.starts_with(&input.path) {
                return Err(InputsError::Overlap {
                    first,
                    second,
                    path: input.path.clone(),
                });
            }
        }
        seen.insert((&input.path, second));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes_and_default() {
        let list = parse(
            r#"[{"url":"drs://a/1","path":"/data/a"},
                {"url":"drs://a/2","path":"/data/b","mode":"plaintext"},
                {"url":"drs://a/3","path":"/data/c","mode":"stream"}]"#,
        )
        .unwrap();
        let modes: Vec<Mode> = list.iter().map(|i| i.mode).collect();
        assert_eq!(modes, [Mode::Encrypted, Mode::Plaintext, Mode::Stream]);
        assert_eq!(list[1].path, Path::new("/data/b"));
    }

    #[test]
    fn rejects_bad_lists() {
        for (json, needle) in [
            (r#"{"url":"drs://a/1"}"#, "JSON list"),
            (
                r#"[{"url":"drs://a/1","path":"/d/a","mode":"zip"}]"#,
                "unknown variant",
            ),
            (
                r#"[{"url":"drs://a/1","path":"/d/a","modes":"stream"}]"#,
                "unknown field",
            ),
            (r#"[{"path":"/d/a"}]"#, "missing field `url`"),
            (r#"[{"url":" ","path":"/d/a"}]"#, "empty \"url\""),
            (
                r#"[{"url":"drs://a/1","path":"/d/a"},{"url":"drs://a/2","path":"/d/a"}]"#,
                "overlap",
            ),
            (
                r#"[{"url":"drs://a/1","path":"/d/a"},{"url":"drs://a/2","path":"/d/a/b"}]"#,
                "overlap",
            ),
        ] {
            let err = parse(json).unwrap_err().to_string();
            assert!(err.contains(needle), "{json}: {err}");
        }
    }

    #[test]
    fn empty_list_is_allowed() {
        assert!(parse("[]").unwrap().is_empty());
    }

    #[test]
    fn inline_wins_over_file_and_missing_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("inputs");
        std::fs::write(&file, r#"[{"url":"drs://f/1","path":"/d/f"}]"#).unwrap();
        let from_file = load(None, Some(&file)).unwrap();
        assert_eq!(from_file[0].url, "drs://f/1");
        let inline = load(Some(r#"[{"url":"drs://i/1","path":"/d/i"}]"#), Some(&file)).unwrap();
        assert_eq!(inline[0].url, "drs://i/1");
        assert!(matches!(load(None, None), Err(InputsError::Missing)));
        let missing = load(None, Some(&dir.path().join("nope"))).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
