//! Runs a parsed command line against the cluster: builds the client as kubectl would, fetches
//! what each command needs and prints its report. Returns the process exit code.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use c4gh_operator::effective::OperatorDefaults;
use c4gh_operator::policy::Crypt4ghPolicy;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::check::{self, Object, Policies};
use crate::cli::{CheckArgs, Cli, Command, KubeArgs};
use crate::{doctor, status};

/// The client and the namespace to use.
async fn connect(args: &KubeArgs) -> anyhow::Result<(Client, String)> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("loading the kubeconfig {}", path.display()))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .context("loading the kubeconfig")?,
        None => Config::infer()
            .await
            .context("no cluster configuration: give --kubeconfig or set KUBECONFIG")?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).context("building the Kubernetes client")?;
    Ok((client, namespace))
}

/// Runs `cli`, printing to stdout; errors are returned for `main` to print.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Status(args) => {
            let (client, namespace) = connect(&cli.kube).await?;
            let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
            let pod = pods
                .get_opt(&args.pod)
                .await
                .with_context(|| format!("reading pod {namespace}/{}", args.pod))?
                .with_context(|| format!("pod {namespace}/{} not found", args.pod))?;
            let events: Api<Event> = Api::namespaced(client, &namespace);
            let selector = format!("involvedObject.kind=Pod,involvedObject.name={}", args.pod);
            let events = events
                .list(&ListParams::default().fields(&selector))
                .await
                .map(|l| l.items)
                .unwrap_or_default();
            let report = status::report(&pod, &events, k8s_openapi::jiff::Timestamp::now());
            print!("{}", report.text);
            Ok(if report.ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Check(args) => run_check(&cli.kube, args).await,
        Command::Doctor(args) => {
            let (client, _) = connect(&cli.kube).await?;
            let report = doctor::doctor(&client, args).await;
            print!("{report}");
            Ok(if report.failed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn run_check(kube: &KubeArgs, args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let object = Object::read(&args.file)?;
    let (policies, namespace) = match &args.policy {
        Some(path) => {
            let namespace = kube
                .namespace
                .clone()
                .or_else(|| object.namespace().map(str::to_owned))
                .unwrap_or_else(|| "default".to_owned());
            let yaml = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let policies = Policies::from_yaml(&yaml, &namespace)
                .with_context(|| format!("reading policies from {}", path.display()))?;
            (policies, namespace)
        }
        None => {
            let (client, default_ns) = connect(kube).await?;
            let namespace = kube
                .namespace
                .clone()
                .or_else(|| object.namespace().map(str::to_owned))
                .unwrap_or(default_ns);
            let api: Api<Crypt4ghPolicy> = Api::namespaced(client, &namespace);
            let list = api.list(&ListParams::default()).await.with_context(|| {
                format!(
                    "listing Crypt4ghPolicy objects in namespace {namespace} \
                         (or check offline with --policy FILE)"
                )
            })?;
            (Policies::new(list.items, &namespace), namespace)
        }
    };
    let mut defaults = OperatorDefaults {
        sidecar_log_format: args.sidecar_log_format.clone(),
        ..OperatorDefaults::default()
    };
    if let Some(image) = &args.sidecar_image {
        defaults.sidecar_image = image.clone();
    }
    let verdict = check::check(&object, &namespace, Arc::new(policies), defaults)?;
    print!(
        "{}",
        check::render(&object, &namespace, &verdict, args.output)
    );
    Ok(if verdict.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
