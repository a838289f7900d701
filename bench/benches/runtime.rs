//! Online latency of private inference for ResNet18 (32x32) over loopback TCP, against
//! the plaintext time of the same network.
//!
//! * `resnet18_online_tcp/{0,15000,50000,100000}`: kept ReLUs (a random mask with that
//!   share of the 491,520 ReLUs; the actual count is printed). Each iteration runs an
//!   offline phase (not timed), then times the client's online phase: from sending the
//!   masked input to holding the logits. Both parties in this process, the server on a
//!   second thread, over a `127.0.0.1` TCP pair (`TCP_NODELAY`) with the `pi-runtime`
//!   engine and the insecure dealer (the dealer is offline only: online work and traffic
//!   are those of the real protocol).
//! * `resnet18_plaintext/{f32,fixed_point}`: one forward pass of the same network in the
//!   f32 executor and in the fixed-point executor.
//!
//! Random weights with batch norms and per-site ReLU windows calibrated on random inputs
//! (latency does not depend on the weights' values; the windows set the bytes per kept
//! ReLU). Run with `cargo bench -p bench --bench runtime` or
//! `bash scripts/bench.sh runtime`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bench::net::loopback_pair_runtime;
use criterion::{BenchmarkId, Criterion, SamplingMode, criterion_group, criterion_main};
use models::data::Normalization;
use models::exec::{F32Executor, calibrate_batchnorm};
use models::fixed::{DEFAULT_WINDOW_MARGIN, FixedProgram, calibrate_windows, window_map};
use models::{Mask, Model, PublicModel, arch};
use pi_runtime::engine::{ClientEngine, ServerEngine};
use pi_runtime::preprocess::Method;
use protocols::CountingChannel;
use rand::{Rng, SeedableRng};

const KEPT: [usize; 4] = [0, 15_000, 50_000, 100_000];

fn model(kept: usize, inputs: &[Vec<f32>]) -> Model {
    let g = arch::build("resnet18", 10, [3, 32, 32]).unwrap();
    let mut p =
        PublicModel::all_kept("resnet18", g, Normalization::cifar10(), Default::default()).unwrap();
    let total = p.relu_total();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(kept as u64);
    for m in p.masks.values_mut() {
        *m = Mask::random(m.shape, kept as f64 / total as f64, &mut rng);
    }
    let mut m = Model::random(p, 1).unwrap();
    calibrate_batchnorm(&mut m, inputs).unwrap();
    // Per-site windows from the same inputs, as `snl-model windows` would choose them.
    let prog = FixedProgram::lower(&m).unwrap();
    let windows = calibrate_windows(&prog, inputs, DEFAULT_WINDOW_MARGIN).unwrap();
    m.public.relu_windows = window_map(&windows);
    m
}

fn inputs(n: usize) -> Vec<Vec<f32>> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(99);
    (0..n)
        .map(|_| {
            (0..3 * 32 * 32)
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect()
        })
        .collect()
}

fn online(c: &mut Criterion) {
    let xs = inputs(4);
    let rt = pi_runtime::client::runtime(Some(2)).unwrap();
    let mut g = c.benchmark_group("resnet18_online_tcp");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    for target in KEPT {
        let m = model(target, &xs);
        let prog = FixedProgram::lower(&m).unwrap();
        let structure = FixedProgram::structure(&m.public).unwrap();
        let encoded = prog.encode_input(&xs[0]).unwrap();
        let (sch, cch) = loopback_pair_runtime(&rt).unwrap();
        std::thread::scope(|s| {
            // The server serves offline + online until the client hangs up.
            let server = s.spawn(|| {
                let mut ch = CountingChannel::new(sch);
                let mut eng = ServerEngine::new(&prog).unwrap();
                eng.setup_ot(&mut ch).unwrap();
                let mut pre = Method::InsecureDealer.instance(&prog).unwrap();
                while let Ok((prep, _)) = eng.offline(&mut ch, pre.as_mut()) {
                    if eng.online(&mut ch, prep).is_err() {
                        break;
                    }
                }
            });
            let mut ch = CountingChannel::new(cch);
            let mut eng = ClientEngine::new(&structure).unwrap();
            eng.setup_ot(&mut ch).unwrap();
            let mut pre = Method::InsecureDealer.instance(&structure).unwrap();
            let kept = eng.plan().kept_total();
            // One run outside criterion for the figures printed beside the timings.
            let t = Instant::now();
            let (prep, off) = eng.offline(&mut ch, pre.as_mut()).unwrap();
            let offline_s = t.elapsed().as_secs_f64();
            let (_, on) = eng.online(&mut ch, prep, &encoded).unwrap();
            eprintln!(
                "resnet18, {kept} kept ReLUs: online {:.1} ms, {} B up / {} B down, {} rounds; \
                 offline {:.2} s (dealer), {} B up / {} B down",
                1e3 * on.seconds,
                on.bytes_sent,
                on.bytes_received,
                on.rounds,
                offline_s,
                off.bytes_sent,
                off.bytes_received
            );
            g.bench_function(BenchmarkId::from_parameter(kept), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (prep, _) = eng.offline(&mut ch, pre.as_mut()).unwrap();
                        let (out, on) = eng.online(&mut ch, prep, &encoded).unwrap();
                        black_box(out);
                        total += Duration::from_secs_f64(on.seconds);
                    }
                    total
                })
            });
            drop(ch);
            server.join().unwrap();
        });
    }
    g.finish();
}

fn plaintext(c: &mut Criterion) {
    let xs = inputs(4);
    let m = model(50_000, &xs);
    let prog = FixedProgram::lower(&m).unwrap();
    let f = F32Executor::new(&m).unwrap();
    let mut g = c.benchmark_group("resnet18_plaintext");
    g.sample_size(10);
    g.bench_function("f32", |b| b.iter(|| f.forward(black_box(&xs[0])).unwrap()));
    g.bench_function("fixed_point", |b| {
        b.iter(|| prog.forward(black_box(&xs[0]), false).unwrap())
    });
    g.finish();
}

criterion_group!(benches, plaintext, online);
criterion_main!(benches);
