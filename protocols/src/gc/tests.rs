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
/// backends (`W` lanes, the first `lanes` active) and checks each lane against the
/// plaintext backend, with the VAES kernels (where the CPU has them) and without.
fn check_wide<const W: usize>(c: &RandCircuit, inputs: &[Vec<bool>], seed: u64) {
    let pi = crate::aes_hash::AesCipher::fixed();
    check_wide_with::<W>(&pi, c, inputs, seed);
    check_wide_with::<W>(&pi.without_vaes(), c, inputs, seed);
}

fn check_wide_with<const W: usize>(
    pi: &crate::aes_hash::AesCipher,
    c: &RandCircuit,
    inputs: &[Vec<bool>],
    seed: u64,
) {
    use super::wide::{WideEvaluator, WideGarbler};
    let mut c = c.clone();
    for g in &mut c.gates {
        if g.0 % 5 == 3 {
            g.0 = 0;
        }
    }
    let lanes = inputs.len();
    assert!(lanes <= W);
    let n_in = c.ng + c.ne;
    let mut counter = GateCounter::new();
    let zeros = vec![(); n_in];
    run_on_wires(&mut counter, &c, zeros).unwrap();
    let ands = counter.counts().and;
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let delta = Delta::random(&mut rng);
    let zero: Vec<[Block; W]> = (0..n_in)
        .map(|_| core::array::from_fn(|_| Block::random(&mut rng)))
        .collect();
    // Lane j's k-th AND gate has its tables at block 2(j + k·lanes) (the ReLU group
    // layout).
    let layout = crate::gc::wide::LaneLayout::<W> {
        base: [0; W],
        lane: core::array::from_fn(|j| j as u64),
        stride: lanes as u64,
    };
    let mut tables = vec![Block::ZERO; 2 * ands * lanes];
    let mut g = WideGarbler::new(delta, pi, seed, layout, lanes, &mut tables);
    let out0 = run_on_wires(&mut g, &c, zero.clone()).unwrap();
    let active: Vec<[Block; W]> = (0..n_in)
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
    let mut ev = WideEvaluator::new(pi, seed, layout, lanes, &tables, &[]);
    let out = run_on_wires(&mut ev, &c, active).unwrap();
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
    // With one lane, the layout is the scalar garbler's: identical tables.
    if lanes == 1 {
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let _ = Delta::random(&mut rng);
        let mut sg = Garbler::new(delta, seed, rng);
        let zero1: Vec<Block> = zero.iter().map(|w| w[0]).collect();
        run_on_wires(&mut sg, &c, zero1).unwrap();
        let (st, _) = sg.finish().unwrap();
        assert_eq!(st.blocks, tables);
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
        lanes in 1usize..=32,
        extra in prop::collection::vec(any::<bool>(), 80),
    ) {
        // Lane j's inputs: the drawn inputs rotated by j and xored with `extra`.
        let base: Vec<bool> = gin.iter().chain(&ein).copied().collect();
        let inputs: Vec<Vec<bool>> = (0..lanes)
            .map(|j| (0..base.len()).map(|k| base[(k + j) % base.len()] ^ extra[(k + 7 * j) % 80]).collect())
            .collect();
        match lanes {
            0..=8 => check_wide::<8>(&c, &inputs, seed),
            9..=16 => check_wide::<16>(&c, &inputs, seed),
            _ => check_wide::<32>(&c, &inputs, seed),
        }
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
        for p in relu_variants() {
            let w = p.width();
            let (a, b, q) = (a & mask(w), b & mask(w), q & mask(p.l));
            prop_assert_eq!(plain_relu(a, b, q, p), relu_gadget_reference(a, b, q, p));
        }
    }

    /// From shares of any `y` inside the window: the exact gadget (`k = 0`) computes
    /// `relu(rescale(y))`, the fused one `relu(rescale(y) - c)` with `c` in {0, 1} the
    /// carry out of the dropped bits (`c = 1` exactly when the dropped low bits of the
    /// two inputs overflow).
    #[test]
    fn fused_truncation_is_exact_or_one_below(y in -(1i64 << 34)..(1i64 << 34), s in any::<u64>(), r in any::<u64>()) {
        for p in relu_variants() {
            let half = 1i64 << (p.m - 1);
            let t = y + (1 << (p.f - 1));
            if !(-half + (1 << p.k)..half).contains(&t) {
                continue;
            }
            let server = s & mask(p.l);
            let client = (y as u64).wrapping_sub(server) & mask(p.l);
            let a = server_gadget_input(server, p);
            let (b, q) = client_gadget_inputs(client, r, p);
            let out = relu_gadget_reference(a, b, q, p);
            let got = out.wrapping_add(r) & mask(p.l);
            let exact = (t >> p.f).max(0) as u64;
            let low = mask(p.k);
            let carry = ((server.wrapping_add(1 << (p.f - 1)) & low) + (client & low)) >> p.k;
            let expect = (((t >> p.k) - carry as i64) >> (p.f - p.k)).max(0) as u64;
            prop_assert_eq!(got, expect, "params {:?} y {}", p, y);
            if p.k == 0 {
                prop_assert_eq!(got, exact);
            }
        }
    }
}

/// The exact gadget, the default fused one, a narrower window and a partly fused one.
fn relu_variants() -> [ReluParams; 4] {
    let d = ReluParams::DEFAULT;
    [
        ReluParams::EXACT,
        d,
        ReluParams { m: 33, ..d },
        ReluParams { k: 10, ..d },
    ]
}

fn plain_relu(a: u64, b: u64, q: u64, p: ReluParams) -> u64 {
    let w = p.width() as usize;
    let mut e = u64_to_bits(b, w);
    e.extend(u64_to_bits(q, p.l as usize));
    let mut pb = PlainBackend::new(u64_to_bits(a, w), e);
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
fn relu_gate_counts() {
    let p = ReluParams::EXACT;
    let mut c = GateCounter::new();
    relu_gadget(&mut c, p).unwrap();
    let k = c.counts();
    assert_eq!(k.and, 116);
    assert_eq!(k.and, p.and_gates());
    assert_eq!(k.constants, 0);
    assert_eq!(k.garbler_inputs, 36);
    assert_eq!(k.evaluator_inputs, 36 + 61);
    assert_eq!(k.outputs, 61);
    // 39 of them (the carry chain above the ReLU output, c ∧ q_i) with one ciphertext.
    assert_eq!((k.and_known, p.known_and_gates()), (39, 39));
    assert_eq!(k.table_bytes(), 32 * 77 + 16 * 39);
    assert_eq!(p.table_bytes(), 3088);
    // The formula at other widths (l = 61, f = 12, m = 32: the narrower variant).
    let q = ReluParams {
        l: 61,
        f: 12,
        m: 32,
        k: 0,
    };
    let mut c = GateCounter::new();
    relu_gadget(&mut c, q).unwrap();
    assert_eq!(c.counts().and, 110);
    // Fused truncation (the default): 22 bits per share read, 102 AND gates.
    let p = ReluParams::DEFAULT;
    let mut c = GateCounter::new();
    relu_gadget(&mut c, p).unwrap();
    let k = c.counts();
    assert_eq!((k.and, p.and_gates()), (102, 102));
    assert_eq!(k.garbler_inputs, 22);
    assert_eq!(k.evaluator_inputs, 22 + 61);
    assert_eq!(k.outputs, 61);
    assert_eq!((k.and_known, p.known_and_gates()), (39, 39));
    assert_eq!((k.table_bytes(), p.table_bytes()), (2640, 2640));
    // With a per-site window of 32 (m = 34): 20 bits, 98 gates, 41 of them
    // evaluator-known: 2,480 bytes of tables.
    let p = ReluParams { m: 34, ..p };
    let mut c = GateCounter::new();
    relu_gadget(&mut c, p).unwrap();
    assert_eq!((c.counts().and, p.and_gates()), (98, 98));
    assert_eq!((c.counts().and_known, p.known_and_gates()), (41, 41));
    assert_eq!((c.counts().table_bytes(), p.table_bytes()), (2480, 2480));
    assert_eq!(c.counts().garbler_inputs, 20);
}

/// Edge values of the signed `(m - k)`-bit sum `z = a + b` of the gadget's inputs.
fn edge_sums(p: ReluParams) -> Vec<i64> {
    let half = 1i64 << (p.width() - 1);
    let one = 1i64 << (p.f - p.k);
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
    for p in relu_variants() {
        relu_garbled_equals_plain_equals_reference_at(p);
    }
}

fn relu_garbled_equals_plain_equals_reference_at(p: ReluParams) {
    let w = p.width();
    let mut rng = ChaCha12Rng::seed_from_u64(7);
    let mut cases = Vec::new();
    for z in edge_sums(p) {
        for _ in 0..3 {
            // Split z (mod 2^m) into a random a and b.
            let a = rng.r#gen::<u64>() & mask(w);
            let b = (z as u64).wrapping_sub(a) & mask(w);
            cases.push((a, b, rng.r#gen::<u64>() & mask(p.l)));
        }
        cases.push((z as u64 & mask(w), 0, 0));
        cases.push((0, z as u64 & mask(w), mask(p.l)));
    }
    for _ in 0..200 {
        cases.push((
            rng.r#gen::<u64>() & mask(w),
            rng.r#gen::<u64>() & mask(w),
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
    let colours = evaluate_relus(&garbled, &server_labels, &client_labels, &qs).unwrap();
    let out = secrets.decode_outputs(&colours).unwrap();
    // The online-only secrets (client labels dropped, decoding bits packed) encode and
    // decode the same, and hold exactly what `bytes_for` says.
    let online = ReluOnlineSecrets::from(secrets.clone());
    assert_eq!(online.encode_server_inputs(&a).unwrap(), server_labels);
    assert_eq!(online.decode_outputs(&colours).unwrap(), out);
    assert_eq!(online.byte_len(), ReluOnlineSecrets::bytes_for(p, n));
    assert!(online.byte_len() * 3 < (16 * (2 * w as u64 + p.l as u64) + 1) * n as u64);
    for (i, &(a, b, q)) in cases.iter().enumerate() {
        let r = relu_gadget_reference(a, b, q, p);
        assert_eq!(out[i], r, "case {i}: a={a} b={b} q={q}");
        assert_eq!(plain_relu(a, b, q, p), r);
    }
    // Spot-check the reference itself: ReLU with round-half-up truncation (by the
    // f - k bits the gadget still shifts).
    let f = p.f - p.k;
    let check = |z: i64, expect: u64| {
        let a = z as u64 & mask(w);
        assert_eq!(relu_gadget_reference(a, 0, 0, p), expect, "z = {z}");
    };
    check(0, 0);
    check(-1, 0);
    check((1 << f) - 1, 0);
    check(1 << f, 1);
    check((5 << f) + ((1 << f) - 1) / 2, 5);
    check((1 << (w - 1)) - 1, (1 << (w - 1 - f)) - 1);
    check(-(1 << (w - 1)), 0);
    // q wraps mod 2^l.
    assert_eq!(relu_gadget_reference(3 << f, 0, mask(p.l), p), 2);
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
    let mut bad = bytes.clone();
    bad[6] = 70; // m > l
    assert!(GarbledRelus::from_bytes(&bad).is_err());
    let mut bad = bytes;
    bad[7] = 15; // k > f
    let e = GarbledRelus::from_bytes(&bad).unwrap_err();
    assert_eq!(e.fault(), Fault::Peer);
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
    let e = evaluate_relus(&garbled, &server, &client, &[0, 0]).unwrap_err();
    assert_eq!(e.fault(), Fault::Peer);
    garbled.tables.blocks.push(Block::ZERO);
    garbled.tables.blocks.push(Block::ZERO);
    let e = evaluate_relus(&garbled, &server, &client, &[0, 0]).unwrap_err();
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
        let a: Vec<u64> = (0..count)
            .map(|_| rng.r#gen::<u64>() & mask(p.width()))
            .collect();
        let bs: Vec<u64> = (0..count)
            .map(|_| rng.r#gen::<u64>() & mask(p.width()))
            .collect();
        let qs: Vec<u64> = (0..count).map(|_| rng.r#gen::<u64>() & mask(p.l)).collect();
        let server = secrets.encode_server_inputs(&a).unwrap();
        let choice = client_input_bits(&bs, &qs, p).unwrap();
        let client = encode_labels(&secrets.secrets.evaluator_zero_labels, &choice, delta).unwrap();
        let out = secrets
            .decode_outputs(&evaluate_relus(&garbled, &server, &client, &qs).unwrap())
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

/// The VAES kernels (where this CPU has them) give the portable kernels' tables and
/// labels, for every length around their group sizes and for active and random labels.
#[test]
fn vaes_and_gates_equal_the_portable_kernels() {
    use super::wide::{evaluate_ands_with, garble_ands_with};
    let fast = crate::aes_hash::AesCipher::fixed();
    let portable = fast.clone().without_vaes();
    let mut rng = ChaCha12Rng::seed_from_u64(41);
    for n in [
        0usize, 1, 3, 4, 5, 8, 12, 15, 16, 17, 20, 31, 32, 33, 36, 64, 100,
    ] {
        let delta = Delta::random(&mut rng);
        let batch = rng.r#gen::<u64>() >> 1;
        let first_gate = rng.r#gen::<u32>() as u64;
        let a: Vec<Block> = (0..n).map(|_| Block::random(&mut rng)).collect();
        let b: Vec<Block> = (0..n).map(|_| Block::random(&mut rng)).collect();
        let garble = |pi: &crate::aes_hash::AesCipher| {
            let mut out = vec![Block::ZERO; n];
            let mut tables = vec![Block::ZERO; 2 * n];
            garble_ands_with(pi, delta, batch, first_gate, &a, &b, &mut out, &mut tables).unwrap();
            (out, tables)
        };
        let (out, tables) = garble(&fast);
        assert_eq!((out.clone(), tables.clone()), garble(&portable), "n={n}");
        let x: Vec<bool> = (0..n).map(|_| rng.r#gen()).collect();
        let y: Vec<bool> = (0..n).map(|_| rng.r#gen()).collect();
        let ax = encode_labels(&a, &x, delta).unwrap();
        let by = encode_labels(&b, &y, delta).unwrap();
        let eval = |pi: &crate::aes_hash::AesCipher| {
            let mut o = vec![Block::ZERO; n];
            evaluate_ands_with(pi, batch, first_gate, &ax, &by, &tables, &mut o).unwrap();
            o
        };
        let got = eval(&fast);
        assert_eq!(got, eval(&portable), "n={n}");
        for i in 0..n {
            assert_eq!(
                got[i],
                out[i] ^ delta.block().select(x[i] & y[i]),
                "n={n} i={i}"
            );
        }
    }
}

#[test]
fn batched_and_gates_equal_scalar_and_plain() {
    use super::wide::{evaluate_ands, garble_ands};
    let mut rng = ChaCha12Rng::seed_from_u64(31);
    for (n, first_gate) in [
        (0usize, 0u64),
        (1, 0),
        (15, 3),
        (16, 0),
        (17, 100),
        (33, 7),
        (100, 0),
    ] {
        let delta = Delta::random(&mut rng);
        let batch = rng.r#gen::<u64>() >> 1;
        let a0: Vec<Block> = (0..n).map(|_| Block::random(&mut rng)).collect();
        let b0: Vec<Block> = (0..n).map(|_| Block::random(&mut rng)).collect();
        let mut out0 = vec![Block::ZERO; n];
        let mut tables = vec![Block::ZERO; 2 * n];
        garble_ands(delta, batch, first_gate, &a0, &b0, &mut out0, &mut tables).unwrap();
        // Scalar garbler with its gate counter at `first_gate`: same tables and labels.
        let mut sg = Garbler::new(delta, batch, ChaCha12Rng::seed_from_u64(1));
        for _ in 0..first_gate {
            sg.and(&Block::ZERO, &Block::ZERO).unwrap();
        }
        let scalar_out: Vec<Block> = (0..n).map(|i| sg.and(&a0[i], &b0[i]).unwrap()).collect();
        let (st, _) = sg.finish().unwrap();
        assert_eq!(scalar_out, out0, "n={n}");
        assert_eq!(&st.blocks[2 * first_gate as usize..], &tables[..], "n={n}");
        // Evaluate on random inputs: batched and scalar evaluators agree with AND.
        let x: Vec<bool> = (0..n).map(|_| rng.r#gen()).collect();
        let y: Vec<bool> = (0..n).map(|_| rng.r#gen()).collect();
        let a = encode_labels(&a0, &x, delta).unwrap();
        let b = encode_labels(&b0, &y, delta).unwrap();
        let mut out = vec![Block::ZERO; n];
        evaluate_ands(batch, first_gate, &a, &b, &tables, &mut out).unwrap();
        let padded: Vec<Block> = st.blocks.clone();
        let mut se = Evaluator::from_parts(batch, &padded, &[], &[]);
        for _ in 0..first_gate {
            se.and(&Block::ZERO, &Block::ZERO).unwrap();
        }
        for i in 0..n {
            assert_eq!(
                out[i],
                out0[i] ^ delta.block().select(x[i] & y[i]),
                "n={n} i={i}"
            );
            assert_eq!(se.and(&a[i], &b[i]).unwrap(), out[i]);
        }
    }
    // Length errors.
    let d = Delta::from_block(Block(3));
    let z = [Block::ZERO; 4];
    let mut o = [Block::ZERO; 4];
    let mut t = [Block::ZERO; 7];
    let e = garble_ands(d, 0, 0, &z, &z, &mut o, &mut t).unwrap_err();
    assert_eq!(e.fault(), Fault::Caller);
    let e = evaluate_ands(0, 0, &z, &z, &t, &mut o).unwrap_err();
    assert_eq!(e.fault(), Fault::Peer);
    let e = evaluate_ands(0, 0, &z, &z[..3], &t[..6], &mut o).unwrap_err();
    assert_eq!(e.fault(), Fault::Caller);
    let mut t8 = [Block::ZERO; 8];
    let e = garble_ands(d, 0, u64::MAX - 1, &z, &z, &mut o, &mut t8).unwrap_err();
    assert_eq!(e.fault(), Fault::Caller);
}

/// The ReLU table layout does not depend on how many gadgets are processed in lockstep:
/// garbling with 8, 16 or 32 lanes gives identical tables and decoding bits, and any
/// evaluator width decodes them correctly.
#[test]
fn relu_layout_is_independent_of_lane_width() {
    let p = ReluParams::DEFAULT;
    let blocks = p.table_blocks();
    let mut rng = ChaCha12Rng::seed_from_u64(123);
    for count in [
        0usize, 1, 7, 8, 9, 15, 16, 17, 24, 31, 32, 33, 40, 47, 63, 64, 65, 71,
    ] {
        let delta = Delta::random(&mut rng);
        let server: Vec<Block> = (0..count * p.garbler_input_bits())
            .map(|_| Block::random(&mut rng))
            .collect();
        let client: Vec<Block> = (0..count * p.evaluator_input_bits())
            .map(|_| Block::random(&mut rng))
            .collect();
        let labels = Labels {
            server: &server,
            client: &client,
            qs: &[],
        };
        let garble = |w: usize| {
            let mut t = vec![Block::ZERO; count * blocks];
            let mut d = vec![false; count * p.output_bits()];
            match w {
                8 => garble_into::<8>(p, count, delta, 9, labels, &mut t, &mut d),
                16 => garble_into::<16>(p, count, delta, 9, labels, &mut t, &mut d),
                _ => garble_into::<32>(p, count, delta, 9, labels, &mut t, &mut d),
            }
            .unwrap();
            (t, d)
        };
        let (t8, d8) = garble(8);
        assert_eq!(garble(16), (t8.clone(), d8.clone()), "count {count}");
        assert_eq!(garble(32), (t8.clone(), d8.clone()), "count {count}");
        let a: Vec<u64> = (0..count)
            .map(|_| rng.r#gen::<u64>() & mask(p.width()))
            .collect();
        let bs: Vec<u64> = (0..count)
            .map(|_| rng.r#gen::<u64>() & mask(p.width()))
            .collect();
        let qs: Vec<u64> = (0..count).map(|_| rng.r#gen::<u64>() & mask(p.l)).collect();
        let sl: Vec<Block> = a
            .iter()
            .enumerate()
            .flat_map(|(i, &v)| {
                let m = p.width() as usize;
                encode_labels(&server[i * m..(i + 1) * m], &u64_to_bits(v, m), delta).unwrap()
            })
            .collect();
        let cl = encode_labels(&client, &client_input_bits(&bs, &qs, p).unwrap(), delta).unwrap();
        let active = Labels {
            server: &sl,
            client: &cl,
            qs: &qs,
        };
        for w in [8, 16, 32] {
            let mut colours = vec![false; count * p.output_bits()];
            match w {
                8 => evaluate_into::<8>(p, count, 9, active, &t8, &mut colours),
                16 => evaluate_into::<16>(p, count, 9, active, &t8, &mut colours),
                _ => evaluate_into::<32>(p, count, 9, active, &t8, &mut colours),
            }
            .unwrap();
            let l = p.l as usize;
            for i in 0..count {
                let bits =
                    decode_colour_bits(&colours[i * l..(i + 1) * l], &d8[i * l..(i + 1) * l])
                        .unwrap();
                assert_eq!(
                    bits_to_u64(&bits),
                    relu_gadget_reference(a[i], bs[i], qs[i], p),
                    "count {count} width {w} gadget {i}"
                );
            }
        }
    }
}

/// Known answers pinning the wire format of garbled ReLU batches (tables and secrets,
/// both serialised), so any change of layout, tweaks, label order or hash shows up here.
/// The layout's values were first produced by the original one-group-at-a-time
/// implementation; they were renewed when the hash became GKWY's TCCR
/// `π(π(x) ⊕ i) ⊕ π(x)` (issue 13, item 5; pinned separately against the `aes` crate in
/// `aes_hash`'s tests), and again when the gadget gained `k` (header `RLT2`/`RLS2`) and
/// the output adder's carry chain became evaluator-known gates (one ciphertext each,
/// tables addressed by block position; issue 14).
#[test]
fn relu_batch_known_answers() {
    use crate::prg::Prg;
    let digest = |p: ReluParams, count: usize| {
        let delta = Delta::from_block(Block(12345));
        let (g, s) = garble_relus(p, count, delta, None, 5, Prg::from_seed(Block(9))).unwrap();
        let mut h = blake3::Hasher::new();
        h.update(&g.to_bytes());
        h.update(&s.to_bytes());
        h.finalize().to_hex().to_string()
    };
    let expected = [
        (
            ReluParams::EXACT,
            1usize,
            "ece750743731e78bd34d8bc0207002c6ee0d8c01c0618bcb1256732583bc9780",
        ),
        (
            ReluParams::EXACT,
            13,
            "5a657743720569bba5da3b6ad8b252437dab81fc88b489552fb673097edcb3b5",
        ),
        (
            ReluParams::EXACT,
            70,
            "20fccf9afe1ffe060ca4332003475e3cb13b7530a552531f5585d076e81a68b4",
        ),
        (
            ReluParams::DEFAULT,
            1,
            "0cc088fe39bc8c93be348ce0ccef52affdd83e96ac32e9b5340f3c2e31a16f37",
        ),
        (
            ReluParams::DEFAULT,
            8,
            "718607ca26e2119753b7fbe3d6030af201bfe98c50d01739319772118db5e0c7",
        ),
        (
            ReluParams::DEFAULT,
            13,
            "12797eac40f4ee3d89fac72a27e5ad43ba25179181efaecdbe9a8cfe7a583a88",
        ),
        (
            ReluParams::DEFAULT,
            37,
            "6c62cf041c09f08df851cacbd85598e60c1625fd8278ac0e1e3c971d7bb017f8",
        ),
        (
            ReluParams::DEFAULT,
            70,
            "6498c4a1a377c6703255fbd35dc315a8ce66c7b0ea86ff4a1b7b68b1d58e07ff",
        ),
    ];
    for (p, count, hex) in expected {
        assert_eq!(digest(p, count), hex, "{p:?}, count {count}");
    }
}

/// Streaming send/receive of garbled batches has the wire format of
/// `send_prefixed(to_bytes())` and the checks of `from_bytes`.
#[test]
fn garbled_relus_streaming_matches_prefixed_bytes() {
    use crate::channel::{Channel, ChannelExt, RecordingChannel};
    let p = ReluParams::DEFAULT;
    let delta = Delta::from_block(Block(77));
    let (g, _) = garble_relus(p, 11, delta, None, 3, ChaCha12Rng::seed_from_u64(8)).unwrap();
    let (a, mut b) = MemoryChannel::pair();
    let mut a = RecordingChannel::new(a);
    g.send(&mut a).unwrap();
    a.flush().unwrap();
    let mut expected = (g.to_bytes().len() as u64).to_le_bytes().to_vec();
    expected.extend_from_slice(&g.to_bytes());
    assert_eq!(a.sent, expected);
    assert_eq!(GarbledRelus::recv(&mut b, expected.len()).unwrap(), g);
    // The other way round: send_prefixed(to_bytes()) is received by `recv`.
    a.send_prefixed(&g.to_bytes()).unwrap();
    a.flush().unwrap();
    assert_eq!(GarbledRelus::recv(&mut b, expected.len()).unwrap(), g);
    // Oversized prefix, short message, wrong count: peer errors.
    g.send(&mut a).unwrap();
    a.flush().unwrap();
    let e = GarbledRelus::recv(&mut b, expected.len() - 9).unwrap_err();
    assert_eq!(e.fault(), Fault::Peer);
    let (mut a, mut b) = MemoryChannel::pair();
    a.send_prefixed(&g.to_bytes()[..20]).unwrap();
    a.flush().unwrap();
    assert_eq!(
        GarbledRelus::recv(&mut b, 1 << 20).unwrap_err().fault(),
        Fault::Peer
    );
    let mut bad = g.clone();
    bad.count = 10;
    bad.send(&mut a).unwrap();
    a.flush().unwrap();
    assert_eq!(
        GarbledRelus::recv(&mut b, 1 << 20).unwrap_err().fault(),
        Fault::Peer
    );
    let mut bad = g.clone();
    bad.tables.blocks.pop();
    bad.send(&mut a).unwrap();
    a.flush().unwrap();
    assert_eq!(
        GarbledRelus::recv(&mut b, 1 << 20).unwrap_err().fault(),
        Fault::Peer
    );
}
