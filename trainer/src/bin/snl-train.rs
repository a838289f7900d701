//! `snl-train`: Selective Network Linearization on libtorch.
//!
//! ```text
//! snl-train pretrain  --dataset cifar10 --data ../shared/data/cifar10-q75 --arch resnet20 --epochs 30 --out runs/r20
//! snl-train linearize --model runs/r20/model --data ../shared/data/cifar10-q75 --budget 5%,10%,20% --out runs/r20-snl
//! snl-train linearize --model runs/r20/model --data ../shared/data/cifar10-q75 --latency-budget 60ms \
//!     --cost-model cost.json --rtt-ms 10 --link-mbit 1000 --out runs/r20-60ms
//! snl-train eval      --model runs/r20-snl/budget-18841 --data ../shared/data/cifar10-q75
//! ```
//! Every run directory holds `log.jsonl` (one JSON object per epoch) and checkpoints; run
//! the same command again to resume a killed run where it stopped.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use models::data::DatasetKind;
use models::format;
use models::latency::{LatencyModel, Link};
use models::model::Replacement;
use trainer::bench::Compare;
use trainer::net::Granularity;
use trainer::poly::PolyInit;
use trainer::snl::{self, Budget, Common, Linearize, Pretrain, Pricing};

/// Train networks and linearize their ReLUs to a budget (SNL, Cho et al., ICML 2022).
#[derive(Parser)]
#[command(name = "snl-train", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a network from scratch with every ReLU kept; writes OUT/model.
    Pretrain {
        #[command(flatten)]
        common: CommonArgs,
        /// Architecture: resnet18, wrn22_8, resnet20 or lenet5.
        #[arg(long)]
        arch: String,
        /// Epochs (SNL's paper setting: 160).
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// Peak (one-cycle) or initial (step) SGD learning rate.
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
        /// Learning-rate schedule: one-cycle (PyTorch's OneCycleLR, 15% warm-up),
        /// one-cycle:PCT (warm-up fraction) or step (x0.1 at 50% and 75% of the epochs,
        /// SNL's reference).
        #[arg(long, default_value = "one-cycle")]
        schedule: String,
    },
    /// Mask search through every budget, binarize, fine-tune each; writes OUT/budget-N.
    Linearize {
        #[command(flatten)]
        common: CommonArgs,
        /// The pretrained model directory (teacher and starting point).
        #[arg(long)]
        model: PathBuf,
        /// ReLU budgets, comma separated: counts (15000), fractions (0.1) or percentages (10%).
        #[arg(
            long,
            value_delimiter = ',',
            required_unless_present = "latency_budget"
        )]
        budget: Vec<String>,
        /// Online latency budgets, comma separated, in ms (60ms), predicted by --cost-model
        /// on the link of --rtt-ms and --link-mbit. A budget is reached when the mask at
        /// the threshold is predicted to fit it; its model (OUT/budget-60ms) keeps the most
        /// ReLUs, largest alphas first, that still fit. The search's penalty prices each
        /// site's ReLUs by their online cost, the round saved by emptying a site included.
        #[arg(long, value_delimiter = ',', requires = "cost_model")]
        latency_budget: Vec<String>,
        /// The latency model (`snl-bench model-cost --save`) that prices ReLUs, rounds and
        /// bytes. Given without --latency-budget, it still prices the penalty by latency.
        #[arg(long)]
        cost_model: Option<PathBuf>,
        /// Round-trip time the model will be served over, ms (added to each round).
        #[arg(long, default_value_t = 0.0, requires = "cost_model")]
        rtt_ms: f64,
        /// Rate of the link, Mbit/s (bytes cost their transfer time); default: loopback,
        /// where the fitted per-ReLU term holds the transfer.
        #[arg(long, requires = "cost_model")]
        link_mbit: Option<f64>,
        /// Initial lambda of the alphas' L1 penalty (SNL's CIFAR setting: 1e-4).
        #[arg(long, default_value_t = 1e-4)]
        lambda: f64,
        /// Lambda's growth factor after a slow epoch (see --min-drop; SNL: 1.1).
        #[arg(long, default_value_t = 1.5)]
        lambda_growth: f64,
        /// An epoch past the warm-up is slow, and grows lambda, unless it lowers the
        /// lowest ReLU count so far by at least this fraction (0 = SNL's rule: only an
        /// epoch without a new low grows lambda; then the search can crawl for dozens of
        /// epochs below 20% of the ReLUs).
        #[arg(long, default_value_t = 0.1)]
        min_drop: f64,
        /// Epochs before lambda may grow.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Alpha threshold: above it a ReLU is kept.
        #[arg(long, default_value_t = 1e-2)]
        threshold: f64,
        /// Adam learning rate of the mask search.
        #[arg(long, default_value_t = 1e-3)]
        search_lr: f64,
        /// Give up when the budgets are not reached after this many search epochs.
        #[arg(long, default_value_t = 2000)]
        max_search_epochs: usize,
        /// Fine-tuning epochs per budget (paper setting: 100).
        #[arg(long, default_value_t = 20)]
        finetune_epochs: usize,
        /// Fine-tuning SGD learning rate (cosine schedule).
        #[arg(long, default_value_t = 1e-3)]
        finetune_lr: f64,
        /// One alpha per channel instead of per position.
        #[arg(long)]
        channelwise: bool,
        /// What the fine-tuned models' dropped positions compute: identity (SNL: x) or
        /// quadratic (AutoReP-style: a x^2 + b x + c with per-channel coefficients,
        /// initialised by a least-squares fit of relu at each channel's dropped positions
        /// on 16 training batches, site after site, then trained with the weights). The
        /// mask search is the same either way; every site of the snapshot gets the
        /// replacement.
        #[arg(long, default_value = "identity")]
        replacement: String,
        /// With --replacement quadratic: weight of the range penalty on the squares'
        /// inputs, the mean over dropped positions of relu(|x| - 8)^2, added to the
        /// fine-tuning loss (0 turns it off). About 1e-3 while the inputs stay in range;
        /// it pulls them back when they blow up. With 1e-2 a ResNet-20 fine-tune let
        /// them grow (mean penalty 88) until the running batch-norm statistics were
        /// useless: 79% training, 10% test accuracy.
        #[arg(long, default_value_t = 1.0)]
        poly_penalty: f64,
        /// With --replacement quadratic: clip the gradients' global L2 norm to this in
        /// fine-tuning (0 turns it off). The squares make single batches give gradients
        /// hundreds of times the usual norm (3-5 on ResNet-20), which diverge unclipped. A
        /// clipped batch's statistics stay out of the batch norms' running averages (its
        /// blown-up variances made the evaluation network useless: 10% test accuracy).
        #[arg(long, default_value_t = 5.0)]
        poly_clip_grad: f64,
        /// With --replacement quadratic: the share of each site's dropped positions that
        /// compute a square, as a fraction or a percentage ("25%"; default all). At the
        /// initial fit, the channels whose quadratic fit gains least over an affine fit of
        /// relu compute b x + c instead (a = 0, recorded in the model's public part): the
        /// secure runtime truncates them without the square protocol, 2 bytes online per
        /// position instead of 21. A latency budget prices this share of the linearized
        /// positions as squares.
        #[arg(long, default_value = "100%")]
        square_channels: String,
        /// With --replacement quadratic: where the coefficients start. `fit` (AutoReP's):
        /// per channel the least-squares fit of relu on the observed pre-activations;
        /// `identity`: a = 0, b = 1, c = 0 everywhere, so the fine-tune starts from the
        /// same network as the identity's and learns the squares from there (the squared
        /// channels are still those the fit gains most in).
        #[arg(long, default_value = "fit", value_parser = parse_poly_init)]
        poly_init: PolyInit,
    },
    /// Compare training-step throughput with the same network in Python PyTorch (same
    /// torch wheel, same threads, same batch) and print the ratio. Both processes stay up
    /// and take turns: each round times `--steps` steps of one, then of the other (the
    /// order alternates), so that load from other processes hits both alike.
    Bench(BenchArgs),
    /// Test accuracy of a model, computed with libtorch.
    Eval {
        #[command(flatten)]
        common: CommonArgs,
        /// Model directory.
        #[arg(long)]
        model: PathBuf,
    },
}

#[derive(Args)]
struct CommonArgs {
    /// Dataset: cifar10, cifar100 or fashion-mnist (default: detected from --data).
    #[arg(long)]
    dataset: Option<String>,
    /// Directory holding the dataset files.
    #[arg(long)]
    data: PathBuf,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Seed of initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory (not needed by eval).
    #[arg(long, default_value = "runs/snl")]
    out: PathBuf,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Use only the first N training images.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    test_limit: Option<usize>,
    /// libtorch intra-op threads (default: libtorch's choice).
    #[arg(long)]
    threads: Option<i32>,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Float16 mixed precision with dynamic loss scaling (CUDA only; ignored on the CPU).
    #[arg(long)]
    amp: bool,
    /// Stop after this many epochs of work, as if killed (to exercise resumption).
    #[arg(long, hide = true)]
    stop_after_epochs: Option<usize>,
}

impl CommonArgs {
    fn resolve(&self) -> Result<Common> {
        let dataset = match &self.dataset {
            Some(d) => d.parse::<DatasetKind>()?,
            None => DatasetKind::detect(&self.data)?,
        };
        if self.batch == 0 {
            bail!("--batch must be positive");
        }
        if let Some(t) = self.threads {
            if t < 1 {
                bail!("--threads must be positive");
            }
            tch::set_num_threads(t);
        }
        Ok(Common {
            dataset,
            data_dir: self.data.clone(),
            batch: self.batch,
            seed: self.seed,
            out: self.out.clone(),
            device: trainer::device(&self.device)?,
            train_limit: self.train_limit,
            test_limit: self.test_limit,
            progress: !self.quiet,
            stop_after: self.stop_after_epochs,
            amp: self.amp,
        })
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Pretrain {
            common,
            arch,
            epochs,
            lr,
            schedule,
        } => {
            let schedule = schedule.parse().map_err(anyhow::Error::msg)?;
            if !(lr > 0.0 && lr.is_finite()) {
                bail!("--lr must be positive");
            }
            let p = Pretrain {
                common: common.resolve()?,
                arch,
                epochs,
                lr,
                schedule,
            };
            let dir = snl::pretrain(&p)?;
            println!("pretrained model written to {}", dir.display());
        }
        Cmd::Linearize {
            common,
            model,
            budget,
            lambda,
            lambda_growth,
            min_drop,
            warmup,
            threshold,
            search_lr,
            max_search_epochs,
            finetune_epochs,
            finetune_lr,
            channelwise,
            replacement,
            poly_penalty,
            poly_clip_grad,
            square_channels,
            poly_init,
            latency_budget,
            cost_model,
            rtt_ms,
            link_mbit,
        } => {
            let replacement = Replacement::parse(&replacement).map_err(|_| {
                anyhow::anyhow!("--replacement {replacement:?}: expected identity or quadratic")
            })?;
            if !(poly_penalty >= 0.0 && poly_penalty.is_finite()) {
                bail!("--poly-penalty must be a finite number >= 0");
            }
            if !(poly_clip_grad >= 0.0 && poly_clip_grad.is_finite()) {
                bail!("--poly-clip-grad must be a finite number >= 0");
            }
            // Also checked by the library; here before the data directory is scanned.
            if poly_init != PolyInit::Fit && replacement != Replacement::Quadratic {
                bail!("--poly-init applies to --replacement quadratic");
            }
            let square_channels = parse_fraction(&square_channels)
                .filter(|f| *f > 0.0 && *f <= 1.0)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--square-channels {square_channels:?}: expected a fraction in (0, 1] \
                         or a percentage in (0%, 100%]"
                    )
                })?;
            if square_channels < 1.0 && replacement != Replacement::Quadratic {
                bail!("--square-channels applies to --replacement quadratic");
            }
            let budgets = budget
                .iter()
                .map(|b| Budget::parse(b))
                .collect::<Result<Vec<_>, _>>()?;
            let latency_budgets = latency_budget
                .iter()
                .map(|b| snl::parse_latency_ms(b))
                .collect::<Result<Vec<_>, _>>()?;
            if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
                bail!("--rtt-ms must be a finite number >= 0");
            }
            if link_mbit.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                bail!("--link-mbit must be a positive number");
            }
            let pricing = match cost_model {
                Some(path) => Some(Pricing {
                    model: LatencyModel::load(&path)
                        .with_context(|| format!("loading the cost model {}", path.display()))?,
                    link: Link {
                        rtt_ms,
                        mbit: link_mbit,
                    },
                }),
                None => None,
            };
            if !(lambda > 0.0 && lambda_growth >= 1.0 && threshold > 0.0 && threshold < 1.0) {
                bail!("need lambda > 0, lambda-growth >= 1 and 0 < threshold < 1");
            }
            if !(0.0..1.0).contains(&min_drop) {
                bail!("--min-drop must be in [0, 1)");
            }
            let l = Linearize {
                common: common.resolve()?,
                model,
                budgets,
                latency_budgets,
                pricing,
                lambda,
                lambda_growth,
                min_drop,
                warmup,
                threshold,
                search_lr,
                max_search_epochs,
                finetune_epochs,
                finetune_lr,
                granularity: if channelwise {
                    Granularity::Channel
                } else {
                    Granularity::Position
                },
                replacement,
                poly_penalty,
                poly_clip_grad,
                square_channels,
                poly_init,
            };
            let priced = l.pricing.is_some();
            let out = snl::linearize(&l)?;
            if priced {
                println!(
                    "{:>10} {:>10} {:>10} {:>13}  model",
                    "budget", "kept", "test acc", "predicted ms"
                );
            } else {
                println!("{:>10} {:>10} {:>10}  model", "budget", "kept", "test acc");
            }
            for o in out {
                let budget = o
                    .latency_budget_ms
                    .map_or(o.budget.to_string(), |ms| format!("{ms} ms"));
                let predicted = o
                    .predicted_ms
                    .map_or(String::new(), |p| format!(" {p:>13.2}"));
                println!(
                    "{budget:>10} {:>10} {:>9.2}%{predicted}  {}",
                    o.kept,
                    100.0 * o.test_accuracy,
                    o.path.display()
                );
            }
        }
        Cmd::Bench(args) => bench(args)?,
        Cmd::Eval { common, model } => {
            let c = common.resolve()?;
            let (m, _) =
                format::load(&model).with_context(|| format!("loading {}", model.display()))?;
            let acc = snl::evaluate(&m, &c)?;
            println!(
                "{}: test accuracy {:.2}% on {} ({} of {} ReLUs kept)",
                model.display(),
                100.0 * acc,
                c.dataset.name(),
                m.public.relu_kept(),
                m.public.relu_total()
            );
        }
    }
    Ok(())
}

#[derive(Args)]
struct BenchArgs {
    /// Architecture: resnet18, wrn22_8, resnet20 or lenet5.
    #[arg(long, default_value = "resnet20")]
    arch: String,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed steps per round and side.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Rounds.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Untimed warm-up steps (each side, before the first round).
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Threads for both (libtorch intra-op).
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Python interpreter with torch 2.11.0 (the full wheel, for `import torch`).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The PyTorch side of the benchmark.
    #[arg(long, default_value = "scripts/torch_step_bench.py")]
    script: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn bench(a: BenchArgs) -> Result<()> {
    let r = trainer::bench::compare(&Compare {
        arch: a.arch,
        batch: a.batch,
        steps: a.steps,
        rounds: a.rounds,
        warmup: a.warmup,
        threads: a.threads,
        python: a.python,
        script: a.script,
    })?;
    if a.json {
        println!("{}", r.to_json());
    } else {
        print!("{r}");
    }
    Ok(())
}

fn main() {
    // Before libtorch allocates anything: glibc would otherwise return each step's freed
    // activations to the kernel and fault them in again in the next step.
    trainer::keep_freed_memory();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// `--poly-init`'s value.
fn parse_poly_init(s: &str) -> Result<PolyInit, String> {
    PolyInit::parse(s).ok_or_else(|| "expected fit or identity".to_string())
}

/// A fraction written as `0.25` or `25%`.
fn parse_fraction(s: &str) -> Option<f64> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().ok()? / 100.0,
        None => s.trim().parse::<f64>().ok()?,
    };
    v.is_finite().then_some(v)
}
