//! A run's files and state: the run directory's layout, the JSONL log, resumable
//! checkpoints (each file replaced atomically), the stop-after-N-epochs counter that
//! tests resumption, and what the phases of a linearization share.
//!
//! The run directory `<out>` holds `log.jsonl`; pretraining writes
//! `checkpoint-pretrain/` and `model/`; a linearization writes `search/checkpoint/`,
//! `search/snapshot-<N>/` per budget N, `finetune-<N>/` (checkpoint, and the best model
//! so far in `best/`) and `budget-<N>/`, the result. A checkpoint is `vars.safetensors`,
//! `optim.safetensors` and `state.json` ([`PhaseState`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use models::Model;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use crate::data::TensorSet;
use crate::error::TrainError;
use crate::net::Net;
use crate::optim::Optimizer;

use super::settings::{Common, Linearize, Target};

/// Counts epochs done by this process and stops it when [`Common::stop_after`] says so.
pub(super) struct StopAfter {
    limit: Option<usize>,
    done: usize,
}

impl StopAfter {
    pub(super) fn new(c: &Common) -> Self {
        StopAfter {
            limit: c.stop_after,
            done: 0,
        }
    }

    pub(super) fn epoch_done(&mut self) -> Result<(), TrainError> {
        self.done += 1;
        match self.limit {
            Some(l) if self.done >= l => Err(TrainError::Stopped(self.done)),
            _ => Ok(()),
        }
    }
}

/// Appends JSON lines to `<out>/log.jsonl`.
pub(super) struct RunLog {
    path: PathBuf,
}

impl RunLog {
    pub(super) fn new(out: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        Ok(RunLog {
            path: out.join("log.jsonl"),
        })
    }

    pub(super) fn write(&self, v: serde_json::Value) -> Result<(), TrainError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(f, "{v}").map_err(|e| TrainError::io(&self.path, e))
    }
}

/// What a phase's checkpoint records besides tensors.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct PhaseState {
    /// Epochs completed.
    pub(super) epoch: usize,
    /// Optimizer step count.
    pub(super) step: i64,
    /// Current lambda (mask search).
    pub(super) lambda: f64,
    /// Lowest ReLU count seen (mask search).
    pub(super) lowest: usize,
    /// ReLU budgets already snapshotted (mask search).
    pub(super) crossed: Vec<usize>,
    /// Latency budgets already snapshotted, ms (mask search; absent in checkpoints
    /// written before latency budgets existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) crossed_ms: Vec<f64>,
    /// Best test accuracy so far (fine-tuning).
    pub(super) best: f64,
    /// Wall-clock seconds the phase has run up to this checkpoint, over every invocation
    /// (the log's `seconds` continue from it when a run resumes; absent in checkpoints
    /// written before it existed, which count from 0).
    #[serde(default)]
    pub(super) seconds: f64,
    /// The replacement of the dropped positions (fine-tuning; absent in checkpoints of
    /// other phases and in those written before replacements existed: the identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) replacement: Option<String>,
    /// The fraction of squared positions of a quadratic fine-tuning (absent: 1, every
    /// channel squared; also in checkpoints written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) square_channels: Option<f64>,
    /// Where a quadratic fine-tuning's coefficients started (absent: AutoReP's fit, also
    /// in checkpoints written before `--poly-init` existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) poly_init: Option<String>,
    /// The latency pricing the search's penalty was weighted by (mask search; absent:
    /// SNL's unweighted penalty, also in checkpoints written before pricing existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) pricing: Option<serde_json::Value>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Saves variables, optimizer state and phase state into `dir` (each file replaced
/// atomically, state last, so a kill leaves the previous complete checkpoint readable).
pub(super) fn save_checkpoint(
    dir: &Path,
    vs: &VarStore,
    opt: &Optimizer,
    st: &PhaseState,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let vars: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, v)| (k, v.to_device(Device::Cpu)))
        .collect();
    let tmp = dir.join("vars.safetensors.tmp");
    Tensor::write_safetensors(&vars, &tmp)?;
    std::fs::rename(&tmp, dir.join("vars.safetensors")).map_err(|e| TrainError::io(dir, e))?;
    let (ostate, step) = opt.state();
    let ostate: Vec<(String, Tensor)> = ostate
        .into_iter()
        .map(|(k, v)| (k, v.to_device(Device::Cpu)))
        .collect();
    let tmp = dir.join("optim.safetensors.tmp");
    if ostate.is_empty() {
        std::fs::write(&tmp, b"").map_err(|e| TrainError::io(&tmp, e))?;
    } else {
        Tensor::write_safetensors(&ostate, &tmp)?;
    }
    std::fs::rename(&tmp, dir.join("optim.safetensors")).map_err(|e| TrainError::io(dir, e))?;
    let st = PhaseState { step, ..st.clone() };
    let json = serde_json::to_vec_pretty(&st).map_err(|e| TrainError::Invalid(e.to_string()))?;
    write_atomic(&dir.join("state.json"), &json)
}

/// Loads a checkpoint written by [`save_checkpoint`], if `dir` holds one.
pub(super) fn load_checkpoint(
    dir: &Path,
    vs: &mut VarStore,
    opt: &mut Optimizer,
) -> Result<Option<PhaseState>, TrainError> {
    let sp = dir.join("state.json");
    if !sp.exists() {
        return Ok(None);
    }
    // A checkpoint's state is a few KiB; read at most one byte over 1 MiB.
    const MAX_STATE_BYTES: u64 = 1 << 20;
    let bytes =
        models::format::read_capped(&sp, MAX_STATE_BYTES).map_err(|e| TrainError::io(&sp, e))?;
    if bytes.len() as u64 > MAX_STATE_BYTES {
        return Err(TrainError::Invalid(format!(
            "{}: corrupt checkpoint state: larger than {MAX_STATE_BYTES} bytes",
            sp.display()
        )));
    }
    let st: PhaseState = serde_json::from_slice(&bytes).map_err(|e| {
        TrainError::Invalid(format!("{}: corrupt checkpoint state: {e}", sp.display()))
    })?;
    let vars = Tensor::read_safetensors(dir.join("vars.safetensors"))?;
    let mine = vs.variables();
    tch::no_grad(|| -> Result<(), TrainError> {
        for (k, v) in vars {
            if let Some(t) = mine.get(&k) {
                t.shallow_clone().f_copy_(&v.to_device(t.device()))?;
            }
        }
        Ok(())
    })?;
    let op = dir.join("optim.safetensors");
    let ostate = if std::fs::metadata(&op).map(|m| m.len()).unwrap_or(0) == 0 {
        Vec::new()
    } else {
        Tensor::read_safetensors(&op)?
            .into_iter()
            .map(|(k, v)| (k, v.to_device(vs.device())))
            .collect()
    };
    opt.restore(ostate, st.step);
    Ok(Some(st))
}

impl PhaseState {
    /// Whether the search has snapshotted `t`.
    pub(super) fn has_crossed(&self, t: Target) -> bool {
        match t {
            Target::Relus(b) => self.crossed.contains(&b),
            Target::LatencyMs(ms) => self.crossed_ms.contains(&ms),
        }
    }

    /// Records `t` as snapshotted.
    pub(super) fn mark_crossed(&mut self, t: Target) {
        if self.has_crossed(t) {
            return;
        }
        match t {
            Target::Relus(b) => self.crossed.push(b),
            Target::LatencyMs(ms) => self.crossed_ms.push(ms),
        }
    }
}

/// The mask snapshot of target `t` in run directory `out`.
pub(super) fn snapshot_dir(out: &Path, t: Target) -> PathBuf {
    out.join("search").join(format!("snapshot-{}", t.key()))
}

/// A linearization in progress: what the mask search and the fine-tuning share.
pub(super) struct Linearization<'a> {
    /// The settings.
    pub(super) l: &'a Linearize,
    /// The pretrained model.
    pub(super) base: Model,
    /// ReLUs of the network.
    pub(super) total: usize,
    /// The budgets resolved: ReLU counts, largest first, then latencies, largest first;
    /// without duplicates.
    pub(super) budgets: Vec<Target>,
    /// The search penalty's per-site weights (latency pricing; empty: SNL's penalty).
    pub(super) weights: std::collections::BTreeMap<String, f64>,
    /// The public part latencies are predicted on: the base model's, with the run's
    /// replacement at every site.
    pub(super) priced: models::model::PublicModel,
    /// The training split.
    pub(super) train: TensorSet,
    /// The test split.
    pub(super) test: TensorSet,
    /// The frozen pretrained network, the distillation teacher.
    pub(super) teacher: Net,
    /// Keeps the teacher's variables alive.
    pub(super) _teacher_vs: VarStore,
    /// The teacher's test accuracy.
    pub(super) teacher_acc: f64,
    /// The run's log.
    pub(super) log: RunLog,
    /// Epochs of work done in this process.
    pub(super) stop: StopAfter,
}
