//! The latency model's online work (`models::latency::OnlineWork`, computed from the
//! lowering alone so that the trainer can price masks) equals the runtime's plan: the same
//! rounds and the same bytes each way, for random, empty and full masks, quadratic sites
//! and per-site windows.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use models::fixed::FixedProgram;
use models::latency::OnlineWork;
use pi_runtime::engine::Plan;

fn check(m: &models::Model, what: &str) {
    let plan = Plan::new(&FixedProgram::structure(&m.public).unwrap()).unwrap();
    let w = OnlineWork::of(&m.public).unwrap();
    assert_eq!(w.rounds as u64, plan.online_rounds(), "{what}: rounds");
    assert_eq!(
        (w.bytes_up, w.bytes_down),
        plan.online_bytes(),
        "{what}: bytes"
    );
    assert_eq!(w.kept, plan.kept_total(), "{what}: kept");
}

#[test]
fn online_work_is_the_plans() {
    for name in ["lenet5", "resnet20", "resnet18"] {
        for keep in [0.0, 0.05, 1.0] {
            let mut m = common::model(name, keep, 7);
            check(&m, &format!("{name} keep {keep}"));
            models::testing::make_quadratic(&mut m, 2).unwrap();
            check(&m, &format!("{name} keep {keep}, quadratic"));
            models::testing::make_affine_channels(&mut m, 0).unwrap();
            check(
                &m,
                &format!("{name} keep {keep}, quadratic, affine channels"),
            );
        }
        // One site emptied in an otherwise random mask, and windows of 33 bits.
        let mut m = common::model(name, 0.1, 8);
        let first = m.public.graph.sites().unwrap()[0].clone();
        m.public.masks.insert(
            first.name.clone(),
            models::model::Mask::none_kept(first.shape),
        );
        for s in m.public.graph.sites().unwrap() {
            m.public.relu_windows.insert(s.name, 33);
        }
        check(&m, &format!("{name}, first site emptied, windows"));
    }
}

/// Windows calibrated on inputs whose squares blow up stay readable by the layers at
/// 2^(3f) (m + f <= l), so the plan of the windowed model is valid. (Values that large
/// have left the ring itself and wrapped, which the executor cannot count: a known gap.)
#[test]
fn windows_of_exploding_squares_fit_the_wide_layers() {
    let mut m = common::model("resnet20", 0.1, 3);
    models::testing::make_quadratic(&mut m, 4).unwrap();
    let prog = FixedProgram::lower(&m).unwrap();
    let big: Vec<Vec<f32>> = common::inputs(&m, 2, 5)
        .into_iter()
        .map(|x| x.into_iter().map(|v| v * 300.0).collect())
        .collect();
    let w = models::fixed::calibrate_windows(&prog, &big, 2.0).unwrap();
    let l = prog.params.ring_bits;
    assert!(
        w.iter().any(|s| s.relu_bits + prog.params.frac_bits >= l),
        "no window capped"
    );
    m.public.relu_windows = models::fixed::window_map(&w);
    let windowed = FixedProgram::lower(&m).unwrap();
    Plan::new(&windowed).unwrap();
    pi_runtime::session::ServedModel::from_model(&m).unwrap();
    // An uncapped window (valid in the ring, unreadable at 2^(3f)) is refused when the
    // model is loaded for serving, with the reason, not at every session.
    let last = m.public.graph.sites().unwrap().last().unwrap().name.clone();
    m.public.relu_windows.insert(last, l);
    let e = pi_runtime::session::ServedModel::from_model(&m)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("cannot be served") && e.contains("ReLU"), "{e}");
}
