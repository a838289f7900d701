//! Linear layers: the server's online work on shares, beside the plaintext executors.
//!
//! * `linear_on_shares/{lenet5,resnet20,resnet18}`: every lowered linear layer of the
//!   network applied to ring values (`FixedProgram::apply_linear`, what the server computes
//!   online on `x - r` and what the offline correlations are computed for), one pass over
//!   all layers;
//! * `linear_f32/{...}`: one forward pass of the f32 executor (linear layers plus cheap
//!   activations), the plaintext yardstick of the online target "linear layers <= 4x f32".
//!
//! Throughput is in multiply-accumulates (criterion's "elements": MAC/s), from
//! `Graph::macs`. Random weights, random ring values (the arithmetic is exact mod 2^l, so
//! timings do not depend on the values). `cargo bench -p bench --bench linear`; the ring
//! GEMM's kernel build is printed first (`SNL_GEMM_KERNEL=avx2` measures the AVX2 build on
//! an AVX-512 machine).

#![allow(clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use models::exec::F32Executor;
use models::fixed::FixedProgram;
use rand::{Rng, SeedableRng};

const NETWORKS: [&str; 3] = ["lenet5", "resnet20", "resnet18"];

/// A network with random weights, ring values for every stored value, and an input.
struct Case {
    name: &'static str,
    model: models::Model,
    prog: FixedProgram,
    macs: u64,
    values: Vec<Vec<i64>>,
    input: Vec<f32>,
}

fn cases() -> Vec<Case> {
    NETWORKS
        .iter()
        .map(|&name| {
            let model = models::testing::random_model(name, 1.0, 7).unwrap();
            let macs = model.public.graph.macs().unwrap();
            let prog = FixedProgram::lower(&model).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            let mask = (1u64 << prog.params.ring_bits) - 1;
            let values = prog
                .values
                .iter()
                .map(|s| {
                    (0..s.iter().product::<usize>())
                        .map(|_| (rng.r#gen::<u64>() & mask) as i64)
                        .collect()
                })
                .collect();
            let input = (0..model.public.graph.input.iter().product::<usize>())
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect();
            Case {
                name,
                model,
                prog,
                macs,
                values,
                input,
            }
        })
        .collect()
}

fn linear(c: &mut Criterion) {
    eprintln!("ring GEMM kernel: {:?}", models::fixed::gemm_kernel());
    let cases = cases();
    let mut g = c.benchmark_group("linear_on_shares");
    g.sample_size(10);
    for k in &cases {
        g.throughput(Throughput::Elements(k.macs));
        g.bench_function(BenchmarkId::from_parameter(k.name), |b| {
            b.iter(|| {
                for i in 0..k.prog.layers.len() {
                    black_box(k.prog.apply_linear(i, black_box(&k.values)));
                }
            })
        });
    }
    g.finish();
    let mut f = c.benchmark_group("linear_f32");
    f.sample_size(10);
    for k in &cases {
        let exec = F32Executor::new(&k.model).unwrap();
        f.throughput(Throughput::Elements(k.macs));
        f.bench_function(BenchmarkId::from_parameter(k.name), |b| {
            b.iter(|| exec.forward(black_box(&k.input)).unwrap())
        });
    }
    f.finish();
}

criterion_group!(benches, linear);
criterion_main!(benches);
