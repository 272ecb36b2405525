//! Process hardening before any key material exists: not dumpable, no core files, memory locked
//! when the limits allow it.
//!
//! - `prctl(PR_SET_DUMPABLE, 0)`: no core dumps, and `/proc/<pid>/mem`, `environ` and ptrace
//!   attach are denied to other processes of the same user (the files become root-owned).
//! - `setrlimit(RLIMIT_CORE, 0, 0)`: no core file even if dumpability is restored later.
//! - `mlockall(MCL_CURRENT | MCL_FUTURE)`: keep pages (the key among them) out of
//!   swap. Only attempted when `RLIMIT_MEMLOCK` is unlimited: with a finite limit, `MCL_FUTURE`
//!   would make later allocations fail once the locked total reaches it. When not attempted or
//!   not permitted, a warning is logged and the sidecar continues (Kubernetes nodes normally run
//!   without swap).

use nix::sys::mman::{MlockAllFlags, mlockall};
use nix::sys::prctl;
use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};

/// What hardening achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardening {
    /// Whether memory is locked; when false, `lock_note` says why.
    pub memory_locked: bool,
    /// Why memory is not locked (empty when it is).
    pub lock_note: String,
}

/// Why hardening failed (fatal: the sidecar refuses to create a key without it).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HardenError {
    /// `prctl(PR_SET_DUMPABLE, 0)` failed.
    #[error("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {0}")]
    Dumpable(#[source] nix::Error),
    /// `setrlimit(RLIMIT_CORE, 0)` failed.
    #[error("cannot disable core dumps (setrlimit RLIMIT_CORE): {0}")]
    CoreLimit(#[source] nix::Error),
}

/// Applies the hardening. Call before generating any key.
pub fn harden() -> Result<Hardening, HardenError> {
    prctl::set_dumpable(false).map_err(HardenError::Dumpable)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0).map_err(HardenError::CoreLimit)?;
    let (memory_locked, lock_note) = match getrlimit(Resource::RLIMIT_MEMLOCK) {
        Ok((soft, _)) if soft == RLIM_INFINITY => {
            match mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE) {
                Ok(()) => (true, String::new()),
                Err(e) => (false, format!("mlockall failed: {e}")),
            }
        }
        Ok((soft, _)) => (
            false,
            format!(
                "RLIMIT_MEMLOCK is {soft} bytes, not unlimited; locking all memory would make later allocations fail"
            ),
        ),
        Err(e) => (false, format!("cannot read RLIMIT_MEMLOCK: {e}")),
    };
    if memory_locked {
        tracing::info!("process memory locked, core dumps disabled, not dumpable");
    } else {
        tracing::warn!(
            reason = %lock_note,
            "memory not locked (key pages could be swapped if the node has swap); core dumps disabled, not dumpable"
        );
    }
    Ok(Hardening {
        memory_locked,
        lock_note,
    })
}

/// Whether the process is currently dumpable (`prctl(PR_GET_DUMPABLE)`).
pub fn is_dumpable() -> Result<bool, nix::Error> {
    prctl::get_dumpable()
}
