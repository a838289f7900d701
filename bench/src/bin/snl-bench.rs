//! `snl-bench`: accuracy against measured private-inference latency.
//!
//! ```text
//! snl-bench sweep --models runs/r20/model runs/r20-snl/budget-* --data ../shared/data/cifar10-q75 \
//!     --limit 200 --repeats 3 --insecure-dealer --out results.csv [--full-limit 1000]
//! snl-bench plot results.csv --reference bench/data/snl_resnet18_cifar10.csv --out front.svg
//! snl-bench model-cost results.csv [--predict runs/r20-snl/budget-9420 --rtt-ms 10]
//! snl-bench table results.csv
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bench::cost::{self, CostModel, Features};
use bench::plot::{self, Accuracy, PlotOptions};
use bench::results;
use bench::sweep::{self, Method, SweepOptions, Target};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pi_runtime::net::{ClientTls, parse_pin};

/// Measures private inference of SNL models over real TCP and relates accuracy to online
/// latency and kept ReLUs.
///
/// `sweep` runs each model through the pi-runtime server and client (in this process on
/// loopback, or against a running pi-server with --server) on the first --limit test
/// images, runs the fixed-point executor (the plaintext twin of the secure arithmetic) on the
/// whole test split, and appends one row per model to a CSV or JSON results file; a killed
/// sweep resumes where it stopped. Tables and plots show the full-test accuracy with the
/// secure sample's size and per-image agreement beside it. `plot` draws the
/// Pareto fronts as SVG, `model-cost` fits a latency model (per kept ReLU, per linear MAC,
/// per round at a given RTT, per squared position) and prints predicted vs measured,
/// `table` prints a results file. See docs/results.md.
#[derive(Parser, Debug)]
#[command(name = "snl-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Private inference of each model; one results row per model.
    Sweep(SweepArgs),
    /// Pareto fronts: accuracy vs online latency and vs kept ReLUs (SVG).
    Plot(PlotArgs),
    /// Fit a latency model to measured rows; print predicted vs measured.
    ModelCost(CostArgs),
    /// Print a results file as a table.
    Table {
        /// Results file(s) (.csv or .json).
        #[arg(required = true)]
        results: Vec<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// Model directories (full models), e.g. runs/r20/model runs/r20-snl/budget-*.
    #[arg(long, num_args = 1.., required = true)]
    models: Vec<PathBuf>,
    /// Dataset directory; its test split is classified.
    #[arg(long)]
    data: PathBuf,
    /// Test images classified by private inference, per repeat (the first ones): the
    /// sample behind the secure accuracy, latency and traffic.
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Test images classified by the fixed-point executor for the accuracy that tables and
    /// plots show (the first ones; default: the whole test split). Lower it for quick runs.
    #[arg(long, value_name = "N")]
    full_limit: Option<usize>,
    /// Sessions per model (each classifies every image once); latency statistics are over
    /// all inferences of all sessions.
    #[arg(long, default_value_t = 1)]
    repeats: usize,
    /// Results file, .csv or .json: read first (finished points are skipped), rewritten
    /// after each point.
    #[arg(long)]
    out: PathBuf,
    /// Preprocess the linear layers with the insecure dealer (the client reveals its masks,
    /// so the server can read the input) instead of HE. The online phase's work and traffic
    /// are the same; the offline phase is far cheaper. Recorded as the `method` column.
    #[arg(long)]
    insecure_dealer: bool,
    /// Use a running pi-server at HOST:PORT (serving the one model given) instead of one
    /// in this process on loopback.
    #[arg(long)]
    server: Option<String>,
    /// With --server: trust this CA or self-signed certificate (PEM) for TLS.
    #[arg(long, requires = "server", conflicts_with = "tls_pin")]
    tls_ca: Option<PathBuf>,
    /// With --server: the SHA-256 pin of the server's certificate for TLS.
    #[arg(long, requires = "server")]
    tls_pin: Option<String>,
    /// On loopback: TLS with a throwaway certificate (default: plain TCP, as benchmarks).
    #[arg(long, conflicts_with = "server")]
    tls: bool,
    /// Network label recorded in each row (default: loopback, or rtt-Xms with --rtt-ms X).
    #[arg(long)]
    network: Option<String>,
    /// Round-trip time added on the path by a delay relay, ms (recorded; the sweep adds
    /// none itself).
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Series label in plots (default: the architecture).
    #[arg(long)]
    series: Option<String>,
    /// Seconds to wait for the server at any step.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// Results file(s) (.csv or .json).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Output SVG.
    #[arg(long)]
    out: PathBuf,
    /// Reference CSV (columns relus, top1 in %), e.g. bench/data/snl_resnet18_cifar10.csv;
    /// repeat for several.
    #[arg(long)]
    reference: Vec<PathBuf>,
    /// Legend label of each --reference, in order (default: "NETWORK, published").
    #[arg(long)]
    reference_label: Vec<String>,
    /// Only rows of these network labels (repeat); default all.
    #[arg(long)]
    network: Vec<String>,
    /// Which accuracy the y axes show: `full`, the fixed-point executor's on the full test
    /// set (needs rows of results schema 2 or later), or `secure`, private inference's on
    /// the sampled images.
    #[arg(long, value_enum, default_value_t = AccuracyArg::Full)]
    accuracy: AccuracyArg,
    /// Figure title.
    #[arg(long)]
    title: Option<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum AccuracyArg {
    Full,
    Secure,
}

#[derive(Args, Debug)]
struct CostArgs {
    /// Results file(s) to fit to (.csv or .json).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Also predict these model directories' online latency (at --rtt-ms).
    #[arg(long)]
    predict: Vec<PathBuf>,
    /// Added round-trip time for --predict, ms.
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Rows to check the fit against without fitting to them (e.g. the sweep of the models
    /// `snl-train linearize --latency-budget` made with the saved model): predicted vs
    /// measured for each.
    #[arg(long)]
    held_out: Vec<PathBuf>,
    /// With --held-out: fail when a held-out row's prediction is off by more than this
    /// many percent of its measured median.
    #[arg(long, requires = "held_out")]
    max_error: Option<f64>,
    /// Save the fitted coefficients as a latency model (JSON, schema
    /// `snl-latency-model/2`) for `snl-train linearize --latency-budget`; terms the
    /// measurements did not determine are saved as 0, except the RTT term: 1 (each round
    /// waits one round trip).
    #[arg(long)]
    save: Option<PathBuf>,
}

fn main() -> Result<()> {
    models::malloc::keep_freed_memory();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Sweep(a) => cmd_sweep(a),
        Cmd::Plot(a) => cmd_plot(a),
        Cmd::ModelCost(a) => cmd_cost(a),
        Cmd::Table { results } => {
            print!("{}", sweep::table(&read_all(&results)?));
            Ok(())
        }
    }
}

fn read_all(paths: &[PathBuf]) -> Result<Vec<results::Row>> {
    let mut rows = Vec::new();
    for p in paths {
        rows.extend(results::read(p)?);
    }
    Ok(rows)
}

fn cmd_sweep(a: SweepArgs) -> Result<()> {
    // The default is the secure method; the dealer is opt-in, as in pi-client.
    let method = if a.insecure_dealer {
        Method::InsecureDealer
    } else {
        Method::HeBfv
    };
    let target = match &a.server {
        None => Target::Loopback { tls: a.tls },
        Some(addr) => Target::Remote {
            addr: addr.clone(),
            tls: match (&a.tls_ca, &a.tls_pin) {
                (Some(ca), _) => Some(ClientTls::Ca(ca.clone())),
                (None, Some(pin)) => Some(ClientTls::Pin(parse_pin(pin)?)),
                (None, None) => None,
            },
        },
    };
    let network = a.network.clone().unwrap_or_else(|| {
        if a.rtt_ms > 0.0 {
            format!("rtt-{}ms", a.rtt_ms)
        } else if a.server.is_some() {
            "remote".into()
        } else {
            "loopback".into()
        }
    });
    let opts = SweepOptions {
        models: a.models,
        data: a.data,
        limit: a.limit,
        full_limit: a.full_limit,
        repeats: a.repeats,
        out: a.out.clone(),
        method,
        target,
        network,
        rtt_ms: a.rtt_ms,
        series: a.series,
        timeout: Duration::from_secs(a.timeout.max(1)),
        progress: !a.quiet,
    };
    if a.insecure_dealer && !a.quiet {
        eprintln!(
            "WARNING: --insecure-dealer: the client reveals its masks to the server; the \
             latency and traffic of the online phase are those of the real protocol."
        );
    }
    let s = sweep::run(&opts)?;
    eprintln!(
        "{} points measured, {} already in {} (skipped)",
        s.measured,
        s.skipped,
        a.out.display()
    );
    print!("{}", sweep::table(&s.rows));
    Ok(())
}

fn cmd_plot(a: PlotArgs) -> Result<()> {
    match a.out.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => {}
        Some(e) if e.eq_ignore_ascii_case("png") => bail!(
            "{}: PNG output is not built in; write .svg and convert it (e.g. rsvg-convert \
             front.svg -o front.png)",
            a.out.display()
        ),
        _ => bail!(
            "{}: the plot is written as SVG: give an .svg path",
            a.out.display()
        ),
    }
    if a.reference_label.len() > a.reference.len() {
        bail!("more --reference-label than --reference files");
    }
    let mut rows = read_all(&a.results)?;
    if !a.network.is_empty() {
        rows.retain(|r| a.network.contains(&r.network));
        if rows.is_empty() {
            bail!("no rows with network {:?} in the results", a.network);
        }
    }
    let refs = a
        .reference
        .iter()
        .enumerate()
        .map(|(i, p)| plot::read_reference(p, a.reference_label.get(i).map(String::as_str)))
        .collect::<Result<Vec<_>, _>>()?;
    let svg = plot::render_svg(
        &rows,
        &refs,
        &PlotOptions {
            title: a.title,
            accuracy: match a.accuracy {
                AccuracyArg::Full => Accuracy::Full,
                AccuracyArg::Secure => Accuracy::Secure,
            },
        },
    )?;
    std::fs::write(&a.out, svg).with_context(|| format!("writing {}", a.out.display()))?;
    eprintln!(
        "wrote {} ({} rows, {} reference series)",
        a.out.display(),
        rows.len(),
        refs.len()
    );
    Ok(())
}

fn cmd_cost(a: CostArgs) -> Result<()> {
    let mut rows = read_all(&a.results)?;
    let mut held = read_all(&a.held_out)?;
    let unknown = cost::fill_squares(&mut rows) + cost::fill_squares(&mut held);
    if unknown > 0 {
        eprintln!(
            "note: {unknown} rows (results schema before 3) do not record their squared \
             positions and their model directory no longer holds the measured model: \
             counted with none (right for models without quadratic sites)"
        );
    }
    let m = CostModel::fit(&rows)?;
    print!("{}", m.describe());
    if let Some(path) = &a.save {
        let lm = m.latency_model();
        lm.validate()
            .map_err(|e| anyhow::anyhow!("the fit cannot be saved as a latency model: {e}"))?;
        let mut json = serde_json::to_vec_pretty(&lm)?;
        json.push(b'\n');
        std::fs::write(path, json)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
        if m.coef[3].is_none() {
            eprintln!(
                "  (no row at a non-zero RTT: saved with 1 x RTT per round, one round trip each)"
            );
        }
    }
    println!();
    print!("{}", cost::comparison(&m, &rows));
    if !a.held_out.is_empty() {
        let (table, worst) = cost::held_out(&m, &held);
        println!();
        print!("{table}");
        if let (Some(max), Some(worst)) = (a.max_error, worst) {
            if 100.0 * worst > max {
                bail!(
                    "a held-out prediction is off by {:.1}% of its measurement, more than --max-error {max}%",
                    100.0 * worst
                );
            }
            println!(
                "largest held-out error {:.1}% (at most {max}% allowed)",
                100.0 * worst
            );
        }
    }
    if !a.predict.is_empty() {
        println!();
        println!("predicted online latency at +{} ms RTT:", a.rtt_ms);
        for d in &a.predict {
            let f = Features::of_model(d, a.rtt_ms)?;
            println!(
                "  {}: {:.0} kept ReLUs, {:.3} GMAC, {:.0} rounds, {:.0} squares -> {:.1} ms",
                d.display(),
                f.kept,
                f.macs / 1e9,
                f.rounds,
                f.squares,
                m.predict(&f)
            );
        }
    }
    Ok(())
}
