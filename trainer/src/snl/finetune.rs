//! Fine-tuning: each budget's snapshot, its mask binarized, trained with distillation
//! from the pretrained network on a cosine schedule; the best epoch by test accuracy is
//! kept and exported as `<out>/budget-<N>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use models::format;
use serde::Serialize;
use serde_json::json;
use tch::nn::VarStore;

use crate::error::TrainError;
use crate::net::Net;
use crate::optim::sgd;
use crate::schedule::StepSetting;
use crate::weights::{export, load_weights};

use super::epoch::train_epoch;
use super::eval::accuracy;
use super::run::{Linearization, load_checkpoint, save_checkpoint, snapshot_dir};
use super::settings::hyper;

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

/// Fine-tunes the snapshot of budget `b` (or resumes, or finds it done).
pub(super) fn finetune(run: &mut Linearization, b: usize) -> Result<Outcome, TrainError> {
    let (l, base, total, teacher_acc) = (run.l, &run.base, run.total, run.teacher_acc);
    let c = &l.common;
    let (train, test, teacher, log) = (&run.train, &run.test, &run.teacher, &run.log);
    let stop = &mut run.stop;
    let (snap, _) = format::load(&snapshot_dir(&c.out, b))?;
    let out_dir = c.out.join(format!("budget-{b}"));
    if out_dir.join(format::MODEL_FILE).exists() {
        let (m, _) = format::load(&out_dir)?;
        let acc = m.provenance["test_accuracy"].as_f64().unwrap_or(0.0);
        return Ok(Outcome {
            budget: b,
            kept: m.public.relu_kept(),
            test_accuracy: acc,
            path: out_dir,
        });
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
    // Wall clock of this phase: earlier invocations' (from the checkpoint) plus this one's.
    let (start, before) = (Instant::now(), st.seconds);
    if !best_dir.join(format::MODEL_FILE).exists() {
        // The binarized, not yet fine-tuned network is the first candidate.
        let acc = accuracy(&net, test, c.batch, c.device);
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
            Some(teacher),
            0.0,
            &mut opt,
            &|_, _| StepSetting { lr, momentum: None },
            train,
            e,
            &format!("finetune {b}"),
            &mut || Ok(()),
        )?;
        let acc = accuracy(&net, test, c.batch, c.device);
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
        st.seconds = before + start.elapsed().as_secs_f64();
        save_checkpoint(&ckpt, &vs, &opt, &st)?;
        log.write(json!({
            "phase": "finetune", "budget": b, "epoch": st.epoch, "lr": lr, "loss": s.loss, "ce": s.ce, "kd": s.kd,
            "relu_count": kept, "train_acc": s.train_acc, "test_acc": acc, "best_test_acc": st.best,
            "seconds": before + start.elapsed().as_secs_f64(),
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
    Ok(Outcome {
        budget: b,
        kept: best.public.relu_kept(),
        test_accuracy: st.best,
        path: out_dir,
    })
}
