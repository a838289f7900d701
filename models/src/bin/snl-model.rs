//! `snl-model`: create, inspect and evaluate models in the SNL model format.
//!
//! ```text
//! snl-model new --arch resnet20 --classes 10 --input 3x32x32 --out runs/r20
//! snl-model inspect runs/r20 [--json]
//! snl-model eval runs/r20 --data ../shared/data/cifar10-q75 --executor fixed --limit 500
//! snl-model public runs/r20 --out runs/r20-public
//! snl-model windows runs/r20 --data ../shared/data/cifar10-q75 --out runs/r20-windowed
//! snl-model import --arch resnet20 --classes 10 --from ckpt.pt --out runs/r20-imported
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rayon::prelude::*;
use serde_json::json;

use models::data::{Dataset, DatasetKind, Normalization, Split};
use models::exec::{F32Executor, calibrate_batchnorm};
use models::fixed::{FixedPointParams, FixedProgram};
use models::report::Inspect;
use models::{Mask, Model, PublicModel, arch, format};

/// Create, inspect and evaluate SNL models (architecture + ReLU masks + weights).
///
/// A model is a directory: public.json and masks.safetensors (the public part, which the
/// client may see) and weights.safetensors and model.json (the private part). See
/// docs/model-format.md.
#[derive(Parser)]
#[command(name = "snl-model", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a randomly initialised model with every ReLU kept (or a random mask).
    New(NewArgs),
    /// Print a model's architecture summary, ReLU counts, parameters, version and hashes.
    Inspect {
        /// Model directory (full or public-only).
        path: PathBuf,
        /// Print the stable JSON document described in docs/model-format.md.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate accuracy on a test set with the f32 or the fixed-point executor.
    Eval(EvalArgs),
    /// Import a PyTorch state_dict (safetensors or torch.save file, SNL's names and alphas).
    Import(ImportArgs),
    /// Choose per-site ReLU windows from a calibration set and write the model with them.
    ///
    /// Runs the fixed-point executor on the first --images images of --split and gives
    /// each ReLU site the smallest window m whose range 2^(m-1-2f) exceeds --margin times
    /// the largest |pre-activation| seen at the site. A narrower window means fewer bytes
    /// per kept ReLU online; a pre-activation beyond it at inference makes the ReLU wrong
    /// there, which `eval --executor fixed` and the secure runs' fixed-point check count
    /// as overflows. See docs/fixed-point.md.
    Windows(WindowsArgs),
    /// Write only the public part (architecture, normalization, masks) of a model.
    Public {
        /// Full model directory.
        path: PathBuf,
        /// Output directory for the public part.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing output directory.
        #[arg(long)]
        force: bool,
    },
}

#[derive(clap::Args)]
struct NewArgs {
    /// Architecture: resnet18, wrn22_8, resnet20 or lenet5.
    #[arg(long)]
    arch: String,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Input shape CxHxW (default: the architecture's, e.g. 3x32x32).
    #[arg(long)]
    input: Option<String>,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the weight initialisation (and of --keep-fraction).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Input normalization: cifar10, cifar100, fashion-mnist or none (default: by channels).
    #[arg(long)]
    norm: Option<String>,
    /// Keep each ReLU with this probability instead of keeping all.
    #[arg(long)]
    keep_fraction: Option<f64>,
    /// Set batch-norm statistics from this many training images of --calibrate-data.
    #[arg(long, default_value_t = 256)]
    calibrate_images: usize,
    /// Dataset directory whose training images calibrate batch norms (optional).
    #[arg(long)]
    calibrate_data: Option<PathBuf>,
    /// Fixed-point fractional bits f.
    #[arg(long, default_value_t = FixedPointParams::default().frac_bits)]
    frac_bits: u32,
    /// Bits m of each share the ReLU circuit reads.
    #[arg(long, default_value_t = FixedPointParams::default().relu_bits)]
    relu_bits: u32,
    /// Low bits k of each share the ReLU circuit drops (the truncation fused into the
    /// circuit; 0 = the exact circuit, at most f).
    #[arg(long, default_value_t = FixedPointParams::default().relu_dropped_bits)]
    relu_dropped_bits: u32,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct WindowsArgs {
    /// Model directory.
    path: PathBuf,
    /// Dataset directory of the calibration images.
    #[arg(long)]
    data: PathBuf,
    /// Dataset kind (default: detected from the directory).
    #[arg(long)]
    dataset: Option<String>,
    /// Split the calibration images come from (train or test).
    #[arg(long, default_value = "train")]
    split: String,
    /// Calibration images (the first ones of the split).
    #[arg(long, default_value_t = 1000)]
    images: usize,
    /// Safety margin: a window's range must exceed this times the calibration maximum.
    #[arg(long, default_value_t = models::fixed::DEFAULT_WINDOW_MARGIN)]
    margin: f64,
    /// Also set the low bits k of each share the ReLU circuit drops (0 = exact circuit,
    /// at most f); default: keep the model's.
    #[arg(long)]
    dropped_bits: Option<u32>,
    /// Output model directory (may be the input directory with --force).
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
    /// Print the sites' windows as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ImportArgs {
    /// Architecture: resnet18, wrn22_8, resnet20 or lenet5 (names: docs/model-format.md).
    #[arg(long)]
    arch: String,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Checkpoint: a safetensors file or a torch.save file (.pt, .pth, .pth.tar).
    #[arg(long = "from", value_name = "FILE")]
    from: PathBuf,
    /// Output model directory.
    #[arg(long)]
    out: PathBuf,
    /// A ReLU is kept where its SNL alpha > THRESHOLD (SNL's rule and default).
    #[arg(long, default_value_t = models::import::DEFAULT_THRESHOLD)]
    threshold: f32,
    /// Key of the checkpoint dict holding the state dict (default: the state dict itself,
    /// else state_dict, model_state_dict, model, net or network).
    #[arg(long)]
    key: Option<String>,
    /// Dataset trained on (cifar10, cifar100, fashion-mnist): sets the input normalization
    /// (default: cifar10 for 3 channels, fashion-mnist for 1).
    #[arg(long)]
    dataset: Option<String>,
    /// Input shape CxHxW (default: the architecture's, e.g. 3x32x32).
    #[arg(long)]
    input: Option<String>,
    /// Replace an existing output directory.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Executor {
    F32,
    Fixed,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Model directory.
    path: PathBuf,
    /// Dataset directory (CIFAR-10/100 binary or Fashion-MNIST IDX files).
    #[arg(long)]
    data: PathBuf,
    /// Dataset kind (default: detected from the directory).
    #[arg(long)]
    dataset: Option<String>,
    /// Executor.
    #[arg(long, value_enum, default_value = "f32")]
    executor: Executor,
    /// Evaluate only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_shape(s: &str) -> Result<[usize; 3]> {
    let v: Vec<usize> = s
        .split(['x', 'X', ','])
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--input {s:?}: expected CxHxW, e.g. 3x32x32"))?;
    match v.as_slice() {
        [c, h, w] => Ok([*c, *h, *w]),
        _ => bail!("--input {s:?}: expected three dimensions CxHxW, e.g. 3x32x32"),
    }
}

fn normalization(name: Option<&str>, channels: usize) -> Result<Normalization> {
    Ok(match name {
        Some("none") => Normalization::identity(channels),
        Some(n) => Normalization::for_dataset(n.parse::<DatasetKind>()?),
        None if channels == 1 => Normalization::fashion_mnist(),
        None if channels == 3 => Normalization::cifar10(),
        None => Normalization::identity(channels),
    })
}

fn cmd_new(a: NewArgs) -> Result<()> {
    let info = arch::info(&a.arch)?;
    let input = match &a.input {
        Some(s) => parse_shape(s)?,
        None => info.default_input,
    };
    let graph = arch::build(&a.arch, a.classes, input)?;
    let params = FixedPointParams {
        frac_bits: a.frac_bits,
        relu_bits: a.relu_bits,
        relu_dropped_bits: a.relu_dropped_bits,
        ..FixedPointParams::default()
    };
    let mut public = PublicModel::all_kept(
        &a.arch,
        graph,
        normalization(a.norm.as_deref(), input[0])?,
        params,
    )?;
    if let Some(f) = a.keep_fraction {
        if !(0.0..=1.0).contains(&f) {
            bail!("--keep-fraction {f} must be in [0, 1]");
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed ^ 0x6d61_736b);
        for m in public.masks.values_mut() {
            *m = Mask::random(m.shape, f, &mut rng);
        }
    }
    let mut model = Model::random(public, a.seed)?;
    if let Some(dir) = &a.calibrate_data {
        let kind = DatasetKind::detect(dir)?;
        let ds = Dataset::load(kind, dir, Split::Train, Some(a.calibrate_images))?;
        if ds.shape != input {
            bail!(
                "calibration images are {:?}, the model takes {input:?}",
                ds.shape
            );
        }
        let norm = model.public.normalization.clone();
        let xs: Vec<Vec<f32>> = (0..ds.len()).map(|i| norm.apply(ds.image(i))).collect();
        calibrate_batchnorm(&mut model, &xs)?;
        model.provenance["init"]["batchnorm_calibration"] =
            json!({ "dataset": kind.name(), "images": ds.len() });
    }
    let hashes = format::save(&model, &a.out, a.force)?;
    println!(
        "wrote {} ({}, {} classes, input {:?}): {} of {} ReLUs kept, {} parameters",
        a.out.display(),
        a.arch,
        a.classes,
        input,
        model.public.relu_kept(),
        model.public.relu_total(),
        model.parameter_count()
    );
    println!("public hash  {}", hashes.public);
    println!("content hash {}", hashes.content.unwrap_or_default());
    Ok(())
}

fn cmd_import(a: ImportArgs) -> Result<()> {
    let mut opts = models::import::ImportOptions::new(&a.arch, a.classes);
    opts.threshold = a.threshold;
    opts.key = a.key.clone();
    opts.input = a.input.as_deref().map(parse_shape).transpose()?;
    opts.dataset = a
        .dataset
        .as_deref()
        .map(str::parse::<DatasetKind>)
        .transpose()?;
    let imp = models::import::import(&a.from, &opts)?;
    let m = &imp.model;
    let hashes = format::save(m, &a.out, a.force)?;
    let mut how = vec![imp.format.name().to_string()];
    if let Some(k) = &imp.key {
        how.push(format!("state dict under {k:?}"));
    }
    if let Some(p) = &imp.stripped_prefix {
        how.push(format!("prefix {p:?} stripped"));
    }
    println!(
        "imported {} ({}) as {} ({} classes): {} tensors, {} parameters",
        a.from.display(),
        how.join(", "),
        m.public.arch,
        a.classes,
        m.provenance["import"]["names"]["tensors"],
        m.parameter_count()
    );
    if imp.alphas {
        println!(
            "masks from SNL alphas (kept where alpha > {}): {} of {} ReLUs kept",
            a.threshold,
            m.public.relu_kept(),
            m.public.relu_total()
        );
        if imp.alphas_not_binary > 0 {
            eprintln!(
                "warning: {} alpha values are neither 0 nor 1 (a checkpoint from before SNL's thresholding and fine-tuning?); the model uses the thresholded masks",
                imp.alphas_not_binary
            );
        }
    } else {
        println!(
            "no alpha tensors in the checkpoint: all {} ReLUs kept",
            m.public.relu_total()
        );
    }
    if !imp.ignored.is_empty() {
        println!("ignored {} num_batches_tracked counters", imp.ignored.len());
    }
    println!("wrote {}", a.out.display());
    println!("public hash  {}", hashes.public);
    println!("content hash {}", hashes.content.unwrap_or_default());
    Ok(())
}

fn cmd_inspect(path: &Path, as_json: bool) -> Result<()> {
    let r = Inspect::of(path)?;
    if as_json {
        println!("{}", r.to_json_pretty()?);
        return Ok(());
    }
    println!("model        {}", r.path);
    println!("format       v{} written by {}", r.format_version, r.writer);
    println!(
        "architecture {} ({} classes, input {:?}, {} nodes, {} linear layers after lowering)",
        r.arch, r.classes, r.input, r.nodes, r.linear_layers
    );
    match r.parameters {
        Some(n) => println!(
            "parameters   {n} ({:.1} M MACs per image)",
            r.macs as f64 / 1e6
        ),
        None => println!(
            "parameters   (public part only: no weights) ({:.1} M MACs per image)",
            r.macs as f64 / 1e6
        ),
    }
    let fp = r.fixed_point;
    println!(
        "fixed point  ring Z_2^{}, scale 2^{}, ReLU circuit reads bits [{}, {}) (|y| < {}){}",
        fp.ring_bits,
        fp.frac_bits,
        fp.relu_dropped_bits,
        fp.relu_bits,
        fp.relu_range(),
        if r.relu_windows.is_empty() {
            ""
        } else {
            " unless the site has a window"
        }
    );
    let (total, kept) = (r.relus.total, r.relus.kept);
    println!(
        "ReLUs        {kept} kept of {total} ({:.2}%), {} linearized",
        100.0 * kept as f64 / total.max(1) as f64,
        r.relus.linearized
    );
    println!(
        "  {:<28} {:>14} {:>9} {:>9} {:>7} {:>10}",
        "site", "shape", "kept", "total", "window", "linearized"
    );
    for s in &r.relus.sites {
        let shape = format!("{}x{}x{}", s.shape[0], s.shape[1], s.shape[2]);
        let window = r
            .relu_windows
            .get(&s.name)
            .map_or_else(|| "-".to_string(), |m| m.to_string());
        let mut repl = r
            .replacements
            .get(&s.name)
            .copied()
            .unwrap_or_default()
            .name()
            .to_string();
        if let Some(a) = r.affine_channels.get(&s.name) {
            repl = format!("{repl} ({}/{} affine)", a.len(), s.shape[0]);
        }
        println!(
            "  {:<28} {:>14} {:>9} {:>9} {:>7} {:>10}",
            s.name, shape, s.kept, s.total, window, repl
        );
    }
    println!("public hash  {}", r.hashes.public);
    if let Some(c) = r.hashes.content {
        println!("content hash {c}");
    }
    Ok(())
}

/// The first `limit` images of `split` of the dataset at `data` (kind named or detected),
/// checked against the model's input shape.
fn load_images(
    model: &Model,
    data: &Path,
    dataset: Option<&str>,
    split: Split,
    limit: Option<usize>,
) -> Result<(DatasetKind, Dataset)> {
    let kind = match dataset {
        Some(d) => d.parse::<DatasetKind>()?,
        None => DatasetKind::detect(data)?,
    };
    let ds = Dataset::load(kind, data, split, limit)?;
    if ds.shape != model.public.graph.input {
        bail!(
            "{} images are {:?}, the model takes {:?}",
            kind.name(),
            ds.shape,
            model.public.graph.input
        );
    }
    Ok((kind, ds))
}

fn cmd_eval(a: EvalArgs) -> Result<()> {
    let (model, hashes) = format::load(&a.path)?;
    let (kind, ds) = load_images(&model, &a.data, a.dataset.as_deref(), Split::Test, a.limit)?;
    let classes = model.public.classes()?;
    let norm = &model.public.normalization;
    let bar = ProgressBar::new(ds.len() as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(match a.executor {
        Executor::F32 => "eval f32",
        Executor::Fixed => "eval fixed",
    });
    let start = Instant::now();
    let f32x = F32Executor::new(&model)?;
    let prog = match a.executor {
        Executor::Fixed => Some(FixedProgram::lower(&model)?),
        Executor::F32 => None,
    };
    let results: Vec<(usize, usize, usize, f64, usize)> = (0..ds.len())
        .into_par_iter()
        .map(|i| -> Result<_> {
            let x = norm.apply(ds.image(i));
            let r = match &prog {
                None => {
                    let l = f32x.forward(&x)?;
                    (models::tensor::argmax(&l).unwrap_or(usize::MAX), 0, 0.0, 0)
                }
                Some(p) => {
                    let o = p.forward(&x, false)?;
                    let over = o.stats.iter().map(|s| s.relu_overflows).sum();
                    let maxk = o.stats.iter().map(|s| s.max_abs_kept).fold(0.0, f64::max);
                    let range = o.stats.iter().map(|s| s.range_overflows).sum();
                    (
                        models::tensor::argmax(&o.logits).unwrap_or(usize::MAX),
                        over,
                        maxk,
                        range,
                    )
                }
            };
            bar.inc(1);
            Ok((ds.label(i), r.0, r.1, r.2, r.3))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let correct = results.iter().filter(|r| r.0 == r.1).count();
    let overflows: usize = results.iter().map(|r| r.2).sum();
    let max_kept = results.iter().map(|r| r.3).fold(0.0, f64::max);
    let range_overflows: usize = results.iter().map(|r| r.4).sum();
    let n = results.len();
    let acc = correct as f64 / n.max(1) as f64;
    let exec_name = if prog.is_some() { "fixed" } else { "f32" };
    let doc = json!({
        "schema": "snl-model-eval/1",
        "model": a.path.display().to_string(),
        "public_hash": hashes.public,
        "dataset": kind.name(),
        "split": "test",
        "executor": exec_name,
        "images": n,
        "correct": correct,
        "accuracy": acc,
        "classes": classes,
        "relus": { "total": model.public.relu_total(), "kept": model.public.relu_kept() },
        "fixed_point": model.public.fixed_point,
        "relu_windows": model.public.relu_windows,
        "relu_overflows": prog.as_ref().map(|_| overflows),
        "range_overflows": prog.as_ref().map(|_| range_overflows),
        "max_abs_preactivation_kept": prog.as_ref().map(|_| max_kept),
        "seconds": secs,
    });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{}: {} executor on {} {} test images: accuracy {:.2}% ({correct}/{n}), {} of {} ReLUs kept, {:.1} s ({:.0} images/s)",
            a.path.display(),
            exec_name,
            n,
            kind.name(),
            100.0 * acc,
            model.public.relu_kept(),
            model.public.relu_total(),
            secs,
            n as f64 / secs.max(1e-9)
        );
        if prog.is_some() {
            let range = if model.public.relu_windows.is_empty() {
                format!("circuit range {}", model.public.fixed_point.relu_range())
            } else {
                "per-site windows".to_string()
            };
            println!(
                "  fixed point: max |pre-activation| at kept ReLUs {max_kept:.2} ({range}), {overflows} overflows (kept ReLUs whose pre-activation left its window: wrong there, in the secure run too)"
            );
            println!(
                "  fixed point: {range_overflows} values beyond a quarter of the ring (outside the exact truncation's range; likely wrapped)"
            );
        }
    }
    Ok(())
}

fn cmd_windows(a: WindowsArgs) -> Result<()> {
    let (mut model, _) = format::load(&a.path)?;
    if let Some(k) = a.dropped_bits {
        model.public.fixed_point.relu_dropped_bits = k;
        model
            .public
            .fixed_point
            .validate()
            .context("--dropped-bits")?;
    }
    let split = match a.split.as_str() {
        "train" => Split::Train,
        "test" => Split::Test,
        s => bail!("--split {s:?}: expected train or test"),
    };
    if a.images == 0 {
        bail!("--images must be at least 1");
    }
    if !(a.margin.is_finite() && a.margin >= 1.0) {
        bail!("--margin {} must be a finite number >= 1", a.margin);
    }
    let (kind, ds) = load_images(&model, &a.data, a.dataset.as_deref(), split, Some(a.images))?;
    let norm = &model.public.normalization;
    let xs: Vec<Vec<f32>> = (0..ds.len()).map(|i| norm.apply(ds.image(i))).collect();
    let start = Instant::now();
    eprintln!(
        "calibrating ReLU windows on {} {} {} images (margin {})...",
        xs.len(),
        kind.name(),
        a.split,
        a.margin
    );
    let prog = FixedProgram::lower(&model)?;
    let bar = ProgressBar::new(xs.len() as u64).with_style(
        ProgressStyle::with_template("calibrate [{bar:30}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut cal = models::fixed::WindowCalibration::new(&prog);
    for chunk in xs.chunks(64) {
        cal.add(&prog, chunk)?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let windows = cal.windows(&prog, a.margin)?;
    model.public.relu_windows = models::fixed::window_map(&windows);
    let hashes = format::save(&model, &a.out, a.force)?;
    let fp = model.public.fixed_point;
    if a.json {
        let doc = json!({
            "schema": "snl-model-windows/1",
            "model": a.out.display().to_string(),
            "public_hash": hashes.public,
            "images": xs.len(),
            "split": a.split,
            "margin": a.margin,
            "fixed_point": fp,
            "sites": windows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "{}: windows for {} sites from {} images in {:.1} s (margin {}, k = {})",
            a.out.display(),
            windows.len(),
            xs.len(),
            start.elapsed().as_secs_f64(),
            a.margin,
            fp.relu_dropped_bits
        );
        println!(
            "  {:<28} {:>10} {:>4} {:>8} {:>10}",
            "site", "max |y|", "m", "range", "bits read"
        );
        for w in &windows {
            println!(
                "  {:<28} {:>10.3} {:>4} {:>8} {:>10}",
                w.site,
                w.max_abs,
                w.relu_bits,
                w.range,
                w.relu_bits - fp.relu_dropped_bits
            );
        }
        println!("public hash  {}", hashes.public);
    }
    Ok(())
}

fn main() {
    models::malloc::keep_freed_memory();
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::New(a) => cmd_new(a),
        Cmd::Inspect { path, json } => cmd_inspect(&path, json),
        Cmd::Eval(a) => cmd_eval(a),
        Cmd::Windows(a) => cmd_windows(a),
        Cmd::Import(a) => cmd_import(a),
        Cmd::Public { path, out, force } => (|| {
            // The whole model is checked; the public part is copied as stored, so its
            // hash is the one a server of this model announces.
            format::load(&path)?;
            let h = format::copy_public(&path, &out, force)?;
            println!(
                "wrote public part of {} to {} (public hash {h})",
                path.display(),
                out.display()
            );
            Ok(())
        })(),
    };
    if let Err(e) = r {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
