//! Helpers shared by the runtime's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::thread;

use models::Model;
use models::fixed::{Activation, FixedProgram};
use pi_runtime::engine::{ClientEngine, ClientOutput, PhaseMetrics, ServerEngine};
use pi_runtime::preprocess::Method;
use protocols::{CountingChannel, MemoryChannel};

/// A random model of a built-in architecture with a fraction `keep` of its ReLUs kept
/// (1.0 = all, 0.0 = none).
pub fn model(name: &str, keep: f64, seed: u64) -> Model {
    models::testing::random_model(name, keep, seed).unwrap()
}

/// The CIFAR-10 copy on the project's machines, if present (required under CI).
pub fn cifar10_dir() -> Option<PathBuf> {
    models::testing::shared_cifar10(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// One secure inference run by both parties over an in-memory channel pair.
pub struct Run {
    /// The client's result.
    pub out: ClientOutput,
    /// What the protocol computed for each stored value: server view + client mask.
    pub values: Vec<Vec<i64>>,
    /// Offline and online metrics of the server and the client.
    pub server_offline: PhaseMetrics,
    pub server_online: PhaseMetrics,
    pub client_offline: PhaseMetrics,
    pub client_online: PhaseMetrics,
}

/// Runs `inputs.len()` inferences of `prog` (the server's lowering of `model`) in one
/// session (one OT setup); the client knows only the model's public part.
pub fn secure_runs(model: &Model, prog: &FixedProgram, inputs: &[Vec<f32>]) -> Vec<Run> {
    let client_prog = FixedProgram::structure(&model.public).unwrap();
    let encoded: Vec<Vec<i64>> = inputs
        .iter()
        .map(|x| prog.encode_input(x).unwrap())
        .collect();
    let (a, b) = MemoryChannel::pair();
    let n = inputs.len();
    let client = thread::spawn(move || {
        let mut ch = CountingChannel::new(b);
        let mut eng = ClientEngine::new(&client_prog).unwrap();
        eng.setup_ot(&mut ch).unwrap();
        let mut pre = Method::InsecureDealer.instance();
        let mut res = Vec::new();
        for x in &encoded {
            let (prep, off) = eng.offline(&mut ch, pre.as_mut()).unwrap();
            let masks = prep.masks().to_vec();
            let (out, on) = eng.online(&mut ch, prep, x).unwrap();
            res.push((out, masks, off, on));
        }
        res
    });
    let mut ch = CountingChannel::new(a);
    let mut eng = ServerEngine::new(prog).unwrap();
    eng.setup_ot(&mut ch).unwrap();
    let mut pre = Method::InsecureDealer.instance();
    let mut server = Vec::new();
    for _ in 0..n {
        let (prep, off) = eng.offline(&mut ch, pre.as_mut()).unwrap();
        let (on, vals) = eng.online_traced(&mut ch, prep).unwrap();
        server.push((off, on, vals));
    }
    let client = client.join().unwrap();
    let l = prog.params;
    server
        .into_iter()
        .zip(client)
        .map(|((soff, son, svals), (out, masks, coff, con))| Run {
            out,
            values: svals
                .iter()
                .zip(&masks)
                .map(|(s, r)| {
                    s.iter()
                        .zip(r)
                        .map(|(&a, &b)| l.reduce(a.wrapping_add(b as i64)))
                        .collect()
                })
                .collect(),
            server_offline: soff,
            server_online: son,
            client_offline: coff,
            client_online: con,
        })
        .collect()
}

/// Counts of the layer-by-layer check.
#[derive(Debug, Default)]
pub struct LayerCheck {
    /// Positions equal to the fixed-point rule.
    pub exact: usize,
    /// Linearized or ReLU-free positions one ulp above the exact rounding.
    pub plus_one: usize,
    /// Positions off by about 2^(l-f): a local-truncation wrap (probability ~|y|/2^l).
    pub wraps: usize,
}

/// Checks, layer by layer, that the values the protocol computed follow the fixed-point
/// rules exactly: every layer's pre-activation y is recomputed in plaintext from the
/// protocol's own inputs; kept ReLU positions must equal `relu_rescale(y)` bit for bit,
/// other positions `rescale(y)` plus 0 or 1 ulp, the logits y exactly. Panics on anything
/// else except a local-truncation wrap, which it counts.
pub fn check_layers(prog: &FixedProgram, input: &[f32], run: &Run) -> LayerCheck {
    let p = prog.params;
    let mut c = LayerCheck::default();
    assert_eq!(run.values[0], prog.encode_input(input).unwrap(), "input");
    let wrap = 1i64 << (p.ring_bits - p.frac_bits - 2);
    for (i, layer) in prog.layers.iter().enumerate() {
        let lin = prog.apply_linear(i, &run.values);
        let y: Vec<i64> = lin
            .iter()
            .zip(prog.bias(i))
            .map(|(&a, b)| p.reduce(a.wrapping_add(b)))
            .collect();
        match &layer.activation {
            Activation::Logits => assert_eq!(run.out.raw, y, "logits"),
            Activation::Rescale { output, site } => {
                let mask = site.as_ref().map(|s| &prog.masks[s]);
                for (j, &yj) in y.iter().enumerate() {
                    let got = run.values[*output][j];
                    if mask.is_some_and(|m| m[j] != 0) {
                        assert_eq!(got, p.relu_rescale(yj), "layer {i} kept position {j}");
                        c.exact += 1;
                    } else {
                        let d = p.reduce(got.wrapping_sub(p.rescale(yj)));
                        match d {
                            0 => c.exact += 1,
                            1 => c.plus_one += 1,
                            d if d.abs() >= wrap => c.wraps += 1,
                            d => panic!("layer {i} position {j}: off by {d} ulp"),
                        }
                    }
                }
            }
        }
    }
    c
}
