//! One test per policy breach: the pod is denied with exactly this message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers outside #[test] functions

use std::collections::BTreeMap;

use c4gh_contract::Mode;
use c4gh_operator::denial::Denial;
use c4gh_operator::effective::{EffectivePolicy, OperatorDefaults};
use c4gh_operator::inject;
use c4gh_operator::policy::{Crypt4ghPolicySpec, UnmountedPaths};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, VolumeMount};

fn spec() -> Crypt4ghPolicySpec {
    Crypt4ghPolicySpec {
        allowed_hosts: vec!["drs.example.org".into()],
        prefix_map: BTreeMap::from([(
            "ega".to_owned(),
            "https://drs.example.org/ga4gh/drs/v1/objects/{id}".to_owned(),
        )]),
        ..Default::default()
    }
}

fn policy(spec: &Crypt4ghPolicySpec) -> EffectivePolicy {
    EffectivePolicy::from_spec("default", spec, &OperatorDefaults::default()).unwrap()
}

fn pod(inputs: Option<&str>) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.labels = Some(BTreeMap::from([(
        "c4gh.dev/inject".to_owned(),
        "enabled".to_owned(),
    )]));
    if let Some(i) = inputs {
        pod.metadata.annotations = Some(BTreeMap::from([(
            "c4gh.dev/inputs".to_owned(),
            i.to_owned(),
        )]));
    }
    pod.spec = Some(PodSpec {
        containers: vec![Container {
            name: "task".into(),
            volume_mounts: Some(vec![VolumeMount {
                name: "work".into(),
                mount_path: "/work".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }],
        ..Default::default()
    });
    pod
}

fn denied(spec: &Crypt4ghPolicySpec, inputs: &str) -> String {
    inject::mutate(&pod(Some(inputs)), &policy(spec))
        .unwrap_err()
        .to_string()
}

#[test]
fn host_not_allowed() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://evil.example.com/x", "path": "/work/x"}]"#
        ),
        "input 0 (drs://evil.example.com/x): host \"evil.example.com\" is not allowed by Crypt4ghPolicy \"default\" (allowed: drs.example.org); use an allowed DRS server or ask the cluster operator to add the host to spec.allowedHosts"
    );
}

#[test]
fn port_not_allowed_without_allow_port() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org:8443/x", "path": "/work/x"}]"#
        ),
        "input 0: invalid DRS URI `drs://drs.example.org:8443/x`: port 8443 is not allowed in DRS URIs (enable the development option to allow ports)"
    );
}

#[test]
fn unknown_compact_prefix() {
    assert_eq!(
        denied(&spec(), r#"[{"url": "drs://foo:123", "path": "/work/x"}]"#),
        "input 0 (drs://foo:123): compact-identifier prefix \"foo\" is not in spec.prefixMap of Crypt4ghPolicy \"default\"; use a drs://host/id URI or ask the cluster operator to map the prefix"
    );
}

#[test]
fn not_a_drs_uri() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "https://drs.example.org/x", "path": "/work/x"}]"#
        ),
        "input 0: invalid DRS URI `https://drs.example.org/x`: scheme must be `drs://` (found `https`)"
    );
}

#[test]
fn mode_not_allowed() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "/work/x", "mode": "plaintext"}]"#
        ),
        "input 0 (drs://drs.example.org/x): mode \"plaintext\" is not allowed by the policy (allowed: encrypted); request an allowed mode"
    );
}

#[test]
fn unknown_mode() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "/work/x", "mode": "clear"}]"#
        ),
        "annotation c4gh.dev/inputs is not valid: unknown variant `clear`, expected one of `encrypted`, `plaintext`, `stream` at line 1 column 70; expected a JSON list like [{\"url\": \"drs://host/id\", \"path\": \"/data/in.bam\", \"mode\": \"encrypted\"}]"
    );
}

#[test]
fn malformed_json() {
    assert_eq!(
        denied(&spec(), r#"{"url": "drs://drs.example.org/x"}"#),
        "annotation c4gh.dev/inputs is not valid: invalid type: map, expected a sequence at line 1 column 0; expected a JSON list like [{\"url\": \"drs://host/id\", \"path\": \"/data/in.bam\", \"mode\": \"encrypted\"}]"
    );
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "/work/x", "extra": 1}]"#
        ),
        "annotation c4gh.dev/inputs is not valid: unknown field `extra`, expected one of `url`, `path`, `mode` at line 1 column 62; expected a JSON list like [{\"url\": \"drs://host/id\", \"path\": \"/data/in.bam\", \"mode\": \"encrypted\"}]"
    );
}

#[test]
fn path_traversal() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "/work/../etc/passwd"}]"#
        ),
        "input 0: path \"/work/../etc/passwd\" is not usable: it contains `..`; use a normalized absolute path"
    );
}

#[test]
fn relative_path() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "work/x"}]"#
        ),
        "input 0: path \"work/x\" is not usable: it is not absolute; use a path starting with `/`"
    );
}

#[test]
fn reserved_path() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "/c4gh/key/ephemeral.sec"}]"#
        ),
        "input 0: path \"/c4gh/key/ephemeral.sec\" is not usable: `/c4gh` is reserved for the sidecar's key and credentials"
    );
}

#[test]
fn duplicate_path() {
    assert_eq!(
        denied(
            &spec(),
            r#"[{"url": "drs://drs.example.org/x", "path": "/work/x"}, {"url": "drs://drs.example.org/y", "path": "/work/x"}]"#
        ),
        "input 1: path \"/work/x\" is used by an earlier input; give every input its own path"
    );
}

#[test]
fn path_outside_the_tasks_mounts() {
    let s = Crypt4ghPolicySpec {
        unmounted_paths: Some(UnmountedPaths::Deny),
        ..spec()
    };
    assert_eq!(
        denied(
            &s,
            r#"[{"url": "drs://drs.example.org/x", "path": "/data/x"}]"#
        ),
        "input 0: path \"/data/x\" is outside every volume the task containers mount, and Crypt4ghPolicy \"default\" sets unmountedPaths: Deny; put the input under a mounted volume (e.g. the task's PVC)"
    );
    // Under the mount: accepted.
    assert!(
        inject::mutate(
            &pod(Some(
                r#"[{"url": "drs://drs.example.org/x", "path": "/work/x"}]"#
            )),
            &policy(&s)
        )
        .is_ok()
    );
}

#[test]
fn plaintext_over_an_existing_mount_point() {
    let s = Crypt4ghPolicySpec {
        allowed_modes: Some(vec![Mode::Encrypted, Mode::Plaintext]),
        max_plaintext_bytes: Some(1 << 20),
        ..spec()
    };
    assert_eq!(
        denied(
            &s,
            r#"[{"url": "drs://drs.example.org/x", "path": "/work/x", "mode": "plaintext"}]"#
        ),
        "input 0: path \"/work/x\" needs a memory-backed volume at \"/work\" (plaintext inputs never touch disk), but volume \"work\" is already mounted there; put plaintext inputs in a directory of their own"
    );
}

#[test]
fn plaintext_without_a_size_limit() {
    let s = Crypt4ghPolicySpec {
        allowed_modes: Some(vec![Mode::Encrypted, Mode::Plaintext]),
        ..spec()
    };
    let problems =
        EffectivePolicy::from_spec("default", &s, &OperatorDefaults::default()).unwrap_err();
    assert_eq!(
        problems,
        vec![
            "spec.allowedModes includes plaintext but spec.maxPlaintextBytes is not set; plaintext is kept in memory, so set a size limit"
        ]
    );
}

#[test]
fn unknown_annotation_under_our_prefix() {
    let mut p = pod(None);
    p.metadata.annotations = Some(BTreeMap::from([(
        "c4gh.dev/input".to_owned(),
        "[]".to_owned(),
    )]));
    assert_eq!(
        inject::mutate(&p, &policy(&spec()))
            .unwrap_err()
            .to_string(),
        "unknown annotation \"c4gh.dev/input\"; the operator understands c4gh.dev/inputs, c4gh.dev/outputs, c4gh.dev/policy, c4gh.dev/status, c4gh.dev/applied-policy, c4gh.dev/tes-task, c4gh.dev/inject; remove it or fix its spelling"
    );
}

#[test]
fn too_many_inputs() {
    let list: Vec<String> = (0..257)
        .map(|i| format!(r#"{{"url": "drs://drs.example.org/{i}", "path": "/work/{i}"}}"#))
        .collect();
    assert_eq!(
        denied(&spec(), &format!("[{}]", list.join(","))),
        "annotation c4gh.dev/inputs lists 257 inputs; at most 256 are allowed per pod"
    );
}

#[test]
fn only_excluded_containers() {
    let mut p = pod(None);
    p.spec.as_mut().unwrap().containers[0].name = "istio-proxy".into();
    assert_eq!(
        inject::mutate(&p, &policy(&spec())).unwrap_err(),
        Denial::NoTaskContainers
    );
}

#[test]
fn shared_process_namespace() {
    let mut p = pod(None);
    p.spec.as_mut().unwrap().share_process_namespace = Some(true);
    assert_eq!(
        inject::mutate(&p, &policy(&spec()))
            .unwrap_err()
            .to_string(),
        "the pod sets spec.shareProcessNamespace: true, which lets task containers see the \
         c4gh-sidecar's processes (ephemeral key, DRS credentials); remove \
         spec.shareProcessNamespace from pods that read Crypt4GH inputs"
    );
}

#[test]
fn host_pid() {
    let mut p = pod(None);
    p.spec.as_mut().unwrap().host_pid = Some(true);
    assert_eq!(
        inject::mutate(&p, &policy(&spec())).unwrap_err(),
        Denial::SharedProcesses { field: "hostPID" }
    );
}

#[test]
fn share_process_namespace_false_is_fine() {
    let mut p = pod(None);
    p.spec.as_mut().unwrap().share_process_namespace = Some(false);
    assert!(inject::mutate(&p, &policy(&spec())).is_ok());
}

#[test]
fn server_flavours_must_name_allowed_hosts_and_known_flavours() {
    let s = Crypt4ghPolicySpec {
        server_flavours: BTreeMap::from([
            ("sda.example.org".to_owned(), "sda-v2".to_owned()),
            ("drs.example.org".to_owned(), "sda".to_owned()),
        ]),
        ..spec()
    };
    let problems =
        EffectivePolicy::from_spec("default", &s, &OperatorDefaults::default()).unwrap_err();
    assert_eq!(
        problems,
        vec![
            "spec.serverFlavours[drs.example.org]: DRS client configuration: flavour `sda`: expected auto, crypt4gh-drs, sda-v2 or key-header:URL_WITH_{id}",
            "spec.serverFlavours key \"sda.example.org\" is not in spec.allowedHosts; add it there or remove the entry",
        ]
    );
}

#[test]
fn server_flavours_reach_the_sidecar_env() {
    let s = Crypt4ghPolicySpec {
        allowed_hosts: vec!["drs.example.org".into(), "sda.example.org".into()],
        server_flavours: BTreeMap::from([("SDA.example.org".to_owned(), "sda-v2".to_owned())]),
        ..spec()
    };
    let pod = pod(Some(
        r#"[{"url": "drs://sda.example.org/EGAD1/a/b.c4gh", "path": "/work/b.c4gh"}]"#,
    ));
    let patched = inject::mutate(&pod, &policy(&s)).unwrap();
    let sidecar = patched
        .spec
        .unwrap()
        .init_containers
        .unwrap()
        .into_iter()
        .find(|c| c.name == "c4gh-sidecar")
        .unwrap();
    let env = sidecar.env.unwrap();
    let flavours = env
        .iter()
        .find(|e| e.name == "C4GH_SERVER_FLAVOURS")
        .unwrap();
    assert_eq!(flavours.value.as_deref(), Some("sda.example.org=sda-v2"));
}

fn output_pod(outputs: &str, run_as_user: Option<i64>) -> Pod {
    let mut p = pod(None);
    p.metadata.annotations = Some(BTreeMap::from([(
        "c4gh.dev/outputs".to_owned(),
        outputs.to_owned(),
    )]));
    let spec = p.spec.as_mut().unwrap();
    spec.security_context = Some(k8s_openapi::api::core::v1::PodSecurityContext {
        run_as_user,
        ..Default::default()
    });
    p
}

fn output_denied(outputs: &str, run_as_user: Option<i64>) -> String {
    inject::mutate(&output_pod(outputs, run_as_user), &policy(&spec()))
        .unwrap_err()
        .to_string()
}

#[test]
fn outputs_without_a_valid_recipient_are_denied() {
    assert_eq!(
        output_denied(r#"[{"path": "/work/out"}]"#, Some(1000)),
        "output 0 (/work/out) names no recipient and Crypt4ghPolicy \"default\" has no spec.outputs.defaultRecipients; add \"recipients\": [\"<your Crypt4GH public key>\"] (the .pub file crypt4gh-keygen wrote)"
    );
    assert_eq!(
        output_denied(
            r#"[{"path": "/work/out", "recipients": ["-----BEGIN CRYPT4GH PUBLIC KEY-----\nAAAA\n-----END CRYPT4GH PUBLIC KEY-----"]}]"#,
            Some(1000)
        ),
        "output 0 (/work/out), recipient 0: not a Crypt4GH public key (invalid key: public key holds 3 bytes, expected 32); give the PEM text of the .pub file crypt4gh-keygen wrote, or its base64 line"
    );
}

#[test]
fn outputs_off_the_task_volumes_or_without_the_task_user_are_denied() {
    let key = c4gh::SecretKey::generate().public_key().to_pem();
    let list = |path: &str| serde_json::json!([{"path": path, "recipients": [key]}]).to_string();
    assert_eq!(
        output_denied(&list("/elsewhere/out.vcf"), Some(1000)),
        "output 0: path \"/elsewhere/out.vcf\" is not on a volume the task containers mount, so the sidecar cannot encrypt it (and it would vanish with the container); mount a volume (emptyDir, PVC) at or above it"
    );
    assert_eq!(
        output_denied(&list("/work/out.vcf"), None),
        "the pod declares outputs but spec.securityContext.runAsUser is not set to a non-root UID; the sidecar encrypts the outputs in place as the task's user, so set spec.securityContext.runAsUser to the (non-root) UID the task runs as, and no other runAsUser on task containers"
    );
    let injected = inject::mutate(
        &output_pod(&list("/work/out/"), Some(1000)),
        &policy(&spec()),
    )
    .unwrap();
    let spec = injected.spec.unwrap();
    assert_eq!(spec.termination_grace_period_seconds, Some(1800));
    let sidecar = &spec.init_containers.unwrap()[0];
    let env = sidecar.env.as_ref().unwrap();
    let outputs = env.iter().find(|e| e.name == "C4GH_OUTPUTS").unwrap();
    let line = key.lines().nth(1).unwrap();
    assert_eq!(
        outputs.value.as_deref(),
        Some(format!(r#"[{{"path":"/work/out","recipients":["{line}"]}}]"#).as_str())
    );
    let mount = sidecar
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.mount_path == "/work")
        .unwrap();
    assert_eq!((mount.name.as_str(), mount.read_only), ("work", None));
    assert_eq!(
        sidecar.security_context.as_ref().unwrap().run_as_user,
        Some(1000)
    );
}
