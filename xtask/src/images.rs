//! `cargo xtask images`: the project's OCI images, built without a daemon or a registry.
//!
//! - `c4gh-operator`, `c4gh-sidecar`, `c4gh-drs-server`: the workspace's release binary (gnu
//!   target, debug info stripped) and the shared libraries it links (read from `ldd`), plus `/etc/passwd` and
//!   `/etc/group` naming the non-root user 65532 the image runs as, and the binary's man pages
//!   and bash, zsh and fish completions (`c4gh-docgen`) under `/usr/share`. No shell. The
//!   sidecar image also holds `/usr/local/bin/c4gh-exec` (crate `exec/`), linked statically
//!   (`-C target-feature=+crt-static`, gnu target): the gate copies it into TESK executor pods,
//!   whose task images may have any libc or none.
//! - `c4gh-task`: what a TES user's task image looks like, a minimal Debian root file system
//!   (`mmdebstrap`, Debian's Essential packages plus `python3`) with the reference Python
//!   `crypt4gh` and its dependencies from PyPI (binary wheels for the image's Python). The root file system is cached under
//!   `~/.cache/crypt4gh-sidecar/images/` with a stamp, so only the first build downloads it.
//! - `tesk-taskmaster`: TESK's taskmaster (tesk-core a50995a, unmodified, unpacked by `cargo
//!   xtask setup`) on the task image's root file system, with its pinned dependencies from PyPI;
//!   `tests/tests/tesk.rs` has the real `tesk-api` start it.
//! - `tesk-filer`: the same root file system with TESK's `filer` as the entry point, as
//!   tesk-core's `containers/filer.Dockerfile` builds it; the taskmaster's inputs and outputs
//!   filer Jobs run it (`tests/tests/cwl_tes.rs`).
//! - `pause`: the pod sandbox's pause process (`xtask/pause/pause.c`, `gcc -static`), the
//!   containerd sandbox image of the tests' node.
//!
//! Each image is assembled with `umoci` (one layer, config with user, entrypoint and OCI labels)
//! and written as an OCI image layout archive `target/images/NAME.oci.tar` whose index names the
//! image `c4gh.local/NAME:dev`. `ctr images import` takes it as it is, and `skopeo copy
//! oci-archive:...` pushes it to a registry (docs/operator.md, "Images"). Every output is
//! written under a temporary name and renamed, so an interrupted build never leaves an archive
//! that looks complete.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::python::cache_dir;
use crate::run::{Cmd, Error};

/// The registry part of every image name; `c4gh.local` is never pulled from (pods use
/// `imagePullPolicy: Never` or `IfNotPresent`).
pub const REGISTRY: &str = "c4gh.local";
/// The tag of every locally built image.
pub const TAG: &str = "dev";
/// The non-root user and group the project's own images run as.
const USER: u32 = 65532;
/// Debian packages of the task image besides the Essential set.
const TASK_PACKAGES: &[&str] = &["python3"];
/// The reference implementation, as in the tests' virtualenv (`python.rs`).
const CRYPT4GH: &str = "crypt4gh==1.8.6";
/// tesk-core's `install_requires` (its `setup.py` at a50995a).
const TESK_CORE_DEPS: &[&str] = &[
    "kubernetes==9.0.0",
    "requests>=2.20.0",
    "urllib3==1.26.19",
    "boto3==1.16.18",
];
/// The Debian release of the task image: the build machine's own (its apt sources are used).
const SUITE: &str = "bookworm";

/// One of the workspace's binaries and the package that builds it.
struct Binary {
    image: &'static str,
    package: &'static str,
    description: &'static str,
}

const BINARIES: &[Binary] = &[
    Binary {
        image: "c4gh-operator",
        package: "c4gh-operator",
        description: "Kubernetes operator injecting the crypt4gh sidecar into TES task pods",
    },
    Binary {
        image: "c4gh-sidecar",
        package: "c4gh-sidecar",
        description: "Native sidecar fetching drs:// Crypt4GH inputs for a task with an ephemeral key",
    },
    Binary {
        image: "c4gh-drs-server",
        package: "drs-server",
        description: "GA4GH DRS server re-encrypting Crypt4GH headers for a requester's key",
    },
];

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `target/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Where the archives go.
pub fn output_dir() -> PathBuf {
    target_dir().join("images")
}

/// Builds every image into [`output_dir`].
pub fn build() -> Result<(), Error> {
    let mut cargo = Cmd::new("cargo").args(["build", "--release", "--locked"]);
    for binary in BINARIES {
        cargo = cargo.args(["-p", binary.package, "--bin", binary.image]);
    }
    cargo.run()?;
    let exec = static_exec()?;
    let out = output_dir();
    let work = out.join("build");
    remove_dir(&work)?;
    fs::create_dir_all(&work).map_err(|err| io("creating", &work, &err))?;
    let dist = work.join("dist");
    docgen(&dist)?;
    for binary in BINARIES {
        let rootfs = work.join(binary.image).join("rootfs");
        binary_rootfs(&rootfs, &target_dir().join("release").join(binary.image))?;
        manuals(&rootfs, &dist, binary.image)?;
        if binary.image == "c4gh-sidecar" {
            let inside = rootfs.join("usr/local/bin").join(EXEC);
            copy(&exec, &inside)?;
            Cmd::new("strip")
                .arg("--strip-debug")
                .arg_path(&inside)
                .run()?;
        }
        let entrypoint = format!("/usr/local/bin/{}", binary.image);
        image(
            &work.join(binary.image),
            &rootfs,
            &Config {
                name: binary.image,
                description: binary.description,
                user: Some(format!("{USER}:{USER}")),
                entrypoint: &[&entrypoint],
                cmd: &[],
            },
            &out,
        )?;
    }
    let pause = work.join("pause").join("rootfs");
    pause_rootfs(&pause)?;
    image(
        &work.join("pause"),
        &pause,
        &Config {
            name: "pause",
            description: "Pod sandbox pause process for the end-to-end tests' node",
            user: Some("65535:65535".into()),
            entrypoint: &["/pause"],
            cmd: &[],
        },
        &out,
    )?;
    let task = task_rootfs()?;
    image(
        &work.join("c4gh-task"),
        &task,
        &Config {
            name: "c4gh-task",
            description: "TES task image: Debian with python3 and the reference crypt4gh",
            user: None,
            entrypoint: &[],
            cmd: &["/bin/sh"],
        },
        &out,
    )?;
    let taskmaster = work.join("tesk-taskmaster").join("rootfs");
    taskmaster_rootfs(&task, &taskmaster)?;
    image(
        &work.join("tesk-taskmaster"),
        &taskmaster,
        &Config {
            name: "tesk-taskmaster",
            description: "TESK's taskmaster (tesk-core a50995a, unmodified) on the task image's Debian",
            user: Some("100:100".into()),
            entrypoint: &["/usr/local/bin/taskmaster"],
            cmd: &[],
        },
        &out,
    )?;
    // TESK's filer image is its taskmaster image with the other entry point
    // (tesk-core's containers/filer.Dockerfile installs the same wheel and runs `filer`).
    image(
        &work.join("tesk-filer"),
        &taskmaster,
        &Config {
            name: "tesk-filer",
            description: "TESK's filer (tesk-core a50995a, unmodified) on the task image's Debian",
            user: Some("100:100".into()),
            entrypoint: &["/usr/local/bin/filer"],
            cmd: &[],
        },
        &out,
    )?;
    remove_dir(&work)?;
    eprintln!("images written to {}", out.display());
    Ok(())
}

/// The wrapper of TESK executors' commands, shipped in the sidecar image.
const EXEC: &str = "c4gh-exec";
/// The target `c4gh-exec` is built for, named explicitly so that `RUSTFLAGS` reach only it.
const EXEC_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds `c4gh-exec` (standard library only) statically linked; returns the binary's path.
fn static_exec() -> Result<PathBuf, Error> {
    Cmd::new("cargo")
        .args([
            "build",
            "--release",
            "--locked",
            "-p",
            EXEC,
            "--target",
            EXEC_TARGET,
        ])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .run()?;
    let binary = target_dir().join(EXEC_TARGET).join("release").join(EXEC);
    let listing = Cmd::new("ldd").arg_path(&binary).output()?;
    if !linked_libraries(&listing).is_empty() {
        return Err(Error::Message(format!(
            "{} is not statically linked ({}); it must run in task images with any libc",
            binary.display(),
            listing.trim()
        )));
    }
    Ok(binary)
}

/// An image's configuration.
struct Config<'a> {
    name: &'a str,
    description: &'a str,
    user: Option<String>,
    entrypoint: &'a [&'a str],
    cmd: &'a [&'a str],
}

/// Packs `rootfs` into a one-layer image with `config`, as `out/NAME.oci.tar`.
fn image(work: &Path, rootfs: &Path, config: &Config<'_>, out: &Path) -> Result<(), Error> {
    let layout = work.join("layout");
    let reference = format!("{REGISTRY}/{}:{TAG}", config.name);
    let image = format!("{}:{TAG}", layout.display());
    Cmd::new("umoci")
        .args(["init", "--layout"])
        .arg_path(&layout)
        .run()?;
    Cmd::new("umoci").args(["new", "--image", &image]).run()?;
    Cmd::new("umoci")
        .args(["insert", "--no-history", "--image", &image])
        .arg_path(rootfs)
        .arg("/")
        .run()?;
    let version = env!("CARGO_PKG_VERSION");
    let mut umoci = Cmd::new("umoci").args([
        "config",
        "--no-history",
        "--image",
        &image,
        "--os",
        "linux",
        "--architecture",
        "amd64",
        "--config.workingdir",
        "/",
        "--config.env",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.label",
        &format!("org.opencontainers.image.title={}", config.name),
        "--config.label",
        &format!(
            "org.opencontainers.image.description={}",
            config.description
        ),
        "--config.label",
        &format!("org.opencontainers.image.version={version}"),
        "--config.label",
        "org.opencontainers.image.licenses=Apache-2.0",
        "--config.label",
        "org.opencontainers.image.vendor=crypt4gh-sidecar",
    ]);
    if let Some(user) = &config.user {
        umoci = umoci.args(["--config.user", user]);
    }
    for arg in config.entrypoint {
        umoci = umoci.args(["--config.entrypoint", arg]);
    }
    for arg in config.cmd {
        umoci = umoci.args(["--config.cmd", arg]);
    }
    umoci.run()?;
    // The index names the image by its full reference, which `ctr images import` uses as is.
    Cmd::new("umoci")
        .args(["tag", "--image", &image, &reference])
        .run()?;
    Cmd::new("umoci").args(["rm", "--image", &image]).run()?;
    Cmd::new("umoci")
        .args(["gc", "--layout"])
        .arg_path(&layout)
        .run()?;
    fs::create_dir_all(out).map_err(|err| io("creating", out, &err))?;
    let archive = out.join(format!("{}.oci.tar", config.name));
    let part = out.join(format!(".{}.oci.tar.part", config.name));
    Cmd::new("tar")
        .args(["--create", "--file"])
        .arg_path(&part)
        .args(["--directory"])
        .arg_path(&layout)
        .args(["oci-layout", "index.json", "blobs"])
        .run()?;
    fs::rename(&part, &archive).map_err(|err| io("renaming", &part, &err))?;
    eprintln!("built {reference} -> {}", archive.display());
    Ok(())
}

/// The root file system of one of the workspace's binaries: the binary, every shared library
/// `ldd` lists (at the same path), and the user database naming [`USER`].
fn binary_rootfs(rootfs: &Path, binary: &Path) -> Result<(), Error> {
    let bin = rootfs.join("usr/local/bin");
    fs::create_dir_all(&bin).map_err(|err| io("creating", &bin, &err))?;
    let name = binary
        .file_name()
        .ok_or_else(|| Error::Message(format!("{} has no file name", binary.display())))?;
    let inside = bin.join(name);
    copy(binary, &inside)?;
    // The release profile keeps line tables for backtraces; the image does without them.
    Cmd::new("strip")
        .arg("--strip-debug")
        .arg_path(&inside)
        .run()?;
    let listing = Cmd::new("ldd").arg_path(binary).output()?;
    for library in linked_libraries(&listing) {
        let inside = rootfs.join(library.strip_prefix("/").unwrap_or(&library));
        copy(&library, &inside)?;
    }
    let etc = rootfs.join("etc");
    fs::create_dir_all(&etc).map_err(|err| io("creating", &etc, &err))?;
    write(
        &etc.join("passwd"),
        &format!(
            "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{USER}:{USER}:nonroot:/home/nonroot:/sbin/nologin\n"
        ),
    )?;
    write(
        &etc.join("group"),
        &format!("root:x:0:\nnonroot:x:{USER}:\n"),
    )?;
    let tmp = rootfs.join("tmp");
    fs::create_dir_all(&tmp).map_err(|err| io("creating", &tmp, &err))?;
    set_mode(&tmp, 0o1777)
}

/// Runs `c4gh-docgen --out DIR`: man pages and shell completions of every binary, generated from
/// the clap definitions (no binary is run).
pub fn docgen(out: &Path) -> Result<(), Error> {
    Cmd::new("cargo")
        .args([
            "run",
            "--quiet",
            "--locked",
            "-p",
            "c4gh-docgen",
            "--",
            "--out",
        ])
        .arg_path(out)
        .run()
}

/// The man pages (`NAME.1`, `NAME-SUBCOMMAND.1`) and bash, zsh and fish completions of `name`
/// from `c4gh-docgen`'s output `dist`, at the paths where man and the shells look for them.
fn manuals(rootfs: &Path, dist: &Path, name: &str) -> Result<(), Error> {
    let pages = dist.join("man/man1");
    let man1 = rootfs.join("usr/share/man/man1");
    fs::create_dir_all(&man1).map_err(|err| io("creating", &man1, &err))?;
    let mut found = 0;
    for entry in fs::read_dir(&pages).map_err(|err| io("reading", &pages, &err))? {
        let page = entry
            .map_err(|err| io("reading", &pages, &err))?
            .file_name();
        let page = page.to_string_lossy();
        if page == format!("{name}.1") || page.starts_with(&format!("{name}-")) {
            copy(&pages.join(&*page), &man1.join(&*page))?;
            found += 1;
        }
    }
    if found == 0 {
        return Err(Error::Message(format!(
            "c4gh-docgen wrote no man page for {name} into {}",
            pages.display()
        )));
    }
    let completions = dist.join("completions");
    for (from, to) in [
        (
            format!("bash/{name}"),
            format!("usr/share/bash-completion/completions/{name}"),
        ),
        (
            format!("zsh/_{name}"),
            format!("usr/share/zsh/site-functions/_{name}"),
        ),
        (
            format!("fish/{name}.fish"),
            format!("usr/share/fish/vendor_completions.d/{name}.fish"),
        ),
    ] {
        copy(&completions.join(from), &rootfs.join(to))?;
    }
    Ok(())
}

/// The absolute library paths in `ldd` output (`libc.so.6 => /lib/.../libc.so.6 (0x...)` and
/// the loader's own `/lib64/ld-linux-x86-64.so.2 (0x...)`).
fn linked_libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, right)) => right.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The pause image's root file system: the static pause program only.
fn pause_rootfs(rootfs: &Path) -> Result<(), Error> {
    fs::create_dir_all(rootfs).map_err(|err| io("creating", rootfs, &err))?;
    let source = root().join("xtask").join("pause").join("pause.c");
    Cmd::new("gcc")
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg_path(&rootfs.join("pause"))
        .arg_path(&source)
        .run()
}

/// The task image's root file system, from the cache when its stamp matches, otherwise built:
/// `mmdebstrap` with the machine's apt sources, then `crypt4gh` and its dependencies from PyPI
/// (binary wheels for the image's Python, whatever Python runs pip) and a `crypt4gh` command.
fn task_rootfs() -> Result<PathBuf, Error> {
    let cache = cache_dir().join("images");
    fs::create_dir_all(&cache).map_err(|err| io("creating", &cache, &err))?;
    let lock_path = cache.join(".lock");
    let lock = File::create(&lock_path).map_err(|err| io("creating", &lock_path, &err))?;
    lock.lock().map_err(|err| io("locking", &lock_path, &err))?;
    let rootfs = cache.join("task-rootfs");
    let stamp_path = cache.join("task-rootfs.stamp");
    let stamp = format!("{SUITE} {} {CRYPT4GH}", TASK_PACKAGES.join(","));
    if rootfs.is_dir() && fs::read_to_string(&stamp_path).is_ok_and(|have| have == stamp) {
        return Ok(rootfs);
    }
    let _ = fs::remove_file(&stamp_path);
    remove_dir(&rootfs)?;
    let part = cache.join(".task-rootfs.part");
    remove_dir(&part)?;
    let sources = Path::new("/etc/apt/sources.list.d/debian.sources");
    let sources = if sources.is_file() {
        sources
    } else {
        Path::new("/etc/apt/sources.list")
    };
    Cmd::new("mmdebstrap")
        .args([
            "--quiet",
            "--variant=essential",
            &format!("--include={}", TASK_PACKAGES.join(",")),
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/info/*",
            SUITE,
        ])
        .arg_path(&part)
        .arg_path(sources)
        .run()?;
    // Device nodes mmdebstrap made; the container runtime gives every container its own /dev.
    let dev = part.join("dev");
    remove_dir(&dev)?;
    fs::create_dir(&dev).map_err(|err| io("creating", &dev, &err))?;
    // pip --target also writes scripts whose interpreter is the virtualenv's; replaced below.
    pip_install(&part, &[CRYPT4GH])?;
    let command = part.join("usr/local/bin/crypt4gh");
    write(
        &command,
        "#!/usr/bin/python3\nimport sys\nfrom crypt4gh.__main__ import main\nsys.exit(main())\n",
    )?;
    set_mode(&command, 0o755)?;
    Cmd::new("chroot")
        .arg_path(&part)
        .args(["/usr/local/bin/crypt4gh", "--version"])
        .run()?;
    fs::rename(&part, &rootfs).map_err(|err| io("renaming", &part, &err))?;
    write(&stamp_path, &stamp)?;
    Ok(rootfs)
}

/// Installs `packages` (binary wheels from PyPI, for the root file system's own Python) into
/// `rootfs`'s `/usr/local/lib/pythonX.Y/dist-packages`, without the scripts `pip --target`
/// writes for the virtualenv's interpreter. Returns that directory.
fn pip_install(rootfs: &Path, packages: &[&str]) -> Result<PathBuf, Error> {
    let python = python_dir(rootfs)?;
    let site = rootfs
        .join("usr/local/lib")
        .join(&python)
        .join("dist-packages");
    let version = python.trim_start_matches("python");
    let pip = cache_dir().join("venv").join("bin").join("pip");
    Cmd::new(&pip)
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            "--only-binary=:all:",
            "--implementation=cp",
            &format!("--python-version={version}"),
            "--platform=manylinux_2_28_x86_64",
            "--platform=manylinux_2_17_x86_64",
            "--platform=manylinux2014_x86_64",
            "--target",
        ])
        .arg_path(&site)
        .args(packages.iter().copied())
        .run()?;
    remove_dir(&site.join("bin"))?;
    Ok(site)
}

/// The taskmaster image's root file system: the task image's, plus `tesk-core`'s dependencies as
/// its `setup.py` pins them (binary wheels from PyPI) and its `tesk_core` package as
/// `tests/tesk/build.sh` unpacked it, with the `taskmaster` and `filer` commands its
/// `setup.py` declares. Like TESK's own image, it runs as UID 100.
fn taskmaster_rootfs(task: &Path, rootfs: &Path) -> Result<(), Error> {
    let package = crate::tesk::out_dir().join("src/tesk-core/src/tesk_core");
    if !package.join("taskmaster.py").is_file() {
        return Err(Error::Message(format!(
            "{} is missing: run `cargo xtask setup` (it unpacks tesk-core)",
            package.display()
        )));
    }
    if let Some(parent) = rootfs.parent() {
        fs::create_dir_all(parent).map_err(|err| io("creating", parent, &err))?;
    }
    Cmd::new("cp")
        .arg("-a")
        .arg_path(task)
        .arg_path(rootfs)
        .run()?;
    let site = pip_install(rootfs, TESK_CORE_DEPS)?;
    Cmd::new("cp")
        .arg("-a")
        .arg_path(&package)
        .arg_path(&site.join("tesk_core"))
        .run()?;
    for (command, module) in [("taskmaster", "taskmaster"), ("filer", "filer")] {
        let path = rootfs.join("usr/local/bin").join(command);
        write(
            &path,
            &format!(
                "#!/usr/bin/python3\nimport sys\nfrom tesk_core.{module} import main\nsys.exit(main())\n"
            ),
        )?;
        set_mode(&path, 0o755)?;
    }
    Cmd::new("chroot")
        .arg_path(rootfs)
        .args(["/usr/local/bin/taskmaster", "--help"])
        .output()
        .map(drop)
}

/// `python3.N`: the Python under `rootfs/usr/lib`.
fn python_dir(rootfs: &Path) -> Result<String, Error> {
    let lib = rootfs.join("usr/lib");
    let entries = fs::read_dir(&lib).map_err(|err| io("reading", &lib, &err))?;
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .find(|name| {
            name.strip_prefix("python3.")
                .is_some_and(|minor| !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit()))
        })
        .ok_or_else(|| Error::Message(format!("no python3.N directory under {}", lib.display())))
}

fn copy(from: &Path, to: &Path) -> Result<(), Error> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).map_err(|err| io("creating", parent, &err))?;
    }
    fs::copy(from, to).map_err(|err| io("copying", from, &err))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    fs::write(path, text).map_err(|err| io("writing", path, &err))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|err| io("setting the mode of", path, &err))
}

fn remove_dir(path: &Path) -> Result<(), Error> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(io("removing", path, &err)),
    }
}

fn io(what: &str, path: &Path, err: &std::io::Error) -> Error {
    Error::Message(format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_yields_every_absolute_library_path() {
        let listing = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                       \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f01)\n\
                       \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\
                       \t/lib64/ld-linux-x86-64.so.2 (0x00007f03)\n";
        assert_eq!(
            linked_libraries(listing),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
    }
}
