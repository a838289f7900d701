//! SGD with momentum and Adam, written out so their state can be checkpointed: a killed
//! run resumes with the same moments and continues exactly as if it had not stopped.
//! Semantics follow PyTorch's `torch.optim.SGD` (dampening 0, no Nesterov, weight decay
//! added to the gradient) and `torch.optim.Adam` (no weight decay, bias-corrected).

use std::collections::BTreeMap;

use tch::Tensor;
use tch::nn::VarStore;

/// Which optimizer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// SGD with momentum and weight decay.
    Sgd {
        /// Momentum.
        momentum: f64,
        /// Weight decay.
        weight_decay: f64,
    },
    /// Adam.
    Adam {
        /// beta1.
        beta1: f64,
        /// beta2.
        beta2: f64,
        /// epsilon.
        eps: f64,
    },
}

/// An optimizer over named parameters.
#[derive(Debug)]
pub struct Optimizer {
    kind: Kind,
    params: Vec<(String, Tensor)>,
    state: BTreeMap<String, Tensor>,
    step: i64,
}

impl Optimizer {
    /// Optimizes the given named parameters (those with `requires_grad`).
    pub fn new(kind: Kind, params: Vec<(String, Tensor)>) -> Self {
        let mut params: Vec<_> = params
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Optimizer {
            kind,
            params,
            state: BTreeMap::new(),
            step: 0,
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// Sets SGD's momentum from the next step on (a one-cycle schedule cycles it, as
    /// PyTorch's `OneCycleLR` does); no effect on Adam.
    pub fn set_momentum(&mut self, m: f64) {
        if let Kind::Sgd { momentum, .. } = &mut self.kind {
            *momentum = m;
        }
    }

    /// Divides every gradient by `scale` (undoing a scaled loss's backward pass) and
    /// says whether they are all finite; if not, the step should be skipped.
    pub fn unscale(&mut self, scale: f64) -> bool {
        tch::no_grad(|| {
            let mut total: Option<Tensor> = None;
            for (_, p) in &mut self.params {
                let mut g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = g.g_div_scalar_(scale);
                let s = g.abs().sum(tch::Kind::Float);
                total = Some(match total {
                    Some(t) => t + s,
                    None => s,
                });
            }
            total.is_none_or(|t| t.double_value(&[]).is_finite())
        })
    }

    /// Scales the gradients down so that their global L2 norm is at most `max` (as
    /// PyTorch's `clip_grad_norm_`, without its epsilon) and returns the norm before
    /// clipping.
    pub fn clip_grad_norm(&mut self, max: f64) -> f64 {
        tch::no_grad(|| {
            let mut total = 0.0;
            for (_, p) in &self.params {
                let g = p.grad();
                if g.defined() {
                    total += g.square().sum(tch::Kind::Double).double_value(&[]);
                }
            }
            let norm = total.sqrt();
            if norm > max {
                for (_, p) in &mut self.params {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.g_mul_scalar_(max / norm);
                    }
                }
            }
            norm
        })
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        self.step += 1;
        let t = self.step;
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                match self.kind {
                    Kind::Sgd {
                        momentum,
                        weight_decay,
                    } => {
                        let d = if weight_decay != 0.0 {
                            &g + &*p * weight_decay
                        } else {
                            g.shallow_clone()
                        };
                        let key = format!("{name}.momentum");
                        let buf = match self.state.get_mut(&key) {
                            Some(b) => {
                                let _ = b.g_mul_scalar_(momentum).g_add_(&d);
                                b.shallow_clone()
                            }
                            None => {
                                let b = d.detach().copy();
                                self.state.insert(key, b.shallow_clone());
                                b
                            }
                        };
                        let _ = p.g_sub_(&(buf * lr));
                    }
                    Kind::Adam { beta1, beta2, eps } => {
                        let m = self
                            .state
                            .entry(format!("{name}.exp_avg"))
                            .or_insert_with(|| g.zeros_like());
                        let _ = m.g_mul_scalar_(beta1).g_add_(&(&g * (1.0 - beta1)));
                        let m = m.shallow_clone();
                        let v = self
                            .state
                            .entry(format!("{name}.exp_avg_sq"))
                            .or_insert_with(|| g.zeros_like());
                        let _ = v.g_mul_scalar_(beta2).g_add_(&(&g * &g * (1.0 - beta2)));
                        let v = v.shallow_clone();
                        let bc1 = 1.0 - beta1.powi(t as i32);
                        let bc2 = 1.0 - beta2.powi(t as i32);
                        let denom = (v / bc2).sqrt() + eps;
                        let _ = p.g_sub_(&(m / denom * (lr / bc1)));
                    }
                }
            }
        });
    }

    /// The state to checkpoint: moments by parameter name, and the step count.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        (
            self.state
                .iter()
                .map(|(k, v)| (k.clone(), v.shallow_clone()))
                .collect(),
            self.step,
        )
    }

    /// Restores a checkpointed state.
    pub fn restore(&mut self, state: Vec<(String, Tensor)>, step: i64) {
        self.state = state.into_iter().collect();
        self.step = step;
    }
}

/// Every variable of a var store by name, for an optimizer.
pub(crate) fn named_params(vs: &VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().collect()
}

/// SNL's SGD for pretraining and fine-tuning: momentum 0.9, weight decay 5e-4.
pub(crate) fn sgd(vs: &VarStore) -> Optimizer {
    Optimizer::new(
        Kind::Sgd {
            momentum: 0.9,
            weight_decay: 5e-4,
        },
        named_params(vs),
    )
}

/// Dynamic loss scaling for float16 mixed precision (as PyTorch's `GradScaler`): the loss
/// is multiplied by `scale` before the backward pass so that small gradients survive in
/// float16; a step whose unscaled gradients are not finite is skipped and halves the
/// scale, and 2,000 good steps in a row double it.
#[derive(Clone, Debug)]
pub struct LossScaler {
    /// The current scale.
    pub scale: f64,
    good: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler {
            scale: 65536.0,
            good: 0,
        }
    }
}

impl LossScaler {
    /// Records whether the last step's gradients were finite.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good += 1;
            if self.good >= 2000 {
                self.scale *= 2.0;
                self.good = 0;
            }
        } else {
            self.scale = (self.scale / 2.0).max(1.0);
            self.good = 0;
        }
    }
}
