//! The protocol's arithmetic against the `models` fixed-point executor's rules: the ReLU
//! gadget is bit-exact with `FixedPointParams::relu_rescale` (also past the m-bit window),
//! local share truncation is `rescale` plus 0 or 1 ulp, and the parameters agree.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use models::fixed::FixedPointParams;
use protocols::gc::relu::{
    ReluParams, client_gadget_inputs, relu_gadget_reference, server_gadget_input,
};
use protocols::share::{self, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha12Rng;

fn params() -> (FixedPointParams, ReluParams) {
    let fp = FixedPointParams::default();
    let rp = ReluParams::DEFAULT;
    (fp, rp)
}

#[test]
fn defaults_agree() {
    let (fp, rp) = params();
    assert_eq!(
        (
            fp.ring_bits,
            fp.frac_bits,
            fp.relu_bits,
            fp.relu_dropped_bits
        ),
        (rp.l, rp.f, rp.m, rp.k)
    );
    assert_eq!(share::RING_BITS, fp.ring_bits);
    assert_eq!(share::DEFAULT_FRAC_BITS, fp.frac_bits);
}

/// Pre-activations at scale 2^(2f): edges of the ReLU window, truncation boundaries, and
/// random values inside and beyond the window.
fn ys(fp: FixedPointParams, rng: &mut impl Rng) -> Vec<i64> {
    let half = 1i64 << (fp.relu_bits - 1);
    let ulp = 1i64 << fp.frac_bits;
    let mut v = vec![
        0,
        1,
        -1,
        ulp,
        -ulp,
        ulp - 1,
        -ulp + 1,
        ulp / 2,
        -ulp / 2,
        ulp / 2 - 1,
        -ulp / 2 - 1,
    ];
    for e in [
        half - ulp / 2 - 1,
        half - ulp / 2,
        -half - ulp / 2,
        -half - ulp / 2 - 1,
        half,
        -half,
        3 * half,
    ] {
        v.push(e);
    }
    for _ in 0..2000 {
        v.push(rng.gen_range(-half..half));
        v.push(rng.gen_range(-(ulp << 6)..(ulp << 6)));
    }
    for _ in 0..200 {
        v.push(rng.gen_range(-(half << 4)..(half << 4)));
    }
    v
}

/// The exact gadget (`k = 0`) equals the executor's `relu_rescale` bit for bit, also past
/// the window; the fused one (`k = 14`, the default) equals it where the two shares' dropped
/// bits do not carry, and is the ReLU of one unit less where they do (inside the window).
#[test]
fn relu_gadget_is_bit_exact_with_the_fixed_point_executor() {
    let (fp, rp) = params();
    let exact = FixedPointParams {
        relu_dropped_bits: 0,
        ..fp
    };
    let mut rng = ChaCha12Rng::seed_from_u64(61);
    let (mut carries, mut checked) = (0, 0);
    for (fp, rp) in [(exact, ReluParams { k: 0, ..rp }), (fp, rp)] {
        for y in ys(fp, &mut rng) {
            let (s, c) = share::share(share::from_signed(y), &mut rng);
            let r_next = share::reduce(rng.r#gen::<u64>());
            let a = server_gadget_input(s, rp);
            let (b, q) = client_gadget_inputs(c, r_next, rp);
            let o = relu_gadget_reference(a, b, q, rp);
            let got = share::to_signed(share::add(o, r_next));
            let low = (1u64 << rp.k) - 1;
            let half = 1u64 << (rp.f - 1);
            let carry = ((s.wrapping_add(half) & low) + (c & low)) >> rp.k;
            let expect = if carry == 0 {
                fp.relu_rescale(y)
            } else if fp.relu_overflows(y) {
                continue;
            } else {
                carries += 1;
                let sh = 64 - fp.relu_bits;
                let z = (y.wrapping_add(half as i64) << sh) >> sh;
                ((z >> fp.frac_bits) - 1).max(0)
            };
            checked += 1;
            assert_eq!(
                got,
                expect,
                "k = {}, y = {y} (overflow: {}, carry {carry})",
                rp.k,
                fp.relu_overflows(y)
            );
        }
    }
    assert!(carries > 1000 && checked > 8000, "{carries} {checked}");
}

#[test]
fn local_truncation_is_the_executor_rescale_plus_at_most_one_ulp() {
    let (fp, _) = params();
    let mut rng = ChaCha12Rng::seed_from_u64(62);
    let (l, f) = (fp.ring_bits, fp.frac_bits);
    let mut wraps = 0;
    let values = ys(fp, &mut rng);
    for &y in &values {
        let (s, c) = share::share(share::from_signed(y), &mut rng);
        let s = share::add_const(Role::Server, s, share::round_offset(f));
        let t = share::add(
            share::truncate_share(Role::Server, s, f, l),
            share::truncate_share(Role::Client, c, f, l),
        );
        let d = share::to_signed(t) - fp.rescale(y);
        if !(0..=1).contains(&d) {
            wraps += 1;
        }
    }
    // A wrap (probability about |y| / 2^60 per value) gives a huge error; none is expected
    // among these few thousand values with |y| < 2^40.
    assert_eq!(wraps, 0, "{wraps} of {} truncations wrapped", values.len());
}
