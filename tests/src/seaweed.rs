//! A real S3-compatible object store for the object-store tests: SeaweedFS's `weed server`
//! (master, volume server, filer and S3 gateway in one process) built by `cargo xtask setup`
//! from the pinned Go module (`tests/seaweedfs/`), listening on 127.0.0.1 only, with its data
//! in a temporary directory and one S3 identity whose keys are generated per run (written to
//! the run's `s3.json`, never checked in). Dropping [`SeaweedFs`] stops the process group (by
//! PID) and removes the directory.
//!
//! [`SeaweedFs::start_with_sts`] also turns on SeaweedFS's STS (`AssumeRoleWithWebIdentity` on
//! the S3 port, configured by the run's `iam.json`): it trusts one OpenID Connect issuer (the
//! test's, its JWKS over loopback HTTPS) for role [`ROLE_ARN`], whose policy allows everything
//! on bucket [`BUCKET`], and its sessions last [`StsOptions::session`].

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drs_server::store::{S3Config, S3Store};
use rand::Rng;
use tempfile::TempDir;
use zeroize::Zeroizing;

use crate::Error;
use crate::process::Supervised;

/// The bucket the tests use.
pub const BUCKET: &str = "c4gh-bodies";

/// The region signed for (SeaweedFS accepts any).
pub const REGION: &str = "us-east-1";

/// The role web identities assume on a store started with [`SeaweedFs::start_with_sts`].
pub const ROLE_ARN: &str = "arn:aws:iam::000000000000:role/C4ghDrsServer";

/// The audience STS accepts in web identity tokens (what EKS uses).
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The OpenID Connect issuer SeaweedFS's STS trusts, and how long its sessions last.
#[derive(Debug, Clone)]
pub struct StsOptions {
    /// The tokens' `iss`.
    pub issuer: String,
    /// Where the issuer's JWKS is (HTTPS on loopback).
    pub jwks_url: String,
    /// The CA of the JWKS server's certificate (PEM).
    pub jwks_ca_pem: String,
    /// Lifetime of the temporary credentials: SeaweedFS's `maxSessionLength`, which caps any
    /// `DurationSeconds` (STS itself accepts 900 s and more only).
    pub session: Duration,
}

/// Where `cargo xtask setup` puts `weed` (same rule as `testkit::cache_dir`).
pub fn weed_binary() -> PathBuf {
    testkit::cache_dir()
        .join("seaweedfs")
        .join("bin")
        .join("weed")
}

/// A running SeaweedFS with its S3 gateway on loopback.
#[derive(Debug)]
pub struct SeaweedFs {
    // Declared first: dropped (stopped) before the directory goes.
    process: Supervised,
    dir: TempDir,
    s3_port: u16,
    https_port: u16,
    ca_pem: String,
    access_key: String,
    secret_key: Zeroizing<String>,
}

/// `n` distinct free loopback ports below 55536 (SeaweedFS may add 10000 for gRPC).
fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
            context: "finding a free loopback port".into(),
            source,
        })?;
        let port = listener.local_addr().map_err(|source| Error::Io {
            context: "finding a free loopback port".into(),
            source,
        })?;
        if port.port() < 55_536 {
            ports.push(port.port());
        }
        held.push(listener);
    }
    Ok(ports)
}

fn random_key(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

impl SeaweedFs {
    /// Starts `weed server` with S3 and waits until the S3 gateway answers (up to 60 s).
    ///
    /// # Errors
    ///
    /// [`Error::Missing`] without the binary (run `cargo xtask setup`), [`Error::Exited`] /
    /// [`Error::Timeout`] with the log's tail when it does not come up.
    pub fn start() -> Result<Self, Error> {
        Self::start_with_sts(None)
    }

    /// As [`SeaweedFs::start`], with STS trusting `sts`'s issuer when given.
    ///
    /// # Errors
    ///
    /// As [`SeaweedFs::start`].
    pub fn start_with_sts(sts: Option<&StsOptions>) -> Result<Self, Error> {
        let weed = weed_binary();
        if !weed.is_file() {
            return Err(Error::Missing {
                what: "SeaweedFS's weed (the S3 server of the object-store tests)".into(),
                path: weed,
                fix: "cargo xtask setup".into(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("c4gh-seaweedfs-")
            .tempdir()
            .map_err(|source| Error::Io {
                context: "creating the SeaweedFS directory".into(),
                source,
            })?;
        let data = dir.path().join("data");
        fs::create_dir(&data).map_err(|source| Error::Io {
            context: format!("creating {}", data.display()),
            source,
        })?;
        let access_key = format!("C4GH{}", random_key(16));
        let secret_key = Zeroizing::new(random_key(40));
        let config = serde_json::json!({
            "identities": [{
                "name": "c4gh-tests",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key.as_str()}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        let config_path = dir.path().join("s3.json");
        write_private(&config_path, &config.to_string())?;
        let iam_path = match sts {
            Some(sts) => Some(write_iam_config(dir.path(), sts)?),
            None => None,
        };
        let p = free_ports(9)?;
        let (s3_port, https_port) = (p[6], p[8]);
        let ca = testkit::tls::TestCa::new("c4gh SeaweedFS test CA")?;
        let leaf = ca.issue_server(&["localhost", "127.0.0.1"])?;
        let (cert, key) = (dir.path().join("s3.crt"), dir.path().join("s3.key"));
        write_private(&cert, &leaf.cert_pem)?;
        write_private(&key, &leaf.key_pem)?;
        let mut command = Command::new(&weed);
        command
            .arg("server")
            .arg("-ip=127.0.0.1")
            .arg("-ip.bind=127.0.0.1")
            .arg(format!("-dir={}", data.display()))
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            // 16 volumes of 512 MiB at most: room for the 4 GiB body of `bench s3-memory`
            // (volumes are made as data arrives, so small runs use little disk).
            .arg("-master.volumeSizeLimitMB=512")
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg("-volume.max=16")
            .arg("-filer")
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg("-s3")
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!("-s3.port.https={https_port}"))
            .arg(format!("-s3.cert.file={}", cert.display()))
            .arg(format!("-s3.key.file={}", key.display()))
            .arg("-s3.port.iceberg=0")
            .arg("-s3.port.lance=0")
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .arg(format!("-s3.config={}", config_path.display()))
            .current_dir(dir.path());
        if let Some(iam) = &iam_path {
            command.arg(format!("-s3.iam.config={}", iam.display()));
        }
        let process = Supervised::spawn("weed server", command, &dir.path().join("weed.log"))?;
        let mut weed = SeaweedFs {
            process,
            dir,
            s3_port,
            https_port,
            ca_pem: ca.cert_pem(),
            access_key,
            secret_key,
        };
        weed.wait_ready(Duration::from_secs(60))?;
        Ok(weed)
    }

    /// Waits until a signed `ListBuckets` gets an answer from the S3 gateway that is not a 5xx
    /// (the filer and volume server behind it are up).
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.process.try_exit_status()? {
                return Err(Error::Exited {
                    name: "weed server".into(),
                    status: status.to_string(),
                    log_tail: self.process.log_tail(30),
                });
            }
            let up = |port| std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if up(self.s3_port) && up(self.https_port) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("SeaweedFS's S3 gateway on 127.0.0.1:{}", self.s3_port),
                    log_tail: self.process.log_tail(30),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The STS endpoint (`AssumeRoleWithWebIdentity` is a `POST` to the S3 gateway's root).
    pub fn sts_endpoint(&self) -> String {
        self.endpoint()
    }

    /// The HTTPS address of the S3 gateway.
    pub fn https_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.https_port))
    }

    /// The CA that issued the HTTPS certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The access key of the run's identity.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key of the run's identity.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The environment a `c4gh-drs-server` needs to use this store (`AWS_*` and the
    /// `C4GH_DRS_S3_*` settings, path style, bucket [`BUCKET`]).
    pub fn server_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str().to_owned()),
            ("C4GH_DRS_S3_BUCKET", BUCKET.into()),
            ("C4GH_DRS_S3_ENDPOINT", self.endpoint()),
            ("C4GH_DRS_S3_REGION", REGION.into()),
            ("C4GH_DRS_S3_PATH_STYLE", "true".into()),
        ]
    }

    /// A store for bucket [`BUCKET`] at `endpoint` (default: [`SeaweedFs::endpoint`]) with
    /// body keys under `prefix`, whose signed URLs live `url_lifetime`, signing with the run's
    /// identity (or, with `wrong_secret`, with a secret the store does not know).
    ///
    /// # Errors
    ///
    /// [`Error::Unexpected`] when the store cannot be configured.
    pub fn store(
        &self,
        endpoint: Option<&str>,
        prefix: &str,
        url_lifetime: Duration,
        wrong_secret: bool,
    ) -> Result<Arc<S3Store>, Error> {
        let endpoint = endpoint.map_or_else(|| self.endpoint(), str::to_owned);
        let config = S3Config {
            endpoint: endpoint
                .parse()
                .map_err(|e| Error::Unexpected(format!("the endpoint URL {endpoint}: {e}")))?,
            bucket: BUCKET.into(),
            prefix: prefix.into(),
            region: REGION.into(),
            path_style: true,
            url_lifetime,
        };
        let secret = if wrong_secret {
            random_key(40)
        } else {
            self.secret_key.as_str().to_owned()
        };
        let credentials = drs_server::store::Credentials::new(self.access_key.clone(), secret);
        S3Store::new(&config, credentials)
            .map(Arc::new)
            .map_err(|e| Error::Unexpected(e.to_string()))
    }

    /// The directory holding the data, config and `weed.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of `weed.log`, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// Writes the advanced IAM configuration of SeaweedFS's STS: its signing key, session length,
/// the OIDC provider, role [`ROLE_ARN`] trusting it, and the role's policy.
fn write_iam_config(dir: &Path, sts: &StsOptions) -> Result<PathBuf, Error> {
    use base64::Engine;
    let ca = dir.join("oidc-ca.pem");
    write_private(&ca, &sts.jwks_ca_pem)?;
    let mut key = Zeroizing::new([0u8; 32]);
    rand::thread_rng().fill(&mut key[..]);
    let session = format!("{}s", sts.session.as_secs().max(1));
    let config = Zeroizing::new(
        serde_json::json!({
            "sts": {
                "tokenDuration": session,
                "maxSessionLength": session,
                "issuer": "c4gh-test-seaweedfs-sts",
                "signingKey": base64::engine::general_purpose::STANDARD.encode(&key[..]),
            },
            "policy": {"defaultEffect": "Deny", "storeType": "memory"},
            "providers": [{
                "name": "c4gh-test-oidc",
                "type": "oidc",
                "enabled": true,
                "config": {
                    "issuer": sts.issuer,
                    "clientId": STS_AUDIENCE,
                    "jwksUri": sts.jwks_url,
                    "tlsCaCert": ca.display().to_string(),
                },
            }],
            "policies": [{
                "name": "C4ghBodies",
                "document": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Action": ["s3:*"],
                        "Resource": [
                            format!("arn:aws:s3:::{BUCKET}"),
                            format!("arn:aws:s3:::{BUCKET}/*"),
                        ],
                    }],
                },
            }],
            "roles": [{
                "roleName": "C4ghDrsServer",
                "roleArn": ROLE_ARN,
                "trustPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [{
                        "Effect": "Allow",
                        "Principal": {"Federated": "c4gh-test-oidc"},
                        "Action": ["sts:AssumeRoleWithWebIdentity"],
                    }],
                },
                "attachedPolicies": ["C4ghBodies"],
            }],
        })
        .to_string(),
    );
    let path = dir.join("iam.json");
    write_private(&path, &config)?;
    Ok(path)
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Io {
            context: format!("creating {}", path.display()),
            source,
        })?;
    file.write_all(text.as_bytes()).map_err(|source| Error::Io {
        context: format!("writing {}", path.display()),
        source,
    })
}
