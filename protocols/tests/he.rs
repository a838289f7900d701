//! The HE preprocessing end to end over an in-memory channel: for every kind of linear
//! operator, small and real shapes, random masks, weights and `s`, the client's result
//! plus `s` equals the operator applied to the mask, exactly in `Z_{2^l}`; bad peer data
//! gives errors, not panics.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::thread;

use protocols::channel::{Channel, ChannelExt, MemoryChannel};
use protocols::he::{ConvLayout, ConvShape, HE_VERSION, HeClient, HeParams, HeServer, POLY_DEGREE};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

fn conv(c: usize, hw: usize, m: usize, k: usize, s: usize, p: usize) -> ConvShape {
    ConvShape::square(c, hw, m, k, s, p)
}

/// A layout with its weights, mask and `s`.
type Case = (ConvLayout, Vec<i64>, Vec<u64>, Vec<u64>);

/// Runs `shapes` as consecutive terms of one session and checks each result.
fn run(ring_bits: u32, shapes: &[ConvShape], wmax: i64, seed: u64) {
    let lmask = (1u64 << ring_bits) - 1;
    let mut rng = ChaCha12Rng::seed_from_u64(seed);
    let cases: Vec<Case> = shapes
        .iter()
        .map(|&shape| {
            let layout = ConvLayout::new(shape, POLY_DEGREE).unwrap();
            let w = (0..shape.weight_len())
                .map(|_| rng.gen_range(-wmax..=wmax))
                .collect();
            let x = (0..shape.in_len())
                .map(|_| rng.r#gen::<u64>() & lmask)
                .collect();
            let s = (0..shape.out_len())
                .map(|_| rng.r#gen::<u64>() & lmask)
                .collect();
            (layout, w, x, s)
        })
        .collect();
    let (mut a, mut b) = MemoryChannel::pair();
    let server_cases: Vec<_> = cases
        .iter()
        .map(|(l, w, _, s)| (l.clone(), w.clone(), s.clone()))
        .collect();
    let server = thread::spawn(move || {
        let he = HeServer::setup(&mut a, HeParams::new(ring_bits).unwrap()).unwrap();
        for (l, w, s) in &server_cases {
            he.term(&mut a, l, w, s).unwrap();
        }
    });
    let he = HeClient::setup(&mut b, HeParams::new(ring_bits).unwrap()).unwrap();
    for (layout, w, x, s) in &cases {
        let c = he.term(&mut b, layout, x).unwrap();
        let want = layout.shape.apply(w, x, lmask);
        let got: Vec<u64> = c
            .iter()
            .zip(s)
            .map(|(&c, &s)| c.wrapping_add(s) & lmask)
            .collect();
        assert_eq!(got, want, "{layout:?}");
    }
    server.join().unwrap();
}

#[test]
fn every_operator_kind_small() {
    let shapes = [
        conv(3, 8, 5, 3, 1, 1),
        conv(4, 9, 3, 3, 2, 1),
        conv(6, 8, 7, 1, 2, 0),
        ConvShape {
            height: 2,
            width: 5,
            kh: 2,
            kw: 5,
            ..conv(3, 1, 4, 1, 1, 0)
        },
        ConvShape {
            depthwise: true,
            ..conv(6, 5, 6, 1, 1, 0)
        },
        ConvShape {
            depthwise: true,
            ..conv(5, 8, 5, 2, 2, 0)
        },
    ];
    run(61, &shapes, 1 << 15, 1);
    // Another ring width.
    run(40, &shapes[..2], 1 << 10, 2);
}

#[test]
fn real_layer_shapes() {
    // ResNet18 at 32x32: the stem, a 64-channel conv, a strided conv and its 1x1
    // shortcut, the widest conv, the global pool and the head; weights up to 2^16
    // (|w| < 4 at scale 2^14).
    let shapes = [
        conv(3, 32, 64, 3, 1, 1),
        conv(64, 32, 64, 3, 1, 1),
        conv(64, 32, 128, 3, 2, 1),
        conv(64, 32, 128, 1, 2, 0),
        conv(512, 4, 512, 3, 1, 1),
        ConvShape {
            depthwise: true,
            ..conv(512, 4, 512, 4, 4, 0)
        },
        conv(512, 1, 10, 1, 1, 0),
    ];
    run(61, &shapes, 1 << 16, 3);
}

#[test]
fn bad_peer_data_is_an_error() {
    let params = HeParams::new(61).unwrap();
    // Wrong version.
    let (mut a, mut b) = MemoryChannel::pair();
    b.send(&[9, 61]).unwrap();
    b.flush().unwrap();
    let e = HeServer::setup(&mut a, params.clone()).unwrap_err();
    assert!(e.to_string().contains("version 9"), "{e}");
    // Wrong ring.
    let (mut a, mut b) = MemoryChannel::pair();
    b.send(&[HE_VERSION, 40]).unwrap();
    b.flush().unwrap();
    let e = HeServer::setup(&mut a, params.clone()).unwrap_err();
    assert!(e.to_string().contains("Z_2^40"), "{e}");
    // Garbage key, oversized key.
    let (mut a, mut b) = MemoryChannel::pair();
    b.send(&[HE_VERSION, 61]).unwrap();
    b.send_prefixed(&[7u8; 1000]).unwrap();
    b.flush().unwrap();
    let e = HeServer::setup(&mut a, params.clone()).unwrap_err();
    assert!(e.to_string().contains("public key"), "{e}");
    let (mut a, mut b) = MemoryChannel::pair();
    b.send(&[HE_VERSION, 61]).unwrap();
    b.send_prefixed(&vec![0u8; 1 << 20]).unwrap();
    b.flush().unwrap();
    assert!(HeServer::setup(&mut a, params.clone()).is_err());

    // A real key, then a garbage input ciphertext.
    let (mut a, mut b) = MemoryChannel::pair();
    let p2 = params.clone();
    let t = thread::spawn(move || {
        let _he = HeClient::setup(&mut b, p2).unwrap();
        b.send_prefixed(&[3u8; 5000]).unwrap();
        b.flush().unwrap();
        b
    });
    let server = HeServer::setup(&mut a, params.clone()).unwrap();
    let layout = ConvLayout::new(conv(2, 4, 2, 3, 1, 1), POLY_DEGREE).unwrap();
    let e = server
        .term(&mut a, &layout, &[1; 36], &[0; 32])
        .unwrap_err();
    assert!(e.to_string().contains("input ciphertext"), "{e}");
    drop(t.join().unwrap());

    // A truncated result: every bit pattern of a switched result is valid, so only its
    // length can be wrong; a result cut short is an error, not a hang or a panic.
    let (mut a, mut b) = MemoryChannel::pair();
    let p2 = params.clone();
    let t = thread::spawn(move || {
        let _he = HeServer::setup(&mut a, p2).unwrap();
        // The client's one input ciphertext, then half a result, then the end.
        a.recv_prefixed(1 << 20).unwrap();
        a.send(&vec![0xffu8; 5 * POLY_DEGREE]).unwrap();
        a.flush().unwrap();
    });
    let client = HeClient::setup(&mut b, params).unwrap();
    let layout = ConvLayout::new(conv(1, 4, 1, 1, 1, 0), POLY_DEGREE).unwrap();
    assert_eq!(layout.input_cts(), 1);
    let e = client.term(&mut b, &layout, &[0; 16]).unwrap_err();
    t.join().unwrap();
    eprintln!("{e}");
}
