//! A real Kubernetes control plane on loopback: `etcd`, `kube-apiserver` and optionally
//! `kube-controller-manager`, the envtest approach of the controller-runtime ecosystem.
//!
//! Every instance gets its own temporary directory (etcd data, certificates, kubeconfigs, logs)
//! and its own free loopback ports, so test binaries running at the same time do not collide.
//! Dropping the [`ControlPlane`] stops the processes (controller-manager, apiserver, etcd, in
//! that order) and removes the directory. On its own there is no scheduler and no kubelet: pods
//! are admitted and stored, and stay `Pending`; [`crate::node::Node`] adds both (with
//! [`Options::kubelet`]).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tempfile::TempDir;

use crate::Error;
use crate::pki::{Ca, CertFiles, write_signing_key};
use crate::process::Supervised;

/// How long the control plane gets to become ready. Generous: the machine may be busy.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How many times a start is retried when a process exits early (e.g. a port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// What to start besides etcd and kube-apiserver.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Also run `kube-controller-manager` with the Job controller, so Jobs create their pods.
    pub controller_manager: bool,
    /// Extra `kube-apiserver` flags (`--name=value`).
    pub apiserver_args: Vec<String>,
    /// Prepare the apiserver for a kubelet (`crate::node`): the `Node` authorizer before RBAC,
    /// the `NodeRestriction` admission plugin, a client certificate for calling kubelets (logs,
    /// exec) and kubelets dialled by host name (the node is `localhost`, so that stays on
    /// loopback).
    pub kubelet: bool,
}

/// A running local control plane. Drop it to stop everything.
#[derive(Debug)]
pub struct ControlPlane {
    // Field order is drop order: the controller-manager goes first, etcd last, the directory
    // after every process is gone.
    controller_manager: Option<Supervised>,
    apiserver: Supervised,
    etcd: Supervised,
    ca: Ca,
    server: String,
    kubeconfig: PathBuf,
    dir: TempDir,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver (and the controller-manager if asked) and waits until the
    /// apiserver reports `/readyz` ok.
    ///
    /// The binaries come from [`testkit::control_plane_dir`]; a missing binary fails the test
    /// with the command that builds it.
    pub async fn start(options: Options) -> Result<Self, Error> {
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&options).await {
                Ok(plane) => return Ok(plane),
                Err(err @ Error::Exited { .. }) => last = Some(err),
                Err(other) => return Err(other),
            }
        }
        Err(last.unwrap_or(Error::Timeout {
            what: "control plane start".into(),
            log_tail: String::new(),
        }))
    }

    async fn start_once(options: &Options) -> Result<Self, Error> {
        let etcd_bin = testkit::control_plane_binary("etcd");
        let apiserver_bin = testkit::control_plane_binary("kube-apiserver");
        let dir = tempfile::Builder::new()
            .prefix("c4gh-e2e-control-plane-")
            .tempdir()
            .map_err(|source| Error::Io {
                context: "creating the control plane's temporary directory".into(),
                source,
            })?;
        let root = dir.path().to_owned();
        let pki = mkdir(&root, "pki")?;

        let ca = Ca::new("c4gh-e2e control plane CA")?;
        let ca_file = ca.write_cert(&pki.join("ca.crt"))?;
        let serving = ca.issue_server(&pki, "apiserver", &["127.0.0.1", "localhost"])?;
        let admin = ca.issue_client(&pki, "admin", "c4gh-e2e-admin", Some("system:masters"))?;
        let sa_key = write_signing_key(&pki, "service-account")?;
        let kubelet_client = if options.kubelet {
            Some(ca.issue_client(
                &pki,
                "apiserver-kubelet-client",
                "kube-apiserver-kubelet-client",
                Some("system:masters"),
            )?)
        } else {
            None
        };

        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let etcd = start_etcd(&etcd_bin, &root, etcd_client, etcd_peer)?;

        let port = free_port()?;
        let server = format!("https://127.0.0.1:{port}");
        let mut command = Command::new(&apiserver_bin);
        command.args([
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", mkdir(&root, "apiserver-certs")?.display()),
            format!("--tls-cert-file={}", serving.cert.display()),
            format!("--tls-private-key-file={}", serving.key.display()),
            format!("--client-ca-file={}", ca_file.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            format!(
                "--authorization-mode={}",
                if options.kubelet { "Node,RBAC" } else { "RBAC" }
            ),
            "--allow-privileged=true".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", sa_key.cert.display()),
            format!(
                "--service-account-signing-key-file={}",
                sa_key.key.display()
            ),
            "--enable-priority-and-fairness=false".into(),
            "--endpoint-reconciler-type=none".into(),
        ]);
        if kubelet_client.is_none() {
            // Without a kubelet nothing uses the ServiceAccount token volume, and without the
            // ServiceAccount controller no `default` ServiceAccount exists to admit pods with.
            command.arg("--disable-admission-plugins=ServiceAccount");
        }
        if let Some(client) = &kubelet_client {
            command.args([
                "--enable-admission-plugins=NodeRestriction".to_owned(),
                format!("--kubelet-client-certificate={}", client.cert.display()),
                format!("--kubelet-client-key={}", client.key.display()),
                "--kubelet-preferred-address-types=Hostname".into(),
            ]);
        }
        command.args(&options.apiserver_args);
        let apiserver =
            Supervised::spawn("kube-apiserver", command, &root.join("kube-apiserver.log"))?;

        let kubeconfig =
            write_kubeconfig(&root.join("admin.kubeconfig"), &server, &ca_file, &admin)?;
        let mut plane = ControlPlane {
            controller_manager: None,
            apiserver,
            etcd,
            ca,
            server,
            kubeconfig,
            dir,
        };
        if std::env::var_os("C4GH_E2E_KEEP").is_some_and(|v| v == "1") {
            plane.keep_dir();
        }
        plane.wait_ready().await?;

        if options.controller_manager {
            let kcm_bin = testkit::control_plane_binary("kube-controller-manager");
            // With --use-service-account-credentials=false every controller acts as this user, and
            // the bootstrap role of system:kube-controller-manager does not cover the Job
            // controller's writes; the local control plane grants it system:masters instead.
            let kcm_cert = plane.ca.issue_client(
                &pki,
                "controller-manager",
                "system:kube-controller-manager",
                Some("system:masters"),
            )?;
            let kcm_config = write_kubeconfig(
                &root.join("controller-manager.kubeconfig"),
                &plane.server,
                &ca_file,
                &kcm_cert,
            )?;
            let mut command = Command::new(kcm_bin);
            command.args([
                format!("--kubeconfig={}", kcm_config.display()),
                format!("--authentication-kubeconfig={}", kcm_config.display()),
                format!("--authorization-kubeconfig={}", kcm_config.display()),
                // With a node, Deployments run (the operator's) and pods get ServiceAccount
                // tokens: the ServiceAccount controller makes each namespace's `default`
                // account, the publisher its CA ConfigMap `kube-root-ca.crt`. The PV
                // controllers bind claims (TESK's task PVC) to the PVs a test made and let
                // deleted claims go.
                if options.kubelet {
                    "--controllers=job-controller,deployment-controller,replicaset-controller,\
                     serviceaccount-controller,root-ca-certificate-publisher-controller,\
                     persistentvolume-binder-controller,persistentvolumeclaim-protection-controller,\
                     persistentvolume-protection-controller"
                        .into()
                } else {
                    "--controllers=job-controller".into()
                },
                format!("--root-ca-file={}", ca_file.display()),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", free_port()?),
                format!(
                    "--cert-dir={}",
                    mkdir(&root, "controller-manager-certs")?.display()
                ),
            ]);
            plane.controller_manager = Some(Supervised::spawn(
                "kube-controller-manager",
                command,
                &root.join("kube-controller-manager.log"),
            )?);
        }
        Ok(plane)
    }

    /// A new client authenticated as the cluster admin (`system:masters`).
    ///
    /// Build one per tokio runtime: a client is tied to the runtime it was created on.
    pub async fn client(&self) -> Result<Client, Error> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let config =
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// The apiserver URL, `https://127.0.0.1:PORT`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Path of the admin kubeconfig (for processes such as the operator).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The CA that signed the apiserver's certificates; tests use it for their own servers too.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The control plane's temporary directory (removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process ids of every running control-plane process, for leak checks.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.etcd.pid(), self.apiserver.pid()];
        pids.extend(self.controller_manager.as_ref().map(Supervised::pid));
        pids
    }

    /// The last `lines` lines of every process's log, labelled, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        [
            Some(&self.etcd),
            Some(&self.apiserver),
            self.controller_manager.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| {
            format!(
                "--- {} ({}):\n{}\n",
                p.name(),
                p.log_path().display(),
                p.log_tail(lines)
            )
        })
        .collect()
    }

    /// Fails with the relevant log when a control-plane process has exited.
    pub fn check_alive(&mut self) -> Result<(), Error> {
        let processes = [Some(&mut self.etcd), Some(&mut self.apiserver)]
            .into_iter()
            .chain([self.controller_manager.as_mut()]);
        for process in processes.flatten() {
            if let Some(status) = process.try_exit_status()? {
                return Err(Error::Exited {
                    name: process.name().to_owned(),
                    status: status.to_string(),
                    log_tail: process.log_tail(30),
                });
            }
        }
        Ok(())
    }

    /// Keeps the temporary directory (logs, certificates, etcd data) after drop, for debugging;
    /// its path is printed. Also enabled by the environment variable `C4GH_E2E_KEEP=1`.
    pub fn keep_dir(&mut self) {
        self.dir.disable_cleanup(true);
        eprintln!("keeping {}", self.dir.path().display());
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let deadline = Instant::now() + START_TIMEOUT;
        let client = self.client().await?;
        loop {
            self.check_alive()?;
            let request = http::Request::get("/readyz").body(Vec::new())?;
            if let Ok(body) = client.request_text(request).await
                && body.trim() == "ok"
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("kube-apiserver /readyz at {}", self.server),
                    log_tail: self.apiserver.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn start_etcd(bin: &Path, root: &Path, client: u16, peer: u16) -> Result<Supervised, Error> {
    let mut command = Command::new(bin);
    command.args([
        "--name=default".to_owned(),
        format!("--data-dir={}", root.join("etcd").display()),
        format!("--listen-client-urls=http://127.0.0.1:{client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
        format!("--initial-cluster=default=http://127.0.0.1:{peer}"),
        "--unsafe-no-fsync=true".into(),
        "--log-level=warn".into(),
    ]);
    let mut etcd = Supervised::spawn("etcd", command, &root.join("etcd.log"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = etcd.try_exit_status()? {
            return Err(Error::Exited {
                name: "etcd".into(),
                status: status.to_string(),
                log_tail: etcd.log_tail(30),
            });
        }
        if TcpStream::connect(("127.0.0.1", client)).is_ok() {
            return Ok(etcd);
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("etcd on 127.0.0.1:{client}"),
                log_tail: etcd.log_tail(30),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(|source| Error::Io {
        context: "binding 127.0.0.1:0 to find a free port".into(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| Error::Io {
            context: "reading the address of a bound socket".into(),
            source,
        })?
        .port();
    Ok(port)
}

fn mkdir(root: &Path, name: &str) -> Result<PathBuf, Error> {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        context: format!("creating {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

/// Writes a kubeconfig for `server` authenticating with the client certificate `client`.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    client: &CertFiles,
) -> Result<PathBuf, Error> {
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: user
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: local
  context:
    cluster: local
    user: user
current-context: local
",
        ca = ca.display(),
        cert = client.cert.display(),
        key = client.key.display(),
    );
    std::fs::write(path, text).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })?;
    Ok(path.to_owned())
}
