//! A real node beside the local control plane: `containerd` (with Debian's `runc`), `kubelet`,
//! `kube-scheduler` and `kube-controller-manager` next to etcd and kube-apiserver, running the
//! project's OCI images (`cargo xtask images`, imported with `ctr`).
//!
//! What this machine needs, and how the harness does it (docs/e2e.md, "The node"):
//! - Root. The kubelet and containerd manage mounts, cgroups and namespaces.
//! - cgroup v1 is accepted (`failCgroupV1: false`); without `CAP_SYS_RESOURCE` no process may
//!   lower its `oom_score_adj`, so containerd clamps it (`restrict_oom_score_adj`).
//! - Loopback only. The node is called `localhost`: the apiserver dials the kubelet by host name
//!   (`--kubelet-preferred-address-types=Hostname`) on 127.0.0.1, where the kubelet and
//!   containerd's streaming server listen; `/etc/hosts` is not touched. The CNI configuration
//!   holds only the `loopback` plugin, so pods run with `hostNetwork: true` and probes are exec
//!   probes; no bridge, no route, no address is added anywhere.
//! - One node per machine: the kubelet hard-codes `/var/lib/kubelet/device-plugins`,
//!   `/var/log/containers` and the `/kubepods` cgroups, and runc keeps its state in
//!   `/run/containerd`. [`Node::start`] takes an exclusive lock on [`LOCK_FILE`], so test
//!   binaries, the demo and the benchmark wait for each other.
//! - Host state is restored on drop, also when a test panics: the processes it started (by PID),
//!   the containers and their shims, every mount under its directories, the `kubepods` cgroups,
//!   the directories it created outside its own (`/run/containerd`, `/var/lib/kubelet`,
//!   `/var/log/containers`, `/var/log/pods`, `/var/lib/cni`), and the three sysctls the kubelet
//!   sets (`vm.overcommit_memory`, `kernel.panic`, `kernel.panic_on_oops`).
//!   [`HostSnapshot::leftovers`] lists whatever is still there.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use nix::mount::{MntFlags, umount2};
use serde_json::json;
use tempfile::TempDir;

use crate::control_plane::{free_port, write_kubeconfig};
use crate::process::Supervised;
use crate::{ControlPlane, Error, Options};

/// The node's name. `localhost` resolves to 127.0.0.1 without any change to `/etc/hosts`.
pub const NODE_NAME: &str = "localhost";
/// Held (exclusive `flock`) while a node runs: only one kubelet per machine.
pub const LOCK_FILE: &str = "/tmp/c4gh-e2e-node.lock";
/// The registry part of the locally built images (same as `xtask/src/images.rs`).
pub const IMAGE_REGISTRY: &str = "c4gh.local";
/// The tag of the locally built images (same as `xtask/src/images.rs`).
pub const IMAGE_TAG: &str = "dev";
/// The images `cargo xtask images` builds, by archive name.
pub const IMAGES: &[&str] = &[
    "pause",
    "c4gh-operator",
    "c4gh-sidecar",
    "c4gh-drs-server",
    "c4gh-task",
    "tesk-taskmaster",
    "tesk-filer",
];
/// The sysctls the kubelet changes (with `protectKernelDefaults: false`), restored on drop.
const SYSCTLS: &[&str] = &[
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
];
/// Directories outside the node's own that the kubelet, containerd, runc or CNI create.
const HOST_DIRS: &[&str] = &[
    "/run/containerd",
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
];
/// The cgroup v1 hierarchies and the unified one.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// How long the node gets to become `Ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The full name of a locally built image, e.g. `c4gh.local/c4gh-sidecar:dev`.
pub fn image(name: &str) -> String {
    format!("{IMAGE_REGISTRY}/{name}:{IMAGE_TAG}")
}

/// Where `cargo xtask images` writes the archives: `target/images/`, found from the running
/// executable (`target/<profile>/deps/...`).
pub fn images_dir() -> Result<PathBuf, Error> {
    let exe = std::env::current_exe().map_err(|source| Error::Io {
        context: "locating the running executable".into(),
        source,
    })?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.pop();
    Ok(dir.join("images"))
}

/// What the host looked like before the node started, to restore it and to find leftovers.
#[derive(Debug, Clone)]
pub struct HostSnapshot {
    sysctls: Vec<(String, String)>,
    absent_dirs: Vec<PathBuf>,
    state_dir: PathBuf,
    containerd_socket: PathBuf,
    pids: Vec<u32>,
}

impl HostSnapshot {
    fn take(state_dir: &Path, containerd_socket: &Path) -> Result<Self, Error> {
        let mut sysctls = Vec::new();
        for name in SYSCTLS {
            let path = Path::new("/proc/sys").join(name);
            let value = fs::read_to_string(&path).map_err(|source| Error::Io {
                context: format!("reading {}", path.display()),
                source,
            })?;
            sysctls.push(((*name).to_owned(), value.trim().to_owned()));
        }
        let absent_dirs = HOST_DIRS
            .iter()
            .map(PathBuf::from)
            .filter(|dir| !dir.exists())
            .collect();
        Ok(HostSnapshot {
            sysctls,
            absent_dirs,
            state_dir: state_dir.to_owned(),
            containerd_socket: containerd_socket.to_owned(),
            pids: Vec::new(),
        })
    }

    /// Everything the node left behind: processes, shims, mounts, cgroups, directories that did
    /// not exist before, sysctls that differ. Empty after a clean teardown.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        for pid in &self.pids {
            if Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(*pid) {
                found.push(format!("process {pid} still runs"));
            }
        }
        for pid in shim_pids(&self.containerd_socket) {
            found.push(format!("containerd shim {pid} still runs"));
        }
        for mount in self.own_mounts() {
            found.push(format!("mount {} is still mounted", mount.display()));
        }
        for cgroup in kubepods_cgroups() {
            found.push(format!("cgroup {} still exists", cgroup.display()));
        }
        for dir in &self.absent_dirs {
            if dir.exists() {
                found.push(format!("{} was created and not removed", dir.display()));
            }
        }
        if self.state_dir.exists() {
            found.push(format!("{} still exists", self.state_dir.display()));
        }
        for (name, value) in &self.sysctls {
            let now = fs::read_to_string(Path::new("/proc/sys").join(name)).unwrap_or_default();
            if now.trim() != value {
                found.push(format!(
                    "sysctl {} is {} (was {value})",
                    name.replace('/', "."),
                    now.trim()
                ));
            }
        }
        found
    }

    /// Mount points under the node's state directory or a host directory it created, deepest
    /// first.
    fn own_mounts(&self) -> Vec<PathBuf> {
        let mut roots = vec![self.state_dir.clone()];
        roots.extend(self.absent_dirs.iter().cloned());
        let mut mounts: Vec<PathBuf> = mount_points()
            .into_iter()
            .filter(|m| roots.iter().any(|root| m.starts_with(root)))
            .collect();
        mounts.sort();
        mounts.dedup();
        mounts.reverse();
        mounts
    }
}

/// A running node. Drop it to stop everything and restore the host.
#[derive(Debug)]
pub struct Node {
    kubelet: Option<Supervised>,
    containerd: Option<Supervised>,
    scheduler: Option<Supervised>,
    plane: Option<ControlPlane>,
    snapshot: HostSnapshot,
    ctr: PathBuf,
    socket: PathBuf,
    dir: Option<TempDir>,
    _lock: File,
}

impl Node {
    /// Starts the control plane (with the controller-manager), containerd, the kubelet and the
    /// scheduler; waits until the node is `Ready`, removes its `not-ready` taint and imports the
    /// images. Fails, naming the fix, when not root, when a binary or image archive is missing,
    /// or when an earlier node left state behind.
    pub async fn start() -> Result<Self, Error> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Unexpected(
                "the node (kubelet, containerd) needs root; run the tests as root".into(),
            ));
        }
        let bins = testkit::control_plane_dir();
        let kubelet_bin = require_file(&bins.join("kubelet"), "kubelet", "cargo xtask setup")?;
        let containerd_bin =
            require_file(&bins.join("containerd"), "containerd", "cargo xtask setup")?;
        let scheduler_bin = require_file(
            &bins.join("kube-scheduler"),
            "kube-scheduler",
            "cargo xtask setup",
        )?;
        let ctr = require_file(&bins.join("ctr"), "ctr", "cargo xtask setup")?;
        require_file(
            &bins.join("containerd-shim-runc-v2"),
            "containerd-shim-runc-v2",
            "cargo xtask setup",
        )?;
        let runc = require_file(Path::new("/usr/sbin/runc"), "runc", "cargo xtask setup")?;
        let loopback = require_file(
            Path::new("/usr/lib/cni/loopback"),
            "the CNI loopback plugin (Debian package containernetworking-plugins)",
            "cargo xtask setup",
        )?;
        let images = images_dir()?;
        for name in IMAGES {
            require_file(
                &images.join(format!("{name}.oci.tar")),
                &format!("image archive {name}"),
                "cargo xtask images",
            )?;
        }

        let lock = File::create(LOCK_FILE).map_err(|source| Error::Io {
            context: format!("creating {LOCK_FILE}"),
            source,
        })?;
        lock.lock().map_err(|source| Error::Io {
            context: format!("locking {LOCK_FILE}"),
            source,
        })?;
        let stale = kubepods_cgroups();
        if !stale.is_empty() {
            return Err(Error::Unexpected(format!(
                "an earlier node left cgroups behind ({}); remove them (rmdir, deepest first) \
                 before starting a node",
                stale
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }

        let dir = tempfile::Builder::new()
            .prefix("c4gh-e2e-node-")
            .tempdir()
            .map_err(|source| Error::Io {
                context: "creating the node's temporary directory".into(),
                source,
            })?;
        let root = dir.path().to_owned();
        let socket = root.join("containerd").join("containerd.sock");
        let snapshot = HostSnapshot::take(&root, &socket)?;
        let mut node = Node {
            kubelet: None,
            containerd: None,
            scheduler: None,
            plane: None,
            snapshot,
            ctr,
            socket,
            dir: Some(dir),
            _lock: lock,
        };
        if std::env::var_os("C4GH_E2E_KEEP").is_some_and(|v| v == "1")
            && let Some(dir) = node.dir.as_mut()
        {
            dir.disable_cleanup(true);
        }

        let plane = ControlPlane::start(Options {
            controller_manager: true,
            kubelet: true,
            ..Options::default()
        })
        .await?;
        node.snapshot.pids.extend(plane.pids());
        node.plane = Some(plane);
        node.start_containerd(&containerd_bin, &runc, &loopback)?;
        node.import_images(&images)?;
        node.start_kubelet(&kubelet_bin)?;
        node.start_scheduler(&scheduler_bin)?;
        node.wait_ready().await?;
        Ok(node)
    }

    /// The control plane the node is registered with.
    pub fn plane(&self) -> &ControlPlane {
        self.plane
            .as_ref()
            .unwrap_or_else(|| unreachable!("the plane is set until drop"))
    }

    /// A new admin client (one per tokio runtime).
    pub async fn client(&self) -> Result<Client, Error> {
        self.plane().client().await
    }

    /// What the host looked like before, for [`HostSnapshot::leftovers`] after drop.
    pub fn snapshot(&self) -> HostSnapshot {
        self.snapshot.clone()
    }

    /// The kubelet's root directory (pod volumes are under `pods/UID/volumes/`).
    pub fn kubelet_dir(&self) -> PathBuf {
        self.root().join("kubelet")
    }

    /// The last lines of the node's logs (kubelet, containerd, scheduler), for failures.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for process in [&self.kubelet, &self.containerd, &self.scheduler]
            .into_iter()
            .flatten()
        {
            out.push_str(&format!(
                "--- {} ({}):\n{}\n",
                process.name(),
                process.log_path().display(),
                process.log_tail(lines)
            ));
        }
        out
    }

    /// Runs `ctr` against the node's containerd in the CRI's namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String, Error> {
        let mut command = Command::new(&self.ctr);
        command
            .arg(format!("--address={}", self.socket.display()))
            .arg("--namespace=k8s.io")
            .args(args);
        run(command)
    }

    fn root(&self) -> PathBuf {
        self.snapshot.state_dir.clone()
    }

    fn start_containerd(&mut self, bin: &Path, runc: &Path, loopback: &Path) -> Result<(), Error> {
        let root = self.root();
        let cni_conf = mkdir(&root.join("cni").join("net.d"))?;
        write(
            &cni_conf.join("10-loopback.conflist"),
            r#"{"cniVersion": "1.0.0", "name": "c4gh-loopback", "plugins": [{"type": "loopback"}]}"#,
        )?;
        let cni_bin = loopback.parent().unwrap_or(Path::new("/usr/lib/cni"));
        let dir = mkdir(&root.join("containerd"))?;
        let config = format!(
            r#"version = 3
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.blockfile", "io.containerd.snapshotter.v1.erofs"]
[grpc]
  address = "{socket}"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{pause}"
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  # No CAP_SYS_RESOURCE here: a sandbox's oom_score_adj of -998 cannot be set; clamp every
  # oom_score_adj to containerd's own.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{runc}"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{cni_bin}"]
    conf_dir = "{cni_conf}"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
"#,
            root = root.display(),
            socket = self.socket.display(),
            pause = image("pause"),
            runc = runc.display(),
            cni_bin = cni_bin.display(),
            cni_conf = cni_conf.display(),
        );
        let config_path = dir.join("config.toml");
        write(&config_path, &config)?;
        let mut command = Command::new(bin);
        command.arg(format!("--config={}", config_path.display()));
        // The shims containerd starts find themselves (and runc) through PATH.
        let path = std::env::var("PATH").unwrap_or_default();
        let bins = bin.parent().unwrap_or(Path::new("/"));
        command.env("PATH", format!("{}:{path}", bins.display()));
        let mut process = Supervised::spawn("containerd", command, &root.join("containerd.log"))?;
        self.snapshot.pids.push(process.pid());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.try_exit_status()? {
                return Err(Error::Exited {
                    name: "containerd".into(),
                    status: status.to_string(),
                    log_tail: process.log_tail(30),
                });
            }
            if self.socket.exists() && self.ctr(&["version"]).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("containerd on {}", self.socket.display()),
                    log_tail: process.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.containerd = Some(process);
        Ok(())
    }

    fn import_images(&self, images: &Path) -> Result<(), Error> {
        for name in IMAGES {
            let archive = images.join(format!("{name}.oci.tar"));
            self.ctr(&["images", "import", &archive.display().to_string()])?;
        }
        let listed = self.ctr(&["images", "list", "--quiet"])?;
        for name in IMAGES {
            let wanted = image(name);
            if !listed.lines().any(|line| line.trim() == wanted) {
                return Err(Error::Unexpected(format!(
                    "containerd does not list {wanted} after importing it; images: {listed}"
                )));
            }
        }
        Ok(())
    }

    fn start_kubelet(&mut self, bin: &Path) -> Result<(), Error> {
        let root = self.root();
        let plane = self.plane();
        let pki = plane.dir().join("pki");
        let ca_file = pki.join("ca.crt");
        let cert = plane.ca().issue_client(
            &pki,
            "kubelet",
            &format!("system:node:{NODE_NAME}"),
            Some("system:nodes"),
        )?;
        let kubeconfig = write_kubeconfig(
            &root.join("kubelet.kubeconfig"),
            plane.server(),
            &ca_file,
            &cert,
        )?;
        let port = free_port()?;
        let healthz = free_port()?;
        let config = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://{socket}
address: 127.0.0.1
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: "{ca}"}}
authorization: {{mode: Webhook}}
podLogsDir: {root}/pod-logs
volumePluginDir: {root}/volume-plugins
rotateCertificates: false
serverTLSBootstrap: false
registerNode: true
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
"#,
            socket = self.socket.display(),
            ca = ca_file.display(),
            root = root.display(),
        );
        let config_path = root.join("kubelet-config.yaml");
        write(&config_path, &config)?;
        let mut command = Command::new(bin);
        command.args([
            format!("--config={}", config_path.display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={}", root.join("kubelet").display()),
            format!("--cert-dir={}", root.join("kubelet-certs").display()),
            format!("--hostname-override={NODE_NAME}"),
            "--v=2".into(),
        ]);
        let process = Supervised::spawn("kubelet", command, &root.join("kubelet.log"))?;
        self.snapshot.pids.push(process.pid());
        self.kubelet = Some(process);
        Ok(())
    }

    fn start_scheduler(&mut self, bin: &Path) -> Result<(), Error> {
        let root = self.root();
        let kubeconfig = self.plane().kubeconfig().to_owned();
        let mut command = Command::new(bin);
        command.args([
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--authentication-kubeconfig={}", kubeconfig.display()),
            format!("--authorization-kubeconfig={}", kubeconfig.display()),
            "--leader-elect=false".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={}", free_port()?),
        ]);
        let process =
            Supervised::spawn("kube-scheduler", command, &root.join("kube-scheduler.log"))?;
        self.snapshot.pids.push(process.pid());
        self.scheduler = Some(process);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let client = self.client().await?;
        let nodes: Api<NodeObject> = Api::all(client);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for process in [&mut self.kubelet, &mut self.containerd, &mut self.scheduler]
                .into_iter()
                .flatten()
            {
                if let Some(status) = process.try_exit_status()? {
                    return Err(Error::Exited {
                        name: process.name().to_owned(),
                        status: status.to_string(),
                        log_tail: process.log_tail(40),
                    });
                }
            }
            if let Some(node) = nodes.get_opt(NODE_NAME).await?
                && is_ready(&node)
            {
                // Without the node-lifecycle controller nothing removes this taint.
                let taints: Vec<_> = node
                    .spec
                    .and_then(|s| s.taints)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.key != "node.kubernetes.io/not-ready")
                    .collect();
                let patch = json!({"spec": {"taints": taints}});
                nodes
                    .patch(NODE_NAME, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("node {NODE_NAME} to become Ready"),
                    log_tail: self.log_tails(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes every container and sandbox, while containerd still runs.
    fn remove_containers(&self) {
        let Ok(tasks) = self.ctr(&["tasks", "list", "--quiet"]) else {
            return;
        };
        for task in tasks.lines().filter(|t| !t.trim().is_empty()) {
            let _ = self.ctr(&["tasks", "kill", "--signal", "SIGKILL", task.trim()]);
        }
        for task in tasks.lines().filter(|t| !t.trim().is_empty()) {
            let _ = self.ctr(&["tasks", "delete", "--force", task.trim()]);
        }
        if let Ok(containers) = self.ctr(&["containers", "list", "--quiet"]) {
            for container in containers.lines().filter(|c| !c.trim().is_empty()) {
                let _ = self.ctr(&["containers", "delete", container.trim()]);
            }
        }
    }

    fn teardown(&mut self) {
        // The kubelet first, so that it restarts nothing; then the containers and their shims.
        drop(self.kubelet.take());
        if self.containerd.is_some() {
            self.remove_containers();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shims = shim_pids(&self.socket);
            if shims.is_empty() {
                break;
            }
            let signal = if Instant::now() >= deadline {
                nix::sys::signal::Signal::SIGKILL
            } else {
                nix::sys::signal::Signal::SIGTERM
            };
            for pid in shims {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(i32::MAX));
                let _ = nix::sys::signal::kill(pid, signal);
            }
            if Instant::now() >= deadline + Duration::from_secs(5) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(self.containerd.take());
        drop(self.scheduler.take());
        for _ in 0..3 {
            for mount in self.snapshot.own_mounts() {
                if umount2(&mount, MntFlags::empty()).is_err() {
                    let _ = umount2(&mount, MntFlags::MNT_DETACH);
                }
            }
        }
        for _ in 0..20 {
            let cgroups = kubepods_cgroups();
            if cgroups.is_empty() {
                break;
            }
            for cgroup in cgroups {
                remove_cgroup_tree(&cgroup);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for (name, value) in &self.snapshot.sysctls {
            let path = Path::new("/proc/sys").join(name);
            if let Err(err) = fs::write(&path, value) {
                eprintln!("restoring {}: {err}", path.display());
            }
        }
        for dir in &self.snapshot.absent_dirs {
            if let Err(err) = fs::remove_dir_all(dir)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                eprintln!("removing {}: {err}", dir.display());
            }
        }
        drop(self.plane.take());
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            if let Err(err) = dir.close() {
                eprintln!("removing {}: {err}", path.display());
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn is_ready(node: &NodeObject) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Every `kubepods` cgroup (the kubelet's QoS tree) in every hierarchy.
fn kubepods_cgroups() -> Vec<PathBuf> {
    let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    hierarchies
        .flatten()
        .flat_map(|h| ["kubepods", "kubepods.slice"].map(|name| h.path().join(name)))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes a cgroup and its children, deepest first (cgroup directories go with `rmdir`).
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Mount points from `/proc/self/mountinfo`.
fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .collect()
}

/// PIDs of the containerd shims serving `socket` (shims detach from containerd's process group,
/// so they are found by the address on their command line).
fn shim_pids(socket: &Path) -> Vec<u32> {
    let socket = socket.display().to_string();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            cmdline.contains("containerd-shim") && cmdline.contains(&socket) && !is_zombie(*pid)
        })
        .collect()
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next())
        })
        .is_some_and(|state| state == 'Z' || state == 'X')
}

fn require_file(path: &Path, what: &str, fix: &str) -> Result<PathBuf, Error> {
    if path.exists() {
        Ok(path.to_owned())
    } else {
        Err(Error::Missing {
            what: what.to_owned(),
            path: path.to_owned(),
            fix: fix.to_owned(),
        })
    }
}

fn run(mut command: Command) -> Result<String, Error> {
    let line = format!("{command:?}");
    let output = command.output().map_err(|source| Error::Io {
        context: format!("running {line}"),
        source,
    })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: line,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        })
    }
}

fn mkdir(dir: &Path) -> Result<PathBuf, Error> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir.to_owned())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}

/// Waits until pod `namespace/name` reaches one of `phases` and returns it; the error names the
/// phase it was in and the node's logs.
pub async fn wait_for_phase(
    node: &Node,
    client: &Client,
    namespace: &str,
    name: &str,
    phases: &[&str],
    timeout: Duration,
) -> Result<k8s_openapi::api::core::v1::Pod, Error> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let deadline = Instant::now() + timeout;
    loop {
        let pod = pods.get_opt(name).await?;
        let phase = pod
            .as_ref()
            .and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        if let Some(pod) = pod
            && phases.contains(&phase.as_str())
        {
            return Ok(pod);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("pod {namespace}/{name} to reach {phases:?} (it is {phase:?})"),
                log_tail: node.log_tails(20),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
