//! Every label and annotation key the operator reads or writes: the pod contract's keys
//! ([`c4gh_contract::annotations`], re-exported here) and the operator's own keys on its webhook
//! certificate Secret.

pub use c4gh_contract::annotations::*;

/// Annotation on the webhook certificate Secret: when the serving certificate expires (RFC 3339).
pub const SERVING_NOT_AFTER: &str = "c4gh.dev/serving-not-after";

/// Annotation on the webhook certificate Secret: when the CA certificate expires (RFC 3339).
pub const CA_NOT_AFTER: &str = "c4gh.dev/ca-not-after";

/// Annotation on the webhook certificate Secret: the names (DNS and IP) the serving certificate
/// was issued for, comma-separated; a change re-issues it.
pub const SERVING_NAMES: &str = "c4gh.dev/serving-names";
