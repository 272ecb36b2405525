//! The real NeIC SDA v2 download service for the tests and the `sda` benchmark.
//!
//! [`Sda::start`] runs, inside a network namespace of its own that has only `lo` (held open by an
//! `unshare -n sleep` process; it disappears with its last process, so nothing on the host
//! changes):
//!
//! - PostgreSQL from Debian, a fresh cluster made with `initdb` in a temporary directory, run as
//!   the unprivileged `postgres` user on 127.0.0.1:5432, with SDA's schema from the source
//!   snapshot (`postgresql/initdb.d`) and a `download_svc` login in SDA's `download` role;
//! - SDA's `reencrypt` (gRPC; it binds `[::]:50051` and has no host option, which the namespace
//!   contains) with a passphrase-protected archive key;
//! - SDA's `download` (v2) with TLS on `localhost:8443`, JWT auth (ES256 keys made here) and the
//!   `ownership` permission model.
//!
//! `cargo xtask setup` builds the two services from `../shared/peers/sda/` into the cache
//! directory. Files are registered the way SDA's ingest/verify/finalize leave them (header in
//! `sda.files.header`, body in the posix archive, checksums). Clients run inside the namespace
//! through [`Sda::command`]. Dropping [`Sda`] stops every process, also when a test fails.
//! Needs root (the namespace, `runuser`).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::pki::Ca;
use crate::process::Supervised;

/// The TLS port of the download service inside the namespace.
pub const PORT: u16 = 8443;
/// Host and port of the download service, as in `drs://` URIs.
pub const AUTHORITY: &str = "localhost:8443";
/// The user the default token is for (owner of the registered files).
pub const OWNER: &str = "alice@example.org";
/// The JWT issuer and audience configured in the service.
const ISSUER: &str = "https://login.sda.test/";
const AUDIENCE: &str = "sda-download";
const ARCHIVE_PASSPHRASE: &[u8] = b"archive-pass";

/// Where `cargo xtask setup` puts the SDA build (same rule as `testkit::cache_dir`).
pub fn sda_dir() -> PathBuf {
    testkit::cache_dir().join("sda")
}

/// A file as SDA stores it, ready to be registered.
#[derive(Debug, Clone)]
pub struct ArchivedFile {
    /// Stable id (`EGAF…`): what `/files/{id}/…` use.
    pub stable_id: String,
    /// Dataset id (`EGAD…`).
    pub dataset: String,
    /// Submission path (what `drs://host/{dataset}/{path}` names).
    pub path: String,
    /// Crypt4GH header for the archive key.
    pub header: Vec<u8>,
    /// Body file in the archive directory.
    pub body: PathBuf,
    /// Body size.
    pub body_len: u64,
    /// sha-256 of the body (hex).
    pub body_sha256: String,
}

impl ArchivedFile {
    /// `drs://localhost:8443/{dataset}/{path}`.
    pub fn drs_uri(&self) -> String {
        format!("drs://{AUTHORITY}/{}/{}", self.dataset, self.path)
    }

    /// `https://localhost:8443/files/{id}/content`.
    pub fn content_url(&self) -> String {
        format!("https://{AUTHORITY}/files/{}/content", self.stable_id)
    }
}

/// The running SDA stack. Dropping it stops everything.
#[derive(Debug)]
pub struct Sda {
    download: Option<Supervised>,
    reencrypt: Option<Supervised>,
    postgres: Option<Supervised>,
    netns: Supervised,
    root: tempfile::TempDir,
    archive_key: c4gh::SecretKey,
    jwt: rcgen::KeyPair,
    untrusted: rcgen::KeyPair,
    /// The CA certificate the service's TLS certificate is issued by.
    pub ca: PathBuf,
    registered: u32,
}

impl Sda {
    /// Starts PostgreSQL, reencrypt and download in a new network namespace.
    pub fn start() -> Result<Self, Error> {
        let bin = sda_dir().join("bin");
        for name in ["download", "reencrypt"] {
            if !bin.join(name).is_file() {
                return Err(Error::Missing {
                    what: format!("SDA's {name} service"),
                    path: bin.join(name),
                    fix: "cargo xtask setup".into(),
                });
            }
        }
        let pg_bin = postgres_bin()?;
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Unexpected(
                "the SDA tests need root: they create a network namespace and run PostgreSQL as \
                 the `postgres` user (CI runs `.ci/run` as root)"
                    .into(),
            ));
        }
        let root = tempfile::Builder::new()
            .prefix("c4gh-sda-")
            .tempdir()
            .map_err(|source| Error::Io {
                context: "creating the SDA directory".into(),
                source,
            })?;
        let dir = root.path().to_owned();
        set_mode(&dir, 0o755)?;
        for sub in ["work", "archive", "logs", "jwt"] {
            mkdir(&dir.join(sub))?;
        }
        let netns = Supervised::spawn(
            "netns holder",
            {
                let mut c = Command::new("unshare");
                c.args(["-n", "--", "sleep", "infinity"]);
                c
            },
            &dir.join("logs/netns.log"),
        )?;
        let mut sda = Sda {
            download: None,
            reencrypt: None,
            postgres: None,
            netns,
            root,
            archive_key: c4gh::SecretKey::generate(),
            jwt: jwt_key()?,
            untrusted: jwt_key()?,
            ca: dir.join("work/ca.pem"),
            registered: 0,
        };
        // Until `unshare` has made the namespace, its pid is still in ours: wait for the switch,
        // so that nothing is ever started in the host's network namespace.
        let ns = format!("/proc/{}/ns/net", sda.netns.pid());
        let own = fs::read_link("/proc/self/ns/net").map_err(|source| Error::Io {
            context: "reading /proc/self/ns/net".into(),
            source,
        })?;
        wait_for("the network namespace", Duration::from_secs(10), || {
            fs::read_link(&ns).is_ok_and(|theirs| theirs != own)
        })?;
        sda.run(Command::new("ip").args(["link", "set", "lo", "up"]))?;
        sda.start_postgres(&pg_bin)?;
        sda.write_keys_and_configs()?;
        sda.start_reencrypt()?;
        sda.start_download()?;
        Ok(sda)
    }

    /// The working directory (configs, keys, logs, archive).
    pub fn dir(&self) -> &Path {
        self.root.path()
    }

    /// `program` run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.netns.pid().to_string())
            .args(["-n", "--"])
            .arg(program);
        c
    }

    /// Runs `cmd` (a plain command line; it is moved into the namespace) to success.
    pub fn run(&self, cmd: &mut Command) -> Result<Output, Error> {
        let mut inner = self.command(cmd.get_program());
        inner.args(cmd.get_args());
        if let Some(d) = cmd.get_current_dir() {
            inner.current_dir(d);
        }
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => inner.env(k, v),
                None => inner.env_remove(k),
            };
        }
        let line = format!("{inner:?}");
        let out = inner.output().map_err(|source| Error::Io {
            context: format!("running {line}"),
            source,
        })?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(Error::Command {
                command: line,
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            })
        }
    }

    fn psql(&self, db: &str, sql: &str) -> Result<String, Error> {
        let sock = self.dir().join("pgsock");
        let out = self.run(
            Command::new("runuser")
                .args(["-u", "postgres", "--", "psql", "-h"])
                .arg(&sock)
                .args([
                    "-p",
                    "5432",
                    "-U",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qAt",
                    "-d",
                    db,
                ])
                .args(["-c", sql]),
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn start_postgres(&mut self, pg_bin: &Path) -> Result<(), Error> {
        let dir = self.dir().to_owned();
        let data = dir.join("pgdata");
        let sock = dir.join("pgsock");
        for d in [&data, &sock] {
            mkdir(d)?;
            chown_postgres(d)?;
        }
        set_mode(&data, 0o700)?;
        self.run(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .args(["--no-sync", "-E", "UTF8"]),
        )?;
        let mut pg = self.command("runuser");
        pg.args(["-u", "postgres", "--"])
            .arg(pg_bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-p",
                "5432",
                "-c",
                "fsync=off",
                "-k",
            ])
            .arg(&sock);
        self.postgres = Some(Supervised::spawn(
            "postgres",
            pg,
            &dir.join("logs/postgres.log"),
        )?);
        let sock_file = sock.join(".s.PGSQL.5432");
        wait_for("PostgreSQL", Duration::from_secs(90), || {
            sock_file.exists() && self.psql("postgres", "select 1").is_ok()
        })
        .map_err(|e| self.with_log(e, "postgres"))?;
        self.psql("postgres", "CREATE DATABASE sda")?;
        // The schema is copied out of the cache (under root's 0700 home) so that psql, run as
        // `postgres`, can read it.
        let schema = sda_dir().join("src/postgresql/initdb.d");
        for file in [
            "01_main.sql",
            "02_functions.sql",
            "03.1_legacy_main.sql",
            "03.2_legacy_download.sql",
            "03.3_legacy_ega_ebi.sql",
            "04_grants.sql",
        ] {
            let path = schema.join(file);
            if !path.is_file() {
                return Err(Error::Missing {
                    what: "SDA's database schema".into(),
                    path,
                    fix: "cargo xtask setup".into(),
                });
            }
            let copy = dir.join("work").join(file);
            fs::copy(&path, &copy).map_err(|source| Error::Io {
                context: format!("copying {}", path.display()),
                source,
            })?;
            set_mode(&copy, 0o644)?;
            self.run(
                Command::new("runuser")
                    .args(["-u", "postgres", "--", "psql", "-h"])
                    .arg(&sock)
                    .args([
                        "-p",
                        "5432",
                        "-U",
                        "postgres",
                        "-v",
                        "ON_ERROR_STOP=1",
                        "-q",
                        "-d",
                    ])
                    .args(["sda", "-f"])
                    .arg(&copy),
            )?;
        }
        self.psql(
            "sda",
            "CREATE USER download_svc WITH PASSWORD 'dlpass'; GRANT download TO download_svc;",
        )?;
        Ok(())
    }

    fn write_keys_and_configs(&mut self) -> Result<(), Error> {
        let dir = self.dir().to_owned();
        let w = dir.join("work");
        self.archive_key
            .write_file(
                &w.join("archive.sec"),
                Some((ARCHIVE_PASSPHRASE, c4gh::keys::Kdf::Scrypt)),
                Some("sda test archive"),
                0o400,
            )
            .map_err(|e| Error::Unexpected(format!("writing the archive key: {e}")))?;
        write(&dir.join("jwt/issuer.pub.pem"), &self.jwt.public_key_pem())?;
        let ca = Ca::new("sda-test-ca")?;
        ca.write_cert(&self.ca)?;
        let server = ca.issue_server(&w, "server", &["localhost", "127.0.0.1"])?;
        write(
            &w.join("reencrypt.yaml"),
            &format!(
                "log:\n  level: info\ngrpc:\n  port: 50051\nc4gh:\n  privateKeys:\n    - filePath: {}\n      passphrase: {}\n",
                w.join("archive.sec").display(),
                String::from_utf8_lossy(ARCHIVE_PASSPHRASE)
            ),
        )?;
        write(
            &w.join("download.yaml"),
            &format!(
                r#"service:
  id: "test.sda.download"
  org-name: "c4gh tests"
  org-url: "https://c4gh.test"
api:
  host: "127.0.0.1"
  port: {PORT}
  server-cert: "{cert}"
  server-key: "{key}"
db:
  host: "127.0.0.1"
  port: 5432
  user: "download_svc"
  password: "dlpass"
  database: "sda"
  sslmode: "disable"
grpc:
  host: "127.0.0.1"
  port: 50051
  timeout: 10
jwt:
  pubkey-path: "{jwt}"
  allow-all-data: false
oidc:
  issuer: "{ISSUER}"
  audience: "{AUDIENCE}"
permission:
  model: "ownership"
auth:
  allow-opaque: false
visa:
  enabled: false
session:
  secure: false
log:
  level: info
storage:
  archive:
    posix:
      - path: "{archive}"
"#,
                cert = server.cert.display(),
                key = server.key.display(),
                jwt = dir.join("jwt").display(),
                archive = dir.join("archive").display(),
            ),
        )
    }

    fn start_reencrypt(&mut self) -> Result<(), Error> {
        let dir = self.dir().to_owned();
        let mut c = self.command(sda_dir().join("bin/reencrypt"));
        c.current_dir(dir.join("work"))
            .env("CONFIGFILE", dir.join("work/reencrypt.yaml"));
        self.reencrypt = Some(Supervised::spawn(
            "sda reencrypt",
            c,
            &dir.join("logs/reencrypt.log"),
        )?);
        let log = dir.join("logs/reencrypt.log");
        wait_for("SDA reencrypt on :50051", Duration::from_secs(90), || {
            fs::read_to_string(&log).is_ok_and(|l| l.contains("server listening"))
        })
        .map_err(|e| self.with_log(e, "reencrypt"))
    }

    /// Starts (or restarts) the download service and waits until `/health/ready` answers 200.
    pub fn start_download(&mut self) -> Result<(), Error> {
        let dir = self.dir().to_owned();
        let mut c = self.command(sda_dir().join("bin/download"));
        c.current_dir(dir.join("work"))
            .env("CONFIG_FILE", dir.join("work/download.yaml"));
        let n = fs::read_dir(dir.join("logs"))
            .map(|d| d.count())
            .unwrap_or(0);
        self.download = Some(Supervised::spawn(
            "sda download",
            c,
            &dir.join(format!("logs/download-{n}.log")),
        )?);
        let ca = self.ca.clone();
        wait_for(
            "SDA download /health/ready",
            Duration::from_secs(60),
            || {
                self.run(
                    Command::new("curl")
                        .args(["-sf", "-o", "/dev/null", "--cacert"])
                        .arg(&ca)
                        .arg(format!("https://{AUTHORITY}/health/ready")),
                )
                .is_ok()
            },
        )
        .map_err(|e| self.with_log(e, "download"))
    }

    /// SIGKILLs the download service (no graceful shutdown: in-flight bodies break).
    pub fn kill_download(&mut self) -> Result<(), Error> {
        if let Some(mut d) = self.download.take() {
            d.signal(Signal::SIGKILL)?;
            d.wait_timeout(Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Every log line the download service wrote (all its runs).
    pub fn download_log(&self) -> String {
        let mut logs: Vec<PathBuf> = fs::read_dir(self.dir().join("logs"))
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        logs.iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("download-"))
            })
            .map(|p| fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    fn with_log(&self, e: Error, which: &str) -> Error {
        let tail = [&self.postgres, &self.reencrypt, &self.download]
            .into_iter()
            .flatten()
            .filter(|s| s.name().contains(which))
            .map(|s| s.log_tail(30))
            .collect::<String>();
        Error::Unexpected(format!("{e}\n{which} log:\n{tail}"))
    }

    /// An ES256 access token for `sub`, signed by the trusted key (or by a key the service does
    /// not trust).
    pub fn token(&self, sub: &str, trusted: bool) -> Result<String, Error> {
        let key = if trusted { &self.jwt } else { &self.untrusted };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = serde_json::json!({
            "iss": ISSUER, "sub": sub, "aud": AUDIENCE, "iat": now, "exp": now + 7200,
            "jti": format!("{now}-{sub}"),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.typ = Some("JWT".into());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&key.serialize_der()),
        )
        .map_err(|e| Error::Unexpected(format!("signing a token: {e}")))
    }

    /// Writes a token for `sub` to a file in the work directory and returns its path.
    pub fn token_file(&self, sub: &str, trusted: bool) -> Result<PathBuf, Error> {
        let path = self.dir().join(format!(
            "work/token-{}-{}.txt",
            sub.replace(['@', '.'], "_"),
            if trusted { "ok" } else { "untrusted" }
        ));
        write(&path, &self.token(sub, trusted)?)?;
        Ok(path)
    }

    /// Encrypts `plaintext` for the archive key, splits header and body the way SDA's ingest
    /// does, stores the body in the archive and registers the file as ready in `dataset`, owned
    /// by [`OWNER`].
    pub fn archive(
        &mut self,
        dataset: &str,
        path: &str,
        plaintext: &[u8],
    ) -> Result<ArchivedFile, Error> {
        let mut whole = Vec::with_capacity(plaintext.len() + plaintext.len() / 2 + 1024);
        c4gh::encrypt(
            &mut &plaintext[..],
            &mut whole,
            &c4gh::SecretKey::generate(),
            &[self.archive_key.public_key()],
        )
        .map_err(|e| Error::Unexpected(format!("encrypting test data: {e}")))?;
        let header_len = match c4gh::header::header_len(&whole) {
            Ok(c4gh::header::HeaderLen::Complete(n)) => n,
            other => {
                return Err(Error::Unexpected(format!(
                    "the encrypted test data has no complete header: {other:?}"
                )));
            }
        };
        let (header, body) = whole.split_at(header_len);
        let file = self.next_file(dataset, path, header.to_vec())?;
        write_bytes(&file.body, body)?;
        let file = ArchivedFile {
            body_len: body.len() as u64,
            body_sha256: hex(&Sha256::digest(body)),
            ..file
        };
        self.register(&file, Some(plaintext))?;
        Ok(file)
    }

    /// Registers a file whose plaintext is `len` zero bytes, encrypted for the archive key
    /// straight into the archive (streaming: memory stays flat however large `len` is), for
    /// transfers checked against the archived body (`encrypted` mode).
    pub fn archive_zeros(
        &mut self,
        dataset: &str,
        path: &str,
        len: u64,
    ) -> Result<ArchivedFile, Error> {
        let key = c4gh::DataKey::generate();
        let header = c4gh::header::build(
            &c4gh::SecretKey::generate(),
            &[self.archive_key.public_key()],
            &[&key],
            None,
        )
        .map_err(|e| Error::Unexpected(format!("building a header: {e}")))?;
        let file = self.next_file(dataset, path, header)?;
        let f = fs::File::create(&file.body).map_err(|source| Error::Io {
            context: format!("creating {}", file.body.display()),
            source,
        })?;
        let encrypting =
            |e: c4gh::Error| Error::Unexpected(format!("encrypting {}: {e}", file.body.display()));
        let mut enc = c4gh::body::Encryptor::new(std::io::BufWriter::new(f), &key);
        enc.copy_from(&mut std::io::Read::take(std::io::repeat(0), len))
            .map_err(encrypting)?;
        std::io::Write::flush(&mut enc.finish().map_err(encrypting)?).map_err(|source| {
            Error::Io {
                context: format!("writing {}", file.body.display()),
                source,
            }
        })?;
        let len = fs::metadata(&file.body)
            .map_err(|source| Error::Io {
                context: format!("sizing {}", file.body.display()),
                source,
            })?
            .len();
        // coreutils' sha256sum: the test binary is a debug build, far slower at hashing GiBs.
        let out = Command::new("sha256sum")
            .arg(&file.body)
            .output()
            .map_err(|source| Error::Io {
                context: "running sha256sum".into(),
                source,
            })?;
        let sum = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        if !out.status.success() || sum.len() != 64 {
            return Err(Error::Unexpected(format!(
                "sha256sum {} failed: {}",
                file.body.display(),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let file = ArchivedFile {
            body_len: len,
            body_sha256: sum,
            ..file
        };
        self.register(&file, None)?;
        Ok(file)
    }

    fn next_file(
        &mut self,
        dataset: &str,
        path: &str,
        header: Vec<u8>,
    ) -> Result<ArchivedFile, Error> {
        self.registered += 1;
        let n = self.registered;
        Ok(ArchivedFile {
            stable_id: format!("EGAF{n:011}"),
            dataset: dataset.to_owned(),
            path: path.to_owned(),
            header,
            body: self
                .dir()
                .join("archive")
                .join(format!("3f1c6c1e-6a3e-4c0b-9d8e-{n:012}")),
            body_len: 0,
            body_sha256: String::new(),
        })
    }

    fn register(&self, f: &ArchivedFile, plaintext: Option<&[u8]>) -> Result<(), Error> {
        let uuid = f
            .body
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key_hash = hex(self.archive_key.public_key().as_bytes());
        let archive = self.dir().join("archive");
        let header_hex = hex(&f.header);
        let (plain_len, plain_sha) = match plaintext {
            Some(p) => (p.len() as u64, hex(&Sha256::digest(p))),
            None => (f.body_len, f.body_sha256.clone()),
        };
        let ds = &f.dataset;
        let sql = format!(
            "SET search_path TO sda;
INSERT INTO encryption_keys(key_hash, description) VALUES ('{key_hash}', 'test archive key') ON CONFLICT DO NOTHING;
INSERT INTO files(id, stable_id, submission_user, submission_location, submission_file_path, submission_file_size,
                  archive_location, archive_file_path, archive_file_size, decrypted_file_size,
                  header, encryption_method, key_hash, last_event)
VALUES ('{uuid}', '{id}', '{OWNER}', '/inbox', '{path}', {sub_size},
        '{archive}', '{uuid}', {size}, {plain_len}, '{header_hex}', 'CRYPT4GH', '{key_hash}', 'ready');
INSERT INTO checksums(file_id, checksum, type, source) VALUES
  ('{uuid}', '{sha}', 'SHA256', 'ARCHIVED'), ('{uuid}', '{plain_sha}', 'SHA256', 'UNENCRYPTED');
INSERT INTO datasets(stable_id, title, description) VALUES ('{ds}', 'test dataset', 'c4gh tests') ON CONFLICT DO NOTHING;
INSERT INTO file_dataset(file_id, dataset_id) SELECT '{uuid}', id FROM datasets WHERE stable_id='{ds}';",
            id = f.stable_id,
            path = f.path,
            sub_size = f.body_len + f.header.len() as u64,
            archive = archive.display(),
            size = f.body_len,
            sha = f.body_sha256,
        );
        self.psql("sda", &sql).map(drop)
    }
}

impl Drop for Sda {
    fn drop(&mut self) {
        // reencrypt ignores SIGTERM (it never reads its signal channel): SIGKILL it.
        if let Some(r) = &self.reencrypt {
            let _ = r.signal(Signal::SIGKILL);
        }
        self.download.take();
        self.reencrypt.take();
        self.postgres.take();
        // The holder goes last; with it the namespace and its `lo` disappear.
        let _ = self.netns.signal(Signal::SIGKILL);
    }
}

/// A fresh ES256 (P-256) token signing key.
fn jwt_key() -> Result<rcgen::KeyPair, Error> {
    rcgen::KeyPair::generate().map_err(|e| Error::Unexpected(format!("generating a JWT key: {e}")))
}

/// Debian's PostgreSQL binaries (`/usr/lib/postgresql/<major>/bin`, newest major).
pub fn postgres_bin() -> Result<PathBuf, Error> {
    let base = Path::new("/usr/lib/postgresql");
    let mut majors: Vec<(u32, PathBuf)> = fs::read_dir(base)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let bin = e.path().join("bin");
                    bin.join("initdb").is_file().then_some((major, bin))
                })
                .collect()
        })
        .unwrap_or_default();
    majors.sort();
    majors
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| Error::Missing {
            what: "PostgreSQL (Debian package `postgresql`)".into(),
            path: base.to_owned(),
            fix: "cargo xtask setup".into(),
        })
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Polls `ready` every 100 ms until it holds or `timeout` passes.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Timeout {
        what: what.to_owned(),
        log_tail: String::new(),
    })
}

fn mkdir(path: &Path) -> Result<(), Error> {
    fs::create_dir_all(path).map_err(|source| Error::Io {
        context: format!("creating {}", path.display()),
        source,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|source| Error::Io {
        context: format!("chmod {mode:o} {}", path.display()),
        source,
    })
}

fn chown_postgres(path: &Path) -> Result<(), Error> {
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .ok_or_else(|| Error::Missing {
            what: "the `postgres` user (Debian package `postgresql`)".into(),
            path: PathBuf::from("/etc/passwd"),
            fix: "cargo xtask setup".into(),
        })?;
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|errno| Error::Io {
        context: format!("chown postgres {}", path.display()),
        source: errno.into(),
    })
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    write_bytes(path, text.as_bytes())
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    fs::File::create(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|source| Error::Io {
            context: format!("writing {}", path.display()),
            source,
        })
}
