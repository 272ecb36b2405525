//! Key binding: one recipient key per identity for the lifetime of its credential.
//!
//! With `--bind-keys`, the first header request of an identity ([`Principal::binding_identity`]:
//! the pod UID of a projected ServiceAccount token, else the token subject) binds the request's
//! public key to it until the token's `exp` (static tokens, which do not expire: for
//! [`KeyBindings::static_ttl`]); a later token of the same identity used with the bound key
//! extends the binding to its own `exp`. A later header request of that identity with another key is
//! refused, so a leaked token cannot fetch headers for the thief's key while the binding lasts.
//! The table is in memory (a restarted server forgets it) and bounded: when it is full of unexpired
//! bindings, new identities are refused (503) rather than evicting a binding an attacker could
//! then replace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::auth::Principal;

/// Default most identities bound at once.
pub const DEFAULT_MAX_BINDINGS: usize = 100_000;

/// Why a key was not accepted for an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The identity already presented another key.
    #[error(
        "{identity} already fetched headers for the key with fingerprint {bound}; this server \
         binds one key per identity until its token expires (in {remaining_s} s), so a header \
         for key {offered} is refused. Reuse the first key, or get a new token"
    )]
    OtherKey {
        /// The identity (`pod:UID` or `sub:SUBJECT`).
        identity: String,
        /// Fingerprint of the bound key.
        bound: String,
        /// Fingerprint of the refused key.
        offered: String,
        /// Seconds until the binding expires.
        remaining_s: u64,
    },
    /// The table is full of unexpired bindings.
    #[error("the server holds {0} key bindings, its limit; retry later")]
    Full(usize),
}

struct Binding {
    fingerprint: String,
    expires_at: u64,
}

/// The bindings of identities to recipient key fingerprints.
pub struct KeyBindings {
    bindings: Mutex<HashMap<String, Binding>>,
    max: usize,
    /// How long a static token (which has no `exp`) stays bound to its first key.
    pub static_ttl: Duration,
}

impl std::fmt::Debug for KeyBindings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyBindings")
            .field("max", &self.max)
            .field("static_ttl", &self.static_ttl)
            .finish_non_exhaustive()
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl KeyBindings {
    /// An empty table of at most `max` bindings.
    pub fn new(max: usize, static_ttl: Duration) -> Self {
        KeyBindings {
            bindings: Mutex::new(HashMap::new()),
            max,
            static_ttl,
        }
    }

    /// Accepts `fingerprint` for `principal` if it is the key the identity presented first (or
    /// the identity has no unexpired binding, which then binds it).
    pub fn check(&self, principal: &Principal, fingerprint: &str) -> Result<(), BindingError> {
        let now = now_s();
        let expires_at = principal
            .expires_at
            .unwrap_or_else(|| now.saturating_add(self.static_ttl.as_secs()));
        let identity = principal.binding_identity();
        let mut bindings = self
            .bindings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(bound) = bindings.get_mut(&identity)
            && bound.expires_at > now
        {
            if bound.fingerprint == fingerprint {
                // A refreshed token of the same identity (a kubelet-rotated projected token)
                // extends the binding.
                bound.expires_at = bound.expires_at.max(expires_at);
                return Ok(());
            }
            return Err(BindingError::OtherKey {
                remaining_s: bound.expires_at - now,
                bound: bound.fingerprint.clone(),
                offered: fingerprint.to_owned(),
                identity,
            });
        }
        if bindings.len() >= self.max && !bindings.contains_key(&identity) {
            bindings.retain(|_, b| b.expires_at > now);
            if bindings.len() >= self.max {
                return Err(BindingError::Full(self.max));
            }
        }
        bindings.insert(
            identity,
            Binding {
                fingerprint: fingerprint.to_owned(),
                expires_at,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthMethod;
    use crate::auth::jwt::PodIdentity;

    fn principal(subject: &str, pod_uid: Option<&str>, expires_at: Option<u64>) -> Principal {
        Principal {
            subject: subject.into(),
            method: AuthMethod::Jwt,
            expires_at,
            pod: pod_uid.map(|uid| PodIdentity {
                namespace: Some("lab".into()),
                name: format!("task-{uid}"),
                uid: uid.into(),
            }),
            grants: None,
        }
    }

    #[test]
    fn one_key_per_identity_until_expiry() {
        let table = KeyBindings::new(10, Duration::from_secs(60));
        let sa = "system:serviceaccount:lab:worker";
        let live = Some(now_s() + 600);
        let pod_a = principal(sa, Some("uid-a"), live);
        let pod_b = principal(sa, Some("uid-b"), live);
        table.check(&pod_a, "aaaa").unwrap();
        table.check(&pod_a, "aaaa").unwrap();
        let err = table.check(&pod_a, "bbbb").unwrap_err();
        assert!(matches!(err, BindingError::OtherKey { .. }));
        let text = err.to_string();
        assert!(text.contains("pod:uid-a") && text.contains("aaaa") && text.contains("bbbb"));
        // Another pod of the same ServiceAccount has its own binding.
        table.check(&pod_b, "bbbb").unwrap();
        // A binding ends with its token: an expired binding is replaced.
        let expired = principal("bob", None, Some(now_s() - 1));
        table.check(&expired, "cccc").unwrap();
        table.check(&expired, "dddd").unwrap();
    }

    #[test]
    fn full_table_refuses_new_identities_but_reuses_expired_slots() {
        let table = KeyBindings::new(1, Duration::from_secs(60));
        table
            .check(&principal("alice", None, Some(now_s() + 600)), "aaaa")
            .unwrap();
        assert_eq!(
            table.check(&principal("bob", None, Some(now_s() + 600)), "bbbb"),
            Err(BindingError::Full(1))
        );
        let table = KeyBindings::new(1, Duration::from_secs(60));
        table
            .check(&principal("alice", None, Some(now_s() - 1)), "aaaa")
            .unwrap();
        table
            .check(&principal("bob", None, Some(now_s() + 600)), "bbbb")
            .unwrap();
    }
}
