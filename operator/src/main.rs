//! `c4gh-operator`: parse the configuration, start logging, run the operator.

use c4gh_operator::config::{Config, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of the system allocator: admission allocates many small objects per request
/// on every worker, and the images link musl statically, whose allocator serialises threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init(),
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
    }
    c4gh_operator::run::run(config).await?;
    Ok(())
}
