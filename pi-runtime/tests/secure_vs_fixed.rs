//! The secure evaluation against the fixed-point executor, for every network of `models`
//! at several masks: layer by layer, the values the two parties computed (server view +
//! client mask) must follow the fixed-point rules exactly (kept ReLUs bit for bit,
//! locally truncated positions within +1 ulp), and the logits must be those of the
//! protocol's own inputs exactly. Online traffic must match the formula of docs/runtime.md.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use models::exec::calibrate_batchnorm;
use models::fixed::FixedProgram;
use models::tensor::argmax;
use rand::{Rng, SeedableRng};

/// Normalized random inputs for a model's input shape.
fn inputs(model: &models::Model, n: usize, seed: u64) -> Vec<Vec<f32>> {
    let len: usize = model.public.graph.input.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..len).map(|_| rng.gen_range(-2.0f32..2.0)).collect())
        .collect()
}

/// Runs `n` inferences for each mask fraction and checks every layer and the traffic.
fn check_network(name: &str, fractions: &[f64], n: usize) {
    for (k, &keep) in fractions.iter().enumerate() {
        let mut model = common::model(name, keep, 11 + k as u64);
        let xs = inputs(&model, n, 3 + k as u64);
        // Batch norms calibrated on the inputs keep activations in a realistic range.
        calibrate_batchnorm(&mut model, &xs).unwrap();
        let prog = FixedProgram::lower(&model).unwrap();
        let runs = common::secure_runs(&model, &prog, &xs);
        let mut total = common::LayerCheck::default();
        let mut max_diff = 0f64;
        let mut same_class = 0;
        for (x, run) in xs.iter().zip(&runs) {
            let c = common::check_layers(&prog, x, run);
            total.exact += c.exact;
            total.plus_one += c.plus_one;
            total.wraps += c.wraps;
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
            // One round trip per layer with kept ReLUs, plus input and logits.
            let relu_layers = plan.layers.iter().filter(|l| l.kept_count > 0).count() as u64;
            assert_eq!(
                run.server_online.rounds,
                relu_layers + 1,
                "{name} keep {keep}: rounds"
            );
        }
        eprintln!(
            "{name}, keep {keep}: {n} inferences, positions exact {} / +1 ulp {} / wraps {}; \
             max |secure - fixed| logit {max_diff:.2e}, same class {same_class}/{n}",
            total.exact, total.plus_one, total.wraps
        );
        // A wrap has probability about |y| / 2^61 per truncated position (documented);
        // more than one in a test run means something else is wrong.
        assert!(total.wraps <= 1, "{name}: {} truncation wraps", total.wraps);
        assert!(
            total.plus_one > 0 || keep > 0.0,
            "{name}: no +1 ulp truncation seen"
        );
    }
}

#[test]
fn lenet5_all_none_and_random_masks() {
    check_network("lenet5", &[1.0, 0.0, 0.1], 3);
}

#[test]
fn resnet20_all_none_and_random_masks() {
    check_network("resnet20", &[1.0, 0.0, 0.1], 2);
}

#[test]
fn resnet18_all_none_and_random_masks() {
    check_network("resnet18", &[1.0, 0.0, 0.1], 1);
}

#[test]
fn wrn22_8_none_and_random_masks() {
    check_network("wrn22_8", &[0.0, 0.1], 1);
}

/// WRN-22-8 with all 1,359,872 ReLUs kept needs about 5 GB of garbled tables and 2 GB of
/// client labels in memory at once; run it by hand (`cargo test --release -p pi-runtime
/// -- --ignored`).
#[test]
#[ignore = "about 12 GB of memory and minutes; run by hand"]
fn wrn22_8_all_kept() {
    check_network("wrn22_8", &[1.0], 1);
}

/// Two masks of the same network: the online bytes differ exactly by the kept ReLUs'
/// labels and colour bits; the linearized ones cost nothing.
#[test]
fn linearized_relus_cost_no_online_bytes() {
    let mut bytes = Vec::new();
    for keep in [0.0, 0.05] {
        let mut model = common::model("resnet20", keep, 21);
        let xs = inputs(&model, 1, 9);
        calibrate_batchnorm(&mut model, &xs).unwrap();
        let prog = FixedProgram::lower(&model).unwrap();
        let run = common::secure_runs(&model, &prog, &xs).pop().unwrap();
        let kept = model.public.relu_kept() as u64;
        let total = run.client_online.bytes_sent + run.client_online.bytes_received;
        bytes.push((kept, total));
        if keep == 0.0 {
            // Input out, logits back: nothing per ReLU.
            let n_in: u64 = model.public.graph.input.iter().product::<usize>() as u64;
            assert_eq!(kept, 0);
            assert_eq!(total, 8 * n_in + 8 * 10);
        }
    }
    let ((k0, b0), (k1, b1)) = (bytes[0], bytes[1]);
    assert!(k1 > 1000);
    // Per kept ReLU: 36 labels of 16 bytes down, 61 colour bits up (packed per layer).
    let per = (b1 - b0) as f64 / (k1 - k0) as f64;
    assert!(
        (per - (576.0 + 61.0 / 8.0)).abs() < 0.01,
        "online bytes per kept ReLU {per}"
    );
}
