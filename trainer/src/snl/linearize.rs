//! A linearization run: checks the request, resolves the budgets, then runs the mask
//! search ([`super::search`]) and fine-tunes each budget's snapshot
//! ([`super::finetune`]).

use models::format;
use serde_json::json;

use crate::error::TrainError;

use super::epoch::load_sets;
use super::eval::{accuracy, teacher_net};
use super::finetune::{Outcome, finetune};
use super::run::{Linearization, RunLog, StopAfter};
use super::search::search;
use super::settings::Linearize;

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
    let (teacher_vs, teacher) = teacher_net(&base, c.device)?;
    let teacher_acc = accuracy(&teacher, &test, c.batch, c.device);
    log.write(json!({"phase": "start", "model": l.model.display().to_string(), "relu_total": total, "teacher_test_acc": teacher_acc, "budgets": budgets, "replacement": l.replacement.name()}))?;

    let mut run = Linearization {
        l,
        stop: StopAfter::new(c),
        base,
        total,
        budgets,
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
