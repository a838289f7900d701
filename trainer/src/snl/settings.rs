//! What a run is asked to do: the settings the command line hands the library
//! ([`Common`] for every phase, [`Pretrain`], [`Linearize`]) and the ReLU budgets a
//! linearization aims at ([`Budget`]).

use std::path::PathBuf;

use models::data::DatasetKind;
use models::latency::{LatencyModel, Link};
use models::model::Replacement;
use serde_json::json;
use tch::Device;

use crate::error::TrainError;
use crate::net::Granularity;
use crate::schedule::Schedule;

/// Settings shared by every phase.
#[derive(Clone, Debug)]
pub struct Common {
    /// Dataset kind.
    pub dataset: DatasetKind,
    /// Directory holding the dataset files.
    pub data_dir: PathBuf,
    /// Batch size.
    pub batch: usize,
    /// Seed of initialisation, shuffling and augmentation.
    pub seed: u64,
    /// Run directory (log, checkpoints, models).
    pub out: PathBuf,
    /// Device.
    pub device: Device,
    /// Use only the first N training images.
    pub train_limit: Option<usize>,
    /// Use only the first N test images.
    pub test_limit: Option<usize>,
    /// Show progress bars.
    pub progress: bool,
    /// Stop (as if killed) after this many epochs of work in this process, right after
    /// their checkpoint; for testing resumption.
    pub stop_after: Option<usize>,
    /// Float16 mixed precision with dynamic loss scaling on CUDA (no effect on the CPU).
    pub amp: bool,
}

/// A ReLU budget: a count, or a fraction of the network's ReLUs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// At most this many kept ReLUs.
    Absolute(usize),
    /// At most this fraction of all ReLUs.
    Relative(f64),
}

impl Budget {
    /// Parses `50000`, `0.1` or `10%`.
    pub fn parse(s: &str) -> Result<Self, TrainError> {
        let s = s.trim();
        let bad = || {
            TrainError::Invalid(format!(
                "budget {s:?}: expected a count (50000), a fraction (0.1) or a percentage (10%)"
            ))
        };
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.trim().parse().map_err(|_| bad())?;
            return if v > 0.0 && v <= 100.0 {
                Ok(Budget::Relative(v / 100.0))
            } else {
                Err(bad())
            };
        }
        if let Ok(n) = s.parse::<usize>() {
            return if n > 0 {
                Ok(Budget::Absolute(n))
            } else {
                Err(bad())
            };
        }
        let v: f64 = s.parse().map_err(|_| bad())?;
        if v > 0.0 && v < 1.0 {
            Ok(Budget::Relative(v))
        } else {
            Err(bad())
        }
    }

    /// The count this budget allows out of `total`.
    pub fn resolve(self, total: usize) -> usize {
        match self {
            Budget::Absolute(n) => n,
            Budget::Relative(f) => (total as f64 * f).floor() as usize,
        }
    }
}

/// What one snapshot of the mask search must satisfy: a budget resolved against the
/// model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// At most this many kept ReLUs (the snapshot keeps exactly this many, with
    /// position alphas).
    Relus(usize),
    /// A predicted online latency of at most this many ms ([`Pricing`]).
    LatencyMs(f64),
}

impl Target {
    /// The name of the target's directories (`budget-<key>`, `search/snapshot-<key>`,
    /// `finetune-<key>`): the count, or the latency with `ms` (`18841`, `60ms`).
    pub fn key(&self) -> String {
        match self {
            Target::Relus(n) => n.to_string(),
            Target::LatencyMs(ms) => format!("{ms}ms"),
        }
    }
}

impl Target {
    /// How logs and provenance name the target: the count, or the key (`"60ms"`).
    pub(super) fn log_value(&self) -> serde_json::Value {
        match self {
            Target::Relus(n) => json!(n),
            Target::LatencyMs(_) => json!(self.key()),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Relus(n) => write!(f, "{n} ReLUs"),
            Target::LatencyMs(ms) => write!(f, "{ms} ms"),
        }
    }
}

/// Parses a latency budget: `60ms`, `60 ms` or `60` (ms); positive and finite.
pub fn parse_latency_ms(s: &str) -> Result<f64, TrainError> {
    let t = s.trim();
    let t = t.strip_suffix("ms").unwrap_or(t).trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(TrainError::Invalid(format!(
            "latency budget {s:?}: expected milliseconds, e.g. 60ms"
        ))),
    }
}

/// How a latency-priced linearization predicts online latency: a fitted cost model
/// (`snl-bench model-cost --save`) and the link the model will be served over.
#[derive(Clone, Debug)]
pub struct Pricing {
    /// The cost model.
    pub model: LatencyModel,
    /// The link (added RTT, rate).
    pub link: Link,
}

/// Pretraining settings: SGD, momentum 0.9, weight decay 5e-4, peak learning rate 0.1 on a
/// one-cycle schedule with 15% warm-up (the faithful CPU recipe of docs/training.md), or
/// SNL's reference step schedule (x0.1 at 50% and 75% of the epochs).
#[derive(Clone, Debug)]
pub struct Pretrain {
    /// Shared settings.
    pub common: Common,
    /// Architecture name.
    pub arch: String,
    /// Epochs.
    pub epochs: usize,
    /// Peak (one-cycle) or initial (step) learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: Schedule,
}

/// Mask search and fine-tuning settings (defaults: SNL's reference).
#[derive(Clone, Debug)]
pub struct Linearize {
    /// Shared settings.
    pub common: Common,
    /// The pretrained model (teacher and starting point).
    pub model: PathBuf,
    /// ReLU budgets; one search passes through all of them (and the latency budgets).
    pub budgets: Vec<Budget>,
    /// Online latency budgets, ms; they need [`Linearize::pricing`]. A latency budget is
    /// reached when the predicted latency of the mask at the threshold is within it; its
    /// snapshot then keeps the most ReLUs (largest alphas first, on the sites that still
    /// keep some) whose predicted latency stays within it.
    pub latency_budgets: Vec<f64>,
    /// Prices the search's penalty by latency: each site's alphas are weighted by what
    /// one of its ReLUs costs online plus its share of the round that emptying the site
    /// saves (`models::latency::site_prices`), normalised to a mean of 1 per ReLU.
    /// `None`: SNL's penalty, every ReLU alike.
    pub pricing: Option<Pricing>,
    /// Initial lambda (1e-5 in the reference).
    pub lambda: f64,
    /// Lambda growth on an epoch without a new low (1.1).
    pub lambda_growth: f64,
    /// An epoch whose new low is less than this fraction below the previous low also
    /// grows lambda (0: SNL's rule, growth only without a new low).
    pub min_drop: f64,
    /// Epochs before lambda may grow (5).
    pub warmup: usize,
    /// Alpha threshold (1e-2).
    pub threshold: f64,
    /// Adam learning rate of the search (1e-3).
    pub search_lr: f64,
    /// Give up the search after this many epochs.
    pub max_search_epochs: usize,
    /// Fine-tuning epochs per budget (100 in the paper setting).
    pub finetune_epochs: usize,
    /// Fine-tuning learning rate (1e-3, cosine).
    pub finetune_lr: f64,
    /// Alpha granularity.
    pub granularity: Granularity,
    /// What the fine-tuned models' dropped positions compute: the identity (SNL) or a
    /// per-channel quadratic `a x^2 + b x + c` (AutoReP-style), initialised by a
    /// least-squares fit of relu and trained with the weights. The search is the same.
    pub replacement: Replacement,
    /// Weight of the squares' range penalty in the quadratic fine-tuning loss: the mean
    /// over dropped positions of `relu(|x| - 8)^2` ([`crate::poly::range_penalty`]).
    pub poly_penalty: f64,
    /// Quadratic fine-tuning clips the gradients' global L2 norm to this (0: off).
    pub poly_clip_grad: f64,
    /// Fraction of each quadratic site's dropped positions that may compute a square
    /// (1: all): the channels whose fit gains least over an affine fit compute `b x + c`
    /// instead ([`crate::poly::affine_channels`]) and cost the secure runtime a plain
    /// truncation instead of a square.
    pub square_channels: f64,
    /// Where the quadratic coefficients start (AutoReP's relu fit by default).
    pub poly_init: crate::poly::PolyInit,
}

/// The shared settings as recorded in a model's provenance.
pub(super) fn hyper(c: &Common) -> serde_json::Value {
    json!({
        "dataset": c.dataset.name(),
        "batch": c.batch,
        "seed": c.seed,
        "train_limit": c.train_limit,
        "test_limit": c.test_limit,
    })
}
