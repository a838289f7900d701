//! A whole inference reproducible from seeds: both engines and both preprocessing sides
//! built from [`RngSource::seeded`] send exactly the same bytes every run (base OTs,
//! HE key, encrypted masks, re-randomized and flooded results, garbled circuits, OT
//! extension, truncation OTs, online messages), so a recorded transcript can be compared
//! or replayed; another seed gives another transcript, and the default (OS entropy)
//! never repeats. The seeded runs still compute the fixed-point result (layer-by-layer
//! check of `common::check_layers`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{Run, check_layers, drive, inputs, model};
use models::Model;
use models::exec::calibrate_batchnorm;
use models::fixed::FixedProgram;
use models::tensor::argmax;
use pi_runtime::preprocess::Method;
use protocols::channel::RecordingChannel;
use protocols::prg::RngSource;
use protocols::{Block, MemoryChannel};

/// Everything both parties sent and received in one session.
#[derive(PartialEq)]
struct Transcript {
    server_sent: Vec<u8>,
    server_received: Vec<u8>,
    client_sent: Vec<u8>,
    client_received: Vec<u8>,
}

/// A party's engine source and preprocessing source: two chains of one seed, or OS
/// entropy for both.
fn sources(seed: Option<u128>) -> (RngSource, RngSource) {
    match seed {
        Some(s) => {
            let mut src = RngSource::seeded(Block(s));
            (src.fork(), src.fork())
        }
        None => (RngSource::Entropy, RngSource::Entropy),
    }
}

/// One session of `inputs.len()` inferences with the server and client seeds given
/// (`None`: OS entropy), both channels recorded.
fn session(
    method: Method,
    model: &Model,
    prog: &FixedProgram,
    inputs: &[Vec<f32>],
    seeds: (Option<u128>, Option<u128>),
) -> (Transcript, Vec<Run>) {
    let (a, b) = MemoryChannel::pair();
    let channels = (RecordingChannel::new(a), RecordingChannel::new(b));
    let (runs, server_ch, client_ch) = drive(
        method,
        model,
        prog,
        inputs,
        channels,
        sources(seeds.0),
        sources(seeds.1),
    );
    let t = Transcript {
        server_sent: server_ch.sent,
        server_received: server_ch.received,
        client_sent: client_ch.sent,
        client_received: client_ch.received,
    };
    // Sanity: each side received what the other sent.
    assert!(t.server_sent == t.client_received && t.client_sent == t.server_received);
    assert!(!t.server_sent.is_empty() && !t.client_sent.is_empty());
    (t, runs)
}

/// The seeded runs follow the fixed-point rules layer by layer and agree with the
/// fixed-point executor's class.
fn check_runs(prog: &FixedProgram, xs: &[Vec<f32>], runs: &[Run]) {
    for (x, run) in xs.iter().zip(runs) {
        let c = check_layers(prog, x, run);
        assert_eq!(c.wraps, 0);
        let fixed = prog.forward(x, false).unwrap();
        assert_eq!(argmax(&run.out.logits), argmax(&fixed.logits));
    }
}

/// A calibrated LeNet-5 with a random 10% of its ReLUs kept (garbled circuits and exact
/// truncations both in play), its lowering and `n` inputs.
fn lenet5(n: usize) -> (Model, FixedProgram, Vec<Vec<f32>>) {
    let mut m = model("lenet5", 0.1, 5);
    let xs = inputs(&m, n, 8);
    calibrate_batchnorm(&mut m, &xs).unwrap();
    let prog = FixedProgram::lower(&m).unwrap();
    (m, prog, xs)
}

/// The secure preprocessing: HE key, encrypted masks and the server's re-randomized,
/// flooded results repeat byte for byte under the same seeds.
#[test]
fn he_session_transcripts_repeat_under_the_same_seeds() {
    let (m, prog, xs) = lenet5(1);
    let seeds = (Some(0x5e12_7e12), Some(0xc11e_0001));
    let (t1, r1) = session(Method::HeBfv, &m, &prog, &xs, seeds);
    let (t2, r2) = session(Method::HeBfv, &m, &prog, &xs, seeds);
    eprintln!(
        "HE LeNet-5 session: server sent {} bytes, client sent {} bytes",
        t1.server_sent.len(),
        t1.client_sent.len()
    );
    assert!(
        t1.client_sent == t2.client_sent,
        "client transcript differs"
    );
    assert!(
        t1.server_sent == t2.server_sent,
        "server transcript differs"
    );
    assert!(t1 == t2);
    for (a, b) in r1.iter().zip(&r2) {
        assert_eq!(a.out, b.out);
        assert_eq!(a.values, b.values);
    }
    check_runs(&prog, &xs, &r1);
    // Another client seed: the client's messages change, and so do the server's (they
    // are encrypted under the client's key); the result does not.
    let (t3, r3) = session(Method::HeBfv, &m, &prog, &xs, (seeds.0, Some(0xc11e_0002)));
    assert!(t3.client_sent != t1.client_sent && t3.server_sent != t1.server_sent);
    check_runs(&prog, &xs, &r3);
}

/// The engine alone (insecure dealer, two inferences in one session): same seeds, same
/// bytes; another server seed, other bytes; no seed (OS entropy, production), never the
/// same bytes twice.
#[test]
fn dealer_session_transcripts_repeat_under_the_same_seeds() {
    let (m, prog, xs) = lenet5(2);
    let seeds = (Some(17), Some(18));
    let (t1, r1) = session(Method::InsecureDealer, &m, &prog, &xs, seeds);
    let (t2, _) = session(Method::InsecureDealer, &m, &prog, &xs, seeds);
    assert!(t1 == t2, "seeded transcripts differ");
    check_runs(&prog, &xs, &r1);
    let (t3, _) = session(Method::InsecureDealer, &m, &prog, &xs, (Some(19), seeds.1));
    assert!(t3.server_sent != t1.server_sent);
    let (e1, re) = session(Method::InsecureDealer, &m, &prog, &xs, (None, None));
    let (e2, _) = session(Method::InsecureDealer, &m, &prog, &xs, (None, None));
    assert!(e1.server_sent != e2.server_sent && e1.client_sent != e2.client_sent);
    check_runs(&prog, &xs, &re);
}
