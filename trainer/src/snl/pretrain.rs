//! Pretraining: a network from scratch with every ReLU kept (SGD, one-cycle or step
//! schedule), one checkpoint per epoch; the result is `<out>/model`, the teacher and
//! starting point of a linearization.

use std::path::PathBuf;
use std::time::Instant;

use models::data::Normalization;
use models::fixed::FixedPointParams;
use models::{PublicModel, arch, format};
use serde_json::json;
use tch::nn::VarStore;

use crate::error::TrainError;
use crate::net::Net;
use crate::optim::sgd;
use crate::weights::export;

use super::epoch::{PolyTraining, load_sets, train_epoch};
use super::eval::accuracy;
use super::run::{RunLog, StopAfter, load_checkpoint, save_checkpoint};
use super::settings::{Pretrain, hyper};

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
    // Wall clock of this phase: earlier invocations' (from the checkpoint) plus this one's.
    let (start, before) = (Instant::now(), st.seconds);
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
            PolyTraining::default(),
            &mut opt,
            &lr_at,
            &train,
            e,
            "pretrain",
            &mut || Ok(()),
        )?;
        test_acc = accuracy(&net, &test, c.batch, c.device);
        st.epoch += 1;
        st.seconds = before + start.elapsed().as_secs_f64();
        save_checkpoint(&ckpt, &vs, &opt, &st)?;
        log.write(json!({
            "phase": "pretrain", "epoch": st.epoch, "lr": s.last_lr, "loss": s.loss, "ce": s.ce,
            "train_acc": s.train_acc, "test_acc": test_acc,
            "relu_count": template.relu_total(), "seconds": before + start.elapsed().as_secs_f64(),
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
