//! The injection: a pure function from a pod and a policy to the injected pod.
//!
//! Pipeline (each step a function below): should-inject → check annotations → typed inputs
//! (validated against the policy) → volume plan → mutate. Every step only *ensures* state (replace
//! by name, insert if missing), so running [`mutate`] on its own output changes nothing; the
//! webhook sends `json_patch::diff(before, after)`.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar, KeyToPath, Pod,
    PodSecurityContext, PodSpec, ProjectedVolumeSource, SeccompProfile, SecretVolumeSource,
    SecurityContext, ServiceAccountTokenProjection, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use c4gh_contract::exits::{self, RestartPolicy, TaskContainer};
use c4gh_contract::{InputEntry, Mode, OutputEntry, env, pod};

use crate::annotations;
use crate::denial::Denial;
use crate::effective::{EffectivePolicy, TokenSource};
use crate::inputs::{self, Input};
use crate::policy::UnmountedPaths;

/// The pod contract's names the injection uses (container, volume and directory names).
pub use c4gh_contract::pod::{
    AUTH_DIR, AUTH_VOLUME, CA_DIR, CA_VOLUME, GATE_CONTAINER, INPUTS_VOLUME, KEY_DIR, KEY_VOLUME,
    KEY_VOLUME_SIZE, OWN_VOLUME_PREFIX, PASSPORTS_DIR, PASSPORTS_VOLUME, PLAINTEXT_VOLUME,
    SECRET_KEY_PATH, SIDECAR_CONTAINER,
};

/// UID (and the default fsGroup) of the sidecar and gate unless the pod sets a non-root UID.
pub const SIDECAR_UID: i64 = 65532;

/// Whether the pod opted in (`c4gh.dev/inject: enabled`).
pub fn should_inject(pod: &Pod) -> bool {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(annotations::INJECT_LABEL))
        .is_some_and(|v| v == annotations::INJECT_ENABLED)
}

/// Injects the sidecar into `pod` according to `policy`.
///
/// Returns the pod unchanged when it did not opt in. Idempotent: `mutate(mutate(p)) == mutate(p)`.
///
/// # Errors
///
/// A [`Denial`] when an annotation or input breaks the policy.
pub fn mutate(pod: &Pod, policy: &EffectivePolicy) -> Result<Pod, Denial> {
    Ok(match injection(pod, policy)? {
        Some(injection) => injection.apply(pod),
        None => pod.clone(),
    })
}

/// The fields of a pod that the injection sets, with their new values. Every other field of the
/// pod is left as it was, which is what lets [`Injection::patch`] look at these fields only.
#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `spec.containers` (mounts and `C4GH_SECRET_KEY` added to task containers).
    pub containers: Vec<Container>,
    /// `spec.initContainers` (the sidecar and the gate first).
    pub init_containers: Vec<Container>,
    /// `spec.securityContext` (`fsGroup`).
    pub security_context: PodSecurityContext,
    /// `spec.volumes`.
    pub volumes: Vec<Volume>,
    /// `spec.terminationGracePeriodSeconds`, set only for a pod with outputs (the sidecar
    /// encrypts them within it).
    pub termination_grace_period_seconds: Option<i64>,
}

/// Computes the [`Injection`] for `pod`: `None` when it did not opt in.
///
/// # Errors
///
/// A [`Denial`] when an annotation or input breaks the policy.
pub fn injection(pod: &Pod, policy: &EffectivePolicy) -> Result<Option<Injection>, Denial> {
    if !should_inject(pod) {
        return Ok(None);
    }
    check_annotations(pod)?;
    let inputs = inputs::parse(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::INPUTS))
            .map(String::as_str),
        policy,
    )?;
    let spec = pod.spec.as_ref().ok_or(Denial::NoSpec)?;
    if spec.host_pid == Some(true) {
        return Err(Denial::SharedProcesses { field: "hostPID" });
    }
    if spec.share_process_namespace == Some(true) {
        return Err(Denial::SharedProcesses {
            field: "shareProcessNamespace",
        });
    }
    let tasks: Vec<usize> = spec
        .containers
        .iter()
        .enumerate()
        .filter(|(_, c)| !policy.exclude_containers.contains(&c.name))
        .map(|(i, _)| i)
        .collect();
    if tasks.is_empty() {
        return Err(Denial::NoTaskContainers);
    }
    let plan = plan_volumes(&inputs, spec, &tasks, policy)?;
    let outputs = crate::outputs::parse(
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(annotations::OUTPUTS))
            .map(String::as_str),
        policy,
    )?;
    let output_mounts = plan_output_mounts(&outputs, spec, &tasks)?;
    if !outputs.is_empty() {
        check_output_user(spec, &tasks)?;
    }

    let mut volumes = spec.volumes.clone().unwrap_or_default();
    for v in pod_volumes(&plan, policy) {
        ensure_volume(&mut volumes, v);
    }
    let security = sidecar_security(spec.security_context.as_ref());
    let mut sidecar = sidecar_container(&inputs, &plan, policy, security.clone());
    if !outputs.is_empty() {
        ensure_env(
            &mut sidecar,
            env::OUTPUTS,
            &OutputEntry::list_to_json(&outputs),
        );
        for m in output_mounts {
            let mounts = sidecar.volume_mounts.get_or_insert_with(Vec::new);
            if !mounts.iter().any(|x| x.mount_path == m.mount_path) {
                mounts.push(m);
            }
        }
    }
    let termination_grace_period_seconds = (!outputs.is_empty()).then(|| {
        spec.termination_grace_period_seconds
            .unwrap_or(30)
            .max(i64::from(policy.output_grace_seconds))
    });
    let wrapped: Vec<usize> = tasks
        .iter()
        .copied()
        .filter(|&i| has_command(&spec.containers[i]))
        .collect();
    let hand_over = hands_over_verdict(pod, &tasks, &wrapped);
    ensure_env(
        &mut sidecar,
        env::TASK_CONTAINERS,
        &TaskContainer::list_to_json(&task_containers(spec, &tasks, &wrapped)),
    );
    if !wrapped.is_empty() {
        for (name, size, medium) in [
            (pod::EXEC_VOLUME, EXEC_VOLUME_SIZE, None),
            (
                pod::EXIT_VOLUME,
                pod::EXIT_VOLUME_SIZE,
                Some("Memory".to_owned()),
            ),
        ] {
            ensure_volume(
                &mut volumes,
                Volume {
                    name: name.to_owned(),
                    empty_dir: Some(EmptyDirVolumeSource {
                        medium,
                        size_limit: Some(Quantity(size.to_owned())),
                        ..EmptyDirVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            );
        }
        ensure_env(&mut sidecar, env::EXIT_DIR, pod::EXIT_DIR);
        ensure_mount(&mut sidecar, read_only(pod::EXIT_VOLUME, pod::EXIT_DIR));
    }
    let gate_mode = if hand_over {
        GateMode::HandOver
    } else if wrapped.is_empty() {
        GateMode::Plain
    } else {
        GateMode::CopyWrapper
    };
    let gate = gate_container(policy, security, gate_mode);
    let mut init_containers: Vec<Container> = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.name != SIDECAR_CONTAINER && c.name != GATE_CONTAINER)
        .cloned()
        .collect();
    init_containers.splice(0..0, [sidecar, gate]);

    let mut containers = spec.containers.clone();
    for &i in &tasks {
        let c = &mut containers[i];
        ensure_mount(
            c,
            VolumeMount {
                name: KEY_VOLUME.to_owned(),
                mount_path: KEY_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        );
        for m in &plan.task_mounts {
            ensure_mount(c, m.clone());
        }
        ensure_env(c, env::SECRET_KEY, SECRET_KEY_PATH);
        if wrapped.contains(&i) {
            ensure_mount(c, read_only(pod::EXEC_VOLUME, pod::EXEC_DIR));
            ensure_mount(
                c,
                VolumeMount {
                    name: pod::EXIT_VOLUME.to_owned(),
                    mount_path: pod::EXIT_DIR.to_owned(),
                    ..VolumeMount::default()
                },
            );
            wrap_command(c, hand_over);
        }
    }

    let mut security_context = spec.security_context.clone().unwrap_or_default();
    if security_context.fs_group.is_none() {
        security_context.fs_group = Some(SIDECAR_UID);
        security_context.fs_group_change_policy = Some("OnRootMismatch".to_owned());
    }

    let mut annotations = pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(
        annotations::STATUS.to_owned(),
        annotations::STATUS_INJECTED.to_owned(),
    );
    annotations.insert(annotations::APPLIED_POLICY.to_owned(), policy.name.clone());
    Ok(Some(Injection {
        annotations,
        containers,
        init_containers,
        security_context,
        volumes,
        termination_grace_period_seconds,
    }))
}

impl Injection {
    /// `pod` with the injection applied.
    pub fn apply(self, pod: &Pod) -> Pod {
        let mut out = pod.clone();
        out.metadata.annotations = Some(self.annotations);
        let spec = out.spec.get_or_insert_with(PodSpec::default);
        spec.containers = self.containers;
        spec.init_containers = Some(self.init_containers);
        spec.security_context = Some(self.security_context);
        spec.volumes = Some(self.volumes);
        if self.termination_grace_period_seconds.is_some() {
            spec.termination_grace_period_seconds = self.termination_grace_period_seconds;
        }
        out
    }

    /// The JSON Patch (RFC 6902) from `before` to `before` with the injection applied, as JSON
    /// bytes: the same operations, in the same order, as `json_patch::diff` of the two pods'
    /// JSON. Only the fields the injection sets are compared, unchanged containers and volumes
    /// are compared as typed values, and added ones are written straight from their types
    /// (object keys in field order rather than sorted, which JSON does not distinguish).
    pub fn patch(&self, before: &Pod) -> Vec<u8> {
        let mut w = PatchWriter::default();
        let spec = before.spec.as_ref();
        // Keys in the order `json_patch::diff` visits them: sorted, those of the new object
        // first, then removals (the injection removes none of these fields).
        w.option(
            "/metadata/annotations",
            before.metadata.annotations.as_ref(),
            &self.annotations,
        );
        w.array(
            "/spec/containers",
            spec.map_or(&[][..], |s| &s.containers),
            &self.containers,
        );
        w.option_array(
            "/spec/initContainers",
            spec.and_then(|s| s.init_containers.as_deref()),
            &self.init_containers,
        );
        w.option(
            "/spec/securityContext",
            spec.and_then(|s| s.security_context.as_ref()),
            &self.security_context,
        );
        if let Some(grace) = &self.termination_grace_period_seconds {
            w.option(
                "/spec/terminationGracePeriodSeconds",
                spec.and_then(|s| s.termination_grace_period_seconds.as_ref()),
                grace,
            );
        }
        w.option_array(
            "/spec/volumes",
            spec.and_then(|s| s.volumes.as_deref()),
            &self.volumes,
        );
        w.finish()
    }
}

/// Writes JSON Patch operations straight into a byte buffer.
struct PatchWriter {
    out: Vec<u8>,
}

impl Default for PatchWriter {
    fn default() -> Self {
        Self {
            out: Vec::with_capacity(4096),
        }
    }
}

/// One operation as `json_patch` serialises it (`op`, `path`, then `value`).
#[derive(serde::Serialize)]
struct Op<'a, T: serde::Serialize> {
    op: &'static str,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a T>,
}

impl PatchWriter {
    fn op<T: serde::Serialize>(&mut self, op: &'static str, path: &str, value: Option<&T>) {
        self.out.push(if self.out.is_empty() { b'[' } else { b',' });
        // Writing into a Vec fails only on a map with non-string keys, which pods do not have.
        let _ = serde_json::to_writer(&mut self.out, &Op { op, path, value });
    }

    /// A field that is `before` (absent when `None`) and becomes `after`.
    fn option<T: serde::Serialize + PartialEq>(
        &mut self,
        path: &str,
        before: Option<&T>,
        after: &T,
    ) {
        match before {
            None => self.op("add", path, Some(after)),
            Some(b) if b == after => {}
            Some(b) => self.nested(path, b, after),
        }
    }

    /// An optional array that becomes `after`.
    fn option_array<T: serde::Serialize + PartialEq>(
        &mut self,
        path: &str,
        before: Option<&[T]>,
        after: &[T],
    ) {
        match before {
            None => self.op("add", path, Some(&after)),
            Some(b) => self.array(path, b, after),
        }
    }

    /// Element by element, as `json_patch::diff` compares arrays.
    fn array<T: serde::Serialize + PartialEq>(&mut self, path: &str, before: &[T], after: &[T]) {
        let mut shift = 0usize;
        for idx in 0..before.len().max(after.len()) {
            let at = format!("{path}/{}", idx - shift);
            match (before.get(idx), after.get(idx)) {
                (Some(b), Some(a)) if b == a => {}
                (Some(b), Some(a)) => self.nested(&at, b, a),
                (Some(_), None) => {
                    shift += 1;
                    self.op::<()>("remove", &at, None);
                }
                (None, Some(a)) => self.op("add", &at, Some(a)),
                (None, None) => {}
            }
        }
    }

    /// A changed value: `json_patch::diff` of the two values' JSON under `path`.
    fn nested<T: serde::Serialize>(&mut self, path: &str, before: &T, after: &T) {
        // Conversion fails only for maps with non-string keys, which pods do not have.
        let (Ok(b), Ok(a)) = (serde_json::to_value(before), serde_json::to_value(after)) else {
            return;
        };
        for op in json_patch::diff(&b, &a).0 {
            match op {
                json_patch::PatchOperation::Add(o) => {
                    self.op("add", &format!("{path}{}", o.path), Some(&o.value));
                }
                json_patch::PatchOperation::Replace(o) => {
                    self.op("replace", &format!("{path}{}", o.path), Some(&o.value));
                }
                json_patch::PatchOperation::Remove(o) => {
                    self.op::<()>("remove", &format!("{path}{}", o.path), None);
                }
                // `diff` produces only add, replace and remove (json-patch 4 `diff.rs`).
                _ => {}
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.out.is_empty() {
            self.out.push(b'[');
        }
        self.out.push(b']');
        self.out
    }
}

/// Denies unknown keys under `c4gh.dev/` (labels other than the opt-in label, annotations other
/// than [`annotations::KNOWN_POD_ANNOTATIONS`]).
fn check_annotations(pod: &Pod) -> Result<(), Denial> {
    let known = || {
        annotations::KNOWN_POD_ANNOTATIONS
            .iter()
            .chain([&annotations::INJECT_LABEL])
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    };
    let keys = pod
        .metadata
        .annotations
        .iter()
        .flat_map(|a| a.keys())
        .filter(|k| !annotations::KNOWN_POD_ANNOTATIONS.contains(&k.as_str()))
        .chain(
            pod.metadata
                .labels
                .iter()
                .flat_map(|l| l.keys())
                .filter(|k| k.as_str() != annotations::INJECT_LABEL),
        );
    for key in keys {
        if key.starts_with(annotations::PREFIX) {
            return Err(Denial::UnknownAnnotation {
                key: key.clone(),
                known: known(),
            });
        }
    }
    Ok(())
}

/// Where inputs land: mounts for the sidecar and mounts to add to task containers.
#[derive(Debug, Default)]
struct VolumePlan {
    /// Mounts of the sidecar for inputs (task volumes reused, or new emptyDir subPaths), sorted by
    /// mount path so parents come first.
    sidecar_mounts: Vec<VolumeMount>,
    /// New mounts to add to every task container.
    task_mounts: Vec<VolumeMount>,
    /// Whether [`INPUTS_VOLUME`] is needed.
    inputs_volume: bool,
    /// Size limit of [`PLAINTEXT_VOLUME`] when needed.
    plaintext_size: Option<u64>,
}

/// Decides, for each input, which volume the sidecar writes it to.
///
/// - `encrypted` under a task container's mount (longest mount path wins; the operator's own
///   volumes are ignored): the sidecar mounts the same volume and subPath at the same path.
/// - `encrypted` elsewhere: a subPath of the [`INPUTS_VOLUME`] emptyDir at the input's directory,
///   in the sidecar and every task container (unless the policy says `Deny`).
/// - `plaintext`/`stream`: a subPath of the memory-backed [`PLAINTEXT_VOLUME`] at the input's
///   directory, which must not already be a mount point or hold an `encrypted` input.
fn plan_volumes(
    inputs: &[Input],
    spec: &PodSpec,
    tasks: &[usize],
    policy: &EffectivePolicy,
) -> Result<VolumePlan, Denial> {
    let task_mounts: Vec<&VolumeMount> = tasks
        .iter()
        .flat_map(|&i| spec.containers[i].volume_mounts.iter().flatten())
        .filter(|m| !m.name.starts_with(OWN_VOLUME_PREFIX))
        .collect();
    let memory_dirs: BTreeMap<&str, (usize, Mode)> = inputs
        .iter()
        .enumerate()
        .filter(|(_, i)| i.mode != Mode::Encrypted)
        .map(|(n, i)| (inputs::parent_dir(&i.path), (n, i.mode)))
        .collect();
    let mut reused: BTreeMap<String, VolumeMount> = BTreeMap::new();
    let mut disk_dirs = BTreeSet::new();
    let mut plaintext_count = 0u64;
    let mut stream = false;
    for (index, input) in inputs.iter().enumerate() {
        let dir = inputs::parent_dir(&input.path);
        match input.mode {
            Mode::Encrypted => {
                if let Some(&(other, mode)) = memory_dirs.get(dir) {
                    return Err(Denial::MountConflict {
                        index: other,
                        path: inputs[other].path.clone(),
                        dir: dir.to_owned(),
                        mode: mode.as_str(),
                        conflict: format!("encrypted input {index} is in the same directory"),
                    });
                }
                if let Some(m) = covering_mount(&task_mounts, &input.path) {
                    reused.insert(
                        m.mount_path.clone(),
                        VolumeMount {
                            name: m.name.clone(),
                            mount_path: m.mount_path.clone(),
                            sub_path: m.sub_path.clone(),
                            sub_path_expr: m.sub_path_expr.clone(),
                            ..VolumeMount::default()
                        },
                    );
                } else if policy.unmounted_paths == UnmountedPaths::Deny {
                    return Err(Denial::PathOutsideMounts {
                        index,
                        path: input.path.clone(),
                        policy: policy.name.clone(),
                    });
                } else {
                    disk_dirs.insert(dir.to_owned());
                }
            }
            Mode::Plaintext | Mode::Stream => {
                if let Some(m) = task_mounts.iter().find(|m| m.mount_path == dir) {
                    return Err(Denial::MountConflict {
                        index,
                        path: input.path.clone(),
                        dir: dir.to_owned(),
                        mode: input.mode.as_str(),
                        conflict: format!("volume {:?} is already mounted there", m.name),
                    });
                }
                if input.mode == Mode::Plaintext {
                    plaintext_count += 1;
                } else {
                    stream = true;
                }
            }
        }
    }
    let mut plan = VolumePlan {
        inputs_volume: !disk_dirs.is_empty(),
        ..VolumePlan::default()
    };
    if plaintext_count > 0 || stream {
        let per_input = policy.max_plaintext_bytes.unwrap_or(0);
        plan.plaintext_size = Some(
            per_input
                .saturating_mul(plaintext_count)
                .saturating_add(1 << 20),
        );
    }
    let new_dirs = disk_dirs
        .iter()
        .map(|d| (d.as_str(), INPUTS_VOLUME))
        .chain(memory_dirs.keys().map(|d| (*d, PLAINTEXT_VOLUME)));
    let mut sidecar: BTreeMap<String, VolumeMount> = reused;
    for (n, (dir, volume)) in new_dirs.enumerate() {
        let mount = VolumeMount {
            name: volume.to_owned(),
            mount_path: dir.to_owned(),
            sub_path: Some(format!("d{n}")),
            ..VolumeMount::default()
        };
        plan.task_mounts.push(VolumeMount {
            read_only: Some(true),
            ..mount.clone()
        });
        sidecar.insert(dir.to_owned(), mount);
    }
    plan.task_mounts
        .sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    plan.sidecar_mounts = sidecar.into_values().collect();
    Ok(plan)
}

/// The sidecar's mounts for the outputs: for each output, the task mount covering it (the
/// longest mount path at or above it; the operator's own volumes do not count), read-write at
/// the same path and subPath, so the sidecar sees the files the task wrote.
fn plan_output_mounts(
    outputs: &[OutputEntry],
    spec: &PodSpec,
    tasks: &[usize],
) -> Result<Vec<VolumeMount>, Denial> {
    let task_mounts: Vec<&VolumeMount> = tasks
        .iter()
        .flat_map(|&i| spec.containers[i].volume_mounts.iter().flatten())
        .filter(|m| !m.name.starts_with(OWN_VOLUME_PREFIX))
        .collect();
    let mut out: BTreeMap<String, VolumeMount> = BTreeMap::new();
    for (index, output) in outputs.iter().enumerate() {
        let exact = task_mounts
            .iter()
            .filter(|m| m.mount_path.trim_end_matches('/') == output.path)
            .max_by_key(|m| m.read_only != Some(true))
            .copied();
        let Some(m) = exact.or_else(|| covering_mount(&task_mounts, &output.path)) else {
            return Err(Denial::OutputOutsideMounts {
                index,
                path: output.path.clone(),
            });
        };
        if m.read_only == Some(true) {
            return Err(Denial::OutputOnUnusableMount {
                index,
                path: output.path.clone(),
                mount: m.mount_path.clone(),
                why: "the task containers mount read-only, so they cannot write outputs there",
            });
        }
        out.insert(
            m.mount_path.clone(),
            VolumeMount {
                name: m.name.clone(),
                mount_path: m.mount_path.clone(),
                sub_path: m.sub_path.clone(),
                sub_path_expr: m.sub_path_expr.clone(),
                ..VolumeMount::default()
            },
        );
    }
    Ok(out.into_values().collect())
}

/// Outputs are renamed and replaced by the sidecar, which runs as the pod's `runAsUser`: the
/// task containers must write them as that same user.
fn check_output_user(spec: &PodSpec, tasks: &[usize]) -> Result<(), Denial> {
    let Some(uid) = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .filter(|&u| u != 0)
    else {
        return Err(Denial::OutputsNeedTaskUser {
            why: "spec.securityContext.runAsUser is not set to a non-root UID".to_owned(),
        });
    };
    for &i in tasks {
        let c = &spec.containers[i];
        if let Some(other) = c
            .security_context
            .as_ref()
            .and_then(|s| s.run_as_user)
            .filter(|&u| u != uid)
        {
            return Err(Denial::OutputsNeedTaskUser {
                why: format!(
                    "container {:?} runs as UID {other}, not the pod's {uid}",
                    c.name
                ),
            });
        }
    }
    Ok(())
}

/// The task mount with the longest mount path that contains `path`.
fn covering_mount<'a>(mounts: &[&'a VolumeMount], path: &str) -> Option<&'a VolumeMount> {
    mounts
        .iter()
        .filter(|m| {
            let mp = m.mount_path.trim_end_matches('/');
            mp.is_empty() || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
        })
        .max_by_key(|m| m.mount_path.trim_end_matches('/').len())
        .copied()
}

/// The volumes the operator adds to the pod.
fn pod_volumes(plan: &VolumePlan, policy: &EffectivePolicy) -> Vec<Volume> {
    let mut v = vec![Volume {
        name: KEY_VOLUME.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".to_owned()),
            size_limit: Some(Quantity(KEY_VOLUME_SIZE.to_owned())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if plan.inputs_volume {
        v.push(Volume {
            name: INPUTS_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    if let Some(size) = plan.plaintext_size {
        v.push(Volume {
            name: PLAINTEXT_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                size_limit: Some(Quantity(size.to_string())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    match &policy.token {
        Some(TokenSource::Secret { name, key }) => {
            v.push(secret_volume(AUTH_VOLUME, name, key, pod::TOKEN_FILE))
        }
        Some(TokenSource::ServiceAccount {
            audience,
            expiration_seconds,
        }) => v.push(Volume {
            name: AUTH_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                default_mode: Some(0o400),
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        audience: Some(audience.clone()),
                        expiration_seconds: Some(*expiration_seconds),
                        path: pod::TOKEN_FILE.to_owned(),
                        ..ServiceAccountTokenProjection::default()
                    }),
                    ..VolumeProjection::default()
                }]),
                ..ProjectedVolumeSource::default()
            }),
            ..Volume::default()
        }),
        None => {}
    }
    if let Some((name, key)) = &policy.passports {
        v.push(secret_volume(
            PASSPORTS_VOLUME,
            name,
            key,
            pod::PASSPORTS_FILE,
        ));
    }
    if let Some((name, key)) = &policy.ca_bundle {
        v.push(Volume {
            name: CA_VOLUME.to_owned(),
            config_map: Some(ConfigMapVolumeSource {
                name: name.clone(),
                items: Some(vec![KeyToPath {
                    key: key.clone(),
                    path: pod::CA_FILE.to_owned(),
                    ..KeyToPath::default()
                }]),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    v
}

/// A Secret volume exposing one key as `path`, readable by the owner only (the sidecar's UID;
/// with fsGroup the group bit is added by the kubelet, which is why the sidecar is the only
/// container that mounts it).
fn secret_volume(volume: &str, secret: &str, key: &str, path: &str) -> Volume {
    Volume {
        name: volume.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o400),
            items: Some(vec![KeyToPath {
                key: key.to_owned(),
                path: path.to_owned(),
                ..KeyToPath::default()
            }]),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Pod Security "restricted" container security context; UID 65532 unless the pod sets a
/// non-root UID, which the sidecar then shares (so it can write where the task writes).
fn sidecar_security(pod: Option<&PodSecurityContext>) -> SecurityContext {
    let pod_uid = pod.and_then(|p| p.run_as_user).filter(|&u| u != 0);
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        run_as_user: Some(pod_uid.unwrap_or(SIDECAR_UID)),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..SecurityContext::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// The native sidecar (`restartPolicy: Always`), started first; the kubelet starts the gate
/// as soon as it runs.
fn sidecar_container(
    inputs: &[Input],
    plan: &VolumePlan,
    policy: &EffectivePolicy,
    security: SecurityContext,
) -> Container {
    let inputs_json =
        InputEntry::list_to_json(&inputs.iter().map(Input::to_entry).collect::<Vec<_>>());
    let mut envs = vec![
        env(env::INPUTS, inputs_json),
        env(env::KEY_DIR, KEY_DIR),
        env(env::ALLOWED_HOSTS, policy.allowed_hosts.join(",")),
    ];
    let mut mounts = vec![VolumeMount {
        name: KEY_VOLUME.to_owned(),
        mount_path: KEY_DIR.to_owned(),
        ..VolumeMount::default()
    }];
    mounts.extend(plan.sidecar_mounts.iter().cloned());
    if policy.ca_bundle.is_some() {
        envs.push(env(env::CA_BUNDLE, format!("{CA_DIR}/{}", pod::CA_FILE)));
        mounts.push(read_only(CA_VOLUME, CA_DIR));
    }
    if policy.token.is_some() {
        envs.push(env(
            env::TOKEN_FILE,
            format!("{AUTH_DIR}/{}", pod::TOKEN_FILE),
        ));
        mounts.push(read_only(AUTH_VOLUME, AUTH_DIR));
    }
    if policy.passports.is_some() {
        envs.push(env(
            env::PASSPORTS_FILE,
            format!("{PASSPORTS_DIR}/{}", pod::PASSPORTS_FILE),
        ));
        mounts.push(read_only(PASSPORTS_VOLUME, PASSPORTS_DIR));
    }
    if !policy.prefix_map.is_empty() {
        envs.push(env(
            env::PREFIX_MAP,
            serde_json::to_string(&policy.prefix_map).unwrap_or_else(|_| "{}".to_owned()),
        ));
    }
    if !policy.server_flavours.is_empty() {
        let entries: Vec<String> = policy
            .server_flavours
            .iter()
            .map(|(host, flavour)| format!("{host}={flavour}"))
            .collect();
        envs.push(env(env::SERVER_FLAVOURS, entries.join(",")));
    }
    if policy.allow_port {
        envs.push(env(env::DRS_ALLOW_PORT, "true"));
    }
    if policy.allow_http {
        envs.push(env(env::DRS_ALLOW_HTTP, "true"));
    }
    if let Some(max) = policy.max_plaintext_bytes {
        envs.push(env(env::MAX_PLAINTEXT_BYTES, max.to_string()));
    }
    envs.push(env(env::CONCURRENCY, policy.concurrency.to_string()));
    envs.push(env(env::LOG_FORMAT, policy.log_format.clone()));
    Container {
        name: SIDECAR_CONTAINER.to_owned(),
        image: Some(policy.image.clone()),
        image_pull_policy: policy.image_pull_policy.clone(),
        args: Some(vec!["run".to_owned()]),
        env: Some(envs),
        volume_mounts: Some(mounts),
        resources: Some(policy.resources.clone()),
        // No startup probe: the kubelet polls one only every periodSeconds (at least 1 s) and
        // would hold the gate back until then; the gate itself waits for the inputs.
        restart_policy: Some("Always".to_owned()),
        security_context: Some(security),
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Container::default()
    }
}

/// Size limit of the [`pod::EXEC_VOLUME`] emptyDir (the wrapper is about 1.5 MiB).
pub const EXEC_VOLUME_SIZE: &str = "16Mi";

/// The command line put in front of the `command` of task container `name`: `c4gh-exec
/// --notice` (it tells the sidecar when the command ended, [`c4gh_contract::exits`]), and with
/// `verdict` also `--verdict` (the command runs only on the gate's `ready`).
pub fn wrapper_prefix(name: &str, verdict: bool) -> Vec<String> {
    let mut prefix = vec![
        pod::EXEC_PATH.to_owned(),
        "--notice".to_owned(),
        exits::notice_path(name),
    ];
    if verdict {
        prefix.extend(["--verdict".to_owned(), pod::VERDICT_PATH.to_owned()]);
    }
    prefix.push("--".to_owned());
    prefix
}

/// Whether the container sets `command`, which the wrapper can then be put in front of (the
/// operator cannot know an image's entrypoint, so a container without one runs unwrapped).
fn has_command(container: &Container) -> bool {
    container.command.as_ref().is_some_and(|c| !c.is_empty())
}

/// Whether the gate hands its verdict to the wrappers instead of failing the pod: for TESK
/// executors (the pod carries `c4gh.dev/tes-task`, which the TESK webhook writes), whose TES
/// user sees only the executor container's log, and only when every task container is wrapped
/// (TESK always sets `command`). Then the wrapper prints the reason of a failed fetch into that
/// log and does not run the command.
fn hands_over_verdict(pod: &Pod, tasks: &[usize], wrapped: &[usize]) -> bool {
    let tesk = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(annotations::TES_TASK));
    tesk && tasks.len() == wrapped.len()
}

/// What the sidecar is told about the task containers: name, effective restart policy (the
/// container's own, else the pod's; `Always` when restart rules could restart it after any
/// exit or the policy is unknown) and whether it is wrapped.
fn task_containers(spec: &PodSpec, tasks: &[usize], wrapped: &[usize]) -> Vec<TaskContainer> {
    tasks
        .iter()
        .map(|&i| {
            let c = &spec.containers[i];
            let rules = c
                .restart_policy_rules
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            let policy = c
                .restart_policy
                .as_deref()
                .or(spec.restart_policy.as_deref());
            TaskContainer {
                name: c.name.clone(),
                restart_policy: if rules {
                    RestartPolicy::Always
                } else {
                    RestartPolicy::parse(policy).unwrap_or(RestartPolicy::Always)
                },
                wrapped: wrapped.contains(&i),
            }
        })
        .collect()
}

/// Puts [`wrapper_prefix`] in front of the container's command; a command that already runs
/// behind the wrapper (an injected pod seen again, perhaps by an earlier operator) gets the
/// current prefix in place of its old one.
fn wrap_command(container: &mut Container, verdict: bool) {
    let command = container.command.get_or_insert_with(Vec::new);
    let mut original = std::mem::take(command);
    if original.first().map(String::as_str) == Some(pod::EXEC_PATH)
        && let Some(end) = original.iter().position(|a| a == "--")
    {
        original.drain(..=end);
    }
    command.extend(wrapper_prefix(&container.name, verdict));
    command.extend(original);
}

/// What the gate does besides waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateMode {
    /// Nothing: no task container is wrapped.
    Plain,
    /// Copies the wrapper for the wrapped task containers ([`env::GATE_WRAPPER_DIR`]).
    CopyWrapper,
    /// Copies the wrapper and hands it the verdict ([`env::GATE_EXEC_DIR`]).
    HandOver,
}

/// The gate: an ordinary init container that waits for `Ready` and fails the pod on `Failed`;
/// it copies the wrapper into [`pod::EXEC_DIR`] unless `mode` is [`GateMode::Plain`], and with
/// [`GateMode::HandOver`] it hands the verdict to the wrapper instead of failing the pod.
fn gate_container(
    policy: &EffectivePolicy,
    security: SecurityContext,
    mode: GateMode,
) -> Container {
    let mut envs = vec![
        env(env::KEY_DIR, KEY_DIR),
        env(env::GATE_TIMEOUT, policy.gate_timeout_seconds.to_string()),
        env(env::LOG_FORMAT, policy.log_format.clone()),
    ];
    let mut mounts = vec![read_only(KEY_VOLUME, KEY_DIR)];
    let dir_env = match mode {
        GateMode::Plain => None,
        GateMode::CopyWrapper => Some(env::GATE_WRAPPER_DIR),
        GateMode::HandOver => Some(env::GATE_EXEC_DIR),
    };
    if let Some(name) = dir_env {
        envs.push(env(name, pod::EXEC_DIR));
        mounts.push(VolumeMount {
            name: pod::EXEC_VOLUME.to_owned(),
            mount_path: pod::EXEC_DIR.to_owned(),
            ..VolumeMount::default()
        });
    }
    Container {
        name: GATE_CONTAINER.to_owned(),
        image: Some(policy.image.clone()),
        image_pull_policy: policy.image_pull_policy.clone(),
        args: Some(vec!["gate".to_owned()]),
        env: Some(envs),
        volume_mounts: Some(mounts),
        resources: Some(policy.resources.clone()),
        security_context: Some(security),
        termination_message_policy: Some("File".to_owned()),
        ..Container::default()
    }
}

fn read_only(volume: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: volume.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// Replaces the volume with the same name, or appends it.
fn ensure_volume(volumes: &mut Vec<Volume>, volume: Volume) {
    match volumes.iter_mut().find(|v| v.name == volume.name) {
        Some(existing) => *existing = volume,
        None => volumes.push(volume),
    }
}

/// Replaces the mount at the same path, or appends it.
fn ensure_mount(container: &mut Container, mount: VolumeMount) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    match mounts.iter_mut().find(|m| m.mount_path == mount.mount_path) {
        Some(existing) => *existing = mount,
        None => mounts.push(mount),
    }
}

/// Sets an environment variable, replacing any earlier definition of the same name.
fn ensure_env(container: &mut Container, name: &str, value: &str) {
    let envs = container.env.get_or_insert_with(Vec::new);
    match envs.iter_mut().find(|e| e.name == name) {
        Some(existing) => *existing = env(name, value),
        None => envs.push(env(name, value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::effective::OperatorDefaults;
    use crate::policy::Crypt4ghPolicy;

    const POLICY: &str = include_str!("../tests/golden/policy.yaml");
    const INPUTS: [&str; 5] = [
        include_str!("../tests/golden/job-pod.input.yaml"),
        include_str!("../tests/golden/tesk-executor.input.yaml"),
        include_str!("../tests/golden/mesh-and-init.input.yaml"),
        include_str!("../tests/golden/no-inputs.input.yaml"),
        include_str!("../tests/golden/second-pass.input.yaml"),
    ];

    fn policy() -> EffectivePolicy {
        let p: Crypt4ghPolicy = serde_yaml_ng::from_str(POLICY).unwrap();
        EffectivePolicy::from_spec("default", &p.spec, &OperatorDefaults::default()).unwrap()
    }

    /// The typed patch has the operations of `json_patch::diff` of the whole pods, in order,
    /// and turns the input into the injected pod.
    fn assert_patch_matches_full_diff(pod: &Pod) {
        let injection = injection(pod, &policy()).unwrap().unwrap();
        let after = serde_json::to_value(injection.clone().apply(pod)).unwrap();
        let before = serde_json::to_value(pod).unwrap();
        let typed: json_patch::Patch = serde_json::from_slice(&injection.patch(pod)).unwrap();
        assert_eq!(typed, json_patch::diff(&before, &after));
        let mut patched = before;
        json_patch::patch(&mut patched, &typed).unwrap();
        assert_eq!(patched, after);
    }

    #[test]
    fn patch_equals_the_full_diff_for_every_golden_input() {
        for input in INPUTS {
            assert_patch_matches_full_diff(&serde_yaml_ng::from_str(input).unwrap());
        }
    }

    #[test]
    fn patch_of_an_injected_pod_is_empty() {
        let pod: Pod = serde_yaml_ng::from_str(INPUTS[1]).unwrap();
        let injected = mutate(&pod, &policy()).unwrap();
        let again = injection(&injected, &policy()).unwrap().unwrap();
        assert_eq!(again.patch(&injected), b"[]");
    }

    #[test]
    fn patch_removes_stale_duplicate_init_containers_and_keeps_existing_fields() {
        let mut pod: Pod = serde_yaml_ng::from_str(INPUTS[1]).unwrap();
        let spec = pod.spec.as_mut().unwrap();
        let named = |name: &str| Container {
            name: name.to_owned(),
            image: Some("old".to_owned()),
            ..Container::default()
        };
        spec.init_containers = Some(vec![
            named(GATE_CONTAINER),
            named("setup"),
            named(SIDECAR_CONTAINER),
            named(GATE_CONTAINER),
        ]);
        spec.security_context = Some(PodSecurityContext {
            run_as_user: Some(1000),
            ..PodSecurityContext::default()
        });
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: KEY_VOLUME.to_owned(),
            ..Volume::default()
        });
        assert_patch_matches_full_diff(&pod);
    }

    /// A policy's passports Secret becomes a volume mounted by the sidecar alone: no task, init
    /// or gate container mounts it, reads it into env, or is told its path.
    #[test]
    fn passports_secret_is_mounted_only_into_the_sidecar() {
        let mut p: Crypt4ghPolicy = serde_yaml_ng::from_str(POLICY).unwrap();
        p.spec
            .auth
            .get_or_insert_with(Default::default)
            .passports_secret = Some(crate::policy::SecretKeyRef {
            name: "alice-passports".to_owned(),
            key: None,
        });
        let policy =
            EffectivePolicy::from_spec("default", &p.spec, &OperatorDefaults::default()).unwrap();
        for input in INPUTS {
            let pod: Pod = serde_yaml_ng::from_str(input).unwrap();
            let injected = mutate(&pod, &policy).unwrap();
            let spec = injected.spec.unwrap();
            let volume = spec
                .volumes
                .iter()
                .flatten()
                .find(|v| v.name == PASSPORTS_VOLUME)
                .expect("the passports volume");
            let secret = volume.secret.as_ref().unwrap();
            assert_eq!(secret.secret_name.as_deref(), Some("alice-passports"));
            assert_eq!(secret.default_mode, Some(0o400));
            let containers = spec
                .init_containers
                .iter()
                .flatten()
                .chain(spec.containers.iter());
            let mut sidecars = 0;
            for container in containers {
                let text = serde_json::to_string(container).unwrap();
                let mounts_it = container
                    .volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.name == PASSPORTS_VOLUME);
                if container.name == SIDECAR_CONTAINER {
                    sidecars += 1;
                    assert!(mounts_it);
                    assert!(text.contains(PASSPORTS_DIR));
                } else {
                    assert!(!mounts_it, "{} mounts the passports", container.name);
                    for needle in ["alice-passports", PASSPORTS_DIR, PASSPORTS_VOLUME] {
                        assert!(
                            !text.contains(needle),
                            "{} mentions {needle}: {text}",
                            container.name
                        );
                    }
                }
            }
            assert_eq!(sidecars, 1);
        }
    }

    fn gate_of(pod: &Pod) -> Container {
        pod.spec
            .as_ref()
            .unwrap()
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == GATE_CONTAINER)
            .cloned()
            .unwrap()
    }

    fn sidecar_of(pod: &Pod) -> Container {
        pod.spec.as_ref().unwrap().init_containers.as_ref().unwrap()[0].clone()
    }

    fn env_value(container: &Container, name: &str) -> Option<String> {
        container
            .env
            .iter()
            .flatten()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    }

    fn listed(pod: &Pod) -> Vec<TaskContainer> {
        let json = env_value(&sidecar_of(pod), env::TASK_CONTAINERS).unwrap();
        TaskContainer::parse_list(&json).unwrap()
    }

    /// Every task container with a `command` runs it behind `c4gh-exec --notice` (with
    /// `--verdict` in TESK executors, whose gate hands over its verdict), once; the sidecar is
    /// told every task container, its restart policy and whether it is wrapped, and reads the
    /// notices from a memory-backed volume the wrapped containers write.
    #[test]
    fn task_containers_with_a_command_run_behind_the_wrapper() {
        let tesk: Pod = serde_yaml_ng::from_str(INPUTS[1]).unwrap();
        let injected = mutate(&tesk, &policy()).unwrap();
        let task = &injected.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            task.command.clone().unwrap(),
            [
                pod::EXEC_PATH,
                "--notice",
                &exits::notice_path(&task.name),
                "--verdict",
                pod::VERDICT_PATH,
                "--",
                "sha256sum",
                "/data/in/sample.txt"
            ],
            "the captured executor's command, behind the wrapper"
        );
        let mounts: Vec<(String, Option<bool>)> = task
            .volume_mounts
            .iter()
            .flatten()
            .filter(|m| m.name == pod::EXEC_VOLUME || m.name == pod::EXIT_VOLUME)
            .map(|m| (m.mount_path.clone(), m.read_only))
            .collect();
        assert_eq!(
            mounts,
            [
                (pod::EXEC_DIR.to_owned(), Some(true)),
                (pod::EXIT_DIR.to_owned(), None)
            ]
        );
        let gate = gate_of(&injected);
        assert_eq!(
            env_value(&gate, env::GATE_EXEC_DIR).as_deref(),
            Some(pod::EXEC_DIR)
        );
        assert_eq!(env_value(&gate, env::GATE_WRAPPER_DIR), None);
        let sidecar = sidecar_of(&injected);
        assert_eq!(
            env_value(&sidecar, env::EXIT_DIR).as_deref(),
            Some(pod::EXIT_DIR)
        );
        assert!(
            sidecar
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == pod::EXIT_VOLUME
                    && m.mount_path == pod::EXIT_DIR
                    && m.read_only == Some(true))
        );
        assert_eq!(
            listed(&injected),
            [TaskContainer {
                name: task.name.clone(),
                restart_policy: RestartPolicy::Never,
                wrapped: true
            }]
        );
        let exit_volume = injected
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == pod::EXIT_VOLUME)
            .and_then(|v| v.empty_dir.clone())
            .unwrap();
        assert_eq!(exit_volume.medium.as_deref(), Some("Memory"));
        assert_eq!(
            mutate(&injected, &policy()).unwrap(),
            injected,
            "wrapped once"
        );

        // A pod injected by an earlier operator (`--verdict` only) gets the current prefix.
        let mut earlier = injected.clone();
        earlier.spec.as_mut().unwrap().containers[0].command = Some(
            [
                pod::EXEC_PATH,
                "--verdict",
                pod::VERDICT_PATH,
                "--",
                "sha256sum",
                "/data/in/sample.txt",
            ]
            .map(str::to_owned)
            .to_vec(),
        );
        assert_eq!(mutate(&earlier, &policy()).unwrap(), injected);

        // Without a command: no wrapper, the gate fails the pod, the sidecar waits for SIGTERM.
        let mut no_command = tesk.clone();
        no_command.spec.as_mut().unwrap().containers[0].command = None;
        let injected = mutate(&no_command, &policy()).unwrap();
        let gate = gate_of(&injected);
        assert_eq!(env_value(&gate, env::GATE_EXEC_DIR), None);
        assert_eq!(env_value(&gate, env::GATE_WRAPPER_DIR), None);
        assert_eq!(injected.spec.as_ref().unwrap().containers[0].command, None);
        assert!(!listed(&injected)[0].wrapped);
        assert_eq!(env_value(&sidecar_of(&injected), env::EXIT_DIR), None);
        assert!(
            !injected
                .spec
                .as_ref()
                .unwrap()
                .volumes
                .iter()
                .flatten()
                .any(|v| v.name == pod::EXEC_VOLUME || v.name == pod::EXIT_VOLUME)
        );

        // A plain pod: the notice, no verdict; the gate copies the wrapper and still fails the
        // pod on a failed input.
        let plain: Pod = serde_yaml_ng::from_str(INPUTS[0]).unwrap();
        let injected = mutate(&plain, &policy()).unwrap();
        let gate = gate_of(&injected);
        assert_eq!(env_value(&gate, env::GATE_EXEC_DIR), None);
        assert_eq!(
            env_value(&gate, env::GATE_WRAPPER_DIR).as_deref(),
            Some(pod::EXEC_DIR)
        );
        let before = &plain.spec.as_ref().unwrap().containers[0];
        let after = &injected.spec.as_ref().unwrap().containers[0];
        let mut expected = wrapper_prefix(&before.name, false);
        expected.extend(before.command.clone().unwrap());
        assert_eq!(after.command.clone().unwrap(), expected);
        assert!(!expected.iter().any(|a| a == "--verdict"));
        assert_eq!(after.args, before.args, "args stay the command's");
    }

    /// The restart policy the sidecar is told: the container's own, else the pod's; `Always`
    /// (never ended for good) with restart rules, or for a policy Kubernetes does not know.
    #[test]
    fn the_sidecar_is_told_each_containers_effective_restart_policy() {
        let mut pod: Pod = serde_yaml_ng::from_str(INPUTS[0]).unwrap();
        let spec = pod.spec.as_mut().unwrap();
        spec.restart_policy = Some("OnFailure".to_owned());
        let first = spec.containers[0].clone();
        let named = |name: &str| Container {
            name: name.to_owned(),
            ..first.clone()
        };
        let own = Container {
            restart_policy: Some("Never".to_owned()),
            ..named("own")
        };
        let ruled: Container = serde_json::from_value(serde_json::json!({
            "name": "ruled",
            "image": "busybox",
            "command": ["true"],
            "restartPolicy": "Never",
            "restartPolicyRules": [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}]
        }))
        .unwrap();
        let unwrapped = Container {
            command: None,
            args: Some(vec!["run".to_owned()]),
            ..named("unwrapped")
        };
        spec.containers.extend([own, ruled, unwrapped]);
        let injected = mutate(&pod, &policy()).unwrap();
        let got: Vec<(String, RestartPolicy, bool)> = listed(&injected)
            .into_iter()
            .map(|c| (c.name, c.restart_policy, c.wrapped))
            .collect();
        assert_eq!(
            got,
            [
                (first.name.clone(), RestartPolicy::OnFailure, true),
                ("own".to_owned(), RestartPolicy::Never, true),
                ("ruled".to_owned(), RestartPolicy::Always, true),
                ("unwrapped".to_owned(), RestartPolicy::OnFailure, false),
            ]
        );
        let containers = &injected.spec.as_ref().unwrap().containers;
        assert_eq!(containers[3].command, None);
        assert_eq!(containers[3].args, Some(vec!["run".to_owned()]));
    }

    #[test]
    fn not_opted_in_has_no_injection() {
        let pod: Pod =
            serde_yaml_ng::from_str(include_str!("../tests/golden/not-opted-in.input.yaml"))
                .unwrap();
        assert_eq!(injection(&pod, &policy()).unwrap(), None);
        assert_eq!(mutate(&pod, &policy()).unwrap(), pod);
    }
}
