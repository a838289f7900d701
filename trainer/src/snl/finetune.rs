//! Fine-tuning: each budget's snapshot, its mask binarized, trained with distillation
//! from the pretrained network on a cosine schedule; the best epoch by test accuracy is
//! kept and exported as `<out>/budget-<N>`.
//!
//! With a quadratic replacement every site's dropped positions compute `a x^2 + b x + c`
//! with per-channel coefficients `<site>.poly`, trained with the weights. Before the first
//! epoch they are fitted to relu by least squares, per channel, over the pre-activations
//! at the channel's dropped positions on the first [`FIT_BATCHES`] training batches
//! ([`crate::poly::fit_relu`]); a channel without dropped positions or with a singular
//! system keeps the identity (0, 1, 0). The sites are fitted one after the other in graph
//! order, each on the pre-activations of the network whose earlier sites already compute
//! their fitted quadratics (later ones still the identity), with batch statistics in the
//! batch norms, as in training. Fitting every site on the identity network instead lets
//! the squares compound along a ResNet's residual stream: on ResNet-20 at 10% of its
//! ReLUs the largest pre-activation grew from 25 to 1.6e6 and the first training steps
//! gave NaN; fitted in order, it was 164.
//!
//! The quadratic fine-tuning also clips the gradients' global norm
//! ([`super::settings::Linearize::poly_clip_grad`]) and adds the squares' range penalty
//! ([`super::settings::Linearize::poly_penalty`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use models::format;
use models::model::{PublicModel, Replacement};
use serde::Serialize;
use serde_json::json;
use tch::nn::VarStore;

use crate::error::TrainError;
use crate::net::Net;
use crate::optim::sgd;
use crate::poly::{self, IDENTITY, Moments, PolyInit, fit_relu};
use crate::schedule::StepSetting;
use crate::weights::{export, load_weights};

use super::epoch::{PolyTraining, train_epoch};
use super::eval::accuracy;
use super::latency;
use super::run::{Linearization, RunLog, load_checkpoint, save_checkpoint, snapshot_dir};
use super::settings::{Target, hyper};

/// One fine-tuned model of a linearization run.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// The budget's allowed count (for a latency budget, the count its snapshot kept).
    pub budget: usize,
    /// The latency budget, ms (`None` for a ReLU budget).
    pub latency_budget_ms: Option<f64>,
    /// The exported model's predicted online latency, ms (with latency pricing).
    pub predicted_ms: Option<f64>,
    /// Kept ReLUs in the exported model.
    pub kept: usize,
    /// Best test accuracy after fine-tuning.
    pub test_accuracy: f64,
    /// The model directory.
    pub path: PathBuf,
}

/// Training batches (in order, not augmented) whose pre-activations initialise the
/// quadratic coefficients.
pub const FIT_BATCHES: usize = 16;

/// Training batches that re-estimate the batch norms' running statistics before the
/// quadratic fine-tuning (0.9^64, about 0.1%, of the snapshot's statistics remain).
pub const BN_BATCHES: usize = 64;

/// Errors unless a model found in the run directory has the requested replacements.
fn check_replacements(
    found: &PublicModel,
    want: &PublicModel,
    what: &str,
) -> Result<(), TrainError> {
    if found.replacements == want.replacements {
        return Ok(());
    }
    let name = |p: &PublicModel| {
        if p.has_quadratic() {
            Replacement::Quadratic.name()
        } else {
            Replacement::Identity.name()
        }
    };
    Err(TrainError::Invalid(format!(
        "{what} was fine-tuned with the {} replacement, this run asks for {}; use another --out",
        name(found),
        name(want)
    )))
}

/// Fits every quadratic site's coefficients to relu (see the module's description) and
/// logs the fit.
///
/// With `square_fraction < 1` each site keeps the square only in the channels chosen by
/// [`poly::affine_channels`] (fit gain over an affine fit, largest first, within that
/// share of the site's dropped positions); the others get the affine fit, `a = 0` held
/// by the net. With [`PolyInit::Identity`] every channel then starts at the identity
/// instead of its fit (the choice of squared channels stays the fit's). Returns the
/// affine channels by site (sites without any left out).
#[allow(clippy::too_many_arguments)]
fn fit_poly(
    net: &mut Net,
    public: &PublicModel,
    square_fraction: f64,
    init: PolyInit,
    run_train: &crate::data::TensorSet,
    batch: usize,
    device: tch::Device,
    log: &RunLog,
    b: Target,
) -> Result<BTreeMap<String, Vec<usize>>, TrainError> {
    let mut affine_by_site = BTreeMap::new();
    let (mut squared_total, mut dropped_total) = (0usize, 0usize);
    let batches: Vec<tch::Tensor> = run_train
        .first_batches(batch, FIT_BATCHES, device)
        .into_iter()
        .map(|(x, _)| x)
        .collect();
    let mut sites = serde_json::Map::new();
    let (mut sse_id, mut sse_q, mut samples, mut beyond, mut max_abs) = (0.0, 0.0, 0.0, 0.0, 0f64);
    let (mut fitted, mut fallback) = (0usize, 0usize);
    eprintln!(
        "quadratic init of budget {b} on {FIT_BATCHES} batches: per site, channels fitted, \
         mean a, b, c, rms error of the identity and of the fit against relu at dropped positions \
         (earlier sites fitted), max |x|"
    );
    for site in net.graph().sites()?.into_iter().map(|s| s.name) {
        if !net.poly().contains_key(&site) {
            continue;
        }
        let moments =
            net.dropped_moments(batches.iter().map(tch::Tensor::shallow_clone), Some(&site))?;
        let ms = moments
            .get(&site)
            .ok_or_else(|| TrainError::Invalid(format!("no pre-activations seen at {site}")))?;
        let coeffs: Vec<Option<[f64; 3]>> = ms.iter().map(fit_relu).collect();
        let mut used: Vec<[f64; 3]> = coeffs.iter().map(|c| c.unwrap_or(IDENTITY)).collect();
        // Dropped positions per channel, from the mask.
        let counts: Vec<usize> = public
            .masks
            .get(&site)
            .map_or_else(Vec::new, |m| m.dropped_per_channel());
        let affine = if square_fraction < 1.0 {
            let fits: Vec<[f64; 3]> = ms
                .iter()
                .map(|m| poly::fit_relu_affine(m).unwrap_or(IDENTITY))
                .collect();
            let gain: Vec<f64> = ms
                .iter()
                .zip(&used)
                .zip(&fits)
                .map(|((m, &q), &a)| (m.sse(a) - m.sse(q)) / m.s[0].max(1.0))
                .collect();
            let affine = poly::affine_channels(&counts, &gain, square_fraction);
            for &c in &affine {
                used[c] = fits[c];
            }
            affine
        } else {
            Vec::new()
        };
        if init == PolyInit::Identity {
            used.iter_mut().for_each(|c| *c = IDENTITY);
        }
        net.set_poly(&site, &used)?;
        net.set_affine_channels(&site, &affine)?;
        let squared: usize = counts
            .iter()
            .enumerate()
            .filter(|(c, _)| affine.binary_search(c).is_err())
            .map(|(_, &n)| n)
            .sum();
        squared_total += squared;
        dropped_total += counts.iter().sum::<usize>();
        let mut total = Moments::default();
        ms.iter().for_each(|m| total.add(m));
        let site_sse_id: f64 = ms.iter().map(|m| m.sse(IDENTITY)).sum();
        let site_sse_q: f64 = ms.iter().zip(&used).map(|(m, &c)| m.sse(c)).sum();
        let ok = coeffs.iter().filter(|c| c.is_some()).count();
        let n = total.s[0].max(1.0);
        let mean = |k: usize| {
            let v: Vec<f64> = coeffs.iter().flatten().map(|c| c[k]).collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let (rms_id, rms_q) = ((site_sse_id / n).sqrt(), (site_sse_q / n).sqrt());
        eprintln!(
            "  {site}: {ok}/{} fitted, a {:.4}, b {:.4}, c {:.4}, rms {rms_id:.4} -> {rms_q:.4}, max |x| {:.2}{}",
            ms.len(),
            mean(0),
            mean(1),
            mean(2),
            total.max_abs,
            if affine.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} affine channels ({squared} of {} dropped positions squared)",
                    affine.len(),
                    counts.iter().sum::<usize>()
                )
            }
        );
        sites.insert(
            site.clone(),
            serde_json::json!({
                "channels": ms.len(), "fitted": ok, "samples": total.s[0],
                "mean_a": mean(0), "mean_b": mean(1), "mean_c": mean(2),
                "rms_identity": rms_id, "rms_fit": rms_q, "max_abs_x": total.max_abs,
                "beyond_radius": total.beyond_radius, "affine_channels": affine.len(),
                "squared_positions": squared,
            }),
        );
        if !affine.is_empty() {
            affine_by_site.insert(site.clone(), affine);
        }
        fitted += ok;
        fallback += ms.len() - ok;
        sse_id += site_sse_id;
        sse_q += site_sse_q;
        samples += total.s[0];
        beyond += total.beyond_radius;
        max_abs = max_abs.max(total.max_abs);
    }
    let n = samples.max(1.0);
    let summary = json!({
        "phase": "poly_fit", "budget": b.log_value(), "batches": FIT_BATCHES, "channels_fitted": fitted,
        "channels_identity": fallback, "samples": samples,
        "rms_identity": (sse_id / n).sqrt(), "rms_fit": (sse_q / n).sqrt(),
        "max_abs_x": max_abs, "fraction_beyond_radius": beyond / n,
        "radius": poly::PENALTY_RADIUS, "square_channels": square_fraction, "init": init.name(),
        "squared_positions": squared_total, "dropped_positions": dropped_total, "sites": sites,
    });
    // With `--poly-init identity` every channel starts at (0, 1, 0); the fit only chose
    // which channels square.
    let start = match init {
        poly::PolyInit::Identity => "every channel starts at the identity (fit used to choose \
                                     the squared channels)"
            .to_string(),
        poly::PolyInit::Fit => {
            format!("{fitted} channels start at the fit, {fallback} at the identity")
        }
    };
    eprintln!(
        "quadratic init of budget {b}: {start}; rms error against relu {:.4} (identity) -> \
         {:.4} (fit); max |x| {max_abs:.2}, {:.4}% of the dropped positions beyond |x| = {}; \
         squares at {squared_total} of {dropped_total} dropped positions",
        (sse_id / n).sqrt(),
        (sse_q / n).sqrt(),
        100.0 * beyond / n,
        poly::PENALTY_RADIUS
    );
    log.write(summary)?;
    Ok(affine_by_site)
}

/// Fine-tunes the snapshot of target `b` (or resumes, or finds it done).
pub(super) fn finetune(run: &mut Linearization, b: Target) -> Result<Outcome, TrainError> {
    let (l, base, total, teacher_acc) = (run.l, &run.base, run.total, run.teacher_acc);
    let c = &l.common;
    let (train, test, teacher, log) = (&run.train, &run.test, &run.teacher, &run.log);
    let stop = &mut run.stop;
    let (snap, _) = format::load(&snapshot_dir(&c.out, b))?;
    let quadratic = l.replacement == Replacement::Quadratic;
    // The exported models' public part: the snapshot's, every site quadratic if asked.
    let mut public = snap.public.clone();
    let sites: Vec<String> = public.masks.keys().cloned().collect();
    for site in &sites {
        public.set_replacement(site, l.replacement)?;
    }
    let kept = snap.public.relu_kept();
    let outcome = |m: &models::Model, acc: f64, path: PathBuf| -> Result<Outcome, TrainError> {
        Ok(Outcome {
            budget: match b {
                Target::Relus(n) => n,
                Target::LatencyMs(_) => kept,
            },
            latency_budget_ms: match b {
                Target::LatencyMs(ms) => Some(ms),
                Target::Relus(_) => None,
            },
            predicted_ms: match &l.pricing {
                Some(p) => Some(latency::predict_public(&m.public, p, 1.0)?.online_ms),
                None => None,
            },
            kept: m.public.relu_kept(),
            test_accuracy: acc,
            path,
        })
    };
    let out_dir = c.out.join(format!("budget-{}", b.key()));
    if out_dir.join(format::MODEL_FILE).exists() {
        let (m, _) = format::load(&out_dir)?;
        check_replacements(&m.public, &public, &out_dir.display().to_string())?;
        let had = m.provenance["hyperparameters"]["square_channels"]
            .as_f64()
            .unwrap_or(1.0);
        if quadratic && had != l.square_channels {
            return Err(TrainError::Invalid(format!(
                "{} was fine-tuned with {had} of the positions squared, this run asks for {}; use another --out",
                out_dir.display(),
                l.square_channels
            )));
        }
        let had_init = m.provenance["hyperparameters"]["poly_init"]
            .as_str()
            .unwrap_or(PolyInit::Fit.name());
        if quadratic && had_init != l.poly_init.name() {
            return Err(TrainError::Invalid(format!(
                "{} was fine-tuned from --poly-init {had_init}, this run asks for {}; use another --out",
                out_dir.display(),
                l.poly_init.name()
            )));
        }
        let acc = m.provenance["test_accuracy"].as_f64().unwrap_or(0.0);
        return outcome(&m, acc, out_dir);
    }
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
    if quadratic {
        // Before the optimizer, which then trains them with the weights.
        net.add_poly(&vs, &sites)?;
    }
    let mut opt = sgd(&vs);
    let ckpt = c.out.join(format!("finetune-{}", b.key()));
    let best_dir = ckpt.join("best");
    let mut st = match load_checkpoint(&ckpt, &mut vs, &mut opt)? {
        Some(st) => {
            let had = st
                .replacement
                .as_deref()
                .unwrap_or(Replacement::Identity.name());
            if had != l.replacement.name() {
                return Err(TrainError::Invalid(format!(
                    "{} holds a fine-tuning with the {had} replacement, this run asks for {}; use another --out",
                    ckpt.display(),
                    l.replacement.name()
                )));
            }
            let had_sq = st.square_channels.unwrap_or(1.0);
            if had_sq != l.square_channels {
                return Err(TrainError::Invalid(format!(
                    "{} holds a fine-tuning with {had_sq} of the positions squared, this run asks for {}; use another --out",
                    ckpt.display(),
                    l.square_channels
                )));
            }
            let had_init = st.poly_init.as_deref().unwrap_or(PolyInit::Fit.name());
            if quadratic && had_init != l.poly_init.name() {
                return Err(TrainError::Invalid(format!(
                    "{} holds a fine-tuning from --poly-init {had_init}, this run asks for {}; use another --out",
                    ckpt.display(),
                    l.poly_init.name()
                )));
            }
            // The channels chosen at the fit are in the model saved before the first epoch.
            if quadratic && best_dir.join(format::MODEL_FILE).exists() {
                let (m, _) = format::load(&best_dir)?;
                for (site, chans) in &m.public.affine_channels {
                    net.set_affine_channels(site, chans)?;
                }
                public.affine_channels = m.public.affine_channels.clone();
            }
            st
        }
        None => {
            if quadratic {
                // The binarized snapshot's running statistics are those of the soft
                // alphas (ResNet-20 at 10% of its ReLUs tests at about 12% with them),
                // and the quadratics change the network further: both accuracies are
                // taken after re-estimating them, so that they mean something. (The
                // first training steps replace them anyway.)
                let calib = || {
                    train
                        .first_batches(c.batch, BN_BATCHES, c.device)
                        .into_iter()
                        .map(|(x, _)| x)
                };
                // The coefficients start at the identity: this is the identity network.
                net.recalibrate_bn(calib());
                let acc_identity = accuracy(&net, test, c.batch, c.device);
                public.affine_channels = fit_poly(
                    &mut net,
                    &snap.public,
                    l.square_channels,
                    l.poly_init,
                    train,
                    c.batch,
                    c.device,
                    log,
                    b,
                )?;
                net.recalibrate_bn(calib());
                let acc = accuracy(&net, test, c.batch, c.device);
                log.write(json!({"phase": "poly_init", "budget": b.log_value(), "bn_batches": BN_BATCHES, "test_acc_identity": acc_identity, "test_acc": acc}))?;
                eprintln!(
                    "budget {b} before fine-tuning (batch-norm statistics re-estimated on {BN_BATCHES} batches): \
                     test acc {:.2}% with the identity, {:.2}% with the quadratics (--poly-init {})",
                    100.0 * acc_identity,
                    100.0 * acc,
                    l.poly_init.name()
                );
            }
            Default::default()
        }
    };
    st.replacement = Some(l.replacement.name().to_string());
    st.square_channels = (l.square_channels < 1.0).then_some(l.square_channels);
    st.poly_init =
        (quadratic && l.poly_init != PolyInit::Fit).then(|| l.poly_init.name().to_string());
    // Wall clock of this phase: earlier invocations' (from the checkpoint) plus this one's.
    let (start, before) = (Instant::now(), st.seconds);
    if best_dir.join(format::MODEL_FILE).exists() {
        let (m, _) = format::load(&best_dir)?;
        check_replacements(&m.public, &public, &best_dir.display().to_string())?;
    } else {
        // The binarized, not yet fine-tuned network is the first candidate.
        let acc = accuracy(&net, test, c.batch, c.device);
        st.best = acc;
        let m = export(
            &vs,
            &public,
            &masks,
            json!({"test_accuracy": acc, "finetune_epoch": 0}),
        )?;
        format::save(&m, &best_dir, true)?;
    }
    let poly_training = if quadratic {
        PolyTraining {
            penalty: l.poly_penalty,
            clip_grad: l.poly_clip_grad,
        }
    } else {
        PolyTraining::default()
    };
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
            poly_training,
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
                &public,
                &masks,
                json!({"test_accuracy": acc, "finetune_epoch": st.epoch}),
            )?;
            format::save(&m, &best_dir, true)?;
        }
        st.seconds = before + start.elapsed().as_secs_f64();
        save_checkpoint(&ckpt, &vs, &opt, &st)?;
        let mut line = json!({
            "phase": "finetune", "budget": b.log_value(), "epoch": st.epoch, "lr": lr, "loss": s.loss, "ce": s.ce, "kd": s.kd,
            "relu_count": kept, "train_acc": s.train_acc, "test_acc": acc, "best_test_acc": st.best,
            "seconds": before + start.elapsed().as_secs_f64(),
        });
        if quadratic {
            line["replacement"] = json!(l.replacement.name());
            line["poly_penalty"] = json!(s.penalty);
            line["clipped_steps"] = json!(s.clipped);
            line["max_grad_norm"] = json!(s.max_grad_norm);
        }
        log.write(line)?;
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
        "method": if quadratic { "SNL, quadratic replacement (AutoReP-style)" } else { "SNL" },
        "replacement": l.replacement.name(),
        "base_model": l.model.display().to_string(),
        "dataset": c.dataset.name(),
        "budget": match b {
            Target::Relus(n) => n,
            Target::LatencyMs(_) => kept,
        },
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
            "replacement": l.replacement.name(),
            "square_channels": if quadratic { json!(l.square_channels) } else { json!(null) },
            "poly_init": if quadratic { json!(l.poly_init.name()) } else { json!(null) },
            "poly_penalty": poly_training.penalty, "poly_penalty_radius": poly::PENALTY_RADIUS,
            "poly_clip_grad": poly_training.clip_grad,
            "poly_fit_batches": if quadratic { json!(FIT_BATCHES) } else { json!(null) },
        },
        "base_provenance": base.provenance,
    });
    if let Target::LatencyMs(ms) = b {
        best.provenance["latency_budget_ms"] = json!(ms);
    }
    if let Some(pricing) = &l.pricing {
        let p = latency::predict_public(&best.public, pricing, 1.0)?;
        best.provenance["latency"] = latency::describe(&p, pricing);
        best.provenance["hyperparameters"]["penalty_weights"] = json!(run.weights);
    }
    format::save(&best, &out_dir, true)?;
    outcome(&best, st.best, out_dir)
}
