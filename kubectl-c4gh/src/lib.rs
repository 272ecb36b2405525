//! `kubectl-c4gh`: the crypt4gh-sidecar plugin for kubectl (`kubectl c4gh …`), for cluster
//! operators.
//!
//! - [`status`]: each input of an injected pod (state, bytes, error) and whether the ephemeral
//!   key exists, from the pod object and its Events;
//! - [`check`]: the operator's own admission code run on a Pod, Job or TESK task ConfigMap
//!   from a file, against the namespace's policies (from the cluster or a file);
//! - [`doctor`]: installation checks with ✔/‼/✘ lines, like `linkerd check`.
//!
//! ```
//! use kubectl_c4gh::check::{Object, Policies, check};
//! use std::sync::Arc;
//!
//! let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
//!     "metadata": {"name": "t", "labels": {"c4gh.dev/inject": "enabled"},
//!         "annotations": {"c4gh.dev/inputs": r#"[{"url": "drs://drs.evil.example/x", "path": "/data/x"}]"#}},
//!     "spec": {"containers": [{"name": "task", "image": "busybox"}]}});
//! let policies = Policies::from_yaml(
//!     "apiVersion: c4gh.dev/v1alpha1\nkind: Crypt4ghPolicy\nmetadata: {name: default}\nspec: {allowedHosts: [drs.example.org]}\n",
//!     "tasks",
//! ).unwrap();
//! let verdict = check(&Object::from_value(pod).unwrap(), "tasks", Arc::new(policies), Default::default()).unwrap();
//! assert!(!verdict.allowed);
//! assert!(verdict.message.unwrap().starts_with("admission webhook \"pods.c4gh.dev\" denied the request: "));
//! ```

pub mod check;
pub mod cli;
pub mod doctor;
pub mod report;
pub mod run;
pub mod status;
