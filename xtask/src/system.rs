//! Debian packages the node and the image build need: `runc` (the OCI runtime containerd
//! calls), `containernetworking-plugins` (its `loopback` plugin makes the node's network
//! `Ready`), `umoci` (builds the OCI images without a daemon), `mmdebstrap` (the task image's
//! Debian root file system), `gcc` (the static pause program), and JDK 17 with Maven (they
//! build TESK's Java API, `tesk.rs`). Each is installed with
//! `apt-get` only when it is missing, so a machine that has them is left alone.

use std::path::Path;
use std::process::Command;

use crate::run::{Cmd, Error};

/// A package and a file it installs, by which its presence is checked.
const PACKAGES: &[(&str, &str)] = &[
    ("runc", "/usr/sbin/runc"),
    ("containernetworking-plugins", "/usr/lib/cni/loopback"),
    ("umoci", "/usr/bin/umoci"),
    ("mmdebstrap", "/usr/bin/mmdebstrap"),
    ("gcc", "/usr/bin/gcc"),
    ("libc6-dev", "/usr/lib/x86_64-linux-gnu/libc.a"),
    (
        "openjdk-17-jdk-headless",
        "/usr/lib/jvm/java-17-openjdk-amd64/bin/javac",
    ),
    ("maven", "/usr/bin/mvn"),
];

/// Installs whichever of [`PACKAGES`] is missing (`apt-get update` first, once).
pub fn ensure_packages() -> Result<(), Error> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, file)| !Path::new(file).exists())
        .map(|(name, _)| *name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        return Err(Error::Message(format!(
            "missing Debian packages {}: install them as root (`apt-get install {}`) or run \
             `cargo xtask setup` as root",
            missing.join(", "),
            missing.join(" ")
        )));
    }
    Cmd::new("apt-get").args(["update", "-q"]).run()?;
    Cmd::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .run()
}

/// Whether this process runs as root (the node and `apt-get` need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
