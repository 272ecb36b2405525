//! `kubectl c4gh status POD`: where a task pod's crypt4gh inputs stand, read from the pod
//! object and its Events only (no exec, no logs, no Secrets).
//!
//! Sources, all readable with `get pods` and `list events`:
//! - the input list: the sidecar container's `C4GH_INPUTS` (the validated list with every mode;
//!   the `c4gh.dev/inputs` annotation when the sidecar is missing);
//! - the gate's termination message ([`c4gh_contract::termination`]): a headline and a summary
//!   of `status.json` (phase, each input's state, bytes and error) when the gate ended;
//! - the container states of `c4gh-sidecar` and `c4gh-gate`: whether the sidecar runs (it
//!   holds the key file), whether it exited 0 (it does so only after overwriting and unlinking
//!   the key), how long the gate has been waiting;
//! - the pod's warning Events (image pulls, probes, mounts, scheduling).
//!
//! The key itself is never read: the key volume is not reachable through the API, and the
//! report only says whether the key exists.

use std::fmt::Write as _;

use c4gh_contract::pod;
use c4gh_contract::termination::{self, Summary};
use c4gh_contract::{InputEntry, Phase};
use c4gh_operator::annotations;
use k8s_openapi::api::core::v1::{ContainerStatus, Event, Pod};
use k8s_openapi::jiff::Timestamp;

/// The report and whether the inputs are ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// What `status` prints.
    pub text: String,
    /// The gate passed: every input is in place.
    pub ready: bool,
}

fn age(since: &Timestamp, now: Timestamp) -> String {
    let secs = now.as_second() - since.as_second();
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn describe_state(status: Option<&ContainerStatus>, now: Timestamp) -> String {
    let Some(status) = status else {
        return "not started (the pod has not reached a node)".to_owned();
    };
    let Some(state) = &status.state else {
        return "unknown".to_owned();
    };
    if let Some(r) = &state.running {
        let since = r
            .started_at
            .as_ref()
            .map(|t| format!(" for {}", age(&t.0, now)))
            .unwrap_or_default();
        return format!("running{since}");
    }
    if let Some(t) = &state.terminated {
        let reason = t.reason.as_deref().unwrap_or("");
        let when = t
            .finished_at
            .as_ref()
            .map(|f| format!(", {} ago", age(&f.0, now)))
            .unwrap_or_default();
        return format!("exited {} {reason}{when}", t.exit_code)
            .replace("  ", " ")
            .trim_end()
            .to_owned();
    }
    if let Some(w) = &state.waiting {
        let reason = w.reason.as_deref().unwrap_or("waiting");
        return match &w.message {
            Some(m) => format!("waiting: {reason}: {m}"),
            None => format!("waiting: {reason}"),
        };
    }
    "unknown".to_owned()
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The input list the sidecar was given (with modes), else the pod's annotation.
fn inputs(pod: &Pod) -> Vec<InputEntry> {
    let spec = pod.spec.as_ref();
    let from_env = spec
        .and_then(|s| s.init_containers.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.name == pod::SIDECAR_CONTAINER))
        .and_then(|c| c.env.as_ref())
        .and_then(|env| env.iter().find(|e| e.name == c4gh_contract::env::INPUTS))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| InputEntry::parse_list(v).ok());
    from_env
        .or_else(|| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(annotations::INPUTS))
                .and_then(|v| InputEntry::parse_list(v).ok())
        })
        .unwrap_or_default()
}

/// Builds the report for `pod` with its `events`, at time `now`.
pub fn report(pod: &Pod, events: &[Event], now: Timestamp) -> StatusReport {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let ann = pod.metadata.annotations.clone().unwrap_or_default();
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending");
    let mut out = String::new();
    let injected =
        ann.get(annotations::STATUS).map(String::as_str) == Some(annotations::STATUS_INJECTED);
    if !injected {
        let _ = writeln!(
            out,
            "✘ pod {namespace}/{name} has no crypt4gh sidecar: it was not injected \
             (label {}: {} missing, or created before the operator was installed)",
            annotations::INJECT_LABEL,
            annotations::INJECT_ENABLED
        );
        return StatusReport {
            text: out,
            ready: false,
        };
    }
    let policy = ann
        .get(annotations::APPLIED_POLICY)
        .map_or("?", String::as_str);
    let _ = writeln!(
        out,
        "pod {namespace}/{name}: {phase} (Crypt4ghPolicy {policy})"
    );
    let statuses = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default();
    let sidecar = statuses.iter().find(|s| s.name == pod::SIDECAR_CONTAINER);
    let gate = statuses.iter().find(|s| s.name == pod::GATE_CONTAINER);
    let _ = writeln!(
        out,
        "  {:<13} {}{}",
        pod::SIDECAR_CONTAINER,
        describe_state(sidecar, now),
        match sidecar {
            // Only pods injected by earlier operators have a startup probe that can hold
            // `started` back; without one the kubelet sets it once the container runs.
            Some(s)
                if s.state.as_ref().is_some_and(|st| st.running.is_some())
                    && s.started == Some(false) =>
            {
                ", startup probe not passed yet"
            }
            _ => "",
        }
    );
    let _ = writeln!(
        out,
        "  {:<13} {}",
        pod::GATE_CONTAINER,
        describe_state(gate, now)
    );

    let gate_end = gate.and_then(|g| g.state.as_ref()?.terminated.as_ref());
    let message = gate_end
        .and_then(|t| t.message.as_deref())
        .unwrap_or_default();
    let summary: Option<Summary> = termination::parse(message);
    let list = inputs(pod);
    let as_of = match (&summary, gate_end) {
        (Some(s), Some(_)) => format!("phase {:?}, when the gate ended", s.phase),
        _ => "not reported until the gate ends".to_owned(),
    };
    let _ = writeln!(out, "  inputs ({}; {as_of}):", list.len());
    for (n, input) in list.iter().enumerate() {
        let entry = summary.as_ref().and_then(|s| s.inputs.get(n));
        let mode = input.mode.map_or("encrypted", |m| m.as_str());
        let (state, bytes) = match entry {
            Some(e) => (format!("{:?}", e.state), human_bytes(e.bytes)),
            None => ("?".to_owned(), "?".to_owned()),
        };
        let _ = writeln!(
            out,
            "    {:<8} {:>10}  {} -> {} ({mode})",
            state, bytes, input.url, input.path
        );
        if let Some(error) = entry.and_then(|e| e.error.as_deref()) {
            let _ = writeln!(out, "             error: {error}");
        }
    }
    if let Some(more) = summary.as_ref().map(|s| s.more).filter(|m| *m > 0) {
        let _ = writeln!(
            out,
            "    ({more} more inputs not in the termination message)"
        );
    }

    let sidecar_state = sidecar.and_then(|s| s.state.as_ref());
    let key = match sidecar_state {
        Some(st) if st.terminated.as_ref().is_some_and(|t| t.exit_code == 0) => {
            "destroyed: the sidecar overwrote and unlinked it and exited 0".to_owned()
        }
        Some(st) if st.terminated.is_some() => format!(
            "unknown: the sidecar exited with code {} without its cleanup; the key file lives \
             only on the memory-backed volume {}, which is removed with the pod",
            st.terminated.as_ref().map_or(0, |t| t.exit_code),
            pod::KEY_VOLUME
        ),
        Some(st) if st.running.is_some() && sidecar.and_then(|s| s.started) != Some(false) => {
            format!(
                "held by the running sidecar at {} (memory-backed volume {}), read-only in the task containers",
                pod::SECRET_KEY_PATH,
                pod::KEY_VOLUME
            )
        }
        Some(st) if st.running.is_some() => {
            "being generated (startup probe not passed yet)".to_owned()
        }
        _ => "not created yet".to_owned(),
    };
    let _ = writeln!(out, "  key: {key}");

    let warnings: Vec<&Event> = events
        .iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    if !warnings.is_empty() {
        let _ = writeln!(out, "  warning events:");
        for e in warnings.iter().rev().take(5).rev() {
            let count = e
                .count
                .filter(|c| *c > 1)
                .map(|c| format!(" (x{c})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    {}{count}: {}",
                e.reason.as_deref().unwrap_or("?"),
                e.message.as_deref().unwrap_or("").trim()
            );
        }
    }

    let (ready, verdict) = match (gate_end, summary.as_ref()) {
        // A TESK executor's gate hands a failure to the command wrapper and exits 0.
        (Some(t), Some(summary)) if t.exit_code == 0 && summary.phase != Phase::Ready => (
            false,
            format!(
                "✘ the inputs are not in place; the gate left the verdict to the executor's wrapper, which did not run the command: {}",
                termination::headline(message)
            ),
        ),
        (Some(t), _) if t.exit_code == 0 => (
            true,
            "✔ every input is in place; the task containers may run".to_owned(),
        ),
        (Some(t), _) => (
            false,
            match termination::headline(message) {
                "" => format!(
                    "✘ the gate failed the pod (exit code {}, no message)",
                    t.exit_code
                ),
                headline => format!("✘ the gate failed the pod: {headline}"),
            },
        ),
        (None, _)
            if gate.is_some_and(|g| g.state.as_ref().is_some_and(|s| s.running.is_some())) =>
        {
            (
                false,
                format!(
                    "‼ waiting for inputs: the gate is {}; live progress: kubectl logs -n {namespace} {name} -c {}",
                    describe_state(gate, now),
                    pod::SIDECAR_CONTAINER
                ),
            )
        }
        (None, _) => (
            false,
            match pending_reason(pod) {
                Some(r) => format!("‼ the pod has not started: {r}"),
                None => "‼ the pod has not started on a node yet (nothing has run; see the events)"
                    .to_owned(),
            },
        ),
    };
    let _ = writeln!(out, "{verdict}");
    StatusReport { text: out, ready }
}

/// Why a pending pod has not started, from its PodScheduled condition.
fn pending_reason(pod: &Pod) -> Option<String> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    (scheduled.status == "False").then(|| {
        format!(
            "{}: {}",
            scheduled.reason.as_deref().unwrap_or("not scheduled"),
            scheduled.message.as_deref().unwrap_or("")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    fn injected(statuses: serde_json::Value) -> Pod {
        pod(serde_json::json!({
            "metadata": {"name": "t", "namespace": "tasks",
                "annotations": {"c4gh.dev/status": "injected", "c4gh.dev/applied-policy": "default"}},
            "spec": {"containers": [{"name": "task"}], "initContainers": [{"name": "c4gh-sidecar",
                "env": [{"name": "C4GH_INPUTS", "value": r#"[{"url":"drs://h/a","path":"/d/a","mode":"stream"}]"#}]}]},
            "status": {"phase": "Pending", "initContainerStatuses": statuses}
        }))
    }

    #[test]
    fn a_pod_without_the_sidecar_is_not_ready() {
        let report = report(
            &pod(serde_json::json!({"metadata": {"name": "p"}})),
            &[],
            Timestamp::now(),
        );
        assert!(!report.ready);
        assert!(report.text.contains("was not injected"), "{}", report.text);
    }

    #[test]
    fn a_pod_not_on_a_node_shows_its_inputs_and_no_key() {
        let report = report(&injected(serde_json::json!([])), &[], Timestamp::now());
        assert!(!report.ready);
        let line = report
            .text
            .lines()
            .find(|l| l.contains("drs://h/a"))
            .unwrap();
        assert!(line.trim_start().starts_with("? "), "{}", report.text);
        assert!(
            line.ends_with("?  drs://h/a -> /d/a (stream)"),
            "{}",
            report.text
        );
        assert!(
            report.text.contains("key: not created yet"),
            "{}",
            report.text
        );
        assert!(
            report.text.ends_with(
                "‼ the pod has not started on a node yet (nothing has run; see the events)\n"
            ),
            "{}",
            report.text
        );
    }

    #[test]
    fn a_tesk_gate_that_handed_a_failure_to_the_wrapper_is_not_ready() {
        let message = termination::message(
            "c4gh-sidecar failed: 1 of 1 inputs failed: drs://h/a -> /d/a: 404",
            &Summary {
                phase: Phase::Failed,
                inputs: Vec::new(),
                more: 0,
            },
        );
        let report = report(
            &injected(serde_json::json!([
                {"name": "c4gh-sidecar", "image": "", "imageID": "", "ready": false,
                 "restartCount": 0, "state": {"terminated": {"exitCode": 0}}},
                {"name": "c4gh-gate", "image": "", "imageID": "", "ready": false,
                 "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": message}}}
            ])),
            &[],
            Timestamp::now(),
        );
        assert!(!report.ready, "{}", report.text);
        assert!(
            report.text.ends_with("✘ the inputs are not in place; the gate left the verdict to the executor's wrapper, which did not run the command: c4gh-sidecar failed: 1 of 1 inputs failed: drs://h/a -> /d/a: 404\n"),
            "{}",
            report.text
        );
    }

    #[test]
    fn a_sidecar_that_crashed_leaves_the_key_state_unknown() {
        let report = report(
            &injected(
                serde_json::json!([{"name": "c4gh-sidecar", "image": "", "imageID": "", "ready": false,
                "restartCount": 1, "state": {"terminated": {"exitCode": 137}}}]),
            ),
            &[],
            Timestamp::now(),
        );
        assert!(
            report
                .text
                .contains("key: unknown: the sidecar exited with code 137"),
            "{}",
            report.text
        );
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 B");
    }
}
