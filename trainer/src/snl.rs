//! The SNL phases: pretraining, mask search, binarization and fine-tuning, with JSONL
//! logs, progress bars and resumable checkpoints.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use models::data::{Dataset, DatasetKind, Normalization, Split};
use models::fixed::FixedPointParams;
use models::{Model, PublicModel, arch, format};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::data::TensorSet;
use crate::net::{Granularity, Net, SiteMode};
use crate::optim::{self, LossScaler, Optimizer};
use crate::schedule::{Schedule, StepSetting};
use crate::{TrainError, export, load_weights};

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

/// Counts epochs done by this process and stops it when [`Common::stop_after`] says so.
struct StopAfter {
    limit: Option<usize>,
    done: usize,
}

impl StopAfter {
    fn new(c: &Common) -> Self {
        StopAfter {
            limit: c.stop_after,
            done: 0,
        }
    }

    fn epoch_done(&mut self) -> Result<(), TrainError> {
        self.done += 1;
        match self.limit {
            Some(l) if self.done >= l => Err(TrainError::Stopped(self.done)),
            _ => Ok(()),
        }
    }
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

// ------------------------------------------------------------------ run files

/// Appends JSON lines to `<out>/log.jsonl`.
struct RunLog {
    path: PathBuf,
}

impl RunLog {
    fn new(out: &Path) -> Result<Self, TrainError> {
        std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
        Ok(RunLog {
            path: out.join("log.jsonl"),
        })
    }

    fn write(&self, v: serde_json::Value) -> Result<(), TrainError> {
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
struct PhaseState {
    /// Epochs completed.
    epoch: usize,
    /// Optimizer step count.
    step: i64,
    /// Current lambda (mask search).
    lambda: f64,
    /// Lowest ReLU count seen (mask search).
    lowest: usize,
    /// Budgets already snapshotted (mask search).
    crossed: Vec<usize>,
    /// Best test accuracy so far (fine-tuning).
    best: f64,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Saves variables, optimizer state and phase state into `dir` (each file replaced
/// atomically, state last, so a kill leaves the previous complete checkpoint readable).
fn save_checkpoint(
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
fn load_checkpoint(
    dir: &Path,
    vs: &mut VarStore,
    opt: &mut Optimizer,
) -> Result<Option<PhaseState>, TrainError> {
    let sp = dir.join("state.json");
    if !sp.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&sp).map_err(|e| TrainError::io(&sp, e))?;
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

// ------------------------------------------------------------------ pieces

fn load_sets(c: &Common, norm: &Normalization) -> Result<(TensorSet, TensorSet), TrainError> {
    let train = Dataset::load(c.dataset, &c.data_dir, Split::Train, c.train_limit)?;
    let test = Dataset::load(c.dataset, &c.data_dir, Split::Test, c.test_limit)?;
    if train.is_empty() || test.is_empty() {
        return Err(TrainError::Invalid(
            "the training or test split is empty".into(),
        ));
    }
    Ok((
        TensorSet::new(&train, norm).to_device(c.device),
        TensorSet::new(&test, norm).to_device(c.device),
    ))
}

fn bar(c: &Common, n: usize, msg: String) -> ProgressBar {
    if !c.progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(n as u64).with_style(
        ProgressStyle::with_template("{msg} [{bar:25}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    b.set_message(msg);
    b
}

/// Top-1 accuracy of `net` (in eval mode) on `set`.
pub fn accuracy(net: &Net, set: &TensorSet, batch: usize, device: Device) -> f64 {
    tch::no_grad(|| {
        let mut correct = 0i64;
        for (x, y) in set.ordered(batch, device) {
            let pred = net.forward_t(&x, false).argmax(-1, false);
            correct += pred.eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        }
        correct as f64 / set.len().max(1) as f64
    })
}

/// Distillation loss: KL(softmax(teacher/T) || softmax(student/T)) * T^2, batch mean.
fn kd_loss(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let p = (teacher / t).softmax(-1, Kind::Float);
    let logp_s = (student / t).log_softmax(-1, Kind::Float);
    let logp_t = (teacher / t).log_softmax(-1, Kind::Float);
    let b = student.size()[0] as f64;
    (p * (logp_t - logp_s)).sum(Kind::Float) * (t * t / b)
}

fn named_params(vs: &VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().collect()
}

/// SNL's SGD for pretraining and fine-tuning: momentum 0.9, weight decay 5e-4.
fn sgd(vs: &VarStore) -> Optimizer {
    Optimizer::new(
        optim::Kind::Sgd {
            momentum: 0.9,
            weight_decay: 5e-4,
        },
        named_params(vs),
    )
}

struct EpochStats {
    loss: f64,
    ce: f64,
    kd: f64,
    l1: f64,
    train_acc: f64,
    /// The learning rate of the epoch's last step.
    last_lr: f64,
}

/// One training epoch. `teacher` adds distillation; `lambda` adds the alphas' L1 penalty.
#[allow(clippy::too_many_arguments)]
fn train_epoch(
    c: &Common,
    net: &Net,
    teacher: Option<&Net>,
    lambda: f64,
    opt: &mut Optimizer,
    lr_at: &dyn Fn(usize, usize) -> StepSetting,
    set: &TensorSet,
    epoch: usize,
    label: &str,
    after_step: &mut dyn FnMut() -> Result<(), TrainError>,
) -> Result<EpochStats, TrainError> {
    let batches = set.epoch(
        c.batch,
        c.seed,
        epoch,
        c.dataset != DatasetKind::FashionMnist,
        c.device,
    );
    let per_epoch = batches.len();
    let mut scaler = LossScaler::default();
    let pb = bar(c, per_epoch, format!("{label} epoch {}", epoch + 1));
    let (mut sl, mut sce, mut skd, mut sl1, mut correct, mut n) =
        (0.0, 0.0, 0.0, 0.0, 0i64, 0usize);
    let mut last_lr = 0.0;
    let amp = c.amp && c.device.is_cuda();
    for (i, (x, y)) in batches.into_iter().enumerate() {
        let set_i = lr_at(i, per_epoch);
        if let Some(m) = set_i.momentum {
            opt.set_momentum(m);
        }
        last_lr = set_i.lr;
        let (out, ce, kd) = tch::autocast(amp, || {
            let out = net.forward_t(&x, true);
            let ce = out.cross_entropy_for_logits(&y);
            let kd = teacher.map(|t| {
                let tl = tch::no_grad(|| t.forward_t(&x, false));
                kd_loss(&out, &tl, 4.0)
            });
            (out, ce, kd)
        });
        let mut loss = ce.shallow_clone();
        let mut kdv = 0.0;
        if let Some(kd) = kd {
            kdv = kd.double_value(&[]);
            loss += kd;
        }
        let mut l1v = 0.0;
        if lambda > 0.0 {
            if let Some(l1) = net.alpha_l1() {
                l1v = l1.double_value(&[]);
                loss += l1 * lambda;
            }
        }
        opt.zero_grad();
        if amp {
            (&loss * scaler.scale).backward();
            let finite = opt.unscale(scaler.scale);
            if finite {
                opt.step(set_i.lr);
            }
            scaler.update(finite);
        } else {
            loss.backward();
            opt.step(set_i.lr);
        }
        after_step()?;
        let bs = x.size()[0] as usize;
        sl += loss.double_value(&[]) * bs as f64;
        sce += ce.double_value(&[]) * bs as f64;
        skd += kdv * bs as f64;
        sl1 = l1v;
        correct += out
            .argmax(-1, false)
            .eq_tensor(&y)
            .sum(Kind::Int64)
            .int64_value(&[]);
        n += bs;
        pb.inc(1);
    }
    pb.finish_and_clear();
    let n = n.max(1) as f64;
    Ok(EpochStats {
        loss: sl / n,
        ce: sce / n,
        kd: skd / n,
        l1: sl1,
        train_acc: correct as f64 / n,
        last_lr,
    })
}

fn hyper(c: &Common) -> serde_json::Value {
    json!({
        "dataset": c.dataset.name(),
        "batch": c.batch,
        "seed": c.seed,
        "train_limit": c.train_limit,
        "test_limit": c.test_limit,
    })
}

/// Steps between two checks of the ReLU count against the pending budgets during the
/// mask search.
const BUDGET_CHECK_STEPS: usize = 10;

/// Kept positions in a set of masks.
fn kept_of(masks: &BTreeMap<String, Vec<u8>>) -> usize {
    masks
        .values()
        .map(|m| m.iter().filter(|&&k| k != 0).count())
        .sum()
}

// ------------------------------------------------------------------ pretraining

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

/// Trains a network from scratch with every ReLU kept; writes `<out>/model`.
pub fn pretrain(p: &Pretrain) -> Result<PathBuf, TrainError> {
    let c = &p.common;
    let info = arch::info(&p.arch)?;
    if info.default_input != c.dataset.shape() {
        return Err(TrainError::Invalid(format!(
            "{} takes {:?} images, {} has {:?}",
            p.arch,
            info.default_input,
            c.dataset.name(),
            c.dataset.shape()
        )));
    }
    let graph = arch::build(&p.arch, c.dataset.classes(), c.dataset.shape())?;
    let norm = Normalization::for_dataset(c.dataset);
    let template = PublicModel::all_kept(
        &p.arch,
        graph.clone(),
        norm.clone(),
        FixedPointParams::default(),
    )?;
    let (train, test) = load_sets(c, &norm)?;
    tch::manual_seed(c.seed as i64);
    let mut vs = VarStore::new(c.device);
    let net = Net::new(&vs, &graph, None)?;
    let mut opt = sgd(&vs);
    let log = RunLog::new(&c.out)?;
    let ckpt = c.out.join("checkpoint-pretrain");
    let mut st = load_checkpoint(&ckpt, &mut vs, &mut opt)?.unwrap_or_default();
    if st.epoch > 0 {
        eprintln!("resuming pretraining after epoch {}", st.epoch);
    }
    let start = Instant::now();
    let mut stop = StopAfter::new(c);
    let mut test_acc = 0.0;
    while st.epoch < p.epochs {
        let e = st.epoch;
        let lr_at = |i: usize, per_epoch: usize| {
            p.schedule.at(p.lr, e * per_epoch + i, per_epoch, p.epochs)
        };
        let s = train_epoch(
            c,
            &net,
            None,
            0.0,
            &mut opt,
            &lr_at,
            &train,
            e,
            "pretrain",
            &mut || Ok(()),
        )?;
        test_acc = accuracy(&net, &test, c.batch, c.device);
        st.epoch += 1;
        save_checkpoint(&ckpt, &vs, &opt, &st)?;
        log.write(json!({
            "phase": "pretrain", "epoch": st.epoch, "lr": s.last_lr, "loss": s.loss, "ce": s.ce,
            "train_acc": s.train_acc, "test_acc": test_acc,
            "relu_count": template.relu_total(), "seconds": start.elapsed().as_secs_f64(),
        }))?;
        eprintln!(
            "pretrain epoch {}/{}: loss {:.4}, train acc {:.2}%, test acc {:.2}%",
            st.epoch,
            p.epochs,
            s.loss,
            100.0 * s.train_acc,
            100.0 * test_acc
        );
        stop.epoch_done()?;
    }
    if p.epochs == 0 || test_acc == 0.0 {
        test_acc = accuracy(&net, &test, c.batch, c.device);
    }
    let masks = net.binary_masks(0.5)?;
    let prov = json!({
        "phase": "pretrain", "arch": p.arch, "epochs": p.epochs, "lr": p.lr,
        "optimizer": "sgd momentum 0.9 wd 5e-4", "schedule": p.schedule.describe(),
        "test_accuracy": test_acc, "hyperparameters": hyper(c),
    });
    let model = export(&vs, &template, &masks, prov)?;
    let dir = c.out.join("model");
    format::save(&model, &dir, true)?;
    Ok(dir)
}

// ------------------------------------------------------------------ linearization

/// Mask search and fine-tuning settings (defaults: SNL's reference).
#[derive(Clone, Debug)]
pub struct Linearize {
    /// Shared settings.
    pub common: Common,
    /// The pretrained model (teacher and starting point).
    pub model: PathBuf,
    /// Budgets; one search passes through all of them.
    pub budgets: Vec<Budget>,
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
}

/// One fine-tuned model of a linearization run.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The budget's allowed count.
    pub budget: usize,
    /// Kept ReLUs in the exported model.
    pub kept: usize,
    /// Best test accuracy after fine-tuning.
    pub test_accuracy: f64,
    /// The model directory.
    pub path: PathBuf,
}

fn teacher_net(model: &Model, device: Device) -> Result<(VarStore, Net), TrainError> {
    let mut vs = VarStore::new(device);
    let mut net = Net::new(&vs, &model.public.graph, None)?;
    load_weights(&vs, model)?;
    let masks = model
        .public
        .masks
        .iter()
        .map(|(k, m)| (k.clone(), m.kept.clone()))
        .collect();
    net.set_masks(&masks, device)?;
    vs.freeze();
    Ok((vs, net))
}

/// Runs the mask search through every budget, then fine-tunes each snapshot; writes
/// `<out>/budget-<N>` model directories and returns them.
pub fn linearize(l: &Linearize) -> Result<Vec<Outcome>, TrainError> {
    let c = &l.common;
    let (base, _) = format::load(&l.model)?;
    if base.public.graph.input != c.dataset.shape() {
        return Err(TrainError::Invalid(format!(
            "{} takes {:?} images, {} has {:?}",
            l.model.display(),
            base.public.graph.input,
            c.dataset.name(),
            c.dataset.shape()
        )));
    }
    if l.budgets.is_empty() {
        return Err(TrainError::Invalid("give at least one --budget".into()));
    }
    let total = base.public.relu_total();
    let start_count = base.public.relu_kept();
    let mut budgets: Vec<usize> = l.budgets.iter().map(|b| b.resolve(total)).collect();
    budgets.sort_unstable_by(|a, b| b.cmp(a));
    budgets.dedup();
    if let Some(b) = budgets.iter().find(|&&b| b == 0 || b >= start_count) {
        return Err(TrainError::Invalid(format!(
            "budget {b} must be positive and below the model's {start_count} kept ReLUs"
        )));
    }
    let norm = base.public.normalization.clone();
    let (train, test) = load_sets(c, &norm)?;
    let log = RunLog::new(&c.out)?;
    let (_tvs, teacher) = teacher_net(&base, c.device)?;
    let teacher_acc = accuracy(&teacher, &test, c.batch, c.device);
    log.write(json!({"phase": "start", "model": l.model.display().to_string(), "relu_total": total, "teacher_test_acc": teacher_acc, "budgets": budgets}))?;

    let mut stop = StopAfter::new(c);
    // ---- mask search
    let search_dir = c.out.join("search");
    let snapshot = |b: usize| search_dir.join(format!("snapshot-{b}"));
    let all_snapped = budgets
        .iter()
        .all(|&b| snapshot(b).join(format::MODEL_FILE).exists());
    if !all_snapped {
        tch::manual_seed(c.seed as i64);
        let mut vs = VarStore::new(c.device);
        let net = Net::new(&vs, &base.public.graph, Some(l.granularity))?;
        load_weights(&vs, &base)?;
        // Positions the base model already linearized stay linearized: start their alphas at 0.
        tch::no_grad(|| {
            for (site, a) in net.alphas() {
                if let Some(m) = base.public.masks.get(site) {
                    if m.kept_count() < m.len() && l.granularity == Granularity::Position {
                        let t = Tensor::from_slice(&m.kept)
                            .to_kind(Kind::Float)
                            .reshape(a.size())
                            .to_device(c.device);
                        a.shallow_clone().copy_(&t);
                    }
                }
            }
        });
        let mut opt = Optimizer::new(
            optim::Kind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
            },
            named_params(&vs),
        );
        let ckpt = search_dir.join("checkpoint");
        let mut st = match load_checkpoint(&ckpt, &mut vs, &mut opt)? {
            Some(s) => {
                eprintln!("resuming mask search after epoch {}", s.epoch);
                s
            }
            None => PhaseState {
                lambda: l.lambda,
                lowest: net.relu_count(l.threshold)?,
                ..Default::default()
            },
        };
        let start = Instant::now();
        loop {
            let pending: Vec<usize> = budgets
                .iter()
                .copied()
                .filter(|b| !st.crossed.contains(b))
                .collect();
            if pending.is_empty() {
                break;
            }
            if st.epoch >= l.max_search_epochs {
                return Err(TrainError::Invalid(format!(
                    "mask search stopped after {} epochs at {} ReLUs without reaching budget(s) {pending:?}; raise --max-search-epochs or --lambda",
                    st.epoch, st.lowest
                )));
            }
            // The count can fall through several budgets within one epoch (every alpha
            // drifts down at about the Adam step size, then many cross the threshold
            // together), so it is checked every few steps and each budget is
            // snapshotted as soon as it is reached, not at the end of the epoch.
            let mut steps = 0usize;
            let mut crossed_now: Vec<usize> = Vec::new();
            let epoch_now = st.epoch + 1;
            let lambda_now = st.lambda;
            let s = train_epoch(
                c,
                &net,
                Some(&teacher),
                st.lambda,
                &mut opt,
                &|_, _| StepSetting {
                    lr: l.search_lr,
                    momentum: None,
                },
                &train,
                st.epoch,
                "search",
                &mut || {
                    steps += 1;
                    if steps % BUDGET_CHECK_STEPS != 0 {
                        return Ok(());
                    }
                    let count = net.relu_count(l.threshold)?;
                    for b in pending.iter().copied() {
                        if count <= b && !crossed_now.contains(&b) {
                            let masks = net.top_k_masks(b)?;
                            let prov = json!({"phase": "search", "epoch": epoch_now, "step": steps, "budget": b, "relu_count_at_threshold": count, "relu_kept": kept_of(&masks), "lambda": lambda_now});
                            let m = export(&vs, &base.public, &masks, prov)?;
                            format::save(&m, &snapshot(b), true)?;
                            crossed_now.push(b);
                            eprintln!(
                                "budget {b} reached in epoch {epoch_now} at step {steps} ({count} ReLUs): mask snapshotted"
                            );
                        }
                    }
                    Ok(())
                },
            )?;
            st.crossed.extend(crossed_now);
            let pending: Vec<usize> = pending
                .into_iter()
                .filter(|b| !st.crossed.contains(b))
                .collect();
            let count = net.relu_count(l.threshold)?;
            let acc = accuracy(&net, &test, c.batch, c.device);
            st.epoch += 1;
            log.write(json!({
                "phase": "search", "epoch": st.epoch, "loss": s.loss, "ce": s.ce, "kd": s.kd, "alpha_l1": s.l1,
                "lambda": st.lambda, "relu_count": count, "train_acc": s.train_acc, "test_acc": acc,
                "seconds": start.elapsed().as_secs_f64(),
            }))?;
            eprintln!(
                "search epoch {}: {count} ReLUs ({:.2}%), lambda {:.3e}, loss {:.4}, test acc {:.2}%",
                st.epoch,
                100.0 * count as f64 / total as f64,
                st.lambda,
                s.loss,
                100.0 * acc
            );
            // SNL's schedule grows lambda when an epoch (after the warm-up) brings no new
            // low. With `min_drop` > 0 an epoch must also bring the low down by that
            // fraction, so a search that crawls (every epoch a new low, a few hundred
            // ReLUs lower) still gets its lambda raised.
            let enough =
                count < st.lowest && (count as f64) <= st.lowest as f64 * (1.0 - l.min_drop);
            st.lowest = st.lowest.min(count);
            if !enough && st.epoch > l.warmup {
                st.lambda *= l.lambda_growth;
            }
            for b in pending.iter().copied().filter(|&b| count <= b) {
                let masks = net.top_k_masks(b)?;
                let prov = json!({"phase": "search", "epoch": st.epoch, "budget": b, "relu_count_at_threshold": count, "relu_kept": kept_of(&masks), "lambda": st.lambda});
                let m = export(&vs, &base.public, &masks, prov)?;
                format::save(&m, &snapshot(b), true)?;
                st.crossed.push(b);
                eprintln!("budget {b} reached at epoch {}: mask snapshotted", st.epoch);
            }
            save_checkpoint(&ckpt, &vs, &opt, &st)?;
            stop.epoch_done()?;
        }
    }

    // ---- binarized fine-tuning of every snapshot
    let mut outcomes = Vec::new();
    for &b in &budgets {
        let (snap, _) = format::load(&snapshot(b))?;
        let out_dir = c.out.join(format!("budget-{b}"));
        if out_dir.join(format::MODEL_FILE).exists() {
            let (m, _) = format::load(&out_dir)?;
            let acc = m.provenance["test_accuracy"].as_f64().unwrap_or(0.0);
            outcomes.push(Outcome {
                budget: b,
                kept: m.public.relu_kept(),
                test_accuracy: acc,
                path: out_dir,
            });
            continue;
        }
        let kept = snap.public.relu_kept();
        let mut vs = VarStore::new(c.device);
        let mut net = Net::new(&vs, &snap.public.graph, None)?;
        load_weights(&vs, &snap)?;
        let masks: BTreeMap<String, Vec<u8>> = snap
            .public
            .masks
            .iter()
            .map(|(k, m)| (k.clone(), m.kept.clone()))
            .collect();
        net.set_masks(&masks, c.device)?;
        let mut opt = sgd(&vs);
        let ckpt = c.out.join(format!("finetune-{b}"));
        let best_dir = ckpt.join("best");
        let mut st = load_checkpoint(&ckpt, &mut vs, &mut opt)?.unwrap_or_default();
        let start = Instant::now();
        if !best_dir.join(format::MODEL_FILE).exists() {
            // The binarized, not yet fine-tuned network is the first candidate.
            let acc = accuracy(&net, &test, c.batch, c.device);
            st.best = acc;
            let m = export(
                &vs,
                &snap.public,
                &masks,
                json!({"test_accuracy": acc, "finetune_epoch": 0}),
            )?;
            format::save(&m, &best_dir, true)?;
        }
        while st.epoch < l.finetune_epochs {
            let e = st.epoch;
            let lr = l.finetune_lr
                * 0.5
                * (1.0 + (std::f64::consts::PI * e as f64 / l.finetune_epochs as f64).cos());
            let s = train_epoch(
                c,
                &net,
                Some(&teacher),
                0.0,
                &mut opt,
                &|_, _| StepSetting { lr, momentum: None },
                &train,
                e,
                &format!("finetune {b}"),
                &mut || Ok(()),
            )?;
            let acc = accuracy(&net, &test, c.batch, c.device);
            st.epoch += 1;
            if acc > st.best {
                st.best = acc;
                let m = export(
                    &vs,
                    &snap.public,
                    &masks,
                    json!({"test_accuracy": acc, "finetune_epoch": st.epoch}),
                )?;
                format::save(&m, &best_dir, true)?;
            }
            save_checkpoint(&ckpt, &vs, &opt, &st)?;
            log.write(json!({
                "phase": "finetune", "budget": b, "epoch": st.epoch, "lr": lr, "loss": s.loss, "ce": s.ce, "kd": s.kd,
                "relu_count": kept, "train_acc": s.train_acc, "test_acc": acc, "best_test_acc": st.best,
                "seconds": start.elapsed().as_secs_f64(),
            }))?;
            eprintln!(
                "finetune {b} epoch {}/{}: loss {:.4}, test acc {:.2}% (best {:.2}%)",
                st.epoch,
                l.finetune_epochs,
                s.loss,
                100.0 * acc,
                100.0 * st.best
            );
            stop.epoch_done()?;
        }
        let (mut best, _) = format::load(&best_dir)?;
        best.provenance = json!({
            "phase": "linearize",
            "method": "SNL",
            "base_model": l.model.display().to_string(),
            "dataset": c.dataset.name(),
            "budget": b,
            "relu_kept": best.public.relu_kept(),
            "relu_total": total,
            "test_accuracy": st.best,
            "teacher_test_accuracy": teacher_acc,
            "selected_epoch": best.provenance["finetune_epoch"],
            "hyperparameters": {
                "common": hyper(c), "lambda0": l.lambda, "lambda_growth": l.lambda_growth, "min_drop": l.min_drop, "warmup_epochs": l.warmup,
                "threshold": l.threshold, "search_lr": l.search_lr, "finetune_epochs": l.finetune_epochs,
                "finetune_lr": l.finetune_lr, "kd_temperature": 4.0,
                "granularity": format!("{:?}", l.granularity),
            },
            "base_provenance": base.provenance,
        });
        format::save(&best, &out_dir, true)?;
        outcomes.push(Outcome {
            budget: b,
            kept: best.public.relu_kept(),
            test_accuracy: st.best,
            path: out_dir,
        });
    }
    Ok(outcomes)
}

/// Test accuracy of a stored model evaluated with libtorch (masks applied).
pub fn evaluate(model: &Model, c: &Common) -> Result<f64, TrainError> {
    let (_vs, net) = teacher_net(model, c.device)?;
    let test = Dataset::load(c.dataset, &c.data_dir, Split::Test, c.test_limit)?;
    let set = TensorSet::new(&test, &model.public.normalization);
    debug_assert_eq!(net.mode, SiteMode::Mask);
    Ok(accuracy(&net, &set, c.batch, c.device))
}

/// Logits of a stored model for normalized inputs [N, C, H, W] (libtorch, eval mode).
pub fn logits(model: &Model, inputs: &Tensor) -> Result<Tensor, TrainError> {
    let (_vs, net) = teacher_net(model, inputs.device())?;
    Ok(tch::no_grad(|| net.forward_t(inputs, false)))
}

/// One built-in architecture set up for timing training steps in pretraining mode:
/// forward, cross-entropy, backward and an SGD step (momentum 0.9, weight decay 5e-4) on a
/// fixed random batch. The counterpart of `scripts/torch_step_bench.py`, which does the
/// same in Python PyTorch; `snl-train bench` alternates rounds of both.
#[derive(Debug)]
pub struct StepBench {
    _vs: VarStore,
    net: Net,
    opt: Optimizer,
    x: Tensor,
    y: Tensor,
    batch: usize,
}

impl StepBench {
    /// Builds the network (seed 0), its optimizer and a random batch of `batch` images.
    pub fn new(arch_name: &str, batch: usize, device: Device) -> Result<Self, TrainError> {
        let info = arch::info(arch_name)?;
        let graph = arch::build(arch_name, 10, info.default_input)?;
        tch::manual_seed(0);
        let vs = VarStore::new(device);
        let net = Net::new(&vs, &graph, None)?;
        let opt = sgd(&vs);
        let [c, h, w] = info.default_input;
        let x = Tensor::randn(
            [batch as i64, c as i64, h as i64, w as i64],
            (Kind::Float, device),
        );
        let y = Tensor::randint(10, [batch as i64], (Kind::Int64, device));
        Ok(StepBench {
            _vs: vs,
            net,
            opt,
            x,
            y,
            batch,
        })
    }

    /// Images per step.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs `steps` training steps and returns the seconds they took.
    pub fn run(&mut self, steps: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..steps {
            self.opt.zero_grad();
            let loss = self
                .net
                .forward_t(&self.x, true)
                .cross_entropy_for_logits(&self.y);
            loss.backward();
            self.opt.step(0.1);
        }
        start.elapsed().as_secs_f64()
    }
}

/// Training-step throughput (images per second) of a built-in architecture in pretraining
/// mode ([`StepBench`]), timed over `steps` steps after `warmup` untimed ones.
pub fn step_throughput(
    arch_name: &str,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: Device,
) -> Result<f64, TrainError> {
    let mut b = StepBench::new(arch_name, batch, device)?;
    b.run(warmup);
    let secs = b.run(steps);
    Ok((batch * steps) as f64 / secs.max(1e-9))
}
