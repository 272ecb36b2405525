//! What the pod webhook ([`crate::webhook`]) and the TESK webhook ([`crate::tesk_webhook`])
//! share: where policies come from ([`PolicySource`]), the [`EffectivePolicy`] of each policy
//! cached per policy generation ([`EffectivePolicies`]), and the admission prologue (CREATE
//! only, the request's namespace: [`created`]).
//!
//! An [`EffectivePolicy`] is rebuilt only when its `Crypt4ghPolicy` changes (another `uid`,
//! `resourceVersion` or `generation`), so admitting a pod costs one cache lookup instead of a
//! full policy validation. A policy that is gone is dropped from the cache on its next lookup,
//! and the cache never holds more than [`MAX_CACHED_POLICIES`] entries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use kube::ResourceExt;
use kube::core::admission::{AdmissionRequest, Operation};
use kube::runtime::reflector::{ObjectRef, Store};

use crate::effective::{EffectivePolicy, OperatorDefaults};
use crate::policy::Crypt4ghPolicy;

/// Most policies whose [`EffectivePolicy`] is cached; beyond that the cache starts afresh.
pub const MAX_CACHED_POLICIES: usize = 4096;

/// Where the webhooks find `Crypt4ghPolicy` objects.
pub trait PolicySource: Send + Sync + 'static {
    /// The policy `name` in `namespace`, if it exists.
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>>;
}

impl PolicySource for Store<Crypt4ghPolicy> {
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>> {
        self.get(&ObjectRef::new(name).within(namespace))
    }
}

/// Policies loaded once from a YAML file (`--policy-file`): for running the webhook without an
/// API server (benchmarks, local experiments).
#[derive(Debug, Default)]
pub struct StaticPolicies(BTreeMap<(String, String), Arc<Crypt4ghPolicy>>);

impl StaticPolicies {
    /// Parses one or more `Crypt4ghPolicy` YAML documents; each must have a name and namespace.
    ///
    /// # Errors
    ///
    /// A message naming the document that does not parse or lacks a name or namespace.
    pub fn from_yaml(yaml: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        for (n, doc) in serde_yaml_ng::Deserializer::from_str(yaml).enumerate() {
            let value = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)
                .map_err(|e| format!("document {n}: {e}"))?;
            if value.is_null() {
                continue;
            }
            let policy: Crypt4ghPolicy = serde_yaml_ng::from_value(value)
                .map_err(|e| format!("document {n} is not a Crypt4ghPolicy: {e}"))?;
            let (Some(name), Some(ns)) = (policy.metadata.name.clone(), policy.namespace()) else {
                return Err(format!(
                    "document {n}: metadata.name and metadata.namespace are required"
                ));
            };
            map.insert((ns, name), Arc::new(policy));
        }
        Ok(Self(map))
    }
}

impl PolicySource for StaticPolicies {
    fn lookup(&self, namespace: &str, name: &str) -> Option<Arc<Crypt4ghPolicy>> {
        self.0
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}

/// The result of looking a policy up for admission.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// No such policy.
    Missing,
    /// The policy exists but is invalid.
    Invalid {
        /// The policy object.
        policy: Arc<Crypt4ghPolicy>,
        /// Its problems, `; `-separated.
        problems: Arc<str>,
    },
    /// The policy and its effective form.
    Valid {
        /// The policy object.
        policy: Arc<Crypt4ghPolicy>,
        /// The validated policy with defaults applied.
        effective: Arc<EffectivePolicy>,
    },
}

impl Lookup {
    /// The policy object, when it exists.
    pub fn policy(&self) -> Option<&Crypt4ghPolicy> {
        match self {
            Lookup::Missing => None,
            Lookup::Invalid { policy, .. } | Lookup::Valid { policy, .. } => Some(policy),
        }
    }
}

/// What identifies one generation of a policy object.
type Generation = (Option<String>, Option<String>, Option<i64>);

fn generation(policy: &Crypt4ghPolicy) -> Generation {
    (
        policy.metadata.uid.clone(),
        policy.metadata.resource_version.clone(),
        policy.metadata.generation,
    )
}

/// One cached validation: the policy's generation and the outcome.
type Cached = (Generation, Result<Arc<EffectivePolicy>, Arc<str>>);

/// Policies by namespace and name, with their [`EffectivePolicy`] cached per generation.
pub struct EffectivePolicies {
    source: Arc<dyn PolicySource>,
    defaults: Arc<OperatorDefaults>,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl std::fmt::Debug for EffectivePolicies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EffectivePolicies")
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl EffectivePolicies {
    /// Policies from `source`, validated with the operator-wide `defaults`.
    pub fn new(source: Arc<dyn PolicySource>, defaults: Arc<OperatorDefaults>) -> Self {
        Self {
            source,
            defaults,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The operator-wide defaults policies are completed with.
    pub fn defaults(&self) -> &OperatorDefaults {
        &self.defaults
    }

    /// The policy `name` in `namespace` and its effective form (validated once per generation).
    pub fn lookup(&self, namespace: &str, name: &str) -> Lookup {
        let key = (namespace.to_owned(), name.to_owned());
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(policy) = self.source.lookup(namespace, name) else {
            cache.remove(&key);
            return Lookup::Missing;
        };
        let current = generation(&policy);
        let outcome = match cache.get(&key) {
            Some((cached, outcome)) if *cached == current => outcome.clone(),
            _ => {
                let outcome = EffectivePolicy::from_spec(name, &policy.spec, &self.defaults)
                    .map(Arc::new)
                    .map_err(|problems| Arc::from(problems.join("; ")));
                if cache.len() >= MAX_CACHED_POLICIES {
                    cache.clear();
                }
                cache.insert(key, (current, outcome.clone()));
                outcome
            }
        };
        match outcome {
            Ok(effective) => Lookup::Valid { policy, effective },
            Err(problems) => Lookup::Invalid { policy, problems },
        }
    }
}

/// The object of a CREATE request and the namespace it is created in (the request's, else the
/// object's, else `default`); `None` for every other operation and for requests without object.
pub fn created<K: kube::Resource>(req: &AdmissionRequest<K>) -> Option<(&K, String)> {
    let object = req
        .object
        .as_ref()
        .filter(|_| req.operation == Operation::Create)?;
    let namespace = req
        .namespace
        .clone()
        .or_else(|| object.meta().namespace.clone())
        .unwrap_or_else(|| "default".to_owned());
    Some((object, namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = include_str!("../tests/golden/policy.yaml");

    /// A source whose one policy a test can replace.
    struct Swappable(Mutex<Option<Arc<Crypt4ghPolicy>>>);

    impl PolicySource for Swappable {
        fn lookup(&self, _: &str, _: &str) -> Option<Arc<Crypt4ghPolicy>> {
            self.0.lock().unwrap().clone()
        }
    }

    fn policy(resource_version: &str, hosts: &[&str]) -> Arc<Crypt4ghPolicy> {
        let mut p: Crypt4ghPolicy = serde_yaml_ng::from_str(POLICY).unwrap();
        p.metadata.resource_version = Some(resource_version.to_owned());
        p.spec.allowed_hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        p.spec.prefix_map.clear();
        Arc::new(p)
    }

    #[test]
    fn effective_policy_is_rebuilt_only_for_a_new_generation() {
        let source = Arc::new(Swappable(Mutex::new(Some(policy("1", &["a.example"])))));
        let policies = EffectivePolicies::new(source.clone(), Arc::default());
        let effective = |l: Lookup| match l {
            Lookup::Valid { effective, .. } => effective,
            other => panic!("{other:?}"),
        };
        let first = effective(policies.lookup("ns", "default"));
        let again = effective(policies.lookup("ns", "default"));
        assert!(Arc::ptr_eq(&first, &again), "same generation: cached");

        *source.0.lock().unwrap() = Some(policy("2", &["b.example"]));
        let changed = effective(policies.lookup("ns", "default"));
        assert_eq!(changed.allowed_hosts, ["b.example"]);

        *source.0.lock().unwrap() = Some(policy("3", &[]));
        let Lookup::Invalid { problems, .. } = policies.lookup("ns", "default") else {
            panic!("an empty allowedHosts is invalid");
        };
        assert!(problems.contains("allowedHosts is empty"), "{problems}");

        *source.0.lock().unwrap() = None;
        assert!(matches!(policies.lookup("ns", "default"), Lookup::Missing));
        assert!(
            policies.cache.lock().unwrap().is_empty(),
            "gone policies leave the cache"
        );
    }
}
