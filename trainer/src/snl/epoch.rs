//! One training epoch: loading the splits, the distillation loss, SNL's optimizers and
//! the epoch loop itself (cross-entropy, distillation from a teacher, the alphas' L1
//! penalty, mixed precision on CUDA).

use indicatif::{ProgressBar, ProgressStyle};
use models::data::{Dataset, DatasetKind, Normalization, Split};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

use crate::data::TensorSet;
use crate::error::TrainError;
use crate::net::{BnStats, Net};
use crate::optim::{LossScaler, Optimizer};
use crate::schedule::StepSetting;

use super::settings::Common;

/// The training and test splits, normalized, on the run's device.
pub(super) fn load_sets(
    c: &Common,
    norm: &Normalization,
) -> Result<(TensorSet, TensorSet), TrainError> {
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

/// A progress bar, hidden unless the run shows progress.
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

/// Distillation loss: KL(softmax(teacher/T) || softmax(student/T)) * T^2, batch mean.
fn kd_loss(student: &Tensor, teacher: &Tensor, t: f64) -> Tensor {
    let p = (teacher / t).softmax(-1, Kind::Float);
    let logp_s = (student / t).log_softmax(-1, Kind::Float);
    let logp_t = (teacher / t).log_softmax(-1, Kind::Float);
    let b = student.size()[0] as f64;
    (p * (logp_t - logp_s)).sum(Kind::Float) * (t * t / b)
}

/// Averages over one training epoch.
pub(super) struct EpochStats {
    pub(super) loss: f64,
    pub(super) ce: f64,
    pub(super) kd: f64,
    pub(super) l1: f64,
    /// The squares' range penalty (unweighted, mean over the epoch's steps; 0 without
    /// quadratic training or without its penalty).
    pub(super) penalty: f64,
    /// Steps whose gradient norm was clipped (quadratic training); their batches' statistics
    /// were left out of the batch norms' running averages.
    pub(super) clipped: usize,
    /// Largest gradient norm of the epoch before clipping (0 unless clipping).
    pub(super) max_grad_norm: f64,
    pub(super) train_acc: f64,
    /// The learning rate of the epoch's last step.
    pub(super) last_lr: f64,
}

/// What training quadratic replacements adds to an epoch.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PolyTraining {
    /// Weight of the squares' range penalty ([`Net::forward_with_penalty`]; 0: off).
    pub(super) penalty: f64,
    /// The gradients' global L2 norm is clipped to this (0: off). A batch whose norm
    /// was clipped also leaves the batch norms' running statistics as they were before
    /// it: such a batch has some images whose squares blew up (|x| to 3e5 on ResNet-20,
    /// where the usual largest is 20-40), and its variances, in the running averages,
    /// made the evaluation network useless for hundreds of steps (10% test accuracy).
    pub(super) clip_grad: f64,
}

/// One training epoch. `teacher` adds distillation; `lambda` adds the alphas' L1 penalty;
/// `poly` the range penalty of the quadratic sites' squares and gradient clipping.
#[allow(clippy::too_many_arguments)]
pub(super) fn train_epoch(
    c: &Common,
    net: &Net,
    teacher: Option<&Net>,
    lambda: f64,
    poly: PolyTraining,
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
    let (mut sl, mut sce, mut skd, mut sl1, mut spen, mut correct, mut n) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0i64, 0usize);
    let (mut clipped, mut max_norm) = (0usize, 0f64);
    // Clips the gradients; an outlier batch's running statistics are dropped.
    let mut clip = |opt: &mut Optimizer, saved: Option<BnStats>| -> Result<(), TrainError> {
        if let Some(saved) = saved {
            let norm = opt.clip_grad_norm(poly.clip_grad);
            max_norm = max_norm.max(norm);
            if norm > poly.clip_grad {
                clipped += 1;
                net.restore_bn_stats(&saved)?;
            }
        }
        Ok(())
    };
    let mut last_lr = 0.0;
    let amp = c.amp && c.device.is_cuda();
    for (i, (x, y)) in batches.into_iter().enumerate() {
        let set_i = lr_at(i, per_epoch);
        if let Some(m) = set_i.momentum {
            opt.set_momentum(m);
        }
        last_lr = set_i.lr;
        let saved = (poly.clip_grad > 0.0).then(|| net.bn_stats());
        let (out, ce, kd, pen) = tch::autocast(amp, || {
            let (out, pen) = if poly.penalty > 0.0 {
                net.forward_with_penalty(&x, true)
            } else {
                (net.forward_t(&x, true), None)
            };
            let ce = out.cross_entropy_for_logits(&y);
            let kd = teacher.map(|t| {
                let tl = tch::no_grad(|| t.forward_t(&x, false));
                kd_loss(&out, &tl, 4.0)
            });
            (out, ce, kd, pen)
        });
        // A new tensor: `+=` below is in place, and on a shallow clone it would also
        // add the other terms to `ce` (whose logged mean then was the whole loss).
        let mut loss = &ce * 1.0;
        let mut kdv = 0.0;
        if let Some(kd) = kd {
            kdv = kd.double_value(&[]);
            loss += kd;
        }
        let mut penv = 0.0;
        if let Some(p) = pen {
            penv = p.double_value(&[]);
            loss += p * poly.penalty;
        }
        let mut l1v = 0.0;
        if lambda > 0.0
            && let Some(l1) = net.alpha_l1()
        {
            l1v = l1.double_value(&[]);
            loss += l1 * lambda;
        }
        opt.zero_grad();
        if amp {
            (&loss * scaler.scale).backward();
            let finite = opt.unscale(scaler.scale);
            if finite {
                clip(opt, saved)?;
                opt.step(set_i.lr);
            }
            scaler.update(finite);
        } else {
            loss.backward();
            clip(opt, saved)?;
            opt.step(set_i.lr);
        }
        after_step()?;
        let bs = x.size()[0] as usize;
        sl += loss.double_value(&[]) * bs as f64;
        sce += ce.double_value(&[]) * bs as f64;
        skd += kdv * bs as f64;
        sl1 = l1v;
        spen += penv * bs as f64;
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
        penalty: spen / n,
        clipped,
        max_grad_norm: max_norm,
        train_acc: correct as f64 / n,
        last_lr,
    })
}
