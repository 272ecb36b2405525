//! The task's end, learnt from the exit notices `c4gh-exec --notice` writes
//! ([`c4gh_contract::exits`]), so that the key is destroyed as soon as no task container can
//! read it any more rather than at the kubelet's SIGTERM (which follows the last task
//! container's exit only after the kubelet's next relist, up to a second or two later).
//!
//! The rule ([`decide`]): the key goes early only when every task container runs behind the
//! wrapper and has ended for good under its restart policy: `Never`, any exit; `OnFailure`,
//! exit status 0 (a failed attempt is retried and needs the key); `Always`, never. A task
//! container without the wrapper (no explicit `command`), an `Always` policy or no list at all
//! leave the SIGTERM path alone. A notice that is missing or unreadable means "not ended": a
//! wrong notice can only make destruction late, never early; and a notice the task writes
//! itself can only destroy its own key early.
//!
//! [`ExitWatch`] watches the notice directory with inotify (a thread of its own blocks reading
//! the events and wakes the sidecar's task) and re-reads the notices on every event, and on a
//! timer as well ([`BACKUP_POLL`], or [`POLL_WITHOUT_INOTIFY`] when inotify is unavailable), so
//! a lost event costs at most that long.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use c4gh_contract::exits::{MAX_NOTICE_BYTES, RestartPolicy, TaskContainer, parse_notice};
use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::Notify;

/// Time between two reads of the notices while inotify watches the directory (a safety net).
pub const BACKUP_POLL: Duration = Duration::from_secs(1);
/// Time between two reads of the notices when inotify is unavailable.
pub const POLL_WITHOUT_INOTIFY: Duration = Duration::from_millis(100);

/// What the notices say about the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some task container may still run (or run again).
    Running,
    /// Every task container has ended for good, with these exit statuses.
    Ended(Vec<(String, u8)>),
    /// The notices can never tell: the key waits for SIGTERM, for this reason.
    SigtermOnly(String),
}

/// The decision for `containers` given the `notices` read (container name → exit status).
pub fn decide(containers: &[TaskContainer], notices: &BTreeMap<String, u8>) -> Decision {
    if containers.is_empty() {
        return Decision::SigtermOnly("no task containers are listed".to_owned());
    }
    if let Some(c) = containers.iter().find(|c| !c.wrapped) {
        return Decision::SigtermOnly(format!(
            "task container {:?} has no explicit command, so it does not run behind c4gh-exec and writes no exit notice",
            c.name
        ));
    }
    if let Some(c) = containers
        .iter()
        .find(|c| c.restart_policy == RestartPolicy::Always)
    {
        return Decision::SigtermOnly(format!(
            "task container {:?} has restart policy Always, so no exit of it is its last",
            c.name
        ));
    }
    let mut ended = Vec::with_capacity(containers.len());
    for c in containers {
        match notices.get(&c.name) {
            Some(&status) if c.restart_policy.is_final(status) => {
                ended.push((c.name.clone(), status));
            }
            _ => return Decision::Running,
        }
    }
    Decision::Ended(ended)
}

/// Wakes the watch on every batch of inotify events, from the thread reading them.
#[derive(Debug)]
struct Events {
    wake: Notify,
    /// False once the reading thread has stopped (the watch then polls).
    alive: AtomicBool,
}

/// Starts the thread that reads the inotify events of `dir` (blocking) and wakes the watch.
fn watch_events(dir: &Path) -> Result<Arc<Events>, String> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC)
        .and_then(|i| {
            i.add_watch(
                dir,
                AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_CREATE,
            )?;
            Ok(i)
        })
        .map_err(|e| e.to_string())?;
    let events = Arc::new(Events {
        wake: Notify::new(),
        alive: AtomicBool::new(true),
    });
    let shared = Arc::clone(&events);
    std::thread::Builder::new()
        .name("exit-notices".into())
        .spawn(move || {
            loop {
                match inotify.read_events() {
                    Ok(_) => shared.wake.notify_one(),
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            "reading inotify events failed; polling the exit notices"
                        );
                        shared.alive.store(false, Ordering::Relaxed);
                        shared.wake.notify_one();
                        return;
                    }
                }
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(events)
}

/// Watches the exit notices of a pod's task containers.
#[derive(Debug)]
pub struct ExitWatch {
    dir: PathBuf,
    containers: Vec<TaskContainer>,
    events: Option<Arc<Events>>,
}

impl ExitWatch {
    /// Watches `dir` for the notices of `containers`: `Err` with the reason when the notices can
    /// never end the task ([`Decision::SigtermOnly`]) or `dir` does not exist. Without inotify
    /// the notices are polled every [`POLL_WITHOUT_INOTIFY`].
    pub fn new(dir: &Path, containers: Vec<TaskContainer>) -> Result<Self, String> {
        if let Decision::SigtermOnly(reason) = decide(&containers, &BTreeMap::new()) {
            return Err(reason);
        }
        if !dir.is_dir() {
            return Err(format!(
                "the exit notice directory {} does not exist",
                dir.display()
            ));
        }
        let events = match watch_events(dir) {
            Ok(events) => Some(events),
            Err(e) => {
                tracing::warn!(
                    dir = %dir.display(),
                    error = %e,
                    poll_ms = POLL_WITHOUT_INOTIFY.as_millis() as u64,
                    "no inotify watch on the exit notices; polling"
                );
                None
            }
        };
        Ok(ExitWatch {
            dir: dir.to_owned(),
            containers,
            events,
        })
    }

    /// The task containers watched.
    pub fn containers(&self) -> &[TaskContainer] {
        &self.containers
    }

    /// The notices present now (container name → exit status); a missing, oversized or
    /// malformed notice is left out.
    pub fn notices(&self) -> BTreeMap<String, u8> {
        let mut out = BTreeMap::new();
        for c in &self.containers {
            let path = self.dir.join(&c.name);
            let Ok(file) = std::fs::File::open(&path) else {
                continue;
            };
            let mut text = String::new();
            if file
                .take(MAX_NOTICE_BYTES + 1)
                .read_to_string(&mut text)
                .is_err()
            {
                continue;
            }
            match parse_notice(&text) {
                Some(status) if text.len() as u64 <= MAX_NOTICE_BYTES => {
                    out.insert(c.name.clone(), status);
                }
                _ => tracing::warn!(
                    path = %path.display(),
                    "not an exit notice; the container counts as running"
                ),
            }
        }
        out
    }

    /// Returns once every task container has ended for good: their exit statuses.
    pub async fn ended(&mut self) -> Vec<(String, u8)> {
        loop {
            if let Decision::Ended(statuses) = decide(&self.containers, &self.notices()) {
                return statuses;
            }
            self.changed().await;
        }
    }

    /// Waits for events in the directory, or the poll interval.
    async fn changed(&mut self) {
        match &self.events {
            Some(events) if events.alive.load(Ordering::Relaxed) => {
                // A wake-up sent while no one waited is kept for the next wait.
                let _ = tokio::time::timeout(BACKUP_POLL, events.wake.notified()).await;
            }
            _ => tokio::time::sleep(POLL_WITHOUT_INOTIFY).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn container(name: &str, policy: RestartPolicy, wrapped: bool) -> TaskContainer {
        TaskContainer {
            name: name.to_owned(),
            restart_policy: policy,
            wrapped,
        }
    }

    fn notices(list: &[(&str, u8)]) -> BTreeMap<String, u8> {
        list.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
    }

    #[test]
    fn the_key_goes_early_only_when_every_container_has_ended_for_good() {
        use RestartPolicy::{Always, Never, OnFailure};
        let two = [container("a", Never, true), container("b", OnFailure, true)];
        assert_eq!(decide(&two, &notices(&[])), Decision::Running);
        assert_eq!(decide(&two, &notices(&[("a", 1)])), Decision::Running);
        assert_eq!(
            decide(&two, &notices(&[("a", 1), ("b", 2)])),
            Decision::Running,
            "b failed under OnFailure: it is retried and needs the key"
        );
        assert_eq!(
            decide(&two, &notices(&[("a", 1), ("b", 0)])),
            Decision::Ended(vec![("a".into(), 1), ("b".into(), 0)])
        );
        assert_eq!(
            decide(&two, &notices(&[("a", 0), ("c", 0)])),
            Decision::Running,
            "a notice of another name does not count"
        );
        for (list, needle) in [
            (vec![], "no task containers"),
            (
                vec![container("a", Never, true), container("b", Never, false)],
                "\"b\" has no explicit command",
            ),
            (
                vec![container("a", Always, true)],
                "\"a\" has restart policy Always",
            ),
        ] {
            let all_ended: Vec<(&str, u8)> = list.iter().map(|c| (c.name.as_str(), 0)).collect();
            match decide(&list, &notices(&all_ended)) {
                Decision::SigtermOnly(reason) => assert!(reason.contains(needle), "{reason}"),
                other => panic!("{list:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_notice_renamed_into_place_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let list = vec![
            container("a", RestartPolicy::Never, true),
            container("b", RestartPolicy::OnFailure, true),
        ];
        assert!(ExitWatch::new(dir.path(), vec![]).is_err());
        let absent = ExitWatch::new(&dir.path().join("absent"), list.clone()).unwrap_err();
        assert!(absent.contains("does not exist"), "{absent}");
        let mut watch = ExitWatch::new(dir.path(), list).unwrap();
        assert!(
            watch.events.is_some(),
            "inotify works on the test's tmp dir"
        );
        std::fs::write(dir.path().join("a"), "3\n").unwrap();
        std::fs::write(dir.path().join("b"), "1\n").unwrap();
        let waiting = tokio::spawn(async move { (watch.ended().await, Instant::now()) });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "b failed and is retried");
        std::fs::write(dir.path().join(".b.part"), "0\n").unwrap();
        std::fs::write(dir.path().join("a"), "garbage").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "a temporary file is no notice");
        std::fs::write(dir.path().join("a"), "3\n").unwrap();
        let renamed = Instant::now();
        std::fs::rename(dir.path().join(".b.part"), dir.path().join("b")).unwrap();
        let (statuses, seen) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(statuses, vec![("a".into(), 3), ("b".into(), 0)]);
        let lag = seen.duration_since(renamed);
        assert!(
            lag < BACKUP_POLL / 2,
            "seen {lag:?} after the rename: inotify, not the backup poll"
        );
    }
}
