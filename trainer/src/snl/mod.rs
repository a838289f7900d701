//! The SNL phases: pretraining, mask search, binarization and fine-tuning, with JSONL
//! logs, progress bars and resumable checkpoints.
//!
//! - `settings`: what a run is asked to do ([`Common`], [`Pretrain`], [`Linearize`],
//!   [`Budget`]).
//! - `run`: the run directory, its log and checkpoints, and the stop counter.
//! - `epoch`: one training epoch (data, distillation loss, optimizers).
//! - `eval`: accuracy and stored models as frozen networks ([`evaluate`], [`logits`]).
//! - `pretrain`: [`pretrain`].
//! - `linearize`: [`linearize`], which runs `search` (the mask search through every
//!   budget) and then `finetune` (each snapshot binarized and fine-tuned, [`Outcome`]).
//! - `latency`: latency-priced searches ([`Pricing`]): the penalty's per-site weights,
//!   predicted latencies and the snapshot of a latency budget.
//!
//! [`StepBench`] and [`step_throughput`] (training-step timing) live in
//! [`crate::bench`] and are re-exported here.

mod epoch;
mod eval;
mod finetune;
mod latency;
mod linearize;
mod pretrain;
mod run;
mod search;
mod settings;

pub use self::eval::{accuracy, evaluate, logits};
pub use self::finetune::Outcome;
pub use self::linearize::linearize;
pub use self::pretrain::pretrain;
pub use self::settings::{Budget, Common, Linearize, Pretrain, Pricing, Target, parse_latency_ms};
pub use crate::bench::{StepBench, step_throughput};
