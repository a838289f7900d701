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
