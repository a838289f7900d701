//! The online arithmetic of the exact truncation and of the truncation with a square, per
//! position, without a network: both parties in one thread over an in-memory channel
//! (`protocols::MemoryChannel`), each step in turn (the server's request, the client's
//! answer, the server's finish).
//!
//! * `share_online/trunc/16384`: [`protocols::trunc`] at `f = 14`, `l = 61` (a linearized
//!   position of an identity site: the baseline);
//! * `share_online/square/16384`: [`protocols::square`] at `t = 14`, `t2 = 20`, `l = 61`
//!   (a linearized position of a quadratic site).
//!
//! 16,384 positions is ResNet-20's first stage (16 x 32 x 32). The offline phase (real
//! OTs, seeded) runs before each timed iteration and is not timed. Throughput is in
//! positions per second. `cargo bench -p bench --bench share_online`.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use protocols::block::Delta;
use protocols::channel::{Channel, MemoryChannel};
use protocols::ot::{OtReceiver, OtSender};
use protocols::square::{
    SquareParams, square_offline_client, square_offline_server, square_online_client,
    square_online_server_finish, square_online_server_request,
};
use protocols::trunc::{
    trunc_offline_client, trunc_offline_server, trunc_online_client, trunc_online_server_finish,
    trunc_online_server_request,
};
use rand_chacha::ChaCha12Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

const N: usize = 16_384;
const L: u32 = 61;
const F: u32 = 14;

/// Both base-OT directions: the truncation's (client = OT sender) and the OLE's (server =
/// OT sender), and the channels.
struct Setup {
    s_ch: MemoryChannel,
    c_ch: MemoryChannel,
    s_trunc: OtReceiver,
    s_ole: OtSender,
    c_trunc: OtSender,
    c_ole: OtReceiver,
}

fn setup() -> Setup {
    let (mut s_ch, c_ch) = MemoryChannel::pair();
    let h = std::thread::spawn(move || {
        let mut ch = c_ch;
        let mut rng = ChaCha12Rng::seed_from_u64(1);
        let trunc = OtSender::setup(&mut ch, Delta::random(&mut rng), &mut rng).unwrap();
        let ole = OtReceiver::setup(&mut ch, &mut rng).unwrap();
        (ch, trunc, ole)
    });
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let s_trunc = OtReceiver::setup(&mut s_ch, &mut rng).unwrap();
    let s_ole = OtSender::setup(&mut s_ch, Delta::random(&mut rng), &mut rng).unwrap();
    let (c_ch, c_trunc, c_ole) = h.join().unwrap();
    Setup {
        s_ch,
        c_ch,
        s_trunc,
        s_ole,
        c_trunc,
        c_ole,
    }
}

/// Shares of `N` values below 2^40 in `Z_{2^L}`: `(server's a, client's c)`.
fn shares(rng: &mut ChaCha12Rng) -> (Vec<u64>, Vec<u64>) {
    let mask = (1u64 << L) - 1;
    (0..N)
        .map(|_| {
            let y = ((rng.next_u64() >> 23) as i64 - (1i64 << 40)) as u64;
            let c = rng.next_u64() & mask;
            (y.wrapping_sub(c) & mask, c)
        })
        .unzip()
}

fn share_online(c: &mut Criterion) {
    let mut g = c.benchmark_group("share_online");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(N as u64));
    let mut st = setup();
    let mut rng = ChaCha12Rng::seed_from_u64(3);
    g.bench_function(BenchmarkId::new("trunc", N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (a, cs) = shares(&mut rng);
                let Setup {
                    s_ch,
                    c_ch,
                    s_trunc,
                    c_trunc,
                    ..
                } = &mut st;
                let mut s_sec = std::thread::scope(|s| {
                    let h = s.spawn(|| {
                        let mut r = ChaCha12Rng::seed_from_u64(4);
                        let (_, sec, corr) =
                            trunc_offline_client(c_ch, c_trunc, &cs, F, L, &mut r).unwrap();
                        corr.send(c_ch).unwrap();
                        c_ch.flush().unwrap();
                        sec
                    });
                    let mut r = ChaCha12Rng::seed_from_u64(5);
                    let s_sec = trunc_offline_server(s_ch, s_trunc, N, F, L, &mut r).unwrap();
                    (s_sec, h.join().unwrap())
                });
                s_sec.0.receive_corrections(s_ch).unwrap();
                let (s_sec, c_sec) = s_sec;
                let t = Instant::now();
                trunc_online_server_request(s_ch, &s_sec, &a).unwrap();
                s_ch.flush().unwrap();
                let ans = trunc_online_client(c_ch, c_sec).unwrap();
                ans.send(c_ch).unwrap();
                c_ch.flush().unwrap();
                std::hint::black_box(trunc_online_server_finish(s_ch, s_sec, &a).unwrap());
                total += t.elapsed();
            }
            total
        })
    });
    let p = SquareParams::new(L, F, 20).unwrap();
    g.bench_function(BenchmarkId::new("square", N), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (a, cs) = shares(&mut rng);
                let Setup {
                    s_ch,
                    c_ch,
                    s_trunc,
                    s_ole,
                    c_trunc,
                    c_ole,
                } = &mut st;
                let (s_sec, c_sec) = std::thread::scope(|s| {
                    let h = s.spawn(|| {
                        let mut r = ChaCha12Rng::seed_from_u64(6);
                        square_offline_client(c_ch, c_trunc, c_ole, &cs, p, &mut r)
                            .unwrap()
                            .1
                    });
                    let mut r = ChaCha12Rng::seed_from_u64(7);
                    let s_sec = square_offline_server(s_ch, s_trunc, s_ole, N, p, &mut r).unwrap();
                    (s_sec, h.join().unwrap())
                });
                let t = Instant::now();
                square_online_server_request(s_ch, &s_sec, &a).unwrap();
                s_ch.flush().unwrap();
                let ans = square_online_client(c_ch, c_sec).unwrap();
                ans.send(c_ch).unwrap();
                c_ch.flush().unwrap();
                std::hint::black_box(square_online_server_finish(s_ch, s_sec, &a).unwrap());
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, share_online);
criterion_main!(benches);
