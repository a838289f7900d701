//! `snl-bench sweep`: private inference of each model through the `pi-runtime` server and
//! client over real TCP, one [`Row`] per model, appended to a results file that a killed
//! sweep resumes from.
//!
//! Loopback (the default) serves each model in this process with
//! [`pi_runtime::server::run`] on `127.0.0.1` (an ephemeral port) and classifies with
//! [`pi_runtime::client::run`]: exactly what the `pi-server` and `pi-client` binaries
//! run, over a kernel TCP connection. With a remote server (`--server HOST:PORT`) only the
//! client runs here; the server must serve the model given (its public SHA-256 is pinned).
//!
//! Accuracy is measured twice per point (see [`Row`]): private inference classifies the
//! first `limit` test images (the sample, which costs seconds per image for large models),
//! and the fixed-point executor, the plaintext twin of the secure arithmetic, classifies the
//! first `full_limit` images (by default the whole test split), in parallel and in
//! plaintext. The row records both, and how often the secure prediction equals the
//! fixed-point one on the sampled images.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use models::data::{Dataset, DatasetKind, Split};
use models::exec::F32Executor;
use models::fixed::FixedProgram;
use models::{Model, PublicModel};
use pi_runtime::client::{self, ClientReport, Images, Spread};
use pi_runtime::net::ClientTls;
use pi_runtime::server::{self, ServerConfig};
use pi_runtime::session::{ClientOptions, ServedModel};
use rayon::prelude::*;

use crate::error::Error;
use crate::results::{self, Row, SCHEMA_VERSION};

/// How the linear layers are preprocessed: the runtime's methods, forwarded to both
/// parties and recorded in every row's `method` column under [`method_name`].
pub use pi_runtime::preprocess::Method;

/// The method's name as the session reports it (`pi-client --json`'s `preprocessing`):
/// `he-bfv`, `insecure-dealer`.
pub fn method_name(m: Method) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{m:?}"))
}

fn client_options(m: Method, expect_model: &str) -> ClientOptions {
    ClientOptions {
        expect_model: Some(expect_model.to_string()),
        insecure_dealer: m == Method::InsecureDealer,
    }
}

/// Where the server runs.
#[derive(Clone, Debug)]
pub enum Target {
    /// A server in this process on `127.0.0.1`; `tls` makes a throwaway self-signed
    /// certificate and pins it.
    Loopback {
        /// Use TLS.
        tls: bool,
    },
    /// A running `pi-server` at `addr` (`HOST:PORT`) serving the (single) model of the
    /// sweep; `tls: None` is plain TCP.
    Remote {
        /// `HOST:PORT`.
        addr: String,
        /// How to authenticate the server, if TLS.
        tls: Option<ClientTls>,
    },
}

/// Everything a sweep needs.
#[derive(Clone, Debug)]
pub struct SweepOptions {
    /// Model directories (full models: the plaintext accuracy needs the weights).
    pub models: Vec<PathBuf>,
    /// Dataset directory; its test split is classified.
    pub data: PathBuf,
    /// First `limit` test images, classified by private inference (the sample).
    pub limit: usize,
    /// First `full_limit` test images, classified by the fixed-point executor for the
    /// full-test accuracy; `None`: the whole test split.
    pub full_limit: Option<usize>,
    /// Sessions per model, each classifying every image once.
    pub repeats: usize,
    /// Results file (`.csv` or `.json`), read first for resumption, rewritten after
    /// every point.
    pub out: PathBuf,
    /// Preprocessing method.
    pub method: Method,
    /// Where the server runs.
    pub target: Target,
    /// Network label recorded in each row (`loopback`, `rtt-1ms`, ...).
    pub network: String,
    /// Round-trip time added by a relay on the path (recorded; the sweep adds nothing).
    pub rtt_ms: f64,
    /// Series label; default: the model's architecture.
    pub series: Option<String>,
    /// Longest wait for the server at any step.
    pub timeout: Duration,
    /// Progress bars and per-point lines on stderr.
    pub progress: bool,
}

/// What a sweep did.
#[derive(Clone, Debug, Default)]
pub struct SweepSummary {
    /// Points measured now.
    pub measured: usize,
    /// Points already in the results file and skipped.
    pub skipped: usize,
    /// Every row of the results file afterwards.
    pub rows: Vec<Row>,
}

struct Candidate {
    dir: PathBuf,
    public: PublicModel,
    hash: String,
    /// Positions squared online per inference (from the lowering's structure).
    squares: u64,
}

/// Runs the sweep. Every input is checked before the first measurement: the results file
/// must be absent or a valid results file, every model directory must load, the dataset
/// must hold images of each model's input shape.
pub fn run(opts: &SweepOptions) -> Result<SweepSummary, Error> {
    if opts.models.is_empty() {
        return Err(Error::Config("give at least one model directory".into()));
    }
    if opts.repeats == 0 || opts.limit == 0 || opts.full_limit == Some(0) {
        return Err(Error::Config(
            "--repeats, --limit and --full-limit must be at least 1".into(),
        ));
    }
    if !(opts.rtt_ms.is_finite() && opts.rtt_ms >= 0.0) {
        return Err(Error::Config(
            "--rtt-ms must be a finite, non-negative number".into(),
        ));
    }
    if let (Target::Remote { addr, .. }, false) = (&opts.target, opts.models.len() == 1) {
        return Err(Error::Config(format!(
            "a remote server ({addr}) serves one model: give exactly one model directory, \
             the one it serves ({} given)",
            opts.models.len()
        )));
    }
    let mut rows = results::read_if_exists(&opts.out)?;
    results::Format::of(&opts.out)?;
    if let Some(old) = rows.iter().find(|r| r.schema_version != SCHEMA_VERSION) {
        return Err(Error::Config(format!(
            "{} holds rows of results schema version {} ({}); this sweep writes version \
             {SCHEMA_VERSION} rows and does not mix versions in one file. Give a new --out \
             file: `snl-bench table`, `plot` and `model-cost` read several files.",
            opts.out.display(),
            old.schema_version,
            if old.schema_version == 1 {
                "accuracy on the sampled images only, no full-test accuracy or per-image \
                 agreement, no count of squared positions; `plot` draws them only with \
                 --accuracy secure"
            } else {
                "no count of squared positions"
            }
        )));
    }
    let kind = DatasetKind::detect(&opts.data)
        .map_err(|e| Error::Config(format!("dataset {}: {e}", opts.data.display())))?;
    let mut candidates = Vec::new();
    for dir in &opts.models {
        let (public, hash) = models::format::load_public(dir).map_err(|e| Error::Model {
            context: format!("model {}", dir.display()),
            source: e,
        })?;
        if public.graph.input != kind.shape() {
            return Err(Error::Config(format!(
                "model {} takes {:?} inputs; {} holds {} images of shape {:?}",
                dir.display(),
                public.graph.input,
                opts.data.display(),
                kind.name(),
                kind.shape()
            )));
        }
        let squares = models::latency::OnlineWork::of(&public)
            .map_err(|e| Error::Model {
                context: format!("model {}", dir.display()),
                source: e,
            })?
            .squares;
        candidates.push(Candidate {
            dir: dir.clone(),
            public,
            hash,
            squares,
        });
    }
    // Enough of the test split for both the sample and the full-test run.
    let load = opts.full_limit.map(|f| f.max(opts.limit));
    let ds = Dataset::load(kind, &opts.data, Split::Test, load)
        .map_err(|e| Error::Config(format!("dataset {}: {e}", opts.data.display())))?;
    let sizes = Sizes {
        sample: opts.limit.min(ds.len()),
        full: opts.full_limit.unwrap_or(usize::MAX).min(ds.len()),
    };
    if sizes.sample == 0 {
        return Err(Error::Config(format!(
            "dataset {}: the test split is empty",
            opts.data.display()
        )));
    }
    let done: HashSet<_> = rows.iter().map(Row::key).collect();
    let mut summary = SweepSummary::default();
    let total = candidates.len();
    for (i, c) in candidates.iter().enumerate() {
        let key = results::PointKey {
            model_sha256: c.hash.clone(),
            method: method_name(opts.method),
            network: opts.network.clone(),
            tls: tls_of(&opts.target),
            images: sizes.sample,
            repeats: opts.repeats,
            full_images: Some(sizes.full),
        };
        let tag = format!("[{}/{total}] {}", i + 1, c.dir.display());
        if done.contains(&key) {
            if opts.progress {
                eprintln!("{tag}: already in {}, skipped", opts.out.display());
            }
            summary.skipped += 1;
            continue;
        }
        if opts.progress {
            eprintln!(
                "{tag}: {} of {} ReLUs kept; fixed point on {} test images, private inference \
                 on {} x {} repeats, {}",
                c.public.relu_kept(),
                c.public.relu_total(),
                sizes.full,
                sizes.sample,
                opts.repeats,
                opts.network
            );
        }
        let row = measure(opts, c, &ds, sizes)?;
        if opts.progress {
            eprintln!(
                "{tag}: fixed point {:.2}% on {} test images; secure {:.2}% on {} (fixed point \
                 {:.2}%, f32 {:.2}% there), agreement {:.2}%; online median {:.1} ms (p10 \
                 {:.1}, p90 {:.1}), offline {:.1} ms",
                100.0 * row.fixed_accuracy_full.unwrap_or(f64::NAN),
                sizes.full,
                100.0 * row.secure_accuracy,
                row.secure_images,
                100.0 * row.fixed_accuracy,
                100.0 * row.f32_accuracy,
                100.0 * row.secure_agreement.unwrap_or(f64::NAN),
                row.online_ms_median,
                row.online_ms_p10,
                row.online_ms_p90,
                row.offline_ms_median
            );
        }
        rows.push(row);
        results::write(&opts.out, &rows)?;
        summary.measured += 1;
    }
    summary.rows = rows;
    Ok(summary)
}

fn tls_of(t: &Target) -> bool {
    match t {
        Target::Loopback { tls } => *tls,
        Target::Remote { tls, .. } => tls.is_some(),
    }
}

/// How many test images each measurement classifies (the first ones of the split).
#[derive(Clone, Copy, Debug)]
struct Sizes {
    /// By private inference, and by both plaintext executors for comparison.
    sample: usize,
    /// By the fixed-point executor alone.
    full: usize,
}

/// What the plaintext executors say about the test images.
struct Plaintext {
    /// The fixed-point executor's class for each of the first `max(sample, full)` images.
    fixed: Vec<usize>,
    /// Accuracy of the f32 executor on the sample.
    f32_sample: f64,
}

/// A class that matches no label: what an undecidable argmax (no logits) counts as.
const NO_CLASS: usize = usize::MAX;

/// The fixed-point executor on the first `max(sample, full)` images and the f32 executor
/// on the sample, in parallel over images, with a progress bar.
fn plaintext(
    model: &Model,
    ds: &Dataset,
    sizes: Sizes,
    progress: bool,
) -> Result<Plaintext, Error> {
    let merr = |context: &str| {
        let context = context.to_string();
        move |source| Error::Model { context, source }
    };
    let f32x = F32Executor::new(model).map_err(merr("f32 executor"))?;
    let prog = FixedProgram::lower(model).map_err(merr("lowering to fixed point"))?;
    let norm = &model.public.normalization;
    let n = sizes.sample.max(sizes.full).min(ds.len());
    let bar = progress_bar(
        progress,
        n as u64,
        "  {bar:30} {pos}/{len} test images in fixed point (plaintext), eta {eta}",
    );
    let out: Vec<(usize, Option<bool>)> = (0..n)
        .into_par_iter()
        .map(|i| -> Result<(usize, Option<bool>), Error> {
            let x = norm.apply(ds.image(i));
            let q = prog
                .forward(&x, false)
                .map_err(merr("fixed-point forward pass"))?;
            let f32_hit = if i < sizes.sample {
                let f = f32x.forward(&x).map_err(merr("f32 forward pass"))?;
                Some(models::tensor::argmax(&f) == Some(ds.label(i)))
            } else {
                None
            };
            bar.inc(1);
            Ok((
                models::tensor::argmax(&q.logits).unwrap_or(NO_CLASS),
                f32_hit,
            ))
        })
        .collect::<Result<_, _>>()?;
    bar.finish_and_clear();
    let f32_hits = out.iter().filter(|o| o.1 == Some(true)).count();
    Ok(Plaintext {
        fixed: out.into_iter().map(|o| o.0).collect(),
        f32_sample: f32_hits as f64 / sizes.sample.max(1) as f64,
    })
}

/// Fraction of the first `n` images whose prediction is their label.
fn accuracy_on(preds: &[usize], ds: &Dataset, n: usize) -> f64 {
    let n = n.min(preds.len());
    let hits = (0..n).filter(|&i| preds[i] == ds.label(i)).count();
    hits as f64 / n.max(1) as f64
}

/// Fraction of the private inferences, given as `(image index, predicted class)`, whose
/// predicted class equals the fixed-point executor's on the same image (`fixed[index]`;
/// a session's image index is the test split's). An image the fixed-point run did not
/// cover is an error.
fn agreement(
    secure: impl IntoIterator<Item = (usize, usize)>,
    fixed: &[usize],
) -> Result<f64, Error> {
    let (mut same, mut total) = (0usize, 0usize);
    for (index, predicted) in secure {
        let Some(&f) = fixed.get(index) else {
            return Err(Error::Config(format!(
                "the session classified image {index} but the fixed-point executor ran on \
                 the first {} only",
                fixed.len()
            )));
        };
        same += usize::from(predicted == f);
        total += 1;
    }
    Ok(same as f64 / total.max(1) as f64)
}

fn measure(opts: &SweepOptions, c: &Candidate, ds: &Dataset, sizes: Sizes) -> Result<Row, Error> {
    let (model, _) = models::format::load(&c.dir).map_err(|e| Error::Model {
        context: format!("loading the model {}", c.dir.display()),
        source: e,
    })?;
    let plain = plaintext(&model, ds, sizes, opts.progress)?;
    let macs = model.public.graph.macs().map_err(|e| Error::Model {
        context: format!("counting the MACs of {}", c.dir.display()),
        source: e,
    })?;
    let rt = client::runtime(None)
        .map_err(|e| Error::Config(format!("starting the tokio runtime: {e}")))?;
    let rterr = |context: String| move |source| Error::Runtime { context, source };
    // The server, when it runs here: its address, how to trust it, how to stop it.
    let mut local = None;
    let (addr, tls) = match &opts.target {
        Target::Remote { addr, tls } => (addr.clone(), tls.clone()),
        Target::Loopback { tls } => {
            let served = ServedModel::from_stored(&c.dir, &model)
                .map_err(rterr(format!("serving {}", c.dir.display())))?;
            let (server_tls, client_tls, _certs) = if *tls {
                let (s, cl, dir) = throwaway_tls()?;
                (Some(s), Some(cl), Some(dir))
            } else {
                (None, None, None)
            };
            let mut cfg = ServerConfig::new(Arc::new(served), server_tls);
            cfg.options.allow_insecure_dealer = opts.method == Method::InsecureDealer;
            cfg.idle_timeout = opts.timeout;
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| Error::Config(format!("cannot listen on 127.0.0.1: {e}")))?;
            let port = listener
                .local_addr()
                .map_err(|e| Error::Config(format!("listening socket: {e}")))?
                .port();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let handle = rt.spawn(server::run(listener, cfg, async {
                let _ = stopped.await;
            }));
            local = Some((stop, handle));
            (format!("localhost:{port}"), client_tls)
        }
    };
    let bar = progress_bar(
        opts.progress,
        (sizes.sample * opts.repeats) as u64,
        "  {bar:30} {pos}/{len} private inferences, eta {eta}",
    );
    let images = Images::Dataset {
        dir: opts.data.clone(),
        limit: Some(opts.limit),
    };
    let copts = client_options(opts.method, &c.hash);
    let mut reports: Vec<ClientReport> = Vec::with_capacity(opts.repeats);
    let context = || format!("{}: private inference against {addr}", c.dir.display());
    let outcome = (|| -> Result<(), Error> {
        for _ in 0..opts.repeats {
            let ch = client::connect_blocking(&rt, &addr, tls.as_ref(), opts.timeout)
                .map_err(rterr(context()))?;
            let report = client::run(ch, &addr, tls.is_some(), &images, &copts, |_, _| bar.inc(1))
                .map_err(rterr(context()))?;
            reports.push(report);
        }
        Ok(())
    })();
    bar.finish_and_clear();
    if let Some((stop, handle)) = local {
        let _ = stop.send(());
        match rt.block_on(handle) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Error::Runtime {
                    context: format!("the loopback server for {}", c.dir.display()),
                    source: e,
                });
            }
            Err(e) => {
                return Err(Error::Config(format!(
                    "the loopback server for {} failed: {e}",
                    c.dir.display()
                )));
            }
        }
    }
    outcome?;
    row_of(opts, c, &reports, &plain, sizes, macs, ds)
}

fn row_of(
    opts: &SweepOptions,
    c: &Candidate,
    reports: &[ClientReport],
    plain: &Plaintext,
    sizes: Sizes,
    macs: u64,
    ds: &Dataset,
) -> Result<Row, Error> {
    let first = reports
        .first()
        .and_then(|r| r.inferences.first().map(|i| (r, i)));
    let Some((r0, i0)) = first else {
        return Err(Error::Config(format!(
            "{}: the sessions classified no image",
            c.dir.display()
        )));
    };
    let method = method_name(r0.preprocessing);
    if r0.preprocessing != opts.method {
        return Err(Error::Config(format!(
            "{}: the session negotiated {method}, the sweep asked for {}",
            c.dir.display(),
            method_name(opts.method)
        )));
    }
    let on: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.inferences.iter().map(|i| 1e3 * i.online.seconds))
        .collect();
    let off: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.inferences.iter().map(|i| 1e3 * i.offline.seconds))
        .collect();
    let (correct, labelled) = reports.iter().fold((0, 0), |(c, n), r| {
        (
            c + r.correct.unwrap_or(0),
            n + r.inferences.iter().filter(|i| i.label.is_some()).count(),
        )
    });
    if let Some(r) = reports.iter().find(|r| r.inferences.len() != sizes.sample) {
        return Err(Error::Config(format!(
            "{}: a session classified {} images, the sweep asked for {}",
            c.dir.display(),
            r.inferences.len(),
            sizes.sample
        )));
    }
    let on_s = Spread::of(&on);
    Ok(Row {
        schema_version: SCHEMA_VERSION,
        series: opts.series.clone().unwrap_or_else(|| c.public.arch.clone()),
        model: c.dir.display().to_string(),
        model_sha256: c.hash.clone(),
        arch: r0.arch.clone(),
        dataset: ds.kind.name().to_string(),
        method,
        network: opts.network.clone(),
        rtt_ms: opts.rtt_ms,
        tls: r0.tls,
        images: sizes.sample,
        repeats: reports.len(),
        relus_total: r0.relus_total,
        relus_kept: r0.relus_kept,
        linear_macs: macs,
        rounds: i0.online.rounds,
        squares: Some(c.squares),
        f32_accuracy: plain.f32_sample,
        fixed_accuracy: accuracy_on(&plain.fixed, ds, sizes.sample),
        secure_accuracy: correct as f64 / labelled.max(1) as f64,
        secure_images: sizes.sample,
        secure_agreement: Some(agreement(
            reports
                .iter()
                .flat_map(|r| r.inferences.iter().map(|i| (i.index, i.predicted))),
            &plain.fixed,
        )?),
        fixed_accuracy_full: Some(accuracy_on(&plain.fixed, ds, sizes.full)),
        full_images: Some(sizes.full),
        online_ms_median: on_s.median,
        online_ms_p10: on_s.p10,
        online_ms_p90: on_s.p90,
        online_ms_min: on_s.min,
        online_ms_max: on_s.max,
        offline_ms_median: Spread::of(&off).median,
        online_bytes_up: i0.online.bytes_sent,
        online_bytes_down: i0.online.bytes_received,
        offline_bytes_up: i0.offline.bytes_sent,
        offline_bytes_down: i0.offline.bytes_received,
        software: r0.software.to_string(),
        finished_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    })
}

/// The last two components of a model path (`snl/budget-650`), at most 24 characters.
fn short_model(p: &str) -> String {
    let parts: Vec<&str> = p.trim_end_matches('/').rsplit('/').take(2).collect();
    let s: String = parts.into_iter().rev().collect::<Vec<_>>().join("/");
    let n = s.chars().count();
    if n > 24 {
        s.chars().skip(n - 24).collect()
    } else {
        s
    }
}

/// A self-signed certificate for `localhost` in a temporary directory: the server's
/// configuration, the client's pin, and the directory (deleted when dropped).
fn throwaway_tls() -> Result<(Arc<rustls::ServerConfig>, ClientTls, tempfile::TempDir), Error> {
    let rterr = |source| Error::Runtime {
        context: "making a throwaway TLS certificate".into(),
        source,
    };
    let g = pi_runtime::net::generate_cert(&["localhost".to_string()]).map_err(rterr)?;
    let dir = tempfile::tempdir()
        .map_err(|e| Error::Config(format!("making a temporary directory: {e}")))?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &g.cert_pem).map_err(|e| Error::io(&cert, e))?;
    std::fs::write(&key, &g.key_pem).map_err(|e| Error::io(&key, e))?;
    let server = pi_runtime::net::server_tls(&cert, &key).map_err(rterr)?;
    let pin = pi_runtime::net::parse_pin(&g.pin).map_err(rterr)?;
    Ok((server, ClientTls::Pin(pin), dir))
}

fn progress_bar(show: bool, len: u64, template: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A plain-text table of rows, sorted by network then kept ReLUs: what the sweep prints at
/// the end and `snl-bench table` prints for a results file. Accuracy is the fixed-point
/// executor's on the full test set, beside the secure measurement's sample size and
/// agreement; rows of results schema version 1, which measured accuracy on the sample
/// only, show `-` there (their sampled accuracies stay in the file).
pub fn table(rows: &[Row]) -> String {
    let mut v: Vec<&Row> = rows.iter().collect();
    v.sort_by(|a, b| {
        (
            a.series.as_str(),
            a.rtt_ms,
            a.network.as_str(),
            a.relus_kept,
        )
            .partial_cmp(&(
                b.series.as_str(),
                b.rtt_ms,
                b.network.as_str(),
                b.relus_kept,
            ))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut s = format!(
        "{:<24} {:<12} {:<10} {:>8} {:>7} {:>9} {:>7} {:>8} {:>7} {:>7} {:>10} {:>14} {:>7} {:>11} {:>10}\n",
        "model",
        "series",
        "network",
        "kept",
        "kept %",
        "accuracy",
        "images",
        "secure",
        "images",
        "agree",
        "online ms",
        "p10-p90 ms",
        "rounds",
        "online MB",
        "offline ms"
    );
    let pct = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |a| format!("{:.1}%", 100.0 * a));
    let count = |x: Option<usize>| x.map_or_else(|| "-".to_string(), |n| n.to_string());
    for r in &v {
        let secure_n = if r.repeats > 1 {
            format!("{}x{}", r.secure_images, r.repeats)
        } else {
            r.secure_images.to_string()
        };
        s.push_str(&format!(
            "{:<24} {:<12} {:<10} {:>8} {:>6.1}% {:>9} {:>7} {:>7.1}% {:>7} {:>7} {:>10.1} {:>14} {:>7} {:>11.2} {:>10.1}\n",
            short_model(&r.model),
            r.series,
            r.network,
            r.relus_kept,
            100.0 * r.relus_kept as f64 / r.relus_total.max(1) as f64,
            pct(r.fixed_accuracy_full),
            count(r.full_images),
            100.0 * r.secure_accuracy,
            secure_n,
            pct(r.secure_agreement),
            r.online_ms_median,
            format!("{:.1}-{:.1}", r.online_ms_p10, r.online_ms_p90),
            r.rounds,
            (r.online_bytes_up + r.online_bytes_down) as f64 / 1e6,
            r.offline_ms_median
        ));
    }
    s.push_str(
        "accuracy: fixed-point executor (plaintext twin of the secure arithmetic) on the first \
         `images` test images\nsecure: private inference on the first `images` (x repeats); \
         agree: share of those inferences whose class is the fixed-point executor's\n",
    );
    if v.iter().any(|r| r.fixed_accuracy_full.is_none()) {
        s.push_str(
            "-: a row of results schema version 1, which measured accuracy on the secure \
             sample only\n",
        );
    }
    s
}

#[cfg(test)]
mod tests;
