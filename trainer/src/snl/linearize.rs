//! A linearization run: checks the request, resolves the budgets, then runs the mask
//! search ([`super::search`]) and fine-tunes each budget's snapshot
//! ([`super::finetune`]).

use models::format;
use models::model::Replacement;
use serde_json::json;

use crate::error::TrainError;

use super::epoch::load_sets;
use super::eval::{accuracy, teacher_net};
use super::finetune::{Outcome, finetune};
use super::latency;
use super::run::{Linearization, RunLog, StopAfter};
use super::search::search;
use super::settings::{Linearize, Target};

/// Runs the mask search through every budget, then fine-tunes each snapshot; writes
/// `<out>/budget-<N>` model directories and returns them.
pub fn linearize(l: &Linearize) -> Result<Vec<Outcome>, TrainError> {
    let c = &l.common;
    // Checked before anything is read, so a bad request fails fast.
    if l.poly_init != crate::poly::PolyInit::Fit && l.replacement != Replacement::Quadratic {
        return Err(TrainError::Invalid(
            "--poly-init applies to --replacement quadratic".into(),
        ));
    }
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
    if base.public.has_quadratic() {
        return Err(TrainError::Invalid(format!(
            "{} has quadratic replacements; the mask search starts from a model whose \
             dropped positions are the identity",
            l.model.display()
        )));
    }
    for (what, v) in [
        ("penalty", l.poly_penalty),
        ("gradient clip", l.poly_clip_grad),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(TrainError::Invalid(format!(
                "the poly {what} must be finite and non-negative, not {v}"
            )));
        }
    }
    if !(l.square_channels > 0.0 && l.square_channels <= 1.0) {
        return Err(TrainError::Invalid(format!(
            "the fraction of squared positions must be in (0, 1], not {}",
            l.square_channels
        )));
    }
    if l.square_channels < 1.0 && l.replacement != Replacement::Quadratic {
        return Err(TrainError::Invalid(
            "--square-channels applies to --replacement quadratic".into(),
        ));
    }
    if l.budgets.is_empty() && l.latency_budgets.is_empty() {
        return Err(TrainError::Invalid(
            "give at least one --budget or --latency-budget".into(),
        ));
    }
    let total = base.public.relu_total();
    let start_count = base.public.relu_kept();
    let mut counts: Vec<usize> = l.budgets.iter().map(|b| b.resolve(total)).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts.dedup();
    if let Some(b) = counts.iter().find(|&&b| b == 0 || b >= start_count) {
        return Err(TrainError::Invalid(format!(
            "budget {b} must be positive and below the model's {start_count} kept ReLUs"
        )));
    }
    // Latencies are predicted for the models the run exports: with the requested
    // replacement at every site (a quadratic site keeps its round and costs its squares'
    // bytes even where the mask is empty), and with --square-channels of each quadratic
    // site's linearized positions squared (the most the fine-tune's choice squares).
    let mut priced = base.public.clone();
    if l.replacement != Replacement::Identity {
        let sites: Vec<String> = priced.masks.keys().cloned().collect();
        for site in &sites {
            priced.set_replacement(site, l.replacement)?;
        }
    }
    let mut latencies = l.latency_budgets.clone();
    latencies.sort_unstable_by(|a, b| b.total_cmp(a));
    latencies.dedup();
    let weights = match &l.pricing {
        Some(pricing) => {
            pricing.model.validate()?;
            let link = pricing.link;
            if !(link.rtt_ms.is_finite() && link.rtt_ms >= 0.0)
                || link.mbit.is_some_and(|r| !(r.is_finite() && r > 0.0))
            {
                return Err(TrainError::Invalid(format!(
                    "the link needs a finite RTT >= 0 and a positive rate, not {} ms and {:?} Mbit/s",
                    link.rtt_ms, link.mbit
                )));
            }
            let (floor, now) = latency::range(&priced, pricing, l.square_channels)?;
            for &ms in &latencies {
                if !(ms.is_finite() && ms > 0.0) {
                    return Err(TrainError::Invalid(format!(
                        "latency budget {ms} ms must be positive and finite"
                    )));
                }
                if ms < floor {
                    return Err(TrainError::Invalid(format!(
                        "latency budget {ms} ms is below the {floor:.2} ms predicted for {} with \
                         every ReLU linearized (its linear layers and rounds); the model cannot get faster",
                        l.model.display()
                    )));
                }
                if ms >= now {
                    return Err(TrainError::Invalid(format!(
                        "latency budget {ms} ms is not below the {now:.2} ms predicted for {} as it is",
                        l.model.display()
                    )));
                }
            }
            eprintln!(
                "latency pricing: {} predicted at {now:.2} ms online as it is, {floor:.2} ms with \
                 every ReLU linearized (RTT {} ms, {})",
                l.model.display(),
                link.rtt_ms,
                link.mbit
                    .map_or("no rate limit".to_string(), |r| format!("{r} Mbit/s"))
            );
            latency::site_weights(&priced, pricing, l.square_channels)?
        }
        None if !latencies.is_empty() => {
            return Err(TrainError::Invalid(
                "a latency budget needs a cost model (--cost-model, from snl-bench model-cost --save)"
                    .into(),
            ));
        }
        None => Default::default(),
    };
    let budgets: Vec<Target> = counts
        .into_iter()
        .map(Target::Relus)
        .chain(latencies.into_iter().map(Target::LatencyMs))
        .collect();
    let norm = base.public.normalization.clone();
    let (train, test) = load_sets(c, &norm)?;
    let log = RunLog::new(&c.out)?;
    let (teacher_vs, teacher) = teacher_net(&base, c.device)?;
    let teacher_acc = accuracy(&teacher, &test, c.batch, c.device);
    let keys: Vec<serde_json::Value> = budgets.iter().map(Target::log_value).collect();
    let mut start = json!({"phase": "start", "model": l.model.display().to_string(), "relu_total": total, "teacher_test_acc": teacher_acc, "budgets": keys, "replacement": l.replacement.name()});
    if !weights.is_empty() {
        start["penalty_weights"] = json!(weights);
    }
    log.write(start)?;

    let mut run = Linearization {
        l,
        stop: StopAfter::new(c),
        base,
        total,
        budgets,
        weights,
        priced,
        train,
        test,
        teacher,
        _teacher_vs: teacher_vs,
        teacher_acc,
        log,
    };
    search(&mut run)?;
    let mut outcomes = Vec::new();
    for b in run.budgets.clone() {
        outcomes.push(finetune(&mut run, b)?);
    }
    Ok(outcomes)
}
