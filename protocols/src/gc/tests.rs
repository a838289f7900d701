use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

use super::gadgets::*;
use super::relu::*;
use super::*;
use crate::block::Block;
use crate::channel::MemoryChannel;
use crate::error::Fault;

/// A random circuit: `ng` garbler inputs, `ne` evaluator inputs, then gates
/// `(op, i, j)` over earlier wires (indices taken modulo the number of wires so far).
#[derive(Clone, Debug)]
struct RandCircuit {
    ng: usize,
    ne: usize,
    gates: Vec<(u8, usize, usize)>,
    outputs: Vec<usize>,
}

fn run<B: Backend>(b: &mut B, c: &RandCircuit) -> crate::error::Result<()> {
    let mut w = b.inputs(Party::Garbler, c.ng)?;
    w.extend(b.inputs(Party::Evaluator, c.ne)?);
    let outs = run_on_wires(b, c, w)?;
    b.outputs(&outs)
}

/// The gates of `c` on given input wires; returns the output wires.
fn run_on_wires<B: Backend>(
    b: &mut B,
    c: &RandCircuit,
    mut w: Vec<B::Wire>,
) -> crate::error::Result<Vec<B::Wire>> {
    for &(op, i, j) in &c.gates {
        let (x, y) = (w[i % w.len()].clone(), w[j % w.len()].clone());
        let z = match op % 5 {
            0 => b.xor(&x, &y),
            1 | 4 => b.and(&x, &y)?,
            2 => b.not(&x),
            _ => b.constant(i % 2 == 1)?,
        };
        w.push(z);
    }
    Ok(c.outputs.iter().map(|&o| w[o % w.len()].clone()).collect())
}

/// Garbles `lanes` copies of `c` (constants replaced by XOR) with the lane-parallel
/// backends and checks each lane against the plaintext backend.
fn check_wide(c: &RandCircuit, inputs: &[Vec<bool>], seed: u64) {
    use super::wide::{LANES, WideEvaluator, WideGarbler};
    let mut c = c.clone();
    for g in &mut c.gates {
        if g.0 % 5 == 3 {
            g.0 = 0;
        }
    }
    let lanes = inputs.len();
    let n_in = c.ng + c.ne;
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let delta = Delta::random(&mut rng);
    let zero: Vec<[Block; LANES]> = (0..n_in)
        .map(|_| core::array::from_fn(|_| Block::random(&mut rng)))
        .collect();
    let hash = crate::aes_hash::TccrHash::new();
    let mut tables = Vec::new();
    let mut g = WideGarbler {
        delta: delta.block(),
        hash: &hash,
        batch_id: seed,
        gate: 0,
        lanes,
        tables: &mut tables,
    };
    let out0 = run_on_wires(&mut g, &c, zero.clone()).unwrap();
    let active: Vec<[Block; LANES]> = (0..n_in)
        .map(|k| {
            core::array::from_fn(|j| {
                if j < lanes {
                    zero[k][j] ^ delta.block().select(inputs[j][k])
                } else {
                    Block::ZERO
                }
            })
        })
        .collect();
    let mut ev = WideEvaluator {
        hash: &hash,
        batch_id: seed,
        gate: 0,
        lanes,
        tables: &tables,
        pos: 0,
    };
    let out = run_on_wires(&mut ev, &c, active).unwrap();
    assert_eq!(ev.pos, tables.len());
    for (j, inp) in inputs.iter().enumerate() {
        let mut p = PlainBackend::new(inp[..c.ng].to_vec(), inp[c.ng..].to_vec());
        run(&mut p, &c).unwrap();
        let got: Vec<bool> = out
            .iter()
            .zip(&out0)
            .map(|(w, w0)| w[j].lsb() ^ w0[j].lsb())
            .collect();
        assert_eq!(got, p.into_outputs(), "lane {j}");
    }
}

fn garble_and_eval(c: &RandCircuit, gin: &[bool], ein: &[bool], seed: u64) -> Vec<bool> {
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let delta = Delta::random(&mut rng);
    let mut g = Garbler::new(delta, seed, rng);
    run(&mut g, c).unwrap();
    let (tables, sec) = g.finish().unwrap();
    // Round-trip the tables through bytes: garbling is separable from evaluation.
    let tables = GarbledTables::from_bytes(&tables.to_bytes()).unwrap();
    let gl = encode_labels(&sec.garbler_zero_labels, gin, delta).unwrap();
    let el = encode_labels(&sec.evaluator_zero_labels, ein, delta).unwrap();
    let mut ev = Evaluator::new(&tables, &gl, &el);
    run(&mut ev, c).unwrap();
    let colours = ev.finish().unwrap();
    decode_colour_bits(&colours, &sec.decode).unwrap()
}

fn arb_circuit() -> impl Strategy<Value = (RandCircuit, Vec<bool>, Vec<bool>, u64)> {
    (
        1usize..6,
        1usize..6,
        prop::collection::vec((0u8..5, any::<usize>(), any::<usize>()), 1..60),
    )
        .prop_flat_map(|(ng, ne, gates)| {
            (
                Just(ng),
                Just(ne),
                Just(gates),
                prop::collection::vec(any::<usize>(), 1..12),
                prop::collection::vec(any::<bool>(), ng),
                prop::collection::vec(any::<bool>(), ne),
                any::<u64>(),
            )
        })
        .prop_map(|(ng, ne, gates, outputs, gin, ein, seed)| {
            (
                RandCircuit {
                    ng,
                    ne,
                    gates,
                    outputs,
                },
                gin,
                ein,
                seed,
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_circuits_garbled_equals_plain((c, gin, ein, seed) in arb_circuit()) {
        let mut p = PlainBackend::new(gin.clone(), ein.clone());
        run(&mut p, &c).unwrap();
        let plain = p.into_outputs();
        prop_assert_eq!(garble_and_eval(&c, &gin, &ein, seed), plain);
    }

    #[test]
    fn random_circuits_lane_parallel_equals_plain(
        (c, gin, ein, seed) in arb_circuit(),
        lanes in 1usize..=8,
        extra in prop::collection::vec(any::<bool>(), 80),
    ) {
        // Lane j's inputs: the drawn inputs rotated by j and xored with `extra`.
        let base: Vec<bool> = gin.iter().chain(&ein).copied().collect();
        let inputs: Vec<Vec<bool>> = (0..lanes)
            .map(|j| (0..base.len()).map(|k| base[(k + j) % base.len()] ^ extra[(k + 7 * j) % 80]).collect())
            .collect();
        check_wide(&c, &inputs, seed);
    }

    #[test]
    fn gadgets_match_integers(x in 0u64..256, y in 0u64..256, s in any::<bool>()) {
        let n = 8;
        let (xb, yb) = (u64_to_bits(x, n), u64_to_bits(y, n));
        let xs = (x as u8) as i8;
        let ys = (y as u8) as i8;
        let mut p = PlainBackend::default();
        let sum = add_mod(&mut p, &xb, &yb).unwrap();
        prop_assert_eq!(bits_to_u64(&sum), (x + y) % 256);
        let (sum, c) = add_with_carry(&mut p, &xb, &yb).unwrap();
        prop_assert_eq!(bits_to_u64(&sum) + ((c as u64) << n), x + y);
        let d = sub_mod(&mut p, &xb, &yb).unwrap();
        prop_assert_eq!(bits_to_u64(&d), x.wrapping_sub(y) % 256);
        let (d, borrow) = sub_with_borrow(&mut p, &xb, &yb).unwrap();
        prop_assert_eq!(bits_to_u64(&d), x.wrapping_sub(y) % 256);
        prop_assert_eq!(borrow, x < y);
        prop_assert_eq!(lt_unsigned(&mut p, &xb, &yb).unwrap(), x < y);
        prop_assert_eq!(lt_signed(&mut p, &xb, &yb).unwrap(), xs < ys);
        let mx = mux(&mut p, &s, &xb, &yb).unwrap();
        prop_assert_eq!(bits_to_u64(&mx), if s { y } else { x });
        let short = &xb[..3];
        let z = add_mod_zero_extended(&mut p, short, &yb).unwrap();
        prop_assert_eq!(bits_to_u64(&z), ((x % 8) + y) % 256);
    }

    #[test]
    fn relu_reference_matches_plain_circuit(a in any::<u64>(), b in any::<u64>(), q in any::<u64>()) {
        let p = ReluParams::DEFAULT;
        let (a, b, q) = (a & mask(p.m), b & mask(p.m), q & mask(p.l));
        prop_assert_eq!(plain_relu(a, b, q, p), relu_gadget_reference(a, b, q, p));
    }
}

fn plain_relu(a: u64, b: u64, q: u64, p: ReluParams) -> u64 {
    let mut e = u64_to_bits(b, p.m as usize);
    e.extend(u64_to_bits(q, p.l as usize));
    let mut pb = PlainBackend::new(u64_to_bits(a, p.m as usize), e);
    relu_gadget(&mut pb, p).unwrap();
    bits_to_u64(pb.outputs())
}

#[test]
fn gadget_and_counts() {
    let n = 16;
    type Gadget<'a> = &'a dyn Fn(&mut GateCounter, &[()], &[()]);
    let count = |f: Gadget| {
        let mut c = GateCounter::new();
        f(&mut c, &vec![(); n], &vec![(); n]);
        c.counts().and
    };
    assert_eq!(count(&|c, x, y| drop(add_mod(c, x, y).unwrap())), n - 1);
    assert_eq!(count(&|c, x, y| drop(add_with_carry(c, x, y).unwrap())), n);
    assert_eq!(count(&|c, x, y| drop(sub_mod(c, x, y).unwrap())), n - 1);
    assert_eq!(count(&|c, x, y| drop(sub_with_borrow(c, x, y).unwrap())), n);
    assert_eq!(
        count(&|c, x, y| {
            lt_unsigned(c, x, y).unwrap();
        }),
        n
    );
    assert_eq!(
        count(&|c, x, y| {
            lt_signed(c, x, y).unwrap();
        }),
        n
    );
    assert_eq!(count(&|c, x, y| drop(mux(c, &(), x, y).unwrap())), n);
    assert_eq!(
        count(&|c, x, y| drop(add_mod_zero_extended(c, &x[..5], y).unwrap())),
        n - 1
    );
}

#[test]
fn relu_gate_count_is_116() {
    let p = ReluParams::DEFAULT;
    let mut c = GateCounter::new();
    relu_gadget(&mut c, p).unwrap();
    let k = c.counts();
    assert_eq!(k.and, 116);
    assert_eq!(k.and, p.and_gates());
    assert_eq!(k.constants, 0);
    assert_eq!(k.garbler_inputs, 36);
    assert_eq!(k.evaluator_inputs, 36 + 61);
    assert_eq!(k.outputs, 61);
    assert_eq!(k.table_bytes(), 3712);
    assert_eq!(p.table_bytes(), 3712);
    // The formula at other widths (l = 61, f = 12, m = 32: the narrower variant).
    let q = ReluParams {
        l: 61,
        f: 12,
        m: 32,
    };
    let mut c = GateCounter::new();
    relu_gadget(&mut c, q).unwrap();
    assert_eq!(c.counts().and, 110);
}

/// Edge values of the signed m-bit sum `z = a + b`.
fn edge_sums(p: ReluParams) -> Vec<i64> {
    let half = 1i64 << (p.m - 1);
    let one = 1i64 << p.f;
    let mut v = vec![
        0,
        1,
        -1,
        half - 1,
        -half,
        half - 2,
        -half + 1,
        one,
        one - 1,
        -one,
        -one - 1,
        -one + 1,
    ];
    for k in [2i64, 3, 1000, -2, -3, -1000] {
        v.push(k * one);
        v.push(k * one - 1);
        v.push(k * one + 1);
    }
    v
}

#[test]
fn relu_garbled_equals_plain_equals_reference() {
    let p = ReluParams::DEFAULT;
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let mut cases = Vec::new();
    for z in edge_sums(p) {
        for _ in 0..3 {
            // Split z (mod 2^m) into a random a and b.
            let a = rng.r#gen::<u64>() & mask(p.m);
            let b = (z as u64).wrapping_sub(a) & mask(p.m);
            cases.push((a, b, rng.r#gen::<u64>() & mask(p.l)));
        }
        cases.push((z as u64 & mask(p.m), 0, 0));
        cases.push((0, z as u64 & mask(p.m), mask(p.l)));
    }
    for _ in 0..200 {
        cases.push((
            rng.r#gen::<u64>() & mask(p.m),
            rng.r#gen::<u64>() & mask(p.m),
            rng.r#gen::<u64>() & mask(p.l),
        ));
    }
    let n = cases.len();
    let delta = Delta::random(&mut rng);
    let (garbled, secrets) =
        garble_relus(p, n, delta, None, 3, ChaCha12Rng::seed_from_u64(8)).unwrap();
    assert_eq!(garbled.tables.byte_len(), n * p.table_bytes());
    let a: Vec<u64> = cases.iter().map(|c| c.0).collect();
    let bs: Vec<u64> = cases.iter().map(|c| c.1).collect();
    let qs: Vec<u64> = cases.iter().map(|c| c.2).collect();
    let server_labels = secrets.encode_server_inputs(&a).unwrap();
    let choice = client_input_bits(&bs, &qs, p).unwrap();
    let client_labels =
        encode_labels(&secrets.secrets.evaluator_zero_labels, &choice, delta).unwrap();
    let colours = evaluate_relus(&garbled, &server_labels, &client_labels).unwrap();
    let out = secrets.decode_outputs(&colours).unwrap();
    for (i, &(a, b, q)) in cases.iter().enumerate() {
        let r = relu_gadget_reference(a, b, q, p);
        assert_eq!(out[i], r, "case {i}: a={a} b={b} q={q}");
        assert_eq!(plain_relu(a, b, q, p), r);
    }
    // Spot-check the reference itself: ReLU with round-half-up truncation.
    let f = p.f;
    let check = |z: i64, expect: u64| {
        let a = z as u64 & mask(p.m);
        assert_eq!(relu_gadget_reference(a, 0, 0, p), expect, "z = {z}");
    };
    check(0, 0);
    check(-1, 0);
    check((1 << f) - 1, 0);
    check(1 << f, 1);
    check((5 << f) + 7, 5);
    check((1 << (p.m - 1)) - 1, (1 << (p.m - 1 - f)) - 1);
    check(-(1 << (p.m - 1)), 0);
    // q wraps mod 2^l.
    assert_eq!(relu_gadget_reference(3 << f, 0, mask(p.l), p), 2);
}

#[test]
fn relu_end_to_end_with_shares() {
    // Server/client shares of y (scale 2^(2f)) -> shares of relu(round(y / 2^f)) - r'.
    let p = ReluParams::DEFAULT;
    let mut rng = ChaCha12Rng::seed_from_u64(11);
    let ys: Vec<i64> = vec![
        0,
        1,
        -1,
        5 << 24,
        -(5 << 24),
        123_456_789,
        -987_654_321,
        (1 << 31) - (1 << 11) - 1,
    ];
    let n = ys.len();
    let delta = Delta::random(&mut rng);
    let (garbled, secrets) =
        garble_relus(p, n, delta, None, 0, ChaCha12Rng::seed_from_u64(12)).unwrap();
    let mut a = Vec::new();
    let mut bs = Vec::new();
    let mut qs = Vec::new();
    let mut rs = Vec::new();
    for &y in &ys {
        let s = rng.r#gen::<u64>() & mask(p.l);
        let c = (y as u64).wrapping_sub(s) & mask(p.l);
        let r_next = rng.r#gen::<u64>() & mask(p.l);
        a.push(server_gadget_input(s, p));
        let (b, q) = client_gadget_inputs(c, r_next, p);
        bs.push(b);
        qs.push(q);
        rs.push(r_next);
    }
    let choice = client_input_bits(&bs, &qs, p).unwrap();
    let client_labels =
        encode_labels(&secrets.secrets.evaluator_zero_labels, &choice, delta).unwrap();
    let (mut sch, mut cch) = MemoryChannel::pair();
    let g2 = garbled.clone();
    let h = std::thread::spawn(move || relu_online_client(&mut cch, &g2, &client_labels));
    let out = relu_online_server(&mut sch, secrets, &a).unwrap();
    h.join().unwrap().unwrap();
    for i in 0..n {
        let x = out[i].wrapping_add(rs[i]) & mask(p.l);
        let expect = ((ys[i] + (1 << (p.f - 1))) >> p.f).max(0) as u64;
        assert_eq!(x, expect, "y = {}", ys[i]);
    }
}

#[test]
fn serialisation_roundtrips_and_rejects_garbage() {
    let p = ReluParams::DEFAULT;
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let delta = Delta::random(&mut rng);
    let (garbled, secrets) =
        garble_relus(p, 3, delta, None, 9, ChaCha12Rng::seed_from_u64(6)).unwrap();
    let bytes = garbled.to_bytes();
    assert_eq!(GarbledRelus::from_bytes(&bytes).unwrap(), garbled);
    let sbytes = secrets.to_bytes();
    let s2 = ReluGarblerSecrets::from_bytes(&sbytes).unwrap();
    assert_eq!(s2.to_bytes(), sbytes);
    for cut in [0, 3, 8, 16, 24, bytes.len() - 1] {
        let e = GarbledRelus::from_bytes(&bytes[..cut]).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
    }
    for cut in [0, 5, 40, sbytes.len() - 1] {
        assert!(ReluGarblerSecrets::from_bytes(&sbytes[..cut]).is_err());
    }
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(GarbledRelus::from_bytes(&bad).is_err());
    let mut bad = bytes.clone();
    bad[8] = 0xff; // count
    assert!(GarbledRelus::from_bytes(&bad).is_err());
    let mut bad = bytes;
    bad[6] = 70; // m > l
    assert!(GarbledRelus::from_bytes(&bad).is_err());
}

#[test]
fn truncated_tables_are_a_peer_error() {
    let p = ReluParams::DEFAULT;
    let mut rng = ChaCha12Rng::seed_from_u64(5);
    let delta = Delta::random(&mut rng);
    let (mut garbled, secrets) =
        garble_relus(p, 2, delta, None, 1, ChaCha12Rng::seed_from_u64(6)).unwrap();
    let server = secrets.encode_server_inputs(&[1, 2]).unwrap();
    let client = secrets.secrets.evaluator_zero_labels.clone();
    garbled.tables.blocks.pop();
    let e = evaluate_relus(&garbled, &server, &client).unwrap_err();
    assert_eq!(e.fault(), Fault::Peer);
    garbled.tables.blocks.push(Block::ZERO);
    garbled.tables.blocks.push(Block::ZERO);
    let e = evaluate_relus(&garbled, &server, &client).unwrap_err();
    assert_eq!(e.fault(), Fault::Peer);
    assert_eq!(
        secrets.decode_outputs(&[true; 3]).unwrap_err().fault(),
        Fault::Peer
    );
    assert_eq!(
        secrets.encode_server_inputs(&[1]).unwrap_err().fault(),
        Fault::Caller
    );
}

#[test]
fn preset_client_labels_are_used() {
    let p = ReluParams::DEFAULT;
    let mut rng = ChaCha12Rng::seed_from_u64(2);
    let delta = Delta::random(&mut rng);
    let labels: Vec<Block> = (0..p.evaluator_input_bits())
        .map(|_| Block::random(&mut rng))
        .collect();
    let (_, secrets) = garble_relus(
        p,
        1,
        delta,
        Some(labels.clone()),
        0,
        ChaCha12Rng::seed_from_u64(3),
    )
    .unwrap();
    assert_eq!(secrets.secrets.evaluator_zero_labels, labels);
    assert!(garble_relus(p, 2, delta, Some(labels), 0, ChaCha12Rng::seed_from_u64(3)).is_err());
}

#[test]
fn delta_lsb_and_colour_bits() {
    let mut rng = ChaCha12Rng::seed_from_u64(1);
    for _ in 0..10 {
        assert!(Delta::random(&mut rng).block().lsb());
    }
    assert!(Delta::from_block(Block::ZERO).block().lsb());
}

#[test]
fn relu_offline_online_with_ot() {
    let (sch, cch) = MemoryChannel::pair();
    relu_offline_online(sch, cch);
}

#[cfg(unix)]
#[test]
fn relu_offline_online_over_socket_pair() {
    use crate::channel::StreamChannel;
    let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
    relu_offline_online(StreamChannel::new(x), StreamChannel::new(y));
}

fn relu_offline_online<C: crate::channel::Channel + Send + 'static>(sch: C, cch: C) {
    use crate::channel::CountingChannel;
    use crate::ot::{OtReceiver, OtSender};
    let p = ReluParams::DEFAULT;
    let n = 50;
    let mut rng = ChaCha12Rng::seed_from_u64(31);
    let ys: Vec<i64> = (0..n as i64).map(|i| (i - 25) * 987_654 + 3).collect();
    let mut a = Vec::new();
    let mut bs = Vec::new();
    let mut qs = Vec::new();
    let mut rs = Vec::new();
    for &y in &ys {
        let s = rng.r#gen::<u64>() & mask(p.l);
        let c = (y as u64).wrapping_sub(s) & mask(p.l);
        let r_next = rng.r#gen::<u64>() & mask(p.l);
        a.push(server_gadget_input(s, p));
        let (b, q) = client_gadget_inputs(c, r_next, p);
        bs.push(b);
        qs.push(q);
        rs.push(r_next);
    }
    let h = std::thread::spawn(move || {
        let mut cch = CountingChannel::new(cch);
        let mut ot = OtReceiver::setup(&mut cch, &mut ChaCha12Rng::seed_from_u64(1)).unwrap();
        cch.reset();
        let (garbled, labels) = relu_offline_client(&mut cch, &mut ot, p, &bs, &qs).unwrap();
        let offline = cch.stats();
        cch.reset();
        relu_online_client(&mut cch, &garbled, &labels).unwrap();
        (offline, cch.stats())
    });
    let mut sch = CountingChannel::new(sch);
    let mut srng = ChaCha12Rng::seed_from_u64(2);
    let delta = Delta::random(&mut srng);
    let mut ot = OtSender::setup(&mut sch, delta, &mut srng).unwrap();
    sch.reset();
    let secrets = relu_offline_server(&mut sch, &mut ot, p, n, 0, srng).unwrap();
    let s_off = sch.stats();
    sch.reset();
    let out = relu_online_server(&mut sch, secrets, &a).unwrap();
    let s_on = sch.stats();
    let (c_off, c_on) = h.join().unwrap();
    for i in 0..n {
        let x = out[i].wrapping_add(rs[i]) & mask(p.l);
        let expect = ((ys[i] + (1 << (p.f - 1))) >> p.f).max(0) as u64;
        assert_eq!(x, expect, "y = {}", ys[i]);
    }
    // Offline: client sends 16 bytes per OT (rounded up to 128 OTs); server sends tables.
    let ots = n * p.evaluator_input_bits();
    assert_eq!(c_off.bytes_sent as usize, 16 * ots.div_ceil(128) * 128);
    // Length prefix, magic and params, count, tables header (batch id, block count).
    assert_eq!(
        s_off.bytes_sent as usize,
        8 + 8 + 8 + 16 + n * p.table_bytes()
    );
    // Online: server sends m labels per gadget, client sends l colour bits per gadget.
    assert_eq!(s_on.bytes_sent as usize, n * p.m as usize * 16);
    assert_eq!(c_on.bytes_sent as usize, (n * p.l as usize).div_ceil(8));
    assert_eq!(
        (s_on.messages, s_on.rounds, c_on.messages, c_on.rounds),
        (1, 1, 1, 0)
    );
}

#[test]
fn relu_batches_of_every_group_shape() {
    let p = ReluParams::DEFAULT;
    let mut rng = ChaCha12Rng::seed_from_u64(99);
    for count in [0usize, 1, 2, 7, 8, 9, 16, 17, 23] {
        let delta = Delta::random(&mut rng);
        let (garbled, secrets) = garble_relus(
            p,
            count,
            delta,
            None,
            count as u64,
            ChaCha12Rng::seed_from_u64(count as u64),
        )
        .unwrap();
        assert_eq!(garbled.tables.byte_len(), count * p.table_bytes());
        let a: Vec<u64> = (0..count).map(|_| rng.r#gen::<u64>() & mask(p.m)).collect();
        let bs: Vec<u64> = (0..count).map(|_| rng.r#gen::<u64>() & mask(p.m)).collect();
        let qs: Vec<u64> = (0..count).map(|_| rng.r#gen::<u64>() & mask(p.l)).collect();
        let server = secrets.encode_server_inputs(&a).unwrap();
        let choice = client_input_bits(&bs, &qs, p).unwrap();
        let client = encode_labels(&secrets.secrets.evaluator_zero_labels, &choice, delta).unwrap();
        let out = secrets
            .decode_outputs(&evaluate_relus(&garbled, &server, &client).unwrap())
            .unwrap();
        for i in 0..count {
            assert_eq!(
                out[i],
                relu_gadget_reference(a[i], bs[i], qs[i], p),
                "count {count} gadget {i}"
            );
        }
    }
}

#[test]
fn preset_labels_exhausted_is_an_error() {
    let mut rng = ChaCha12Rng::seed_from_u64(4);
    let delta = Delta::random(&mut rng);
    let mut g =
        Garbler::with_evaluator_labels(delta, 0, vec![Block(1)], ChaCha12Rng::seed_from_u64(5));
    g.input(Party::Evaluator).unwrap();
    assert_eq!(
        g.input(Party::Evaluator).unwrap_err().fault(),
        Fault::Caller
    );
    let g = Garbler::with_evaluator_labels(delta, 0, vec![Block(1)], ChaCha12Rng::seed_from_u64(5));
    assert_eq!(g.finish().unwrap_err().fault(), Fault::Caller);
}
