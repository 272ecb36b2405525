//! `c4gh-operator`: injects the crypt4gh sidecar into opted-in TES task pods.
//!
//! - [`inject::mutate`]: the pure injection (pod + [`effective::EffectivePolicy`] → pod or
//!   [`denial::Denial`]); the webhook sends the JSON patch between the two.
//! - [`policy`]: the `Crypt4ghPolicy` CRD; [`controller`] validates policies and writes status.
//! - [`webhook`]: the HTTPS admission server (pod webhook), sharing [`admission`] (policy
//!   lookup with cached [`effective::EffectivePolicy`], CREATE-only prologue) with the TESK webhook;
//!   [`serving`] serves both over TLS plus health and metrics; [`tls`] serves hot-reloadable certificates that
//!   [`certs`] creates, stores, publishes (`caBundle`) and rotates under a Lease.
//! - [`tesk`]: the TESK adapter (moves `drs://` inputs out of the TES task onto executor pods);
//!   [`tesk_webhook`] applies it when TESK creates a task's ConfigMap.
//!
//! ```
//! use c4gh_operator::{effective::{EffectivePolicy, OperatorDefaults}, inject, policy::Crypt4ghPolicySpec};
//! use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
//!
//! let spec = Crypt4ghPolicySpec { allowed_hosts: vec!["drs.example.org".into()], ..Default::default() };
//! let policy = EffectivePolicy::from_spec("default", &spec, &OperatorDefaults::default()).unwrap();
//! let mut pod = Pod::default();
//! pod.metadata.labels = Some([("c4gh.dev/inject".to_string(), "enabled".to_string())].into());
//! pod.spec = Some(PodSpec { containers: vec![Container { name: "task".into(), ..Default::default() }], ..Default::default() });
//! let injected = inject::mutate(&pod, &policy).unwrap();
//! let init = injected.spec.unwrap().init_containers.unwrap();
//! assert_eq!(init[0].name, "c4gh-sidecar");
//! assert_eq!(init[0].restart_policy.as_deref(), Some("Always"));
//! ```

pub mod admission;
pub mod annotations;
pub mod certs;
pub mod config;
pub mod controller;
pub mod denial;
pub mod effective;
pub mod inject;
pub mod inputs;
pub mod metrics;
pub mod outputs;
pub mod policy;
pub mod run;
pub mod serving;
pub mod tesk;
#[cfg(test)]
mod tesk_fixtures;
pub mod tesk_outputs;
pub mod tesk_webhook;
pub mod tls;
pub mod webhook;
pub mod webhook_config;
