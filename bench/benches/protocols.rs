//! Two-party protocol benchmarks over a real loopback TCP connection.
//!
//! Both parties run in this process: the server (garbler, OT sender) on a second thread,
//! the client (evaluator, OT receiver) on the benchmark thread, connected by a
//! `127.0.0.1` TCP socket pair with `TCP_NODELAY`, each end wrapped in
//! `protocols::StreamChannel`. The base OTs run once in the setup; every measurement
//! is the wall time until both parties have finished.
//!
//! * `tcp_ot/random_ots`: IKNP random OTs (after base OT), 131,072 per call;
//! * `tcp_relu_offline/{1000,10000}`: correlated OTs for the client's inputs, garbling,
//!   sending and parsing the tables;
//! * `tcp_relu_online/{1000,10000}`: server input labels, evaluation, colour bits,
//!   decoding.
//!
//! Throughput is in elements (OTs or ReLUs) per second. The setup prints the measured
//! bytes per ReLU of each phase and direction (from `CountingChannel`) to stderr.
//! Run with `bash scripts/bench.sh` (all benchmarks) or
//! `cargo bench -p bench --bench protocols`.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bench::net::loopback_pair;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use protocols::block::Delta;
use protocols::channel::CountingChannel;
use protocols::gc::relu::{
    GarbledRelus, ReluGarblerSecrets, ReluParams, client_gadget_inputs, relu_gadget_reference,
    server_gadget_input,
};
use protocols::ot::{OtReceiver, OtSender};
use protocols::prg::Prg;
use protocols::twopc::{
    relu_offline_client, relu_offline_server, relu_online_client, relu_online_server,
};
use protocols::{Block, StreamChannel};
use rand_core::RngCore;

type Ch = StreamChannel<TcpStream>;

const OTS: usize = 1 << 17;
const RELU_BATCHES: [usize; 2] = [1_000, 10_000];

/// A connected session: channels and OT state of both parties after the base OTs.
struct Session {
    server: Ch,
    client: Ch,
    sender: OtSender,
    receiver: OtReceiver,
    /// Next garbling batch id (unique per `Δ`).
    batch_id: u64,
}

fn session() -> Session {
    let (mut server, mut client) = loopback_pair().unwrap();
    let (sender, receiver) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let delta = Delta::random(&mut Prg::from_entropy());
            OtSender::setup(&mut server, delta, &mut Prg::from_entropy()).unwrap()
        });
        let receiver = OtReceiver::setup(&mut client, &mut Prg::from_entropy()).unwrap();
        (h.join().unwrap(), receiver)
    });
    Session {
        server,
        client,
        sender,
        receiver,
        batch_id: 0,
    }
}

/// Gadget inputs of one batch: shares of pre-activations `y` with `|y| < 2^34` and the
/// client's next-layer masks.
struct Inputs {
    a: Vec<u64>,
    b: Vec<u64>,
    q: Vec<u64>,
}

fn inputs(n: usize, p: ReluParams) -> Inputs {
    let mut rng = Prg::from_seed(Block(n as u128));
    let ring = (1u64 << p.l) - 1;
    let (mut a, mut b, mut q) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let y = (rng.next_u64() >> 30).wrapping_sub(1 << 33) & ring;
        let c = rng.next_u64() & ring;
        let s = y.wrapping_sub(c) & ring;
        let (bv, qv) = client_gadget_inputs(c, rng.next_u64() & ring, p);
        a.push(server_gadget_input(s, p));
        b.push(bv);
        q.push(qv);
    }
    Inputs { a, b, q }
}

/// One offline phase over counting channels; returns everything the online phase needs.
/// Prints the bytes per ReLU of both phases once, and checks the online outputs.
fn prepare(
    s: &mut Session,
    p: ReluParams,
    inp: &Inputs,
) -> (ReluGarblerSecrets, GarbledRelus, Vec<Block>) {
    let n = inp.a.len();
    let batch_id = s.batch_id;
    s.batch_id += 1;
    let Session {
        server,
        client,
        sender,
        receiver,
        ..
    } = s;
    let (secrets, off_stats, (garbled, labels)) = std::thread::scope(|t| {
        let h = t.spawn(|| {
            let mut ch = CountingChannel::new(&mut *server);
            let sec =
                relu_offline_server(&mut ch, sender, p, n, batch_id, Prg::from_entropy()).unwrap();
            (sec, ch.stats())
        });
        let out = relu_offline_client(&mut *client, receiver, p, &inp.b, &inp.q).unwrap();
        let (sec, st) = h.join().unwrap();
        (sec, st, out)
    });
    // One online run to count bytes and check the result; the benchmark reuses clones of
    // the secrets (never with different inputs: that would reveal Δ).
    let (outputs, on_stats) = std::thread::scope(|t| {
        let sec = secrets.clone();
        let h = t.spawn(|| {
            let mut ch = CountingChannel::new(&mut *server);
            let o = relu_online_server(&mut ch, sec, &inp.a).unwrap();
            (o, ch.stats())
        });
        relu_online_client(&mut *client, &garbled, &labels, &inp.q).unwrap();
        h.join().unwrap()
    });
    for (i, o) in outputs.iter().enumerate() {
        assert_eq!(*o, relu_gadget_reference(inp.a[i], inp.b[i], inp.q[i], p));
    }
    let per = |x: u64| x as f64 / n as f64;
    eprintln!(
        "[bytes] {n} ReLUs ({:?}): offline client->server {:.1} B/ReLU (OT), \
         server->client {:.1} B/ReLU (tables); online server->client {:.1} B/ReLU \
         (labels), client->server {:.1} B/ReLU (colour bits)",
        p,
        per(off_stats.bytes_received),
        per(off_stats.bytes_sent),
        per(on_stats.bytes_sent),
        per(on_stats.bytes_received),
    );
    (secrets, garbled, labels)
}

fn random_ots(c: &mut Criterion) {
    let mut s = session();
    let choices: Vec<bool> = (0..OTS).map(|i| (i * 7919) % 3 == 0).collect();
    let mut g = c.benchmark_group("tcp_ot");
    g.throughput(Throughput::Elements(OTS as u64));
    g.sample_size(20);
    g.bench_function("random_ots", |bch| {
        bch.iter_custom(|iters| {
            let Session {
                server,
                client,
                sender,
                receiver,
                ..
            } = &mut s;
            let start = Instant::now();
            std::thread::scope(|t| {
                let h = t.spawn(|| {
                    for _ in 0..iters {
                        black_box(sender.send_random(&mut *server, OTS).unwrap());
                    }
                });
                for _ in 0..iters {
                    black_box(receiver.receive_random(&mut *client, &choices).unwrap());
                }
                h.join().unwrap();
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn relu_offline(c: &mut Criterion) {
    let p = ReluParams::DEFAULT;
    let mut s = session();
    let mut g = c.benchmark_group("tcp_relu_offline");
    g.sample_size(10);
    for n in RELU_BATCHES {
        let inp = inputs(n, p);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &inp, |bch, inp| {
            bch.iter_custom(|iters| {
                let first = s.batch_id;
                s.batch_id += iters;
                let Session {
                    server,
                    client,
                    sender,
                    receiver,
                    ..
                } = &mut s;
                let start = Instant::now();
                std::thread::scope(|t| {
                    let h = t.spawn(|| {
                        for i in 0..iters {
                            let sec = relu_offline_server(
                                &mut *server,
                                sender,
                                p,
                                n,
                                first + i,
                                Prg::from_entropy(),
                            );
                            black_box(sec.unwrap());
                        }
                    });
                    for _ in 0..iters {
                        let out = relu_offline_client(&mut *client, receiver, p, &inp.b, &inp.q);
                        black_box(out.unwrap());
                    }
                    h.join().unwrap();
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

fn relu_online(c: &mut Criterion) {
    let p = ReluParams::DEFAULT;
    let mut s = session();
    let mut g = c.benchmark_group("tcp_relu_online");
    g.sample_size(20);
    for n in RELU_BATCHES {
        let inp = inputs(n, p);
        let (mut secrets, garbled, labels) = prepare(&mut s, p, &inp);
        // The online phase needs neither the client's zero labels nor their clone cost.
        secrets.secrets.evaluator_zero_labels = Vec::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &inp, |bch, inp| {
            bch.iter_custom(|iters| {
                let Session { server, client, .. } = &mut s;
                let mut total = Duration::ZERO;
                // A server thread fed one clone of the secrets per run (cloned outside the
                // timed region), the client on this thread.
                std::thread::scope(|t| {
                    let (job_tx, job_rx) = mpsc::channel::<ReluGarblerSecrets>();
                    let (done_tx, done_rx) = mpsc::channel::<Vec<u64>>();
                    let a = &inp.a;
                    t.spawn(move || {
                        for sec in job_rx {
                            let out = relu_online_server(&mut *server, sec, a).unwrap();
                            done_tx.send(out).unwrap();
                        }
                    });
                    for _ in 0..iters {
                        let sec = secrets.clone();
                        let start = Instant::now();
                        job_tx.send(sec).unwrap();
                        relu_online_client(&mut *client, &garbled, &labels, &inp.q).unwrap();
                        let out = done_rx.recv().unwrap();
                        total += start.elapsed();
                        black_box(out);
                    }
                    drop(job_tx);
                });
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, random_ots, relu_offline, relu_online);
criterion_main!(benches);
