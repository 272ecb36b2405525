//! Exit notices: how a task container tells the sidecar that its command ended, so that the key
//! is destroyed when the task ends rather than when the kubelet gets round to stopping the
//! sidecar.
//!
//! - The operator puts `c4gh-exec --notice FILE --` in front of every task container's explicit
//!   `command` ([`notice_path`]: one file per container in [`crate::pod::EXIT_DIR`]) and tells
//!   the sidecar, in [`crate::env::TASK_CONTAINERS`], every task container with its effective
//!   restart policy and whether it runs behind the wrapper ([`TaskContainer`]).
//! - `c4gh-exec` runs the command as its child; when it ends, the wrapper writes the container's
//!   exit status (what the kubelet will report: the exit code, or 128 + the signal number) as a
//!   decimal line ([`notice`]) under a temporary name beginning with `.` and renames it to FILE,
//!   so a reader sees a whole notice or none. It removes an earlier notice of the same
//!   container when it starts (a restarted container has not ended).
//! - The sidecar reads the notices of the listed containers ([`parse_notice`]) and decides
//!   whether each has ended for good under its restart policy.
//!
//! ```
//! use c4gh_contract::exits::{RestartPolicy, TaskContainer, notice, parse_notice};
//!
//! let list = TaskContainer::parse_list(r#"[{"name":"main","restartPolicy":"Never","wrapped":true}]"#)
//!     .unwrap();
//! assert_eq!(list[0].restart_policy, RestartPolicy::Never);
//! assert_eq!(parse_notice(&notice(137)), Some(137));
//! ```

use serde::{Deserialize, Serialize};

/// Longest notice a reader accepts (bytes); a longer file is not a notice the wrapper wrote.
pub const MAX_NOTICE_BYTES: u64 = 64;

/// A container's restart policy as Kubernetes names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Restarted after every exit (the pod's default).
    Always,
    /// Restarted after a non-zero exit.
    OnFailure,
    /// Never restarted.
    Never,
}

impl RestartPolicy {
    /// The policy named `name` (`Always` when absent, as Kubernetes defaults it); `None` for an
    /// unknown name.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name {
            None | Some("Always") => Some(Self::Always),
            Some("OnFailure") => Some(Self::OnFailure),
            Some("Never") => Some(Self::Never),
            Some(_) => None,
        }
    }

    /// Whether a container that ended with exit status `status` stays ended.
    pub fn is_final(self, status: u8) -> bool {
        match self {
            Self::Always => false,
            Self::OnFailure => status == 0,
            Self::Never => true,
        }
    }

    /// The Kubernetes name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::OnFailure => "OnFailure",
            Self::Never => "Never",
        }
    }
}

/// One task container of the pod, as the operator describes it to the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TaskContainer {
    /// The container's name (its notice is [`notice_path`] of it).
    pub name: String,
    /// Its effective restart policy: its own `restartPolicy`, else the pod's; `Always` when it
    /// has `restartPolicyRules` (they may restart it after any exit).
    pub restart_policy: RestartPolicy,
    /// Whether its command runs behind `c4gh-exec --notice` (only a container with an
    /// explicit `command` does: the operator cannot know an image's entrypoint).
    pub wrapped: bool,
}

impl TaskContainer {
    /// Parses a JSON list of task containers (the value of [`crate::env::TASK_CONTAINERS`]).
    ///
    /// # Errors
    ///
    /// The JSON error for anything but a list of `{name, restartPolicy, wrapped}`.
    pub fn parse_list(json: &str) -> Result<Vec<TaskContainer>, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// Serializes a list as JSON.
    pub fn list_to_json(list: &[TaskContainer]) -> String {
        serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// The notice file of container `name` (a DNS label, so a plain file name).
pub fn notice_path(name: &str) -> String {
    format!("{}/{name}", crate::pod::EXIT_DIR)
}

/// The text of a notice: the exit status as a decimal line.
pub fn notice(status: u8) -> String {
    format!("{status}\n")
}

/// The exit status in a notice, `None` when the text is not one.
pub fn parse_notice(text: &str) -> Option<u8> {
    let line = text.strip_suffix('\n')?;
    if line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    line.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip_and_nothing_else_parses() {
        for status in [0, 1, 127, 137, 255] {
            assert_eq!(parse_notice(&notice(status)), Some(status));
        }
        for odd in [
            "",
            "0",
            "\n",
            "256\n",
            "-1\n",
            "+1\n",
            " 0\n",
            "0\n\n",
            "exited 0\n",
        ] {
            assert_eq!(parse_notice(odd), None, "{odd:?}");
        }
        assert_eq!(notice_path("main"), "/c4gh/exit/main");
    }

    #[test]
    fn restart_policies_decide_what_is_final() {
        assert_eq!(RestartPolicy::parse(None), Some(RestartPolicy::Always));
        assert_eq!(RestartPolicy::parse(Some("Sometimes")), None);
        for policy in [
            RestartPolicy::Always,
            RestartPolicy::OnFailure,
            RestartPolicy::Never,
        ] {
            assert_eq!(RestartPolicy::parse(Some(policy.as_str())), Some(policy));
        }
        assert!(RestartPolicy::Never.is_final(1));
        assert!(RestartPolicy::OnFailure.is_final(0));
        assert!(!RestartPolicy::OnFailure.is_final(1));
        assert!(!RestartPolicy::Always.is_final(0));
    }

    #[test]
    fn task_containers_round_trip_strictly() {
        let json = r#"[{"name":"a","restartPolicy":"OnFailure","wrapped":true},{"name":"b","restartPolicy":"Always","wrapped":false}]"#;
        let list = TaskContainer::parse_list(json).unwrap();
        assert_eq!(TaskContainer::list_to_json(&list), json);
        let err = TaskContainer::parse_list(r#"[{"name":"a","restartPolicy":"Never"}]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrapped"), "{err}");
    }
}
