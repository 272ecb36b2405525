//! Executes a stored pod spec on this machine the way a kubelet would, without containers:
//! every volume becomes a directory, every container a process with the spec's args and env.
//!
//! - `emptyDir` with `medium: Memory` → a directory on tmpfs (`/dev/shm`) when available, else a
//!   temporary directory ([`PodRunner::memory_backed`] says which); other `emptyDir` and
//!   `persistentVolumeClaim` volumes → temporary directories (`subPath` → a subdirectory);
//!   `configMap` and `secret` volumes → files written from the objects read through the API.
//! - Processes cannot see container paths, so absolute paths in env values (and the `path` of
//!   each entry in `C4GH_INPUTS`) are translated through the container's `volumeMounts` to the
//!   directories above; the sidecar's `C4GH_INPUT_ROOTS` is set to its mounts (in a container it
//!   reads them from its mount table), and the gate's termination log is a file.
//! - Images are not pulled: the sidecar image runs the `c4gh-sidecar` binary of this workspace;
//!   the task container runs the program the test gives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::time::{Duration, Instant};

use c4gh_contract::{InputEntry, env, pod};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
use kube::{Api, Client};
use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::Error;
use crate::process::Supervised;

/// The volumes of one pod, materialised as directories.
#[derive(Debug)]
pub struct PodRunner {
    pod: Pod,
    sidecar_bin: PathBuf,
    volumes: BTreeMap<String, PathBuf>,
    memory_backed: BTreeMap<String, bool>,
    scratch: TempDir,
    shm: Option<TempDir>,
}

/// How the gate ended.
#[derive(Debug)]
pub struct GateOutcome {
    /// Its exit status.
    pub status: ExitStatus,
    /// What it wrote to its termination log (`/dev/termination-log` in a container).
    pub termination_message: String,
}

impl PodRunner {
    /// Materialises the volumes of `pod` (reading ConfigMaps and Secrets through `client`).
    /// `sidecar_bin` is the `c4gh-sidecar` binary that stands in for the sidecar image.
    pub async fn prepare(client: &Client, pod: &Pod, sidecar_bin: &Path) -> Result<Self, Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let scratch = tempfile::Builder::new()
            .prefix("c4gh-e2e-pod-")
            .tempdir()
            .map_err(|source| io("creating the pod's scratch directory", source))?;
        let shm = tempfile::Builder::new()
            .prefix("c4gh-e2e-pod-")
            .tempdir_in("/dev/shm")
            .ok();
        let mut runner = PodRunner {
            pod: pod.clone(),
            sidecar_bin: sidecar_bin.to_owned(),
            volumes: BTreeMap::new(),
            memory_backed: BTreeMap::new(),
            scratch,
            shm,
        };
        let volumes = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        for volume in &volumes {
            runner.materialise(client, &namespace, volume).await?;
        }
        Ok(runner)
    }

    async fn materialise(
        &mut self,
        client: &Client,
        namespace: &str,
        volume: &Volume,
    ) -> Result<(), Error> {
        let in_memory = volume
            .empty_dir
            .as_ref()
            .is_some_and(|e| e.medium.as_deref() == Some("Memory"));
        let base = match (&self.shm, in_memory) {
            (Some(shm), true) => shm.path().to_owned(),
            _ => self.scratch.path().to_owned(),
        };
        let dir = base.join("volumes").join(&volume.name);
        mkdir(&dir)?;
        if let Some(source) = &volume.config_map {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let cm = api.get(&source.name).await?;
            let data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            write_items(&dir, &data, source.items.as_deref(), &volume.name)?;
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = api.get(&name).await?;
            let data: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            write_items(&dir, &data, source.items.as_deref(), &volume.name)?;
        } else if volume.empty_dir.is_none() && volume.persistent_volume_claim.is_none() {
            return Err(Error::Unexpected(format!(
                "volume {:?} has a type the pod runner does not emulate (emptyDir, \
                 persistentVolumeClaim, configMap and secret are supported)",
                volume.name
            )));
        }
        self.memory_backed
            .insert(volume.name.clone(), in_memory && self.shm.is_some());
        self.volumes.insert(volume.name.clone(), dir);
        Ok(())
    }

    /// The directory standing in for volume `name`.
    pub fn volume_dir(&self, name: &str) -> Option<&Path> {
        self.volumes.get(name).map(PathBuf::as_path)
    }

    /// Whether volume `name` (a memory-backed emptyDir) really is on tmpfs here.
    pub fn memory_backed(&self, name: &str) -> bool {
        self.memory_backed.get(name).copied().unwrap_or(false)
    }

    /// The container named `name` (init or main).
    pub fn container(&self, name: &str) -> Result<&Container, Error> {
        let spec = self.pod.spec.as_ref();
        spec.and_then(|s| s.init_containers.as_ref())
            .into_iter()
            .flatten()
            .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
            .find(|c| c.name == name)
            .ok_or_else(|| Error::Unexpected(format!("the pod has no container {name:?}")))
    }

    /// The host path behind container path `path` in `container`, through its volume mounts.
    pub fn host_path(&self, container: &Container, path: &str) -> Option<PathBuf> {
        let mounts = container.volume_mounts.as_deref().unwrap_or_default();
        let mount = mounts
            .iter()
            .filter(|m| Path::new(path).starts_with(&m.mount_path))
            .max_by_key(|m| m.mount_path.len())?;
        let mut dir = self.volumes.get(&mount.name)?.clone();
        if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            dir.push(sub);
        }
        let rest = Path::new(path).strip_prefix(&mount.mount_path).ok()?;
        Some(if rest.as_os_str().is_empty() {
            dir
        } else {
            dir.join(rest)
        })
    }

    /// The container's env with container paths translated to host paths.
    pub fn env(&self, container: &Container) -> Result<Vec<(String, String)>, Error> {
        let mut env = Vec::new();
        for var in container.env.as_deref().unwrap_or_default() {
            if var.value_from.is_some() {
                return Err(Error::Unexpected(format!(
                    "env {} of container {} uses valueFrom, which the pod runner does not emulate",
                    var.name, container.name
                )));
            }
            let value = var.value.clone().unwrap_or_default();
            let value = if var.name == env::INPUTS {
                self.translate_inputs(container, &value)?
            } else if value.starts_with('/') {
                self.host_path(container, &value)
                    .map_or(value, |p| p.display().to_string())
            } else {
                value
            };
            env.push((var.name.clone(), value));
        }
        Ok(env)
    }

    fn translate_inputs(&self, container: &Container, json: &str) -> Result<String, Error> {
        let mut inputs = InputEntry::parse_list(json).map_err(|err| {
            Error::Unexpected(format!(
                "{} of {} is not a JSON input list: {err}",
                env::INPUTS,
                container.name
            ))
        })?;
        for input in &mut inputs {
            let host = self.host_path(container, &input.path).ok_or_else(|| {
                Error::Unexpected(format!(
                    "input path {} is under no volume mount of container {}",
                    input.path, container.name
                ))
            })?;
            input.path = host.display().to_string();
        }
        Ok(InputEntry::list_to_json(&inputs))
    }

    fn sidecar_command(&self, container: &Container, args: &[String]) -> Result<Command, Error> {
        let mut command = Command::new(&self.sidecar_bin);
        command.env_clear().args(args).envs(self.env(container)?);
        // In a container the sidecar finds its input roots in its mount table.
        let roots: Vec<String> = container
            .volume_mounts
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|m| !m.mount_path.starts_with(pod::RESERVED_DIR))
            .filter_map(|m| self.host_path(container, &m.mount_path))
            .map(|p| p.display().to_string())
            .collect();
        command.env(env::INPUT_ROOTS, roots.join(","));
        for mount in container.volume_mounts.as_deref().unwrap_or_default() {
            if let Some(dir) = self.host_path(container, &mount.mount_path) {
                mkdir(&dir)?;
            }
        }
        Ok(command)
    }

    /// Starts the native sidecar (init container `name`, `restartPolicy: Always`) with its args.
    pub fn start_sidecar(&self, name: &str) -> Result<Supervised, Error> {
        let container = self.container(name)?;
        let args = container.args.clone().unwrap_or_default();
        let command = self.sidecar_command(container, &args)?;
        Supervised::spawn(
            name,
            command,
            &self.scratch.path().join(format!("{name}.log")),
        )
    }

    /// Runs the sidecar's `startupProbe` (exec) every `periodSeconds` until it succeeds, as the
    /// kubelet does before starting the next container.
    pub async fn wait_startup_probe(
        &self,
        name: &str,
        sidecar: &mut Supervised,
        timeout: Duration,
    ) -> Result<(), Error> {
        let container = self.container(name)?;
        let probe = container
            .startup_probe
            .as_ref()
            .and_then(|p| p.exec.as_ref())
            .and_then(|e| e.command.clone())
            .ok_or_else(|| {
                Error::Unexpected(format!("container {name} has no exec startupProbe"))
            })?;
        let period = container
            .startup_probe
            .as_ref()
            .and_then(|p| p.period_seconds)
            .map_or(1, |s| u64::try_from(s).unwrap_or(1));
        // The probe's argv[0] is the sidecar binary inside the image.
        let args = probe.get(1..).unwrap_or_default().to_vec();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = sidecar.try_exit_status()? {
                return Err(Error::Exited {
                    name: name.to_owned(),
                    status: status.to_string(),
                    log_tail: sidecar.log_tail(30),
                });
            }
            let status = self
                .sidecar_command(container, &args)?
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .map_err(|source| io("running the startup probe", source))?;
            if status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("the startupProbe of {name}"),
                    log_tail: sidecar.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_secs(period)).await;
        }
    }

    /// Runs an ordinary init container of the sidecar image (the gate) to completion.
    pub async fn run_gate(&self, name: &str, timeout: Duration) -> Result<GateOutcome, Error> {
        let container = self.container(name)?;
        let args = container.args.clone().unwrap_or_default();
        let log = self.scratch.path().join(format!("{name}.termination-log"));
        let mut command = self.sidecar_command(container, &args)?;
        command.env(env::TERMINATION_LOG, &log);
        let mut gate = Supervised::spawn(
            name,
            command,
            &self.scratch.path().join(format!("{name}.log")),
        )?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = gate.try_exit_status()? {
                break status;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("init container {name} to finish"),
                    log_tail: gate.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Ok(GateOutcome {
            status,
            termination_message: std::fs::read_to_string(&log).unwrap_or_default(),
        })
    }

    /// Runs `program args` as main container `name`: only the container's env (translated), plus
    /// `PATH`.
    pub fn run_task(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        path: &str,
    ) -> Result<Output, Error> {
        let container = self.container(name)?;
        Command::new(program)
            .env_clear()
            .env("PATH", path)
            .envs(self.env(container)?)
            .args(args)
            .output()
            .map_err(|source| io(&format!("running task container {name}"), source))
    }
}

/// Sends SIGTERM to the sidecar, as the kubelet does after the last main container exited, and
/// waits for it.
pub fn terminate(sidecar: &mut Supervised, grace: Duration) -> Result<Option<ExitStatus>, Error> {
    sidecar.signal(Signal::SIGTERM)?;
    sidecar.wait_timeout(grace)
}

fn write_items(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&[k8s_openapi::api::core::v1::KeyToPath]>,
    volume: &str,
) -> Result<(), Error> {
    let pairs: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in pairs {
        let bytes = data.get(&key).ok_or_else(|| {
            Error::Unexpected(format!(
                "volume {volume:?}: key {key:?} not found in its source"
            ))
        })?;
        let target = dir.join(&path);
        std::fs::write(&target, bytes)
            .map_err(|source| io(&format!("writing {}", target.display()), source))?;
    }
    Ok(())
}

fn mkdir(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)
        .map_err(|source| io(&format!("creating {}", dir.display()), source))
}

fn io(context: &str, source: std::io::Error) -> Error {
    Error::Io {
        context: context.to_owned(),
        source,
    }
}
