//! `c4gh-drs-server` in TokenReview mode against the real kube-apiserver: a ServiceAccount token
//! bound to a pod (TokenRequest API) gets headers while the pod exists and is refused once the
//! pod is deleted (after at most the server's cache time plus the apiserver's own 10 s token
//! cache), also when a pod of the same name is created again; a namespace rule admits a dataset; a second key for the same pod is refused;
//! the JWKS mode, for contrast, still accepts the dead pod's token.

// Test code: panicking on unexpected results is the point.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use c4gh::header::EncryptedHeader;
use c4gh::keys::{PublicKey, SecretKey};
use c4gh_e2e::{ControlPlane, Options};
use drs_server::auth::jwt::{JwksSource, JwtConfig};
use drs_server::auth::tokenreview::{ReviewerCredential, TokenReviewConfig};
use drs_server::secret::SecretString;
use drs_server::testing::TestServer;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

const AUDIENCE: &str = "c4gh-drs";
const CACHE: Duration = Duration::from_secs(2);
/// kube-apiserver caches successful token authentications for 10 s.
const APISERVER_CACHE: Duration = Duration::from_secs(10);
const LAB: &str = "lab";
const WORKER: &str = "worker";
const POD: &str = "task-1";

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + k8s_openapi::serde::Serialize
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

/// A TokenRequest token of `namespace/account`, bound to `pod` (name, UID) when given.
async fn token(
    client: &Client,
    namespace: &str,
    account: &str,
    audiences: &[&str],
    pod: Option<(&str, &str)>,
) -> SecretString {
    let mut spec = json!({"audiences": audiences, "expirationSeconds": 3600});
    if let Some((name, uid)) = pod {
        spec["boundObjectRef"] =
            json!({"apiVersion": "v1", "kind": "Pod", "name": name, "uid": uid});
    }
    let request: TokenRequest = serde_json::from_value(json!({"spec": spec})).unwrap();
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .unwrap();
    SecretString::new(answer.status.unwrap().token.unwrap())
}

async fn create_pod(pods: &Api<Pod>) -> String {
    let pod: Pod = create(
        pods,
        json!({
            "metadata": {"name": POD},
            "spec": {
                "serviceAccountName": WORKER,
                "automountServiceAccountToken": false,
                "containers": [{"name": "task", "image": "busybox", "command": ["true"]}]
            }
        }),
    )
    .await;
    pod.metadata.uid.unwrap()
}

async fn delete_pod(pods: &Api<Pod>) {
    pods.delete(POD, &DeleteParams::default()).await.unwrap();
    // A pod no node runs is removed at once; wait until it is gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    while pods.get_opt(POD).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "pod {LAB}/{POD} was not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn http(server: &TestServer) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(server.ca_pem().as_bytes()).unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn header(
    server: &TestServer,
    id: &str,
    token: &SecretString,
    key: &PublicKey,
) -> reqwest::Response {
    http(server)
        .get(format!("{}/c4gh/v1/objects/{id}/header", server.base_url()))
        .header("authorization", format!("Bearer {}", token.expose()))
        .header("x-c4gh-public-key", STANDARD.encode(key.to_pem()))
        .send()
        .await
        .unwrap()
}

/// Asserts a problem+json answer with `status`; returns its detail, checked not to contain
/// `token`.
async fn problem(response: reqwest::Response, status: u16, token: &SecretString) -> String {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let text = response.text().await.unwrap();
    assert!(
        !text.contains(token.expose()),
        "the problem body echoes the token"
    );
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    body["detail"].as_str().unwrap().to_owned()
}

async fn issued(response: reqwest::Response, key: &SecretKey) {
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    EncryptedHeader::parse(&bytes)
        .unwrap()
        .open(&[key], None)
        .expect("the header opens with the requester's key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pods_token_is_refused_through_token_review() {
    let plane = ControlPlane::start(Options::default()).await.unwrap();
    let client = plane.client().await.unwrap();

    // The DRS server's own ServiceAccount, allowed to create TokenReviews.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in ["c4gh-drs", LAB] {
        create(&namespaces, json!({"metadata": {"name": name}})).await;
    }
    create(
        &Api::<ServiceAccount>::namespaced(client.clone(), "c4gh-drs"),
        json!({"metadata": {"name": "server"}}),
    )
    .await;
    create(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        json!({
            "metadata": {"name": "c4gh-drs-server-auth-delegator"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:auth-delegator"},
            "subjects": [{"kind": "ServiceAccount", "name": "server", "namespace": "c4gh-drs"}]
        }),
    )
    .await;
    let issuer = "https://kubernetes.default.svc.cluster.local";
    let server_token = token(&client, "c4gh-drs", "server", &[issuer], None).await;

    // The task's ServiceAccount and pod (never scheduled: no node is needed for a bound token).
    create(
        &Api::<ServiceAccount>::namespaced(client.clone(), LAB),
        json!({"metadata": {"name": WORKER}}),
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), LAB);
    let uid = create_pod(&pods).await;
    let pod_token = token(&client, LAB, WORKER, &[AUDIENCE], Some((POD, &uid))).await;

    let server = TestServer::start_with(|config| {
        let mut review = TokenReviewConfig::in_cluster(vec![AUDIENCE.into()]);
        review.api_server = plane.server().to_owned();
        review.ca_pem = Some(plane.ca().cert_pem().into_bytes());
        review.credential = ReviewerCredential::Token(server_token);
        review.cache_ttl = CACHE;
        config.token_review = Some(review);
        config.settings.bind_keys = true;
        config.settings.dataset_readers =
            vec![("DS-LAB".into(), "system:serviceaccount:lab:*".into())];
    })
    .await
    .unwrap();
    server
        .add_to_dataset("lab-data", b"lab data", &["nobody"], Some("DS-LAB"))
        .unwrap();
    server
        .add_to_dataset("other-data", b"other data", &["nobody"], Some("DS-OTHER"))
        .unwrap();

    // The live pod's token: the namespace rule of DS-LAB admits it, DS-OTHER does not.
    let key = SecretKey::generate();
    issued(
        header(&server, "lab-data", &pod_token, &key.public_key()).await,
        &key,
    )
    .await;
    let detail = problem(
        header(&server, "other-data", &pod_token, &key.public_key()).await,
        403,
        &pod_token,
    )
    .await;
    assert!(
        detail.contains("system:serviceaccount:lab:worker"),
        "{detail}"
    );
    // One key per pod: a second key for the same pod is refused.
    let thief = SecretKey::generate();
    let detail = problem(
        header(&server, "lab-data", &pod_token, &thief.public_key()).await,
        403,
        &pod_token,
    )
    .await;
    assert!(detail.contains(&format!("pod:{uid}")), "{detail}");

    // The JWKS mode, for contrast: it checks only signature and expiry.
    let jwks_dir = tempfile::tempdir().unwrap();
    let jwks_file = jwks_dir.path().join("jwks.json");
    let jwks = client
        .request_text(
            http::Request::get("/openid/v1/jwks")
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    std::fs::write(&jwks_file, jwks).unwrap();
    let jwks_server = TestServer::start_with(|config| {
        let mut jwt = JwtConfig::new(issuer, vec![AUDIENCE.into()]);
        jwt.jwks = JwksSource::File(jwks_file.clone());
        config.jwt = Some(jwt);
    })
    .await
    .unwrap();
    jwks_server
        .add("lab-data", b"lab data", &["system:serviceaccount:lab:*"])
        .unwrap();

    // Delete the pod: the token is refused once this server's cache (CACHE) and the apiserver's
    // own cache of successful token authentications (10 s, kube-apiserver's built-in
    // TokenSuccessCacheTTL) have both expired.
    delete_pod(&pods).await;
    let deleted = Instant::now();
    let deadline = deleted + CACHE + APISERVER_CACHE + Duration::from_secs(10);
    let refused = loop {
        let response = header(&server, "lab-data", &pod_token, &key.public_key()).await;
        if response.status() == 401 {
            break response;
        }
        assert_eq!(response.status(), 200);
        assert!(
            Instant::now() < deadline,
            "the deleted pod's token was still accepted {:?} after the deletion",
            deleted.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let after = deleted.elapsed();
    assert_eq!(
        refused.headers()["www-authenticate"],
        "Bearer realm=\"c4gh-drs\", error=\"invalid_token\""
    );
    let detail = problem(refused, 401, &pod_token).await;
    assert!(
        detail.contains("TokenReview") && detail.contains("pod is deleted"),
        "{detail}"
    );
    eprintln!("refused {after:?} after the pod's deletion (cache {CACHE:?}): {detail}");

    // Replay: the same token again, even once a pod of the same name exists again (new UID).
    let new_uid = create_pod(&pods).await;
    assert_ne!(new_uid, uid);
    tokio::time::sleep(CACHE).await;
    problem(
        header(&server, "lab-data", &pod_token, &key.public_key()).await,
        401,
        &pod_token,
    )
    .await;
    // The new pod's own token works, with a key of its own.
    let new_token = token(&client, LAB, WORKER, &[AUDIENCE], Some((POD, &new_uid))).await;
    issued(
        header(&server, "lab-data", &new_token, &thief.public_key()).await,
        &thief,
    )
    .await;

    // The JWKS-mode server still accepts the dead pod's token: what TokenReview mode fixes.
    issued(
        header(&jwks_server, "lab-data", &pod_token, &key.public_key()).await,
        &key,
    )
    .await;

    let metrics = http(&server)
        .get(format!("{}/metrics", server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "c4gh_drs_header_decisions_total{decision=\"refused\",reason=\"token_review_refused\"}",
        "c4gh_drs_header_decisions_total{decision=\"refused\",reason=\"key_binding\"} 1",
        "c4gh_drs_header_decisions_total{decision=\"refused\",reason=\"not_reader\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    server.shutdown().await.unwrap();
    jwks_server.shutdown().await.unwrap();
}
