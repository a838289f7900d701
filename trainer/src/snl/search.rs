//! The mask search: one trainable alpha per ReLU position (or channel), trained with
//! cross-entropy, distillation from the frozen pretrained network and lambda times the
//! alphas' L1 norm, lambda grown after slow epochs. Each time the ReLU count falls to a
//! budget, the top-k mask is snapshotted (one search yields every budget's mask).

use std::collections::BTreeMap;
use std::time::Instant;

use models::format;
use serde_json::json;
use tch::nn::VarStore;
use tch::{Kind, Tensor};

use crate::error::TrainError;
use crate::net::{Granularity, Net};
use crate::optim::{self, Optimizer, named_params};
use crate::schedule::StepSetting;
use crate::weights::{export, load_weights};

use super::epoch::{PolyTraining, train_epoch};
use super::eval::accuracy;
use super::run::{Linearization, PhaseState, load_checkpoint, save_checkpoint, snapshot_dir};

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

/// Runs (or resumes) the mask search until every budget has its snapshot; nothing to do
/// when all snapshots exist.
pub(super) fn search(run: &mut Linearization) -> Result<(), TrainError> {
    let (l, base, total, budgets) = (run.l, &run.base, run.total, &run.budgets);
    let c = &l.common;
    let (train, test, teacher, log) = (&run.train, &run.test, &run.teacher, &run.log);
    let stop = &mut run.stop;
    let search_dir = c.out.join("search");
    let snapshot = |b: usize| snapshot_dir(&c.out, b);
    let all_snapped = budgets
        .iter()
        .all(|&b| snapshot(b).join(format::MODEL_FILE).exists());
    if all_snapped {
        return Ok(());
    }
    tch::manual_seed(c.seed as i64);
    let mut vs = VarStore::new(c.device);
    let net = Net::new(&vs, &base.public.graph, Some(l.granularity))?;
    load_weights(&vs, base)?;
    // Positions the base model already linearized stay linearized: start their alphas at 0.
    tch::no_grad(|| {
        for (site, a) in net.alphas() {
            if let Some(m) = base.public.masks.get(site)
                && m.kept_count() < m.len()
                && l.granularity == Granularity::Position
            {
                let t = Tensor::from_slice(&m.kept)
                    .to_kind(Kind::Float)
                    .reshape(a.size())
                    .to_device(c.device);
                a.shallow_clone().copy_(&t);
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
    // Wall clock of this phase: earlier invocations' (from the checkpoint) plus this one's.
    let (start, before) = (Instant::now(), st.seconds);
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
            Some(teacher),
            st.lambda,
            PolyTraining::default(),
            &mut opt,
            &|_, _| StepSetting {
                lr: l.search_lr,
                momentum: None,
            },
            train,
            st.epoch,
            "search",
            &mut || {
                steps += 1;
                if !steps.is_multiple_of(BUDGET_CHECK_STEPS) {
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
        let acc = accuracy(&net, test, c.batch, c.device);
        st.epoch += 1;
        log.write(json!({
            "phase": "search", "epoch": st.epoch, "loss": s.loss, "ce": s.ce, "kd": s.kd, "alpha_l1": s.l1,
            "lambda": st.lambda, "relu_count": count, "train_acc": s.train_acc, "test_acc": acc,
            "seconds": before + start.elapsed().as_secs_f64(),
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
        let enough = count < st.lowest && (count as f64) <= st.lowest as f64 * (1.0 - l.min_drop);
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
        st.seconds = before + start.elapsed().as_secs_f64();
        save_checkpoint(&ckpt, &vs, &opt, &st)?;
        stop.epoch_done()?;
    }
    Ok(())
}
