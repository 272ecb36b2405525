//! The gate's termination message: what `kubectl c4gh status` reads back through the API.
//!
//! The gate (`c4gh-sidecar gate`) ends with a termination message of two lines: a sentence for
//! people (on failure the reason, [`Status::failure_reason`]; `kubectl describe pod` and TES
//! backends show it), then [`SUMMARY_PREFIX`] followed by a compact JSON [`Summary`] of
//! `status.json` at that moment: the phase and, per input in list order, its state, bytes and
//! error. URLs and paths are not repeated (they are in the sidecar's [`crate::env::INPUTS`]);
//! the whole message stays within [`MAX_MESSAGE_BYTES`], the kubelet's limit per container.
//! It holds nothing secret: no key, no token, nothing status.json does not hold.
//!
//! ```
//! use c4gh_contract::Phase;
//! use c4gh_contract::termination::{Summary, message, parse};
//!
//! let summary = Summary { phase: Phase::Ready, inputs: vec![], more: 0 };
//! let text = message("c4gh: 0 inputs ready", &summary);
//! assert_eq!(parse(&text).unwrap().phase, Phase::Ready);
//! assert!(text.starts_with("c4gh: 0 inputs ready\n"));
//! ```

use serde::{Deserialize, Serialize};

use crate::status::{InputState, Phase, Status};

/// Start of the summary line.
pub const SUMMARY_PREFIX: &str = "c4gh-status: ";

/// Largest termination message the kubelet keeps per container (bytes).
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// Longest error text per input kept in the summary (bytes); the full text is in the
/// sidecar's log.
pub const MAX_ERROR_BYTES: usize = 240;

/// One input in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Where it stood.
    pub state: InputState,
    /// Bytes written (or streamed).
    pub bytes: u64,
    /// The error of a failed input (shortened to [`MAX_ERROR_BYTES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `status.json` in brief, as the gate saw it when it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The sidecar's phase.
    pub phase: Phase,
    /// The first inputs, in list order.
    pub inputs: Vec<InputSummary>,
    /// Inputs left out to stay within [`MAX_MESSAGE_BYTES`] (they follow `inputs`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub more: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut cut = max.saturating_sub(3);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...", &text[..cut])
}

impl Summary {
    /// The summary of a status document.
    pub fn of(status: &Status) -> Self {
        Summary {
            phase: status.phase,
            inputs: status
                .inputs
                .iter()
                .map(|i| InputSummary {
                    state: i.state,
                    bytes: i.bytes,
                    error: i.error.as_deref().map(|e| shorten(e, MAX_ERROR_BYTES)),
                })
                .collect(),
            more: 0,
        }
    }
}

/// The termination message: `headline` (one line), then the summary line, within
/// [`MAX_MESSAGE_BYTES`] (inputs are left out from the end, counted in `more`).
pub fn message(headline: &str, summary: &Summary) -> String {
    let headline = shorten(&crate::status::one_line(headline), 1024);
    let mut summary = summary.clone();
    loop {
        let json = serde_json::to_string(&summary).unwrap_or_default();
        let text = format!("{headline}\n{SUMMARY_PREFIX}{json}\n");
        if text.len() <= MAX_MESSAGE_BYTES || summary.inputs.is_empty() {
            return text;
        }
        let keep = summary.inputs.len() * 3 / 4;
        summary.more += summary.inputs.len() - keep;
        summary.inputs.truncate(keep);
    }
}

/// The summary in a termination message, if it has one.
pub fn parse(message: &str) -> Option<Summary> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(SUMMARY_PREFIX))
        .and_then(|json| serde_json::from_str(json).ok())
}

/// The headline (first line) of a termination message.
pub fn headline(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(state: InputState, error: Option<&str>) -> InputSummary {
        InputSummary {
            state,
            bytes: 7,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn round_trips_and_keeps_the_headline_first() {
        let summary = Summary {
            phase: Phase::Failed,
            inputs: vec![
                input(InputState::Done, None),
                input(InputState::Failed, Some("HTTP 404")),
            ],
            more: 0,
        };
        let text = message("c4gh-sidecar failed: 1 of 2 inputs failed", &summary);
        assert_eq!(headline(&text), "c4gh-sidecar failed: 1 of 2 inputs failed");
        assert_eq!(
            text.lines().nth(1),
            Some(
                r#"c4gh-status: {"phase":"Failed","inputs":[{"state":"Done","bytes":7},{"state":"Failed","bytes":7,"error":"HTTP 404"}]}"#
            )
        );
        assert_eq!(parse(&text), Some(summary));
        assert_eq!(parse("just a reason\n"), None);
    }

    #[test]
    fn stays_within_the_kubelet_limit() {
        let long = "e".repeat(MAX_ERROR_BYTES);
        let summary = Summary {
            phase: Phase::Failed,
            inputs: (0..256)
                .map(|_| input(InputState::Failed, Some(&long)))
                .collect(),
            more: 0,
        };
        let text = message(&"x".repeat(5000), &summary);
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let back = parse(&text).unwrap();
        assert_eq!(back.inputs.len() + back.more, 256);
        assert!(!back.inputs.is_empty());
    }
}
