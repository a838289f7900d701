//! Training-step throughput: a built-in architecture's pretraining step timed with
//! libtorch ([`StepBench`], [`step_throughput`]), and its comparison with the same step
//! in Python PyTorch ([`compare`], what `snl-train bench` runs).

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use models::arch;
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;
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

/// A comparison of training-step throughput with Python PyTorch: the same network, the
/// same torch wheel, the same threads and batch. Both processes stay up and take turns:
/// each round times `steps` steps of one, then of the other (the order alternates), so
/// that load from other processes hits both alike.
#[derive(Clone, Debug)]
pub struct Compare {
    /// Architecture.
    pub arch: String,
    /// Batch size.
    pub batch: usize,
    /// Timed steps per round and side.
    pub steps: usize,
    /// Rounds.
    pub rounds: usize,
    /// Untimed warm-up steps (each side, before the first round).
    pub warmup: usize,
    /// libtorch intra-op threads, for both.
    pub threads: i32,
    /// Python interpreter with the full torch wheel.
    pub python: PathBuf,
    /// The PyTorch side: `scripts/torch_step_bench.py`, run with `--serve`.
    pub script: PathBuf,
}

/// The outcome of a [`Compare`].
#[derive(Clone, Debug)]
pub struct Comparison {
    /// What was compared.
    pub settings: Compare,
    /// snl-train's images per second over all rounds.
    pub ours_images_per_second: f64,
    /// PyTorch's images per second over all rounds.
    pub pytorch_images_per_second: f64,
    /// snl-train's throughput over PyTorch's.
    pub ratio: f64,
    /// Per round: PyTorch's seconds over snl-train's.
    pub round_ratios: Vec<f64>,
    /// The median of `round_ratios`.
    pub round_ratio_median: f64,
    /// The lowest and the highest of `round_ratios`.
    pub round_ratio_range: (f64, f64),
    /// True when the rounds disagree by more than 25%. Rounds of a quiet machine agree
    /// within about 10%; far apart means that other processes took the cores during some
    /// rounds, and the totals say little.
    pub rounds_disagree: bool,
    /// (snl-train seconds, PyTorch seconds) per round.
    pub round_seconds: Vec<(f64, f64)>,
    /// The PyTorch side's greeting (its torch version, threads, ...).
    pub pytorch: serde_json::Value,
}

/// The PyTorch side of [`compare`]: `scripts/torch_step_bench.py --serve`, kept running.
struct PySide {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// A [`TrainError::PyTorch`] of `what` and its cause.
fn py_err(what: impl fmt::Display) -> impl FnOnce(std::io::Error) -> TrainError {
    move |e| TrainError::PyTorch(format!("{what}: {e}"))
}

impl PySide {
    fn start(a: &Compare) -> Result<(Self, serde_json::Value), TrainError> {
        let mut child = Command::new(&a.python)
            .arg(&a.script)
            .args([
                "--serve".to_string(),
                a.arch.clone(),
                a.batch.to_string(),
                a.threads.to_string(),
                a.warmup.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(py_err(format_args!(
                "running {} {}",
                a.python.display(),
                a.script.display()
            )))?;
        let missing = |what: &str| TrainError::PyTorch(what.to_string());
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| missing("the PyTorch side's stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| missing("its stdout"))?);
        let mut side = PySide {
            child,
            stdin,
            stdout,
        };
        let ready = side.read().map_err(|e| {
            TrainError::PyTorch(format!(
                "the PyTorch side did not start (it needs the full torch wheel: .venv/bin/pip install torch==2.11.0): {e}"
            ))
        })?;
        Ok((side, ready))
    }

    fn read(&mut self) -> Result<serde_json::Value, TrainError> {
        let mut line = String::new();
        let n = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| TrainError::PyTorch(e.to_string()))?;
        if n == 0 {
            return Err(TrainError::PyTorch("the PyTorch side exited".into()));
        }
        serde_json::from_str(&line)
            .map_err(|e| TrainError::PyTorch(format!("parsing the PyTorch side's {line:?}: {e}")))
    }

    /// Seconds of `steps` steps.
    fn run(&mut self, steps: usize) -> Result<f64, TrainError> {
        writeln!(self.stdin, "{steps}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| TrainError::PyTorch(e.to_string()))?;
        self.read()?["seconds"]
            .as_f64()
            .ok_or_else(|| TrainError::PyTorch("no seconds from the PyTorch side".into()))
    }

    fn finish(self) -> Result<(), TrainError> {
        let PySide {
            mut child, stdin, ..
        } = self;
        drop(stdin);
        let status = child
            .wait()
            .map_err(|e| TrainError::PyTorch(e.to_string()))?;
        if !status.success() {
            return Err(TrainError::PyTorch(format!(
                "the PyTorch side failed: {status}"
            )));
        }
        Ok(())
    }
}

/// Runs a [`Compare`]: sets libtorch's threads, warms up both sides, then alternates
/// rounds (odd rounds start with PyTorch).
pub fn compare(a: &Compare) -> Result<Comparison, TrainError> {
    if a.threads < 1 || a.batch == 0 || a.steps == 0 || a.rounds == 0 {
        return Err(TrainError::Invalid(
            "--threads, --batch, --steps and --rounds must be positive".into(),
        ));
    }
    tch::set_num_threads(a.threads);
    let mut ours = StepBench::new(&a.arch, a.batch, Device::Cpu)?;
    ours.run(a.warmup);
    let (mut py, ready) = PySide::start(a)?;
    // (snl-train seconds, PyTorch seconds) per round; odd rounds start with PyTorch.
    let mut secs = Vec::with_capacity(a.rounds);
    for r in 0..a.rounds {
        let (o, t) = if r % 2 == 0 {
            let o = ours.run(a.steps);
            (o, py.run(a.steps)?)
        } else {
            let t = py.run(a.steps)?;
            (ours.run(a.steps), t)
        };
        secs.push((o, t));
    }
    py.finish()?;
    let images = (a.batch * a.steps * a.rounds) as f64;
    let ours_total: f64 = secs.iter().map(|s| s.0).sum();
    let theirs_total: f64 = secs.iter().map(|s| s.1).sum();
    let ours_ips = images / ours_total;
    let theirs_ips = images / theirs_total;
    let per_round: Vec<f64> = secs.iter().map(|(o, t)| t / o).collect();
    let mut sorted = per_round.clone();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        0.5 * (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2])
    };
    Ok(Comparison {
        settings: a.clone(),
        ours_images_per_second: ours_ips,
        pytorch_images_per_second: theirs_ips,
        ratio: ours_ips / theirs_ips,
        round_ratios: per_round,
        round_ratio_median: median,
        round_ratio_range: (lo, hi),
        rounds_disagree: hi > 1.25 * lo,
        round_seconds: secs,
        pytorch: ready,
    })
}

impl Comparison {
    /// The report as one JSON object (schema `snl-train-bench/2`).
    pub fn to_json(&self) -> serde_json::Value {
        let a = &self.settings;
        serde_json::json!({
            "schema": "snl-train-bench/2", "rounds_disagree": self.rounds_disagree, "arch": a.arch, "batch": a.batch,
            "steps_per_round": a.steps, "rounds": a.rounds, "warmup": a.warmup,
            "threads": a.threads, "snl_train_images_per_second": self.ours_images_per_second,
            "pytorch_images_per_second": self.pytorch_images_per_second, "ratio": self.ratio,
            "round_ratio_median": self.round_ratio_median, "round_ratios": self.round_ratios,
            "round_seconds": self.round_seconds, "pytorch": self.pytorch,
        })
    }
}

/// The report as text, one line per measure.
impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.settings;
        let (ours_ips, theirs_ips, ratio) = (
            self.ours_images_per_second,
            self.pytorch_images_per_second,
            self.ratio,
        );
        let (lo, hi) = self.round_ratio_range;
        let median = self.round_ratio_median;
        writeln!(
            f,
            "{}, batch {}, {} threads, {} rounds of {} timed steps each (SGD momentum, cross-entropy):",
            a.arch, a.batch, a.threads, a.rounds, a.steps
        )?;
        writeln!(f, "  snl-train (tch)  {ours_ips:>9.1} images/s")?;
        writeln!(f, "  PyTorch (Python) {theirs_ips:>9.1} images/s")?;
        writeln!(f, "  ratio            {ratio:>9.3}")?;
        writeln!(
            f,
            "  per round        {lo:.3} to {hi:.3}, median {median:.3}"
        )?;
        if self.rounds_disagree {
            writeln!(
                f,
                "  the rounds disagree by more than 25%: other processes took the cores during some rounds; rerun on a quiet machine"
            )?;
        }
        Ok(())
    }
}
