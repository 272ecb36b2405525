//! The command line of `kubectl-c4gh` (run by kubectl as `kubectl c4gh`).

use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Examples shown after `kubectl c4gh --help`.
const EXAMPLES: &str = "\
EXAMPLES:
  kubectl c4gh status task-1 -n tasks
  kubectl c4gh check -f pod.yaml -n tasks
  kubectl c4gh check -f pod.yaml --policy policy.yaml
  kubectl c4gh check -f task-configmap.yaml -n tesk -o patch
  kubectl c4gh doctor";

/// The command-line definition (for completions and man pages).
pub fn command() -> clap::Command {
    Cli::command()
}

/// crypt4gh-sidecar for cluster operators: where a task pod's encrypted inputs stand, whether a
/// pod or TESK task would pass the namespace's Crypt4ghPolicy, and whether the operator is
/// installed correctly.
///
/// Installed on PATH as kubectl-c4gh, it runs as kubectl c4gh. It reads pods, events, policies,
/// the CRD and the webhook configuration; it never execs into pods and never reads task Secrets.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-c4gh",
    bin_name = "kubectl c4gh",
    version,
    max_term_width = 100,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Cluster access.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Which cluster and namespace to talk to (as in kubectl).
#[derive(Debug, Clone, Args)]
pub struct KubeArgs {
    /// Kubeconfig file (default: kubectl's: KUBECONFIG, then ~/.kube/config, then in-cluster).
    #[arg(long, env = "KUBECONFIG", global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Namespace (default: the context's namespace, else default).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    pub namespace: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show each input of an injected pod: state, bytes, error, and whether the ephemeral key
    /// still exists.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Run the webhook's validation on a pod or TESK task ConfigMap without creating it: print
    /// what would be injected, or the exact message the API server would deny it with.
    #[command(after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Check the installation: CRD, webhook configuration, operator, certificates and policies.
    /// Exits 1 when a check fails.
    #[command(after_help = DOCTOR_EXAMPLES)]
    Doctor(DoctorArgs),
}

const STATUS_EXAMPLES: &str = "\
EXAMPLES:
  kubectl c4gh status task-1 -n tasks

Exit status: 0 when every input is in place, 1 when the pod failed, waits or has not started.";

const CHECK_EXAMPLES: &str = "\
EXAMPLES:
  kubectl c4gh check -f pod.yaml -n tasks              policy from the cluster
  kubectl c4gh check -f pod.yaml --policy policy.yaml  offline, no cluster needed
  kubectl c4gh check -f job.yaml -o yaml               a Job: as TESK's Job webhook sees it, else its pod template
  kubectl c4gh check -f task-cm.yaml -n tesk           a TESK task ConfigMap (JSON_INPUT.gz)

Exit status: 0 when the object would be admitted, 1 when it would be denied.";

const DOCTOR_EXAMPLES: &str = "\
EXAMPLES:
  kubectl c4gh doctor
  kubectl c4gh doctor --operator-namespace c4gh-system --webhook-config c4gh-operator";

/// Options of status.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The pod.
    #[arg(value_name = "POD")]
    pub pod: String,
}

/// Options of check.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// YAML or JSON file holding a Pod, a Job or a TESK task ConfigMap (- for stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,
    /// Crypt4ghPolicy YAML file to check against instead of the cluster's policies (offline).
    /// Documents without a namespace apply to the checked namespace.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Sidecar image of the operator (its --sidecar-image), used when the policy names none.
    #[arg(long, env = "C4GH_OPERATOR_SIDECAR_IMAGE", value_name = "IMAGE")]
    pub sidecar_image: Option<String>,
    /// Log format the operator gives injected sidecars (its --sidecar-log-format).
    #[arg(
        long,
        env = "C4GH_OPERATOR_SIDECAR_LOG_FORMAT",
        default_value = "json",
        value_name = "FORMAT"
    )]
    pub sidecar_log_format: String,
    /// What to print when the object would be admitted.
    #[arg(short = 'o', long, value_enum, default_value_t = CheckOutput::Summary)]
    pub output: CheckOutput,
}

/// Output of an admitted check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    /// What would be injected, in words.
    Summary,
    /// The JSON patch the webhook would answer with.
    Patch,
    /// The object as the API server would store it.
    Yaml,
}

/// Options of doctor.
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Namespace the operator runs in (its --namespace).
    #[arg(long, default_value = "c4gh-system", value_name = "NS")]
    pub operator_namespace: String,
    /// Name of the operator's Deployment and Service.
    #[arg(long, default_value = "c4gh-operator", value_name = "NAME")]
    pub operator: String,
    /// Name of the MutatingWebhookConfiguration (the operator's --webhook-config).
    #[arg(long, default_value = "c4gh-operator", value_name = "NAME")]
    pub webhook_config: String,
    /// Secret holding the serving certificate (self-managed: c4gh-operator-webhook-tls;
    /// cert-manager: c4gh-operator-serving-tls). Default: whichever exists.
    #[arg(long, value_name = "NAME")]
    pub cert_secret: Option<String>,
    /// Warn when a certificate expires within this many days.
    #[arg(long, default_value_t = 7, value_name = "DAYS")]
    pub warn_days: u32,
}
