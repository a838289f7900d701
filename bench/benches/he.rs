//! Homomorphic-encryption preprocessing of the linear layers (BFV, N = 8192, t = 2^61,
//! coefficient-encoded convolutions; `protocols::he`, `docs/he.md`).
//!
//! * Before criterion runs, once: **ResNet18 at 32x32, every linear layer** through
//!   `pi_runtime::preprocess` (`Method::HeBfv`) layer by layer, with random masks and
//!   shares, so it is HE only (no OT, no garbling), both parties in this process over a
//!   `127.0.0.1` TCP pair: wall time, bytes per direction, the most expensive layers.
//!   Two inferences: the first includes the client's key setup. `-- nomatch` runs only
//!   this part.
//! * `he_layer/<shape>`: one ResNet18 operator end to end (the client encrypts its mask,
//!   the server multiplies, subtracts `s`, re-randomizes and floods, the client decrypts)
//!   over an in-memory channel; throughput in multiply-accumulates.
//! * `he_kernel_cache/<shape>/{miss,hit}`: one term with its kernel polynomials
//!   transformed to NTT form, and taken from the server's kernel cache.
//!
//! Run with `cargo bench -p bench --bench he` or `bash scripts/bench.sh he`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bench::net::loopback_pair;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use models::data::Normalization;
use models::exec::calibrate_batchnorm;
use models::fixed::FixedProgram;
use models::{Mask, Model, PublicModel, arch};
use pi_runtime::plan::Plan;
use pi_runtime::preprocess::Method;
use protocols::CountingChannel;
use protocols::channel::MemoryChannel;
use protocols::he::{
    ConvLayout, ConvShape, HeClient, HeParams, HeServer, KernelCache, POLY_DEGREE,
};
use rand::{Rng, SeedableRng};

fn resnet18_linear_only() -> Model {
    let g = arch::build("resnet18", 10, [3, 32, 32]).unwrap();
    let mut p =
        PublicModel::all_kept("resnet18", g, Normalization::cifar10(), Default::default()).unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    for m in p.masks.values_mut() {
        *m = Mask::random(m.shape, 0.0, &mut rng);
    }
    let mut m = Model::random(p, 1).unwrap();
    let xs: Vec<Vec<f32>> = (0..2)
        .map(|_| {
            (0..3 * 32 * 32)
                .map(|_| rng.gen_range(-2.0f32..2.0))
                .collect()
        })
        .collect();
    calibrate_batchnorm(&mut m, &xs).unwrap();
    m
}

/// The whole network's HE preprocessing, printed (not a criterion measurement: one run
/// takes seconds). It drives `pi_runtime::preprocess` directly, layer by layer, with
/// random masks and shares, so the figures are HE only (no OT, no garbling).
fn resnet18_offline() {
    let m = resnet18_linear_only();
    let prog = FixedProgram::lower(&m).unwrap();
    let structure = FixedProgram::structure(&m.public).unwrap();
    let plan = Plan::new(&prog).unwrap();
    let lmask = plan.ring.mask();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let masks: Vec<Option<Vec<u64>>> = plan
        .value_lens
        .iter()
        .map(|&n| Some((0..n).map(|_| rng.r#gen::<u64>() & lmask).collect()))
        .collect();
    let (sch, cch) = loopback_pair().unwrap();
    let runs = 2;
    let layers = plan.layers.len();
    std::thread::scope(|s| {
        let plan_ref = &plan;
        let prog_ref = &prog;
        let server = s.spawn(move || {
            let mut ch = CountingChannel::new(sch);
            let mut pre = Method::HeBfv.instance(prog_ref).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
            (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    pre.begin_inference();
                    let mut busy = Vec::new();
                    for i in 0..layers {
                        let s_: Vec<u64> = (0..plan_ref.layers[i].len)
                            .map(|_| rng.r#gen::<u64>() & lmask)
                            .collect();
                        let tl = Instant::now();
                        pre.server_layer(&mut ch, prog_ref, plan_ref, i, &s_)
                            .unwrap();
                        busy.push(tl.elapsed().as_secs_f64());
                    }
                    (t.elapsed().as_secs_f64(), busy)
                })
                .collect::<Vec<_>>()
        });
        let mut ch = CountingChannel::new(cch);
        let mut pre = Method::HeBfv.instance(&structure).unwrap();
        let client: Vec<_> = (0..runs)
            .map(|_| {
                let before = ch.stats();
                let t = Instant::now();
                pre.begin_inference();
                let mut per_layer = Vec::new();
                for i in 0..layers {
                    let at = ch.stats();
                    let tl = Instant::now();
                    pre.client_layer(&mut ch, &plan, i, &masks).unwrap();
                    let now = ch.stats();
                    per_layer.push((
                        i,
                        tl.elapsed().as_secs_f64(),
                        now.bytes_sent - at.bytes_sent,
                        now.bytes_received - at.bytes_received,
                    ));
                }
                let after = ch.stats();
                (
                    t.elapsed().as_secs_f64(),
                    after.bytes_sent - before.bytes_sent,
                    after.bytes_received - before.bytes_received,
                    per_layer,
                )
            })
            .collect();
        let server = server.join().unwrap();
        for (k, ((wall, up, down, _), (swall, _))) in client.iter().zip(&server).enumerate() {
            eprintln!(
                "resnet18 32x32 HE preprocessing, all {layers} linear layers, inference {}{}: \
                 {wall:.2} s wall (server {swall:.2} s), {:.1} MB up, {:.1} MB down",
                k + 1,
                if k == 0 { " (with key setup)" } else { "" },
                *up as f64 / 1e6,
                *down as f64 / 1e6,
            );
        }
        let (_, _, _, last) = client.last().unwrap();
        let mut top: Vec<_> = last.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (i, secs, up, down) in top.iter().take(5) {
            eprintln!(
                "  layer {i:>2}: {secs:.3} s, {:.1} MB up, {:.1} MB down",
                *up as f64 / 1e6,
                *down as f64 / 1e6
            );
        }
    });
}

fn conv(name: &str, c: usize, hw: usize, m: usize, k: usize, s: usize) -> (String, ConvShape) {
    (name.into(), ConvShape::square(c, hw, m, k, s, k / 2))
}

fn layers(c: &mut Criterion) {
    resnet18_offline();
    let params = HeParams::new(61).unwrap();
    let (mut a, mut b) = MemoryChannel::pair();
    let (server, client) = std::thread::scope(|s| {
        let p = params.clone();
        let h = s.spawn(move || HeServer::setup(&mut a, p).map(|srv| (srv, a)));
        let cl = HeClient::setup(&mut b, params.clone()).unwrap();
        (h.join().unwrap().unwrap(), cl)
    });
    let (server, mut a) = server;
    let mut g = c.benchmark_group("he_layer");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(3));
    let shapes = [
        conv("stem_3x64_32", 3, 32, 64, 3, 1),
        conv("conv_64x64_32", 64, 32, 64, 3, 1),
        conv("conv_64x128_32_s2", 64, 32, 128, 3, 2),
        conv("shortcut_64x128_32_s2", 64, 32, 128, 1, 2),
        conv("conv_256x256_8", 256, 8, 256, 3, 1),
        conv("conv_512x512_4", 512, 4, 512, 3, 1),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut kernel_cache = Vec::new();
    for (name, shape) in shapes {
        let layout = ConvLayout::new(shape, POLY_DEGREE).unwrap();
        let (ho, wo) = shape.out_hw();
        let macs = (shape.out_channels * ho * wo * shape.channels * shape.kh * shape.kw) as u64;
        eprintln!(
            "he_layer/{name}: {} input, {} output ciphertexts, {} products",
            layout.input_cts(),
            layout.output_cts(),
            layout.products()
        );
        let w: Vec<i64> = (0..shape.weight_len())
            .map(|_| rng.gen_range(-20_000..20_000))
            .collect();
        let x: Vec<u64> = (0..shape.in_len())
            .map(|_| rng.r#gen::<u64>() >> 3)
            .collect();
        let s_: Vec<u64> = vec![0; shape.out_len()];
        g.throughput(Throughput::Elements(macs));
        g.bench_function(BenchmarkId::from_parameter(&name), |bch| {
            bch.iter(|| {
                std::thread::scope(|s| {
                    let h = s.spawn(|| server.term(&mut a, &layout, &w, &s_).unwrap());
                    client.term(&mut b, &layout, &x).unwrap();
                    h.join().unwrap();
                })
            })
        });
        if name == "conv_256x256_8" {
            kernel_cache.push((name.clone(), layout.clone(), w.clone(), x.clone()));
        }
    }
    g.finish();
    // The same term with its kernel polynomials computed (`miss`, no cache) and taken
    // from the server's kernel cache (`hit`, filled before the measurement).
    let mut g = c.benchmark_group("he_kernel_cache");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(3));
    for (name, layout, w, x) in &kernel_cache {
        let s_: Vec<u64> = vec![0; layout.shape.out_len()];
        let mut cache = KernelCache::new(1 << 30);
        for hit in [false, true] {
            let id = format!("{name}/{}", if hit { "hit" } else { "miss" });
            g.bench_function(BenchmarkId::from_parameter(id), |bch| {
                bch.iter(|| {
                    std::thread::scope(|s| {
                        let h = s.spawn(|| {
                            let c = hit.then_some((&mut cache, 0));
                            let mut rng = protocols::prg::Prg::from_entropy();
                            server
                                .term_cached_with_rng(&mut a, layout, w, &s_, &mut rng, c)
                                .unwrap()
                        });
                        client.term(&mut b, layout, x).unwrap();
                        h.join().unwrap();
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, layers);
criterion_main!(benches);
