//! `pi-client`: private inference on one image or a test set.
//!
//! ```text
//! pi-client --connect server.example:7070 --tls-ca certs/cert.pem \
//!     --data ../shared/data/cifar10-q75 --limit 100 --json
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use pi_runtime::client::{self, Images};
use pi_runtime::net::{ClientTls, parse_pin};
use pi_runtime::session::ClientOptions;

/// Runs private inference against a pi-server: the server never sees the image, the
/// client never sees the weights. Prints the predicted class(es), the accuracy over a
/// labelled set, and latency figures (online: from sending the masked input to holding
/// the logits).
///
/// TLS is the default: authenticate the server with --tls-ca (its certificate or CA) or
/// --tls-pin (the SHA-256 `pi-server gen-cert` printed); --insecure-plaintext for plain
/// TCP. The linear layers are preprocessed with homomorphic encryption (BFV) by default;
/// --insecure-dealer replaces it with a dealer that reveals the input to the server
/// (tests and comparisons only).
#[derive(Parser, Debug)]
#[command(name = "pi-client", version)]
struct Cli {
    /// Server address, HOST:PORT.
    #[arg(long)]
    connect: String,
    /// CA or self-signed server certificate to trust (PEM).
    #[arg(long, conflicts_with_all = ["tls_pin", "insecure_plaintext"])]
    tls_ca: Option<PathBuf>,
    /// SHA-256 of the server's certificate (hex).
    #[arg(long, conflicts_with = "insecure_plaintext")]
    tls_pin: Option<String>,
    /// Plain TCP without TLS.
    #[arg(long)]
    insecure_plaintext: bool,
    /// One image: binary PGM/PPM or raw channel-major bytes of the model's input size.
    #[arg(long, conflicts_with = "data", required_unless_present = "data")]
    image: Option<PathBuf>,
    /// A dataset directory; its test split is classified.
    #[arg(long)]
    data: Option<PathBuf>,
    /// At most this many images of --data.
    #[arg(long, requires = "data")]
    limit: Option<usize>,
    /// Require the served model's public SHA-256 (`snl-model inspect` prints it).
    #[arg(long)]
    expect_model: Option<String>,
    /// Use the insecure dealer instead of HE for the linear layers (reveals the input to
    /// the server; the server must allow it).
    #[arg(long)]
    insecure_dealer: bool,
    /// Print the full report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    metrics_json: Option<PathBuf>,
    /// Seconds to wait for the server at any step.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// No per-image progress on stderr.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    models::malloc::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let tls = match (&cli.tls_ca, &cli.tls_pin, cli.insecure_plaintext) {
        (Some(ca), None, false) => Some(ClientTls::Ca(ca.clone())),
        (None, Some(pin), false) => Some(ClientTls::Pin(parse_pin(pin)?)),
        (None, None, true) => None,
        _ => bail!(
            "say how to authenticate the server: --tls-ca PEM or --tls-pin SHA256, or \
             --insecure-plaintext for plain TCP"
        ),
    };
    if cli.insecure_dealer {
        eprintln!(
            "WARNING: --insecure-dealer: the linear layers are preprocessed by revealing this \
             client's masks; the server can read the input. The report is marked insecure."
        );
    }
    let images = match (&cli.image, &cli.data) {
        (Some(f), None) => Images::File(f.clone()),
        (None, Some(d)) => Images::Dataset {
            dir: d.clone(),
            limit: cli.limit,
        },
        _ => bail!("give --image FILE or --data DIR"),
    };
    let opts = ClientOptions {
        expect_model: cli.expect_model.clone(),
        insecure_dealer: cli.insecure_dealer,
    };
    let timeout = Duration::from_secs(cli.timeout.max(1));
    let rt = client::runtime(Some(1)).context("starting the tokio runtime")?;
    let ch = client::connect_blocking(&rt, &cli.connect, tls.as_ref(), timeout)?;
    let quiet = cli.quiet;
    let report = client::run(
        ch,
        &cli.connect,
        tls.is_some(),
        &images,
        &opts,
        |r, total| {
            if !quiet {
                let label = r.label.map_or(String::new(), |l| format!(" label {l}"));
                eprintln!(
                    "[{}/{total}] class {}{label}  online {:.1} ms  offline {:.1} ms",
                    r.index + 1,
                    r.predicted,
                    1e3 * r.online.seconds,
                    1e3 * r.offline.seconds
                );
            }
        },
    )?;
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(p) = &cli.metrics_json {
        std::fs::write(p, &json).with_context(|| format!("writing {}", p.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if cli.json {
        writeln!(out, "{json}")?;
        return Ok(());
    }
    writeln!(
        out,
        "model {} ({} of {} ReLUs kept), public sha256 {}",
        report.arch, report.relus_kept, report.relus_total, report.model_public_sha256
    )?;
    writeln!(
        out,
        "transport: {}; preprocessing: {:?}{}",
        if report.tls { "TLS" } else { "plain TCP" },
        report.preprocessing,
        if report.insecure { " (INSECURE)" } else { "" }
    )?;
    if report.inferences.len() == 1 {
        let r = &report.inferences[0];
        writeln!(out, "predicted class: {}", r.predicted)?;
        let logits: Vec<String> = r.logits.iter().map(|v| format!("{v:.3}")).collect();
        writeln!(out, "logits: [{}]", logits.join(", "))?;
    }
    if let (Some(c), Some(a)) = (report.correct, report.accuracy) {
        writeln!(
            out,
            "accuracy: {c}/{} = {:.2}%",
            report.inferences.len(),
            100.0 * a
        )?;
    }
    let (on, off) = (&report.online_seconds, &report.offline_seconds);
    writeln!(
        out,
        "online latency: median {:.1} ms (p10 {:.1}, p90 {:.1}, max {:.1}) over {} inferences",
        1e3 * on.median,
        1e3 * on.p10,
        1e3 * on.p90,
        1e3 * on.max,
        report.inferences.len()
    )?;
    writeln!(out, "offline time: median {:.1} ms", 1e3 * off.median)?;
    if let Some(r) = report.inferences.first() {
        writeln!(
            out,
            "online bytes per inference: {} up, {} down ({} rounds)",
            r.online.bytes_sent, r.online.bytes_received, r.online.rounds
        )?;
        writeln!(
            out,
            "offline bytes per inference: {} up, {} down",
            r.offline.bytes_sent, r.offline.bytes_received
        )?;
    }
    Ok(())
}
