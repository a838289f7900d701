//! Benchmarks of the protocols crate: AND gates garbled/evaluated per second on one core
//! (scalar backends, gate after gate, and the batched kernels on a layer of independent
//! gates), ReLU gadgets garbled/evaluated per second, IKNP random OTs per second over the
//! in-memory channel. The two-party benchmarks over TCP are in the `bench` crate.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use protocols::Block;
use protocols::channel::MemoryChannel;
use protocols::gc::relu::{ReluParams, evaluate_relus, garble_relus};
use protocols::gc::wide::{evaluate_ands, garble_ands};
use protocols::gc::{Backend, Delta, Evaluator, GarbledTables, Garbler};
use protocols::ot::{OtReceiver, OtSender};
use protocols::prg::Prg;

const ANDS: usize = 1 << 14;
const RELUS: usize = 1 << 10;
const OTS: usize = 1 << 16;

fn and_gates(c: &mut Criterion) {
    let mut rng = Prg::from_seed(Block(1));
    let delta = Delta::random(&mut rng);
    let xs: Vec<Block> = (0..2 * ANDS).map(|_| Block::random(&mut rng)).collect();
    let mut g = c.benchmark_group("and_gates");
    g.throughput(Throughput::Elements(ANDS as u64));
    g.bench_function("garble", |b| {
        b.iter(|| {
            let mut gb = Garbler::new(delta, 0, Prg::from_seed(Block(2)));
            gb.reserve_tables(2 * ANDS);
            for i in 0..ANDS {
                black_box(gb.and(&xs[2 * i], &xs[2 * i + 1]).ok());
            }
            gb.finish().ok()
        })
    });
    let mut gb = Garbler::new(delta, 0, Prg::from_seed(Block(2)));
    for i in 0..ANDS {
        black_box(gb.and(&xs[2 * i], &xs[2 * i + 1]).ok());
    }
    let tables: GarbledTables = match gb.finish() {
        Ok((t, _)) => t,
        Err(e) => panic!("garbling failed: {e}"),
    };
    g.bench_function("evaluate", |b| {
        b.iter(|| {
            let mut ev = Evaluator::new(&tables, &[], &[]);
            for i in 0..ANDS {
                black_box(ev.and(&xs[2 * i], &xs[2 * i + 1]).ok());
            }
            ev.finish().ok()
        })
    });
    // Batched kernels: one layer of ANDS independent gates, tables into a preallocated
    // buffer, 64 AES blocks per cipher call.
    let (a, b): (Vec<Block>, Vec<Block>) = xs.chunks_exact(2).map(|p| (p[0], p[1])).unzip();
    let mut out = vec![Block::ZERO; ANDS];
    let mut tab = vec![Block::ZERO; 2 * ANDS];
    g.bench_function("garble_batched", |bch| {
        bch.iter(|| garble_ands(delta, 0, 0, &a, &b, &mut out, &mut tab).ok())
    });
    let mut out2 = vec![Block::ZERO; ANDS];
    g.bench_function("evaluate_batched", |bch| {
        bch.iter(|| evaluate_ands(0, 0, &a, &b, &tab, &mut out2).ok())
    });
    g.finish();
}

fn relus(c: &mut Criterion) {
    let p = ReluParams::DEFAULT;
    let mut rng = Prg::from_seed(Block(3));
    let delta = Delta::random(&mut rng);
    let mut g = c.benchmark_group("relu_gadgets");
    g.throughput(Throughput::Elements(RELUS as u64));
    g.bench_function("garble", |b| {
        b.iter(|| garble_relus(p, RELUS, delta, None, 0, Prg::from_seed(Block(4))).ok())
    });
    let (garbled, secrets) = match garble_relus(p, RELUS, delta, None, 0, Prg::from_seed(Block(4)))
    {
        Ok(x) => x,
        Err(e) => panic!("garbling failed: {e}"),
    };
    let server = match secrets.encode_server_inputs(&vec![12345; RELUS]) {
        Ok(x) => x,
        Err(e) => panic!("encoding failed: {e}"),
    };
    let client = secrets.secrets.evaluator_zero_labels.clone();
    let qs = vec![0u64; RELUS];
    g.bench_function("evaluate", |b| {
        b.iter(|| evaluate_relus(&garbled, &server, &client, &qs).ok())
    });
    g.finish();
}

fn random_ots(c: &mut Criterion) {
    let (mut a, mut b) = MemoryChannel::pair();
    let (sender, receiver) = std::thread::scope(|s| {
        let h = s.spawn(|| OtReceiver::setup(&mut b, &mut Prg::from_seed(Block(5))));
        let sender = OtSender::setup(
            &mut a,
            Delta::from_block(Block(7)),
            &mut Prg::from_seed(Block(6)),
        );
        (sender, h.join())
    });
    let (mut sender, mut receiver) = match (sender, receiver) {
        (Ok(s), Ok(Ok(r))) => (s, r),
        _ => panic!("OT setup failed"),
    };
    let choices: Vec<bool> = (0..OTS).map(|i| i % 3 == 0).collect();
    let mut g = c.benchmark_group("iknp_memory_channel");
    g.throughput(Throughput::Elements(OTS as u64));
    g.bench_function("random_ots", |bch| {
        bch.iter(|| {
            std::thread::scope(|s| {
                let h = s.spawn(|| receiver.receive_random(&mut b, &choices).ok());
                let x = sender.send_random(&mut a, OTS).ok();
                (x, h.join().ok())
            })
        })
    });
    g.finish();
}

criterion_group!(benches, and_gates, relus, random_ots);
criterion_main!(benches);
