//! Helpers shared by the runtime's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::thread;

use models::Model;
use models::exec::calibrate_batchnorm;
use models::fixed::{Activation, FixedProgram};
use models::tensor::argmax;
use pi_runtime::engine::{ClientEngine, ClientOutput, PhaseMetrics, ServerEngine};
use pi_runtime::preprocess::Method;
use protocols::prg::RngSource;
use protocols::{Channel, CountingChannel, MemoryChannel};
use rand::{Rng, SeedableRng};

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
pub fn secure_runs(
    method: Method,
    model: &Model,
    prog: &FixedProgram,
    inputs: &[Vec<f32>],
) -> Vec<Run> {
    let entropy = || (RngSource::Entropy, RngSource::Entropy);
    let (a, b) = MemoryChannel::pair();
    drive(method, model, prog, inputs, (a, b), entropy(), entropy()).0
}

/// One session of `inputs.len()` inferences over the channel pair `(server, client)`,
/// each party's engine and preprocessing drawing from the given sources; returns the runs
/// and the two channels (e.g. recording ones, for their transcripts).
pub fn drive<C: Channel + Send + 'static>(
    method: Method,
    model: &Model,
    prog: &FixedProgram,
    inputs: &[Vec<f32>],
    (server_ch, client_ch): (C, C),
    (server_eng, server_pre): (RngSource, RngSource),
    (client_eng, client_pre): (RngSource, RngSource),
) -> (Vec<Run>, C, C) {
    let client_prog = FixedProgram::structure(&model.public).unwrap();
    let encoded: Vec<Vec<i64>> = inputs
        .iter()
        .map(|x| prog.encode_input(x).unwrap())
        .collect();
    let client = thread::spawn(move || {
        let mut ch = CountingChannel::new(client_ch);
        let mut eng = ClientEngine::with_rng(&client_prog, client_eng).unwrap();
        eng.setup_ot(&mut ch).unwrap();
        let mut pre = method.instance_with_rng(&client_prog, client_pre).unwrap();
        let mut res = Vec::new();
        for x in &encoded {
            let (prep, off) = eng.offline(&mut ch, pre.as_mut()).unwrap();
            let masks = prep.masks().to_vec();
            let (out, on) = eng.online(&mut ch, prep, x).unwrap();
            res.push((out, masks, off, on));
        }
        (ch.into_inner(), res)
    });
    let mut ch = CountingChannel::new(server_ch);
    let mut eng = ServerEngine::with_rng(prog, server_eng).unwrap();
    eng.setup_ot(&mut ch).unwrap();
    let mut pre = method.instance_with_rng(prog, server_pre).unwrap();
    let mut server = Vec::new();
    for _ in 0..inputs.len() {
        let (prep, off) = eng.offline(&mut ch, pre.as_mut()).unwrap();
        let (on, vals) = eng.online_traced(&mut ch, prep).unwrap();
        server.push((off, on, vals));
    }
    let (client_ch, client) = client.join().unwrap();
    (
        assemble_runs(prog, server, client),
        ch.into_inner(),
        client_ch,
    )
}

/// What the server keeps of one inference: offline and online metrics and its view of
/// every stored value ([`ServerEngine::online_traced`]).
pub type ServerSide = (PhaseMetrics, PhaseMetrics, Vec<Vec<i64>>);
/// What the client keeps of one inference: its output, its masks and its metrics.
pub type ClientSide = (ClientOutput, Vec<Vec<u64>>, PhaseMetrics, PhaseMetrics);

/// Pairs the two parties' records of each inference into [`Run`]s, rebuilding every
/// stored value as server view + client mask.
pub fn assemble_runs(
    prog: &FixedProgram,
    server: Vec<ServerSide>,
    client: Vec<ClientSide>,
) -> Vec<Run> {
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
    /// Kept ReLU positions one unit below the fixed-point rule before the ReLU: the carry
    /// the fused-truncation circuit (`k > 0`) does not see.
    pub kept_minus_one: usize,
    /// Linearized or ReLU-free positions one ulp above the exact rounding.
    pub plus_one: usize,
    /// Positions off by about 2^(l-f): a truncation wrap, which the exact truncation
    /// protocol rules out (local truncation had it with probability ~|y|/2^l).
    pub wraps: usize,
    /// Linearized positions of a quadratic site's affine channels (no square computed;
    /// counted besides `exact` or `plus_one`).
    pub affine: usize,
}

/// Checks, layer by layer, that the values the protocol computed follow the fixed-point
/// rules exactly: every layer's pre-activation y is recomputed in plaintext from the
/// protocol's own inputs; kept ReLU positions must equal `relu_rescale(y)` bit for bit
/// (with the site's window), or with fused truncation (`k > 0`) the ReLU of one unit less,
/// other positions `rescale(y)` plus 0 or 1 ulp, the logits y exactly. Panics on anything
/// else except a truncation wrap, which it counts (callers require none).
pub fn check_layers(prog: &FixedProgram, input: &[f32], run: &Run) -> LayerCheck {
    let mut c = LayerCheck::default();
    assert_eq!(run.values[0], prog.encode_input(input).unwrap(), "input");
    for (i, layer) in prog.layers.iter().enumerate() {
        let p = prog.layer_params(i);
        let extra = prog.layer_extra_bits(i);
        let wrap = 1i64 << (p.ring_bits - p.frac_bits - extra - 2);
        let lin = prog.apply_linear(i, &run.values);
        let y: Vec<i64> = lin
            .iter()
            .zip(prog.bias(i))
            .map(|(&a, b)| p.reduce(a.wrapping_add(b)))
            .collect();
        match &layer.activation {
            Activation::Logits => assert_eq!(run.out.raw, y, "logits"),
            Activation::Keep { output, .. } => {
                assert_eq!(run.values[*output], y, "layer {i}: polynomial");
                c.exact += y.len();
            }
            Activation::Rescale {
                output,
                site,
                quadratic,
            } => {
                let mask = site.as_ref().map(|s| &prog.masks[s]);
                let squared = prog.squared(i).unwrap_or_default();
                for (j, &yj) in y.iter().enumerate() {
                    let got = run.values[*output][j];
                    if mask.is_some_and(|m| m[j] != 0) {
                        if let Some(q) = quadratic {
                            assert_eq!(run.values[q.linear][j], 0, "layer {i} kept {j}");
                            assert_eq!(run.values[q.square][j], 0, "layer {i} kept {j}");
                        }
                        if got == p.relu_rescale_at(yj, extra) {
                            c.exact += 1;
                        } else {
                            assert!(
                                p.relu_dropped_bits > 0
                                    && got == relu_rescale_minus_one(p, yj, extra),
                                "layer {i} kept position {j}: got {got}, fixed point {}",
                                p.relu_rescale_at(yj, extra)
                            );
                            c.kept_minus_one += 1;
                        }
                        continue;
                    }
                    let got = match quadratic {
                        Some(q) if !squared[j] => {
                            // An affine channel: truncated without a square.
                            assert_eq!(got, 0, "layer {i} position {j}: the ReLU part");
                            assert_eq!(run.values[q.square][j], 0, "layer {i} affine {j}");
                            c.affine += 1;
                            run.values[q.linear][j]
                        }
                        Some(q) => {
                            assert_eq!(got, 0, "layer {i} position {j}: the ReLU part");
                            // The square of the protocol's own x~, which is the fixed-point
                            // operand or one above (the truncation's carry).
                            let xt = p.square_operand_at(yj, extra);
                            let sq = run.values[q.square][j];
                            let sq0 = p.reduce(xt.wrapping_mul(xt));
                            let sq1 = p.reduce((xt + 1).wrapping_mul(xt + 1));
                            assert!(
                                sq == sq0 || sq == sq1,
                                "layer {i} position {j}: square {sq}, operand {xt}"
                            );
                            run.values[q.linear][j]
                        }
                        None => got,
                    };
                    let d = p.reduce(got.wrapping_sub(p.rescale_at(yj, extra)));
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
    c
}

/// What the fused-truncation circuit computes when it misses the carry: the ReLU of the
/// windowed, truncated value minus one (accumulator at scale `2^(2f + extra)`).
pub fn relu_rescale_minus_one(p: models::fixed::FixedPointParams, y: i64, extra: u32) -> i64 {
    let t = p.frac_bits + extra;
    let s = 64 - (p.relu_bits + extra);
    let z = (y.wrapping_add(1 << (t - 1)) << s) >> s;
    ((z >> t) - 1).max(0)
}

/// Normalized random inputs for a model's input shape.
pub fn inputs(model: &models::Model, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let len: usize = model.public.graph.input.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect())
        .collect()
}

/// Runs `n` inferences for each mask fraction and checks every layer and the traffic.
pub fn check_network(method: Method, name: &str, fractions: &[f64], n: usize) {
    check_network_with(method, name, fractions, n, |_| {});
}

/// [`check_network`] on models changed by `edit` before their batch norms are
/// calibrated (e.g. [`models::testing::make_quadratic`]).
pub fn check_network_with(
    method: Method,
    name: &str,
    fractions: &[f64],
    n: usize,
    edit: impl Fn(&mut Model),
) {
    for (k, &keep) in fractions.iter().enumerate() {
        let mut model = model(name, keep, 11 + k as u64);
        edit(&mut model);
        let xs = inputs(&model, n, 3 + k as u64);
        // Batch norms calibrated on the inputs keep activations in a realistic range.
        calibrate_batchnorm(&mut model, &xs).unwrap();
        let prog = FixedProgram::lower(&model).unwrap();
        let runs = secure_runs(method, &model, &prog, &xs);
        let mut total = LayerCheck::default();
        let mut max_diff = 0f64;
        let mut same_class = 0;
        for (x, run) in xs.iter().zip(&runs) {
            let c = check_layers(&prog, x, run);
            total.exact += c.exact;
            total.kept_minus_one += c.kept_minus_one;
            total.plus_one += c.plus_one;
            total.wraps += c.wraps;
            total.affine += c.affine;
            let fixed = prog.forward(x, false).unwrap();
            if c.wraps == 0 {
                for (a, b) in run.out.logits.iter().zip(&fixed.logits) {
                    max_diff = max_diff.max((a - b).abs());
                }
                same_class += usize::from(argmax(&run.out.logits) == argmax(&fixed.logits));
            }
            // Online traffic is the formula, whatever the number of linearized ReLUs.
            let plan = pi_runtime::engine::Plan::new(&prog).unwrap();
            let (up, down) = plan.online_bytes();
            assert_eq!(
                run.client_online.bytes_sent, up,
                "{name} keep {keep}: client sent"
            );
            assert_eq!(
                run.client_online.bytes_received, down,
                "{name} keep {keep}: client received"
            );
            assert_eq!(run.server_online.bytes_received, up);
            assert_eq!(run.server_online.bytes_sent, down);
            // One round trip per layer with kept or truncated positions, plus input and
            // logits.
            let layers = plan
                .layers
                .iter()
                .filter(|l| l.kept_count + l.trunc_count + l.quadratic.map_or(0, |q| q.count) > 0)
                .count() as u64;
            assert_eq!(
                run.server_online.rounds,
                layers + 1,
                "{name} keep {keep}: rounds"
            );
            assert_eq!(plan.online_rounds(), layers + 1);
        }
        eprintln!(
            "{name}, keep {keep}: {n} inferences, positions exact {} / kept -1 ulp {} / +1 ulp {} \
             / wraps {}; max |secure - fixed| logit {max_diff:.2e}, same class {same_class}/{n}",
            total.exact, total.kept_minus_one, total.plus_one, total.wraps
        );
        if !model.public.affine_channels.is_empty() && keep < 1.0 {
            assert!(total.affine > 0, "{name}: no affine position was checked");
        }
        // Truncation is exact (protocols::trunc): no position may be off by 2^(l-f).
        assert_eq!(total.wraps, 0, "{name}: {} truncation wraps", total.wraps);
        assert!(
            total.plus_one > 0 || keep > 0.0,
            "{name}: no +1 ulp truncation seen"
        );
    }
}
