//! `pi-server`: serves private inference on one model.
//!
//! ```text
//! pi-server gen-cert --out certs --san localhost --san 127.0.0.1
//! pi-server --model runs/r20-snl/budget-10pct --listen 0.0.0.0:7070 \
//!     --tls-cert certs/cert.pem --tls-key certs/key.pem
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use pi_runtime::server::{self, ServerConfig};
use pi_runtime::session::ServedModel;

/// Serves private inference: the client learns its prediction, the server never sees the
/// input, the client never sees the weights.
///
/// TLS is the default (--tls-cert/--tls-key; make a self-signed pair with `gen-cert`);
/// --insecure-plaintext serves plain TCP for packet captures and benchmarks.
///
/// The linear layers are preprocessed with homomorphic encryption (BFV). Clients may ask
/// for the insecure dealer instead (the client reveals its masks and thus its input) only
/// when the server is started with --insecure-dealer, for tests and comparisons.
#[derive(Parser, Debug)]
#[command(name = "pi-server", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Makes a self-signed certificate (cert.pem) and key (key.pem) and prints the
    /// certificate's SHA-256 pin for `pi-client --tls-pin`.
    GenCert {
        /// Output directory (created; existing files are not overwritten).
        #[arg(long)]
        out: PathBuf,
        /// DNS name or IP address clients connect to (repeat for several).
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Model directory (the full model: weights stay on this machine).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:7070 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<String>,
    /// TLS certificate chain (PEM).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve plain TCP without TLS (packet captures, benchmarks).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
    insecure_plaintext: bool,
    /// Allow sessions with the insecure dealer (reveals clients' inputs; see above).
    #[arg(long)]
    insecure_dealer: bool,
    /// Sessions served at once; more clients are refused as busy. A connection takes a
    /// session slot only after a valid hello.
    #[arg(long, default_value_t = 16)]
    max_sessions: usize,
    /// Connections held at once (handshake, hello or session); more are closed at once.
    #[arg(long, default_value_t = 256)]
    max_connections: usize,
    /// Connections held at once from one IP address; more are closed at once.
    #[arg(long, default_value_t = 8)]
    max_connections_per_ip: usize,
    /// Seconds the TLS handshake and the client's hello may take together.
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Most inferences a session may hold prepared at once.
    #[arg(long, default_value_t = 16)]
    max_prepare: u32,
    /// Memory (MiB) for prepared inferences and running offline phases of all sessions
    /// together; a client whose preparation does not fit is refused as busy.
    #[arg(long, default_value_t = 4096)]
    memory_budget_mib: u64,
    /// Flooded HE coefficients a client may receive under one key before it must send a
    /// fresh one (default 2^32: at most 2^-40 statistical distance per key).
    #[arg(long, default_value_t = 1 << 32)]
    he_key_coefficients: u64,
    /// Seconds any single read or write may wait on a client.
    #[arg(long, default_value_t = 60)]
    idle_timeout: u64,
    /// Seconds one phase may take (base OTs, one offline phase, one online phase).
    #[arg(long, default_value_t = 600)]
    phase_timeout: u64,
    /// Seconds a whole session may take.
    #[arg(long, default_value_t = 3600)]
    session_timeout: u64,
    /// Append one JSON record per session to this file.
    #[arg(long)]
    metrics_json: Option<PathBuf>,
}

fn main() -> Result<()> {
    models::malloc::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.cmd {
        Some(Cmd::GenCert { out, sans }) => gen_cert(&out, &sans),
        None => serve(cli.serve),
    }
}

fn gen_cert(out: &std::path::Path, sans: &[String]) -> Result<()> {
    let g = pi_runtime::net::generate_cert(sans)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let (cert, key) = (out.join("cert.pem"), out.join("key.pem"));
    for p in [&cert, &key] {
        if p.exists() {
            bail!("{} exists; not overwriting it", p.display());
        }
    }
    std::fs::write(&cert, &g.cert_pem).with_context(|| format!("writing {}", cert.display()))?;
    write_private(&key, g.key_pem.as_bytes())?;
    println!("certificate: {}", cert.display());
    println!("private key: {} (keep it on the server)", key.display());
    println!("pin (SHA-256 of the certificate): {}", g.pin);
    println!(
        "clients: pi-client --tls-ca {} ... or --tls-pin {}",
        cert.display(),
        g.pin
    );
    Ok(())
}

#[cfg(unix)]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(not(unix))]
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn serve(a: ServeArgs) -> Result<()> {
    let Some(model_dir) = a.model else {
        bail!("--model is required (or use the gen-cert subcommand); see --help");
    };
    let Some(listen) = a.listen else {
        bail!("--listen is required, e.g. --listen 0.0.0.0:7070");
    };
    let tls = match (&a.tls_cert, &a.tls_key, a.insecure_plaintext) {
        (Some(c), Some(k), false) => Some(pi_runtime::net::server_tls(c, k)?),
        (None, None, true) => None,
        _ => bail!(
            "give --tls-cert and --tls-key (make them with `pi-server gen-cert`), or \
             --insecure-plaintext for plain TCP"
        ),
    };
    let model = ServedModel::load(&model_dir)
        .with_context(|| format!("loading the model {}", model_dir.display()))?;
    if a.insecure_dealer {
        eprintln!(
            "WARNING: --insecure-dealer: sessions use the insecure dealer for the linear \
             layers; clients reveal their masks and this server can read their inputs. \
             Every metric record is marked insecure."
        );
    }
    let kept = model.public.relu_kept();
    let total = model.public.relu_total();
    let mut cfg = ServerConfig::new(Arc::new(model), tls);
    cfg.options.allow_insecure_dealer = a.insecure_dealer;
    cfg.options.max_prepare = a.max_prepare.max(1);
    cfg.options.phase_timeout = Duration::from_secs(a.phase_timeout.max(1));
    cfg.options.he_key_coefficients = a.he_key_coefficients.max(1);
    cfg.options.memory_budget =
        pi_runtime::session::MemoryBudget::new(a.memory_budget_mib.saturating_mul(1 << 20));
    cfg.max_sessions = a.max_sessions.max(1);
    cfg.max_connections = a.max_connections.max(1);
    cfg.max_connections_per_ip = a.max_connections_per_ip.max(1);
    cfg.handshake_timeout = Duration::from_secs(a.handshake_timeout.max(1));
    cfg.idle_timeout = Duration::from_secs(a.idle_timeout.max(1));
    cfg.session_timeout = Duration::from_secs(a.session_timeout.max(1));
    cfg.metrics_json = a.metrics_json;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        tracing::info!(
            %addr,
            tls = cfg.tls.is_some(),
            arch = %cfg.model.public.arch,
            relus_kept = kept,
            relus_total = total,
            model_public_sha256 = %cfg.model.public_hash,
            "listening"
        );
        // Scripts read this line to learn the port when --listen ends in :0.
        println!("listening on {addr}");
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        server::run(listener, cfg, shutdown).await?;
        Ok(())
    })
}
