//! Modulus switching of the results before release: from `q` (three 62-bit primes) to
//! a power of two, `2^RESULT_C1_BITS` for `c1` and `2^RESULT_C0_BITS` for `c0`.
//!
//! The server floods a result exactly as before (in `Z_q`), then rounds every released
//! residue vector `c` to `round(2^k c / q) mod 2^k`: a public, deterministic function of
//! what it used to release, so the release stays as hiding as before (post-processing;
//! `docs/he.md`). The client decrypts with `v = 2^(b-a) c0' + c1' s mod 2^b`, which is
//! `2^(b-l) m + e'` with `|e'| <= 2^(b-a-1) + |s|_1 / 2 + 2^(b - log2 q) |e|` (`e` the
//! noise in `Z_q`, flooding included), and reads `m = round(v / 2^(b-l)) mod 2^l`.

use super::params::{MODULI, RESULT_C0_BITS, RESULT_C1_BITS};

const K: usize = MODULI.len();

/// Precomputed constants for the CRT rounding.
#[derive(Clone, Debug)]
pub(super) struct Switcher {
    /// `(q / q_i)^-1 mod q_i` and its Shoup companion `floor(2^64 v / q_i)`.
    inv: [(u64, u64); K],
    /// `floor(2^192 / q_i)` as `(bits 64.., bits 0..64)`.
    w: [(u128, u64); K],
}

/// `a * b mod m` (plain 128-bit reduction; setup only).
fn mulmod(a: u64, b: u64, m: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(m)) as u64
}

fn powmod(mut a: u64, mut e: u64, m: u64) -> u64 {
    let mut r = 1u64;
    while e > 0 {
        if e & 1 == 1 {
            r = mulmod(r, a, m);
        }
        a = mulmod(a, a, m);
        e >>= 1;
    }
    r
}

/// The constants, computed once.
pub(super) fn switcher() -> &'static Switcher {
    static S: std::sync::OnceLock<Switcher> = std::sync::OnceLock::new();
    S.get_or_init(Switcher::new)
}

impl Switcher {
    pub(super) fn new() -> Self {
        let mut inv = [(0, 0); K];
        let mut w = [(0, 0); K];
        for (i, &qi) in MODULI.iter().enumerate() {
            let rest = MODULI
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .fold(1u64, |acc, (_, &qj)| mulmod(acc, qj % qi, qi));
            let v = powmod(rest, qi - 2, qi);
            inv[i] = (v, ((u128::from(v) << 64) / u128::from(qi)) as u64);
            // 2^128 = hi q + r1 (q odd, so u128::MAX / q is floor(2^128 / q)).
            let q = u128::from(qi);
            let hi = u128::MAX / q;
            let r1 = (u128::MAX % q + 1) % q;
            let lo = ((r1 << 64) / q) as u64;
            w[i] = (hi, lo);
        }
        Switcher { inv, w }
    }

    /// `c / q` as a 0.128 fixed-point fraction (error below 4 units in the last place)
    /// for the residues `r` (`r[i] < q_i`).
    #[inline]
    fn fraction(&self, r: [u64; K]) -> u128 {
        let mut acc = 0u128;
        for i in 0..K {
            let q = MODULI[i];
            let (v, vs) = self.inv[i];
            // y = r v mod q (Shoup).
            let est = ((u128::from(r[i]) * u128::from(vs)) >> 64) as u64;
            let mut y = r[i].wrapping_mul(v).wrapping_sub(est.wrapping_mul(q));
            if y >= q {
                y -= q;
            }
            // floor(y 2^128 / q) from y floor(2^192 / q) / 2^64.
            let (hi, lo) = self.w[i];
            let z = (u128::from(y) * hi).wrapping_add((u128::from(y) * u128::from(lo)) >> 64);
            acc = acc.wrapping_add(z);
        }
        acc
    }

    /// `round(2^bits c / q) mod 2^bits` for the residues `r` of `c`, `1 <= bits <= 100`;
    /// the rounding error is at most `1/2 + 2^(bits - 125)`.
    #[inline]
    pub(super) fn round(&self, r: [u64; K], bits: u32) -> u128 {
        let f = self.fraction(r);
        let sh = 128 - bits;
        (f.wrapping_add(1u128 << (sh - 1)) >> sh) & ((1u128 << bits) - 1)
    }
}

/// Bytes of one switched `c1` coefficient.
pub(super) const C1_BYTES: usize = (RESULT_C1_BITS as usize).div_ceil(8);

/// Writes `v < 2^RESULT_C1_BITS` little-endian in `C1_BYTES` bytes.
pub(super) fn put_c1(out: &mut Vec<u8>, v: u128) {
    out.extend_from_slice(&v.to_le_bytes()[..C1_BYTES]);
}

/// Reads the coefficients written by [`put_c1`].
pub(super) fn get_c1(b: &[u8]) -> Vec<u128> {
    b.chunks_exact(C1_BYTES)
        .map(|c| {
            let mut w = [0u8; 16];
            w[..C1_BYTES].copy_from_slice(c);
            u128::from_le_bytes(w) & ((1u128 << RESULT_C1_BITS) - 1)
        })
        .collect()
}

/// The client's last step for one output coefficient: `c0'` (mod `2^RESULT_C0_BITS`)
/// and `(c1' s)` at that coefficient (mod `2^RESULT_C1_BITS`) to the message in
/// `Z_{2^ring_bits}`.
#[inline]
pub(super) fn decode(c0: u64, c1s: u128, ring_bits: u32) -> u64 {
    let b = RESULT_C1_BITS;
    let mask = (1u128 << b) - 1;
    let v = ((u128::from(c0) << (b - RESULT_C0_BITS)).wrapping_add(c1s)) & mask;
    let sh = b - ring_bits;
    let m = (v + (1u128 << (sh - 1))) >> sh;
    (m as u64) & ((1u64 << ring_bits) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use std::cmp::Ordering;

    /// Little-endian 32-bit limbs: just enough big-integer arithmetic for the reference.
    type Big = Vec<u64>;

    fn mul_u64(a: &Big, m: u64) -> Big {
        let mut out = vec![0u64; a.len() + 3];
        for (k, part) in [m & 0xffff_ffff, m >> 32].into_iter().enumerate() {
            let mut carry = 0u64;
            for (i, &x) in a.iter().enumerate() {
                let v = x * part + out[i + k] + carry;
                out[i + k] = v & 0xffff_ffff;
                carry = v >> 32;
            }
            let mut j = a.len() + k;
            while carry > 0 {
                let v = out[j] + carry;
                out[j] = v & 0xffff_ffff;
                carry = v >> 32;
                j += 1;
            }
        }
        out
    }

    fn add(a: &Big, b: &Big) -> Big {
        let n = a.len().max(b.len()) + 1;
        let mut out = vec![0u64; n];
        let mut carry = 0;
        for (i, o) in out.iter_mut().enumerate() {
            let v = a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0) + carry;
            *o = v & 0xffff_ffff;
            carry = v >> 32;
        }
        out
    }

    fn cmp(a: &Big, b: &Big) -> Ordering {
        for i in (0..a.len().max(b.len())).rev() {
            let (x, y) = (
                a.get(i).copied().unwrap_or(0),
                b.get(i).copied().unwrap_or(0),
            );
            if x != y {
                return x.cmp(&y);
            }
        }
        Ordering::Equal
    }

    fn sub(a: &Big, b: &Big) -> Big {
        let mut out = a.clone();
        let mut borrow = 0i64;
        for (i, o) in out.iter_mut().enumerate() {
            let v = *o as i64 - b.get(i).copied().unwrap_or(0) as i64 - borrow;
            borrow = i64::from(v < 0);
            *o = (v + (borrow << 32)) as u64;
        }
        out
    }

    fn rem_u64(a: &Big, m: u64) -> u64 {
        a.iter().rev().fold(0u128, |acc, &l| {
            ((acc << 32) | u128::from(l)) % u128::from(m)
        }) as u64
    }

    /// `round(2^bits c / q) mod 2^bits` (ties up) for the `c` in `[0, q)` with residues
    /// `r`, by CRT and bitwise long division.
    fn exact(r: [u64; K], bits: u32) -> u128 {
        let (mut c, mut modulus): (Big, Big) = (vec![0], vec![1]);
        for (i, &m) in MODULI.iter().enumerate() {
            let inv = powmod(rem_u64(&modulus, m), m - 2, m);
            let k = mulmod((r[i] + m - rem_u64(&c, m)) % m, inv, m);
            c = add(&c, &mul_u64(&modulus, k));
            modulus = mul_u64(&modulus, m);
        }
        let q = modulus;
        assert_eq!(cmp(&c, &q), Ordering::Less);
        let (mut rem, mut quo): (Big, u128) = (vec![0], 0);
        let total = c.len() * 32 + bits as usize;
        for i in (0..total).rev() {
            let bit = i
                .checked_sub(bits as usize)
                .map_or(0, |j| (c.get(j / 32).copied().unwrap_or(0) >> (j % 32)) & 1);
            rem = add(&add(&rem, &rem), &vec![bit]);
            quo <<= 1;
            if cmp(&rem, &q) != Ordering::Less {
                rem = sub(&rem, &q);
                quo |= 1;
            }
        }
        let up = cmp(&add(&rem, &rem), &q) != Ordering::Less;
        (quo + u128::from(up)) & ((1u128 << bits) - 1)
    }

    #[test]
    fn rounding_matches_exact_arithmetic() {
        let sw = Switcher::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..300 {
            let r: [u64; K] = match case {
                0 => [0; K],
                1 => [MODULI[0] - 1, MODULI[1] - 1, MODULI[2] - 1],
                2 => [1, 1, 1],
                _ => std::array::from_fn(|i| rng.gen_range(0..MODULI[i])),
            };
            for bits in [RESULT_C0_BITS, RESULT_C1_BITS, 61, 1] {
                assert_eq!(
                    sw.round(r, bits),
                    exact(r, bits),
                    "case {case}, {bits} bits"
                );
            }
        }
    }

    #[test]
    fn c1_packing_round_trips() {
        let mask = (1u128 << RESULT_C1_BITS) - 1;
        let vals = [0u128, 1, mask, 0x1234_5678_9abc_def0_1234 & mask];
        let mut b = Vec::new();
        for &v in &vals {
            put_c1(&mut b, v);
        }
        assert_eq!(b.len(), vals.len() * C1_BYTES);
        assert_eq!(get_c1(&b), vals);
    }
}
