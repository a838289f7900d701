//! Learning-rate schedules of pretraining, set per optimizer step.
//!
//! [`Schedule::OneCycle`] follows PyTorch's `torch.optim.lr_scheduler.OneCycleLR` with its
//! defaults (Smith and Topuzian, 2019): the learning rate rises from `max_lr / 25` to
//! `max_lr` over the first `pct_start` of all steps and falls to `max_lr / 25 / 1e4`
//! over the rest, both along half a cosine, while SGD's momentum moves the other way
//! between 0.95 and 0.85. [`Schedule::Step`] is the multi-step decay of SNL's
//! reference pretraining (x0.1 at 50% and 75% of the epochs), constant within an epoch.

use std::f64::consts::PI;
use std::str::FromStr;

/// How the learning rate (and SGD's momentum) changes over pretraining.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// One cycle: cosine warm-up over `pct_start` of the steps, then cosine annealing.
    OneCycle {
        /// Fraction of all steps spent warming up (0 < pct_start < 1).
        pct_start: f64,
    },
    /// x0.1 at 50% and 75% of the epochs.
    Step,
}

/// The optimizer settings of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSetting {
    /// Learning rate.
    pub lr: f64,
    /// SGD momentum, where the schedule sets it.
    pub momentum: Option<f64>,
}

const DIV_FACTOR: f64 = 25.0;
const FINAL_DIV_FACTOR: f64 = 1e4;
const MOMENTUM_LOW: f64 = 0.85;
const MOMENTUM_HIGH: f64 = 0.95;

/// `end + (start - end) / 2 * (1 + cos(pi * pct))`: from `start` at 0 to `end` at 1.
fn cos_anneal(start: f64, end: f64, pct: f64) -> f64 {
    end + (start - end) / 2.0 * (1.0 + (PI * pct).cos())
}

impl Schedule {
    /// The setting of step `step` (0-based, over the whole run) of `steps_per_epoch *
    /// epochs` steps, with peak (one-cycle) or initial (step) learning rate `lr`.
    pub fn at(self, lr: f64, step: usize, steps_per_epoch: usize, epochs: usize) -> StepSetting {
        match self {
            Schedule::Step => {
                let epoch = step / steps_per_epoch.max(1);
                let decay = [epochs / 2, epochs * 3 / 4]
                    .iter()
                    .filter(|&&m| m > 0 && epoch >= m)
                    .count();
                StepSetting {
                    lr: lr * 0.1f64.powi(decay as i32),
                    momentum: None,
                }
            }
            Schedule::OneCycle { pct_start } => {
                let total = (steps_per_epoch * epochs).max(1) as f64;
                let initial = lr / DIV_FACTOR;
                let min = initial / FINAL_DIV_FACTOR;
                let end_warm = (pct_start * total - 1.0).max(1.0);
                let end = (total - 1.0).max(end_warm + 1.0);
                let s = step as f64;
                let (lr, m) = if s <= end_warm {
                    let p = s / end_warm;
                    (
                        cos_anneal(initial, lr, p),
                        cos_anneal(MOMENTUM_HIGH, MOMENTUM_LOW, p),
                    )
                } else {
                    let p = ((s - end_warm) / (end - end_warm)).min(1.0);
                    (
                        cos_anneal(lr, min, p),
                        cos_anneal(MOMENTUM_LOW, MOMENTUM_HIGH, p),
                    )
                };
                StepSetting {
                    lr,
                    momentum: Some(m),
                }
            }
        }
    }

    /// A short description for logs and provenance.
    pub fn describe(self) -> String {
        match self {
            Schedule::OneCycle { pct_start } => format!(
                "one-cycle (cosine, warm-up {:.0}% of steps, lr from max/25 to max to max/2.5e5, momentum 0.95-0.85-0.95)",
                100.0 * pct_start
            ),
            Schedule::Step => "step (x0.1 at 50% and 75% of the epochs)".into(),
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// `one-cycle`, `one-cycle:0.15` (warm-up fraction) or `step`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("schedule {s:?}: expected one-cycle, one-cycle:PCT (0 < PCT < 1) or step");
        match s.trim() {
            "step" => Ok(Schedule::Step),
            "one-cycle" => Ok(Schedule::OneCycle { pct_start: 0.15 }),
            t => {
                let p: f64 = t
                    .strip_prefix("one-cycle:")
                    .ok_or_else(bad)?
                    .parse()
                    .map_err(|_| bad())?;
                if p > 0.0 && p < 1.0 {
                    Ok(Schedule::OneCycle { pct_start: p })
                } else {
                    Err(bad())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Learning rate and momentum of PyTorch 2.11's `OneCycleLR(SGD(lr=0.1, momentum=0.9),
    /// max_lr=0.1, total_steps=100, pct_start=0.15)` before each step, printed by Python.
    #[test]
    fn one_cycle_matches_pytorch() {
        let torch = [
            (0, 0.004, 0.95),
            (1, 0.00520346021527, 0.948746395609),
            (13, 0.0987965397847, 0.851253604391),
            (14, 0.1, 0.85),
            (15, 0.0999658531437, 0.850034146993),
            (56, 0.0509241415522, 0.899076054752),
            (98, 3.45468562609e-05, 0.949965853007),
            (99, 4e-07, 0.95),
        ];
        let s = Schedule::OneCycle { pct_start: 0.15 };
        for (i, lr, m) in torch {
            let got = s.at(0.1, i, 10, 10);
            assert!(
                (got.lr - lr).abs() <= 1e-11 + 1e-10 * lr,
                "step {i}: lr {} vs {lr}",
                got.lr
            );
            let gm = got.momentum.unwrap();
            assert!((gm - m).abs() <= 1e-11, "step {i}: momentum {gm} vs {m}");
        }
    }

    #[test]
    fn step_schedule() {
        let s = Schedule::Step;
        assert_eq!(s.at(0.1, 0, 10, 8).lr, 0.1);
        assert!((s.at(0.1, 40, 10, 8).lr - 0.01).abs() < 1e-15);
        assert!((s.at(0.1, 79, 10, 8).lr - 0.001).abs() < 1e-15);
        assert_eq!(s.at(0.1, 79, 10, 8).momentum, None);
    }

    #[test]
    fn parse() {
        assert_eq!("step".parse::<Schedule>(), Ok(Schedule::Step));
        assert_eq!(
            "one-cycle".parse::<Schedule>(),
            Ok(Schedule::OneCycle { pct_start: 0.15 })
        );
        assert_eq!(
            "one-cycle:0.3".parse::<Schedule>(),
            Ok(Schedule::OneCycle { pct_start: 0.3 })
        );
        assert!("one-cycle:1.5".parse::<Schedule>().is_err());
        assert!("cosine".parse::<Schedule>().is_err());
    }
}
