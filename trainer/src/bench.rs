//! Training-step throughput: a built-in architecture's pretraining step timed with
//! libtorch ([`StepBench`], [`step_throughput`]), the measure `snl-train bench` compares
//! with Python PyTorch.

use std::time::Instant;

use models::arch;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::TrainError;
use crate::net::Net;
use crate::optim::{Optimizer, sgd};

/// One built-in architecture set up for timing training steps in pretraining mode:
/// forward, cross-entropy, backward and an SGD step (momentum 0.9, weight decay 5e-4) on a
/// fixed random batch. The counterpart of `scripts/torch_step_bench.py`, which does the
/// same in Python PyTorch; `snl-train bench` alternates rounds of both.
#[derive(Debug)]
pub struct StepBench {
    _vs: VarStore,
    net: Net,
    opt: Optimizer,
    x: Tensor,
    y: Tensor,
    batch: usize,
}

impl StepBench {
    /// Builds the network (seed 0), its optimizer and a random batch of `batch` images.
    pub fn new(arch_name: &str, batch: usize, device: Device) -> Result<Self, TrainError> {
        let info = arch::info(arch_name)?;
        let graph = arch::build(arch_name, 10, info.default_input)?;
        tch::manual_seed(0);
        let vs = VarStore::new(device);
        let net = Net::new(&vs, &graph, None)?;
        let opt = sgd(&vs);
        let [c, h, w] = info.default_input;
        let x = Tensor::randn(
            [batch as i64, c as i64, h as i64, w as i64],
            (Kind::Float, device),
        );
        let y = Tensor::randint(10, [batch as i64], (Kind::Int64, device));
        Ok(StepBench {
            _vs: vs,
            net,
            opt,
            x,
            y,
            batch,
        })
    }

    /// Images per step.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Runs `steps` training steps and returns the seconds they took.
    pub fn run(&mut self, steps: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..steps {
            self.opt.zero_grad();
            let loss = self
                .net
                .forward_t(&self.x, true)
                .cross_entropy_for_logits(&self.y);
            loss.backward();
            self.opt.step(0.1);
        }
        start.elapsed().as_secs_f64()
    }
}

/// Training-step throughput (images per second) of a built-in architecture in pretraining
/// mode ([`StepBench`]), timed over `steps` steps after `warmup` untimed ones.
pub fn step_throughput(
    arch_name: &str,
    batch: usize,
    steps: usize,
    warmup: usize,
    device: Device,
) -> Result<f64, TrainError> {
    let mut b = StepBench::new(arch_name, batch, device)?;
    b.run(warmup);
    let secs = b.run(steps);
    Ok((batch * steps) as f64 / secs.max(1e-9))
}
