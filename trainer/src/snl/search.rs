//! The mask search: one trainable alpha per ReLU position (or channel), trained with
//! cross-entropy, distillation from the frozen pretrained network and lambda times the
//! alphas' L1 norm, lambda grown after slow epochs. Each time the ReLU count falls to a
//! budget, the top-k mask is snapshotted (one search yields every budget's mask).
//!
//! With latency pricing ([`super::settings::Pricing`]) each site's alphas weigh what its
//! ReLUs cost online ([`super::latency::site_weights`]), and a latency budget is reached
//! when the mask at the threshold is predicted to fit it ([`super::latency::fill`]).

use std::time::Instant;

use models::format;
use models::model::Replacement;
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
use super::latency::{self, kept_of};
use super::run::{Linearization, PhaseState, load_checkpoint, save_checkpoint, snapshot_dir};
use super::settings::{Linearize, Target};

/// Steps between two checks of the ReLU count against the pending budgets during the
/// mask search.
const BUDGET_CHECK_STEPS: usize = 10;

/// Runs (or resumes) the mask search until every budget has its snapshot; nothing to do
/// when all snapshots exist.
pub(super) fn search(run: &mut Linearization) -> Result<(), TrainError> {
    let (l, base, total, budgets) = (run.l, &run.base, run.total, &run.budgets);
    let run_priced = &run.priced;
    let c = &l.common;
    let (train, test, teacher, log) = (&run.train, &run.test, &run.teacher, &run.log);
    let stop = &mut run.stop;
    let search_dir = c.out.join("search");
    let snapshot = |t: Target| snapshot_dir(&c.out, t);
    let all_snapped = budgets
        .iter()
        .all(|&b| snapshot(b).join(format::MODEL_FILE).exists());
    if all_snapped {
        return Ok(());
    }
    tch::manual_seed(c.seed as i64);
    let mut vs = VarStore::new(c.device);
    let mut net = Net::new(&vs, &base.public.graph, Some(l.granularity))?;
    net.set_alpha_weights(run.weights.clone())?;
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
    // What the penalty is weighted by, kept with the checkpoint: a search resumed under
    // other pricing would mix two penalties.
    let pricing = l.pricing.as_ref().map(|p| {
        let mut v = json!({"rtt_ms": p.link.rtt_ms, "mbit": p.link.mbit, "latency_model": p.model});
        // Only where it prices fewer squares: checkpoints of before keep resuming.
        if l.square_channels < 1.0 {
            v["square_share"] = json!(l.square_channels);
        }
        // A quadratic site keeps its round and pays for its squares even where its mask
        // empties, so its ReLUs are priced otherwise than an identity site's: the masks
        // of an identity-priced search are not a quadratic run's (and the other way).
        // Recorded only for a replacement other than SNL's, so checkpoints of before resume.
        if l.replacement != Replacement::Identity {
            v["replacement"] = json!(l.replacement.name());
        }
        v
    });
    let mut st = match load_checkpoint(&ckpt, &mut vs, &mut opt)? {
        Some(s) => {
            if s.pricing != pricing {
                let show = |p: &Option<serde_json::Value>| {
                    p.as_ref()
                        .map_or("SNL's unweighted penalty".to_string(), |v| {
                            format!("latency pricing {v}")
                        })
                };
                return Err(TrainError::Invalid(format!(
                    "{} holds a mask search with {}, this run asks for {}; use another --out",
                    ckpt.display(),
                    show(&s.pricing),
                    show(&pricing)
                )));
            }
            eprintln!("resuming mask search after epoch {}", s.epoch);
            s
        }
        None => PhaseState {
            pricing: pricing.clone(),
            lambda: l.lambda,
            lowest: net.relu_count(l.threshold)?,
            ..Default::default()
        },
    };
    // Wall clock of this phase: earlier invocations' (from the checkpoint) plus this one's.
    let (start, before) = (Instant::now(), st.seconds);
    loop {
        let pending: Vec<Target> = budgets
            .iter()
            .copied()
            .filter(|&t| !st.has_crossed(t))
            .collect();
        if pending.is_empty() {
            break;
        }
        if st.epoch >= l.max_search_epochs {
            let names: Vec<String> = pending.iter().map(Target::to_string).collect();
            return Err(TrainError::Invalid(format!(
                "mask search stopped after {} epochs at {} ReLUs without reaching budget(s) {}; raise --max-search-epochs or --lambda",
                st.epoch,
                st.lowest,
                names.join(", ")
            )));
        }
        // The count can fall through several budgets within one epoch (every alpha
        // drifts down at about the Adam step size, then many cross the threshold
        // together), so it is checked every few steps and each budget is
        // snapshotted as soon as it is reached, not at the end of the epoch.
        let mut steps = 0usize;
        let mut crossed_now: Vec<Target> = Vec::new();
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
                let waiting: Vec<Target> = pending
                    .iter()
                    .copied()
                    .filter(|t| !crossed_now.contains(t))
                    .collect();
                let place = Place {
                    epoch: epoch_now,
                    step: Some(steps),
                    lambda: lambda_now,
                };
                crossed_now.extend(snapshot_reached(
                    &net, &vs, l, base, run_priced, &waiting, place,
                )?);
                Ok(())
            },
        )?;
        for t in crossed_now {
            st.mark_crossed(t);
        }
        let pending: Vec<Target> = pending
            .into_iter()
            .filter(|&t| !st.has_crossed(t))
            .collect();
        let masks = net.binary_masks(l.threshold)?;
        let count = kept_of(&masks);
        let acc = accuracy(&net, test, c.batch, c.device);
        st.epoch += 1;
        let mut line = json!({
            "phase": "search", "epoch": st.epoch, "loss": s.loss, "ce": s.ce, "kd": s.kd, "alpha_l1": s.l1,
            "lambda": st.lambda, "relu_count": count, "train_acc": s.train_acc, "test_acc": acc,
            "seconds": before + start.elapsed().as_secs_f64(),
        });
        let mut predicted = String::new();
        if let Some(pricing) = &l.pricing {
            let p = latency::predict(run_priced, &masks, pricing, l.square_channels)?;
            line["predicted_online_ms"] = json!(p.online_ms);
            predicted = format!(", predicted online {:.2} ms", p.online_ms);
        }
        log.write(line)?;
        eprintln!(
            "search epoch {}: {count} ReLUs ({:.2}%){predicted}, lambda {:.3e}, loss {:.4}, test acc {:.2}%",
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
        let place = Place {
            epoch: st.epoch,
            step: None,
            lambda: st.lambda,
        };
        for t in snapshot_reached(&net, &vs, l, base, run_priced, &pending, place)? {
            st.mark_crossed(t);
        }
        st.seconds = before + start.elapsed().as_secs_f64();
        save_checkpoint(&ckpt, &vs, &opt, &st)?;
        stop.epoch_done()?;
    }
    Ok(())
}

/// Where in the search a snapshot is taken.
#[derive(Clone, Copy, Debug)]
struct Place {
    epoch: usize,
    /// The step within the epoch; `None`: at its end.
    step: Option<usize>,
    lambda: f64,
}

/// Snapshots every target of `waiting` that the search has reached: a ReLU budget when
/// the count at the threshold is within it (its top-k mask), a latency budget when the
/// mask at the threshold is predicted to fit it ([`latency::fill`]). `place` goes into
/// each snapshot's provenance. Returns the targets snapshotted.
fn snapshot_reached(
    net: &Net,
    vs: &VarStore,
    l: &Linearize,
    base: &models::Model,
    priced: &models::model::PublicModel,
    waiting: &[Target],
    place: Place,
) -> Result<Vec<Target>, TrainError> {
    if waiting.is_empty() {
        return Ok(Vec::new());
    }
    let at_threshold = net.binary_masks(l.threshold)?;
    let count = kept_of(&at_threshold);
    let mut predicted = None;
    let mut done = Vec::new();
    for &t in waiting {
        let mut prov = json!({"phase": "search", "epoch": place.epoch, "lambda": place.lambda, "relu_count_at_threshold": count});
        if let Some(step) = place.step {
            prov["step"] = json!(step);
        }
        let masks = match t {
            Target::Relus(b) if count <= b => {
                prov["budget"] = json!(b);
                net.top_k_masks(b)?
            }
            Target::Relus(_) => continue,
            Target::LatencyMs(ms) => {
                let Some(pricing) = &l.pricing else {
                    return Err(TrainError::Invalid(
                        "a latency budget needs a cost model".into(),
                    ));
                };
                let now = match predicted {
                    Some(p) => p,
                    None => {
                        let p =
                            latency::predict(priced, &at_threshold, pricing, l.square_channels)?
                                .online_ms;
                        predicted = Some(p);
                        p
                    }
                };
                if now > ms {
                    continue;
                }
                let (masks, p) =
                    latency::fill(net, priced, (pricing, l.square_channels), ms, &at_threshold)?;
                prov["latency_budget_ms"] = json!(ms);
                prov["prediction"] = latency::describe(&p, pricing);
                if l.square_channels < 1.0 {
                    // An upper bound until the fine-tune chooses the affine channels.
                    prov["prediction"]["square_share"] = json!(l.square_channels);
                }
                masks
            }
        };
        let kept = kept_of(&masks);
        prov["relu_kept"] = json!(kept);
        let m = export(vs, &base.public, &masks, prov)?;
        format::save(&m, &snapshot_dir(&l.common.out, t), true)?;
        let at = match place.step {
            Some(s) => format!("in epoch {} at step {s}", place.epoch),
            None => format!("at epoch {}", place.epoch),
        };
        eprintln!(
            "budget {t} reached {at} ({count} ReLUs at the threshold): mask of {kept} ReLUs snapshotted"
        );
        done.push(t);
    }
    Ok(done)
}
