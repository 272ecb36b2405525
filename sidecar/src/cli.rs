//! The command line: one clap struct for the binary, every flag also settable by environment
//! variable (the pod-facing contract configures the sidecar by env).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use c4gh_contract::{env, pod};
use clap::builder::BoolishValueParser;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// Examples shown after `c4gh-sidecar --help`.
const EXAMPLES: &str = "\
EXAMPLES:
  c4gh-sidecar fetch drs://drs.example.org/sample1 -o sample1.bam.c4gh --key-out my.sec
  c4gh-sidecar fetch drs://drs.example.org/sample1 -o sample1.bam --decrypt
  c4gh-sidecar run      (in a pod: injected by c4gh-operator, configured by C4GH_* variables)";

/// Examples shown after `c4gh-sidecar fetch --help`.
const FETCH_EXAMPLES: &str = "\
EXAMPLES:
  c4gh-sidecar fetch drs://drs.example.org/sample1 -o sample1.bam.c4gh --key-out my.sec
  c4gh-sidecar fetch drs://drs.example.org/a drs://drs.example.org/b -O inputs/ --sk my.sec
  C4GH_TOKEN_FILE=token c4gh-sidecar fetch drs://drs.example.org/sample1 -o sample1.bam --decrypt";

/// The command-line definition (for completions and man pages).
pub fn command() -> clap::Command {
    Cli::command()
}

/// Ephemeral-key Crypt4GH sidecar: fetch a task's DRS inputs re-encrypted for a key that exists only
/// for this task, gate the task on them, and destroy the key when the task ends.
#[derive(Debug, Parser)]
#[command(
    name = "c4gh-sidecar",
    version,
    max_term_width = 100,
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Log format: json (one object per line, for clusters) or text (for people). Logs go to
    /// stderr and never contain key material or tokens.
    #[arg(long, env = env::LOG_FORMAT, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Text,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pod mode: harden the process, generate the ephemeral key, write it to the key directory,
    /// fetch every input, report progress in status.json, then wait; when the task containers'
    /// exit notices say the task ended, or on SIGTERM/SIGINT, overwrite and unlink the key file;
    /// on SIGTERM/SIGINT remove plaintext and FIFOs written, and exit 0.
    Run(RunArgs),
    /// Startup probe: exit 0 once the key file exists and status.json has left phase Starting.
    Probe(ProbeArgs),
    /// Init container before the task: exit 0 when the sidecar reports Ready; exit 1 with a
    /// one-line reason on Failed or when the timeout passes. Either way the termination log
    /// gets that line and a summary of every input (what kubectl c4gh status shows).
    Gate(GateArgs),
    /// Fetch DRS objects to local files outside Kubernetes (same machinery as run).
    #[command(after_help = FETCH_EXAMPLES)]
    Fetch(FetchArgs),
    /// Replace each output file (and each file under an output directory) by its Crypt4GH
    /// encryption for the output's recipients, atomically; exit 1 with the reason in the
    /// termination log when any file cannot be encrypted (its plaintext is removed). Run
    /// before an uploader, e.g. as an init container of TESK's outputs filer.
    #[command(after_help = SEAL_EXAMPLES)]
    Seal(SealArgs),
}

/// Examples shown after `c4gh-sidecar seal --help`.
const SEAL_EXAMPLES: &str = "\
EXAMPLES:
  c4gh-sidecar seal --outputs '[{\"path\": \"/data/out\", \"recipients\": [\"BASE64KEY\"]}]'
  C4GH_OUTPUTS=\"$(cat outputs.json)\" c4gh-sidecar seal --termination-log /dev/termination-log";

/// How outputs are encrypted (shared by run and seal).
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// The output list as JSON: [{"path": "/abs/file-or-dir", "recipients": ["Crypt4GH public
    /// key", …]}]. In run, the outputs are encrypted at SIGTERM, before the key is destroyed.
    #[arg(long, env = env::OUTPUTS, value_name = "JSON")]
    pub outputs: Option<String>,
    /// File holding the output list (used when --outputs is not given; a missing file declares
    /// no outputs).
    #[arg(long, env = env::OUTPUTS_FILE, value_name = "FILE")]
    pub outputs_file: Option<PathBuf>,
    /// Threads encrypting one output file (0: one per core, at most 4; files under 4 MiB get
    /// one).
    #[arg(long, env = env::SEAL_THREADS, default_value_t = 0, value_name = "N")]
    pub seal_threads: usize,
    /// File receiving the outcome of the encryption (the container's terminationMessagePath).
    #[arg(
        long,
        env = env::TERMINATION_LOG,
        default_value = "/dev/termination-log",
        value_name = "FILE"
    )]
    pub termination_log: PathBuf,
}

/// Options of seal.
#[derive(Debug, Clone, Args)]
pub struct SealArgs {
    /// Output options.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How to reach DRS servers (shared by run and fetch).
#[derive(Debug, Clone, Args)]
pub struct DrsArgs {
    /// DRS hosts that may be contacted, as HOST or HOST:PORT, comma-separated. Empty: run
    /// refuses to fetch unless --allow-any-host; fetch contacts the hosts of its URIs.
    #[arg(long, env = env::ALLOWED_HOSTS, value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// PEM bundle of CA certificates trusted for DRS TLS, in addition to the built-in web roots.
    #[arg(long, env = env::CA_BUNDLE, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// File holding a bearer token for DRS requests (re-read for every request, so rotated
    /// projected ServiceAccount tokens keep working).
    #[arg(long, env = env::TOKEN_FILE, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding a JSON list of GA4GH passport JWTs sent in DRS POST bodies.
    #[arg(long, env = env::PASSPORTS_FILE, value_name = "FILE")]
    pub passports_file: Option<PathBuf>,
    /// JSON object mapping compact-identifier prefixes to URL patterns containing {id}, e.g.
    /// {"ega": "https://drs.example.org/ga4gh/drs/v1/objects/{id}"}.
    #[arg(long, env = env::PREFIX_MAP, value_name = "JSON")]
    pub prefix_map: Option<String>,
    /// The protocol of each DRS server, as HOST[:PORT]=FLAVOUR entries (comma-separated; a bare
    /// FLAVOUR applies to hosts not listed). FLAVOUR: auto (the default: asked from the
    /// server's service-info), crypt4gh-drs (this project's protocol), sda-v2 (NeIC SDA v2;
    /// name files drs://HOST/DATASET_ID/FILE_PATH) or key-header:URL (a header URL pattern
    /// with {id}, key in Htsget-Context-Public-Key).
    #[arg(
        long = "server-flavour",
        visible_alias = "flavour",
        env = env::SERVER_FLAVOURS,
        value_delimiter = ',',
        value_name = "HOST=FLAVOUR"
    )]
    pub server_flavours: Vec<String>,
    /// Development: accept a port in drs://HOST:PORT/ID (the DRS spec forbids it).
    #[arg(long, env = env::DRS_ALLOW_PORT, value_parser = BoolishValueParser::new())]
    pub drs_allow_port: bool,
    /// Development: resolve drs:// to plain http:// instead of https://.
    #[arg(long, env = env::DRS_ALLOW_HTTP, value_parser = BoolishValueParser::new())]
    pub drs_allow_http: bool,
    /// Largest plaintext written in plaintext mode, in bytes; a larger object fails (before
    /// anything is written when its size is known) and leaves no file. Unset: no limit.
    #[arg(long, env = env::MAX_PLAINTEXT_BYTES, value_name = "BYTES")]
    pub max_plaintext_bytes: Option<u64>,
    /// How many objects are fetched at the same time.
    #[arg(long, env = env::CONCURRENCY, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Retry budget: how long one request, or one body download without progress, is retried
    /// (exponential backoff with jitter) before the input fails, e.g. 5m, 90s.
    #[arg(long, env = env::RETRY_BUDGET, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub retry_budget: Duration,
    /// Longest backoff between two retries, e.g. 10s.
    #[arg(long, env = env::RETRY_MAX_BACKOFF, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub retry_max_backoff: Duration,
    /// Deadline for response headers and for a whole small (JSON, header) response, e.g. 30s.
    #[arg(long, env = env::RESPONSE_TIMEOUT, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub response_timeout: Duration,
    /// Longest wait for the next bytes of a body before the download resumes, e.g. 30s.
    #[arg(long, env = env::IDLE_TIMEOUT, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub idle_timeout: Duration,
}

/// Options of run.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The input list as JSON: [{"url": "drs://…", "path": "/abs/path", "mode":
    /// "encrypted"|"plaintext"|"stream"}] (mode optional, default encrypted). Wins over
    /// --inputs-file.
    #[arg(long, env = env::INPUTS, value_name = "JSON")]
    pub inputs: Option<String>,
    /// File holding the input list (the downward API file /c4gh/podinfo/inputs).
    #[arg(long, env = env::INPUTS_FILE, value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Directory for ephemeral.sec (0440), ephemeral.pub and status.json: a memory-backed volume.
    #[arg(
        long,
        env = env::KEY_DIR,
        default_value = pod::KEY_DIR,
        value_name = "DIR"
    )]
    pub key_dir: PathBuf,
    /// Directories inputs may be written below (repeatable; env: comma-separated). Default: every
    /// mount point of this container except /, system paths, /c4gh and the key directory.
    #[arg(
        long = "input-root",
        env = env::INPUT_ROOTS,
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub input_roots: Vec<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = env::METRICS_ADDR, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Directory of the task containers' exit notices (written by c4gh-exec --notice): the key
    /// is destroyed as soon as they say the task ended for good, before SIGTERM.
    #[arg(
        long,
        env = env::EXIT_DIR,
        default_value = pod::EXIT_DIR,
        value_name = "DIR"
    )]
    pub exit_dir: PathBuf,
    /// The pod's task containers as JSON: [{"name": "…", "restartPolicy":
    /// "Never"|"OnFailure"|"Always", "wrapped": true|false}]. Unset: the key is destroyed at
    /// SIGTERM.
    #[arg(long, env = env::TASK_CONTAINERS, value_name = "JSON")]
    pub task_containers: Option<String>,
    /// Development: contact any DRS host when C4GH_ALLOWED_HOSTS is empty. Without it an
    /// empty allow list fails the run (fail closed).
    #[arg(long, env = env::ALLOW_ANY_HOST, value_parser = BoolishValueParser::new())]
    pub allow_any_host: bool,
    /// DRS options.
    #[command(flatten)]
    pub drs: DrsArgs,
    /// Output options.
    #[command(flatten)]
    pub output: OutputArgs,
}

/// Options of probe.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The key directory the sidecar writes.
    #[arg(
        long,
        env = env::KEY_DIR,
        default_value = pod::KEY_DIR,
        value_name = "DIR"
    )]
    pub key_dir: PathBuf,
}

/// Options of gate.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("wrapper_location").args(["exec_dir", "wrapper_dir"])))]
pub struct GateArgs {
    /// The key directory the sidecar writes (mounted read-only).
    #[arg(
        long,
        env = env::KEY_DIR,
        default_value = pod::KEY_DIR,
        value_name = "DIR"
    )]
    pub key_dir: PathBuf,
    /// Seconds to wait for phase Ready before failing.
    #[arg(
        long,
        env = env::GATE_TIMEOUT,
        default_value_t = 3600,
        value_name = "SECONDS"
    )]
    pub timeout: u64,
    /// File receiving the one-line failure reason (the container's terminationMessagePath).
    #[arg(
        long,
        env = env::TERMINATION_LOG,
        default_value = "/dev/termination-log",
        value_name = "FILE"
    )]
    pub termination_log: PathBuf,
    /// Longest time in milliseconds between reads of status.json (inotify reports each new
    /// document at once; the poll covers file systems without inotify).
    #[arg(
        long,
        env = env::GATE_POLL_MS,
        default_value_t = 200,
        value_name = "MS"
    )]
    pub poll_ms: u64,
    /// TESK executor pods: copy the command wrapper c4gh-exec and write the verdict into DIR,
    /// then exit 0 whatever the verdict (the wrapper in the executor's container prints the
    /// reason and refuses to run the command unless the verdict is "ready").
    #[arg(long, env = env::GATE_EXEC_DIR, value_name = "DIR")]
    pub exec_dir: Option<PathBuf>,
    /// Pods whose task containers run behind c4gh-exec without a verdict: copy the wrapper into
    /// DIR before waiting; the outcome is as without it (exit 1 on a failed input).
    #[arg(long, env = env::GATE_WRAPPER_DIR, value_name = "DIR")]
    pub wrapper_dir: Option<PathBuf>,
    /// The c4gh-exec binary to copy (default: next to this program).
    #[arg(long, value_name = "FILE", requires = "wrapper_location")]
    pub exec_binary: Option<PathBuf>,
}

/// Options of fetch.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// DRS URIs to fetch (drs://HOST/ID or drs://PREFIX:ACCESSION).
    #[arg(required = true, value_name = "DRS_URI")]
    pub urls: Vec<String>,
    /// Output file, one per URI in the same order.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        conflicts_with = "output_dir"
    )]
    pub outputs: Vec<PathBuf>,
    /// Directory receiving one file per URI, named after the object id (.c4gh appended unless
    /// --decrypt).
    #[arg(short = 'O', long, env = "C4GH_OUTPUT_DIR", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Your Crypt4GH secret key file: headers are re-encrypted for its public key. Passphrase from
    /// C4GH_PASSPHRASE if the key is encrypted. Default: a fresh ephemeral key.
    #[arg(long, env = env::SECRET_KEY, value_name = "FILE")]
    pub sk: Option<PathBuf>,
    /// Write decrypted plaintext instead of Crypt4GH files.
    #[arg(long, env = "C4GH_DECRYPT", value_parser = BoolishValueParser::new())]
    pub decrypt: bool,
    /// Passphrase of an encrypted --sk key file.
    #[arg(
        long,
        env = "C4GH_PASSPHRASE",
        hide_env_values = true,
        value_name = "PASSPHRASE"
    )]
    pub passphrase: Option<SecretArg>,
    /// With an ephemeral key and without --decrypt: write the ephemeral secret key here (0400,
    /// unencrypted) so the Crypt4GH files can be opened later; written once the first object is
    /// in place, not at all when every fetch fails.
    #[arg(long, env = "C4GH_KEY_OUT", value_name = "FILE")]
    pub key_out: Option<PathBuf>,
    /// Never draw a progress bar (it is drawn only when stderr is a terminal).
    #[arg(long, env = "C4GH_NO_PROGRESS", value_parser = BoolishValueParser::new())]
    pub no_progress: bool,
    /// DRS options.
    #[command(flatten)]
    pub drs: DrsArgs,
}

/// A secret given on the command line or by env: zeroized on drop, elided in `Debug`.
#[derive(Clone)]
pub struct SecretArg(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[secret elided]")
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg(zeroize::Zeroizing::new(s.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_every_flag_is_explained() {
        Cli::command().debug_assert();
        for sub in Cli::command().get_subcommands() {
            for arg in sub.get_arguments() {
                assert!(
                    arg.get_help().is_some(),
                    "{} --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn parses_fetch_outputs() {
        let cli = Cli::try_parse_from([
            "c4gh-sidecar",
            "fetch",
            "drs://h/1",
            "drs://h/2",
            "-o",
            "a",
            "-o",
            "b",
            "--decrypt",
        ])
        .unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("not fetch")
        };
        assert_eq!(args.outputs, [PathBuf::from("a"), PathBuf::from("b")]);
        assert!(args.decrypt);
        assert!(args.passphrase.is_none());
        let cli = Cli::try_parse_from([
            "c4gh-sidecar",
            "fetch",
            "drs://h/1",
            "-o",
            "a",
            "--drs-allow-port",
        ])
        .unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("not fetch")
        };
        assert!(args.drs.drs_allow_port && !args.drs.drs_allow_http);
        assert_eq!(args.drs.concurrency, 4);
        assert!(args.drs.server_flavours.is_empty());
        let cli = Cli::try_parse_from([
            "c4gh-sidecar",
            "fetch",
            "drs://h/1",
            "-o",
            "a",
            "--flavour",
            "sda-v2",
            "--server-flavour",
            "a.org=crypt4gh-drs,b.org:8443=auto",
        ])
        .unwrap();
        let Command::Fetch(args) = cli.command else {
            panic!("not fetch")
        };
        assert_eq!(
            args.drs.server_flavours,
            ["sda-v2", "a.org=crypt4gh-drs", "b.org:8443=auto"]
        );
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn passphrase_is_elided_in_debug() {
        let cli = Cli::try_parse_from([
            "c4gh-sidecar",
            "fetch",
            "drs://h/1",
            "-o",
            "a",
            "--passphrase",
            "hunter2-secret",
        ])
        .unwrap();
        let debug = format!("{cli:?}");
        assert!(!debug.contains("hunter2-secret"), "{debug}");
        assert!(debug.contains("[secret elided]"), "{debug}");
    }
}
