//! Additive secret sharing and fixed-point encoding in the ring `Z_{2^61}`.
//!
//! Elements are `u64` in `[0, 2^61)`; values `>= 2^60` are read as negative
//! ([`to_signed`]). Fixed point: a real `v` is encoded as `round(v · 2^f)` (default
//! `f = 14`); products of two fixed-point values are at scale `2^(2f)` and are brought
//! back to `2^f` by [`truncate_share`] (for linearized positions) or inside the ReLU
//! garbled circuit.

use rand_core::RngCore;

use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};

/// `2^bits - 1` (all ones for `bits >= 64`): the mask that reduces into `Z_{2^bits}`.
#[inline]
pub const fn bit_mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The ring `Z_{2^l}` of one protocol run (`1 <= l <= 64`): the one place that knows how
/// its elements are masked, reduced, read as signed values, drawn at random and received
/// from a peer. Elements are `u64` in `[0, 2^l)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ring {
    bits: u32,
}

impl Ring {
    /// The ring `Z_{2^bits}`; fails unless `1 <= bits <= 64`.
    pub fn new(bits: u32) -> Result<Self> {
        if (1..=64).contains(&bits) {
            Ok(Ring { bits })
        } else {
            Err(ProtocolError::arg(format!(
                "ring width {bits} bits: need 1 to 64"
            )))
        }
    }

    /// `l`.
    #[inline]
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// `2^l - 1`.
    #[inline]
    pub const fn mask(self) -> u64 {
        bit_mask(self.bits)
    }

    /// `x mod 2^l`.
    #[inline]
    pub const fn reduce(self, x: u64) -> u64 {
        x & self.mask()
    }

    /// An element read as a signed integer in `[-2^(l-1), 2^(l-1))`.
    #[inline]
    pub const fn to_signed(self, x: u64) -> i64 {
        let s = 64 - self.bits;
        ((x << s) as i64) >> s
    }

    /// The element of a signed integer (reduced mod `2^l`).
    #[inline]
    pub const fn from_signed(self, v: i64) -> u64 {
        self.reduce(v as u64)
    }

    /// `n` uniformly random elements.
    pub fn random<R: RngCore + ?Sized>(self, rng: &mut R, n: usize) -> Vec<u64> {
        (0..n).map(|_| self.reduce(rng.next_u64())).collect()
    }

    /// Sends elements as 8-byte little-endian words (does not flush).
    pub fn send<C: Channel + ?Sized>(self, ch: &mut C, v: &[u64]) -> Result<()> {
        ch.send_u64s(v)?;
        Ok(())
    }

    /// Receives `n` elements, rejecting any value outside `[0, 2^l)` as the peer's fault.
    pub fn recv<C: Channel + ?Sized>(self, ch: &mut C, n: usize) -> Result<Vec<u64>> {
        let v = ch.recv_u64s(n)?;
        if v.iter().any(|&x| x & !self.mask() != 0) {
            return Err(ProtocolError::peer(format!(
                "a value lies outside the ring Z_2^{}",
                self.bits
            )));
        }
        Ok(v)
    }
}

/// Ring bit width `l`.
pub const RING_BITS: u32 = 61;
/// `2^l - 1`.
pub const RING_MASK: u64 = (1u64 << RING_BITS) - 1;
/// Default number of fractional bits `f`.
pub const DEFAULT_FRAC_BITS: u32 = 14;

/// Which party holds a share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The server (model owner, garbler).
    Server,
    /// The client (input owner, evaluator).
    Client,
}

/// Reduces mod `2^61`.
#[inline]
pub const fn reduce(x: u64) -> u64 {
    x & RING_MASK
}

/// Splits `x` into two uniformly random shares with `s0 + s1 = x (mod 2^61)`.
pub fn share<R: RngCore + ?Sized>(x: u64, rng: &mut R) -> (u64, u64) {
    let s0 = reduce(rng.next_u64());
    (s0, sub(x, s0))
}

/// `s0 + s1 mod 2^61`.
#[inline]
pub const fn reconstruct(s0: u64, s1: u64) -> u64 {
    add(s0, s1)
}

/// `a + b mod 2^61` (local on shares).
#[inline]
pub const fn add(a: u64, b: u64) -> u64 {
    reduce(a.wrapping_add(b))
}

/// `a - b mod 2^61` (local on shares).
#[inline]
pub const fn sub(a: u64, b: u64) -> u64 {
    reduce(a.wrapping_sub(b))
}

/// `-a mod 2^61` (local on shares).
#[inline]
pub const fn neg(a: u64) -> u64 {
    reduce(a.wrapping_neg())
}

/// `a · c mod 2^61` for a public constant `c` (local on shares).
#[inline]
pub const fn mul_const(a: u64, c: u64) -> u64 {
    reduce(a.wrapping_mul(c))
}

/// Adds a public constant: only one party (by convention the server) does it.
#[inline]
pub const fn add_const(role: Role, a: u64, c: u64) -> u64 {
    match role {
        Role::Server => add(a, c),
        Role::Client => reduce(a),
    }
}

/// Reads a ring element as a signed integer in `[-2^60, 2^60)`.
#[inline]
pub const fn to_signed(x: u64) -> i64 {
    ((x << (64 - RING_BITS)) as i64) >> (64 - RING_BITS)
}

/// The ring element of a signed integer (reduced mod `2^61`).
#[inline]
pub const fn from_signed(v: i64) -> u64 {
    reduce(v as u64)
}

/// Encodes a real as `round(v · 2^f)` (ties away from zero). Fails for non-finite values
/// and magnitudes that do not fit in `[-2^60, 2^60)`.
pub fn encode_fixed(v: f64, f: u32) -> Result<u64> {
    let scaled = (v * (f as f64).exp2()).round();
    let limit = (1u64 << (RING_BITS - 1)) as f64;
    if !scaled.is_finite() || scaled >= limit || scaled < -limit {
        return Err(ProtocolError::arg(format!(
            "value {v} does not fit the fixed-point ring at scale 2^{f}"
        )));
    }
    Ok(from_signed(scaled as i64))
}

/// Decodes a ring element at scale `2^f` to a real.
pub fn decode_fixed(x: u64, f: u32) -> f64 {
    to_signed(x) as f64 / (f as f64).exp2()
}

/// The server's rounding offset `2^(f-1)`: adding it to the server's share before
/// [`truncate_share`] turns the truncation's floor into round-half-up (0 for `f = 0`
/// or `f > 64`).
pub const fn round_offset(f: u32) -> u64 {
    if f == 0 || f > 64 { 0 } else { 1u64 << (f - 1) }
}

/// Local (non-interactive) truncation of a share of `y mod 2^l` by `f` bits.
///
/// Server: `s >> f` (logical, on the `l`-bit value); client: `-((-c mod 2^l) >> f) mod 2^l`.
/// If the server added [`round_offset`] first, the two results add up to
/// `round(y / 2^f)` or that plus one, except with probability about `|y| / 2^l` (the
/// shares "wrap": `s - (-c mod 2^l) != y` as integers), in which case the result is off by
/// about `2^(l-f)`.
///
/// `share` is reduced mod `2^l`; `1 <= l <= 64`, `f < l`.
pub fn truncate_share(role: Role, share: u64, f: u32, l: u32) -> u64 {
    let mask = bit_mask(l);
    let s = share & mask;
    if f >= 64 {
        return 0;
    }
    match role {
        Role::Server => s >> f,
        Role::Client => ((s.wrapping_neg() & mask) >> f).wrapping_neg() & mask,
    }
}

/// Little-endian fields of `w` bytes packed back to back (the online messages of the exact
/// truncations), written and read with whole 8- or 16-byte stores and loads into buffers
/// padded at the end ([`fields::PAD`] bytes), instead of a copy of `w` bytes per field.
pub(crate) mod fields {
    /// Padding after the last field, so a 16-byte access at any field stays in bounds.
    pub(crate) const PAD: usize = 16;

    /// A zeroed buffer for `n` fields of `w` bytes, padding included.
    pub(crate) fn buffer(n: usize, w: usize) -> Vec<u8> {
        vec![0u8; n * w + PAD]
    }

    /// `2^(8 w) − 1` for `w <= 16` bytes.
    #[inline]
    pub(crate) const fn mask128(w: usize) -> u128 {
        if w >= 16 {
            u128::MAX
        } else {
            (1u128 << (8 * w)) - 1
        }
    }

    /// `2^(8 w) − 1` for `w <= 8` bytes.
    #[inline]
    pub(crate) const fn mask64(w: usize) -> u64 {
        if w >= 8 {
            u64::MAX
        } else {
            (1u64 << (8 * w)) - 1
        }
    }

    /// Stores `v` at byte `off` as 16 little-endian bytes. With `v < 2^(8 w)` the bytes past
    /// the field are zeros, which the next field's store overwrites; fields must be put in
    /// order.
    #[inline]
    pub(crate) fn put128(buf: &mut [u8], off: usize, v: u128) {
        buf[off..off + 16].copy_from_slice(&v.to_le_bytes());
    }

    /// The 16 little-endian bytes at byte `off` (the caller masks off the next fields).
    #[inline]
    pub(crate) fn load128(buf: &[u8], off: usize) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&buf[off..off + 16]);
        u128::from_le_bytes(b)
    }

    /// [`load128`] with 8 bytes.
    #[inline]
    pub(crate) fn load64(buf: &[u8], off: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[off..off + 8]);
        u64::from_le_bytes(b)
    }

    /// [`put128`] with 8 bytes.
    #[inline]
    pub(crate) fn put64(buf: &mut [u8], off: usize, v: u64) {
        buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// The `w <= 8`-byte field at byte `off` (8 bytes loaded, the rest masked off).
    #[inline]
    pub(crate) fn get64(buf: &[u8], off: usize, w: usize) -> u64 {
        load64(buf, off) & mask64(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha12Rng;

    fn ring() -> impl Strategy<Value = u64> {
        any::<u64>().prop_map(reduce)
    }

    proptest! {
        #[test]
        fn share_reconstruct(x in ring(), seed in any::<u64>()) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let (s0, s1) = share(x, &mut rng);
            prop_assert!(s0 <= RING_MASK && s1 <= RING_MASK);
            prop_assert_eq!(reconstruct(s0, s1), x);
        }

        #[test]
        fn local_ops_are_homomorphic(x in ring(), y in ring(), c in any::<u64>(), seed in any::<u64>()) {
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let (x0, x1) = share(x, &mut rng);
            let (y0, y1) = share(y, &mut rng);
            prop_assert_eq!(reconstruct(add(x0, y0), add(x1, y1)), add(x, y));
            prop_assert_eq!(reconstruct(sub(x0, y0), sub(x1, y1)), sub(x, y));
            prop_assert_eq!(reconstruct(neg(x0), neg(x1)), neg(x));
            prop_assert_eq!(reconstruct(mul_const(x0, c), mul_const(x1, c)), mul_const(x, c));
            prop_assert_eq!(
                reconstruct(add_const(Role::Server, x0, c), add_const(Role::Client, x1, c)),
                add(x, c)
            );
            // Ring homomorphism of the signed view.
            prop_assert_eq!(from_signed(to_signed(x).wrapping_add(to_signed(y))), add(x, y));
        }

        #[test]
        fn fixed_point_roundtrip(v in -1.0e6f64..1.0e6, f in 0u32..20) {
            let x = encode_fixed(v, f).unwrap();
            let back = decode_fixed(x, f);
            prop_assert!((back - v).abs() <= 0.5 / (f as f64).exp2() + 1e-9);
        }

        #[test]
        fn truncation_error_within_one(y in -(1i64 << 50)..(1i64 << 50), seed in any::<u64>(), f in 1u32..20) {
            let l = RING_BITS;
            let mut rng = ChaCha12Rng::seed_from_u64(seed);
            let (s, c) = share(from_signed(y), &mut rng);
            let s = add(s, round_offset(f));
            let big_y = y + round_offset(f) as i64;
            // Wrap event: detected from the shares' ranges.
            let c_neg = neg(c);
            let wrapped = s as i128 - c_neg as i128 != big_y as i128;
            prop_assume!(!wrapped);
            let t = add(truncate_share(Role::Server, s, f, l), truncate_share(Role::Client, c, f, l));
            let expect = big_y >> f; // round-half-up of y / 2^f
            let err = to_signed(t) - expect;
            prop_assert!((0..=1).contains(&err), "y={} t={} expect={}", y, to_signed(t), expect);
        }
    }

    #[test]
    fn truncation_wrap_is_detectable() {
        // s smaller than y: the shares wrap and the result is far off.
        let (f, l) = (12, RING_BITS);
        let y: i64 = 1 << 30;
        let s = 5u64;
        let c = sub(from_signed(y), s);
        let c_neg = neg(c);
        assert_ne!(s as i128 - c_neg as i128, y as i128);
        let t = add(
            truncate_share(Role::Server, s, f, l),
            truncate_share(Role::Client, c, f, l),
        );
        assert!((to_signed(t) - (y >> f)).abs() > 1);
        // And a non-wrapping split of the same value is within 1.
        let s = RING_MASK - 7;
        let c = sub(from_signed(y), s);
        let t = add(
            truncate_share(Role::Server, s, f, l),
            truncate_share(Role::Client, c, f, l),
        );
        assert!((to_signed(t) - (y >> f)).abs() <= 1);
    }

    #[test]
    fn ring_masks_reduces_and_checks_received_values() {
        for l in [1u32, 14, 61, 63, 64] {
            let r = Ring::new(l).unwrap();
            assert_eq!(r.mask(), bit_mask(l));
            assert_eq!(r.mask().count_ones(), l);
            assert_eq!(r.reduce(u64::MAX), r.mask());
            assert_eq!(r.to_signed(r.mask()), -1);
            assert_eq!(r.from_signed(-1), r.mask());
            if l > 1 {
                assert_eq!(r.to_signed(1 << (l - 1)), -1i64 << (l - 1));
            }
            let mut rng = ChaCha12Rng::seed_from_u64(u64::from(l));
            assert!(r.random(&mut rng, 100).iter().all(|&x| x <= r.mask()));
        }
        assert!(Ring::new(0).is_err() && Ring::new(65).is_err());
        // The signed view of the default ring is share::to_signed's.
        let r = Ring::new(RING_BITS).unwrap();
        assert_eq!(r.to_signed(RING_MASK - 4), to_signed(RING_MASK - 4));
        // A received value outside the ring is the peer's fault.
        let (mut a, mut b) = crate::channel::MemoryChannel::pair();
        r.send(&mut a, &[5, RING_MASK]).unwrap();
        a.flush().unwrap();
        assert_eq!(r.recv(&mut b, 2).unwrap(), vec![5, RING_MASK]);
        a.send_u64s(&[RING_MASK + 1]).unwrap();
        a.flush().unwrap();
        let e = r.recv(&mut b, 1).unwrap_err();
        assert_eq!(e.fault(), crate::error::Fault::Peer);
        assert!(e.to_string().contains("outside the ring"), "{e}");
    }

    #[test]
    fn fixed_point_edges() {
        assert_eq!(encode_fixed(1.0, 12).unwrap(), 4096);
        assert_eq!(to_signed(encode_fixed(-1.0, 12).unwrap()), -4096);
        assert_eq!(encode_fixed(0.5 / 4096.0, 12).unwrap(), 1);
        assert!(encode_fixed(f64::NAN, 12).is_err());
        assert!(encode_fixed(f64::INFINITY, 12).is_err());
        assert!(encode_fixed(2f64.powi(60), 0).is_err());
        assert_eq!(
            to_signed(encode_fixed(-(2f64.powi(60)), 0).unwrap()),
            -(1i64 << 60)
        );
        assert_eq!(to_signed(RING_MASK), -1);
        assert_eq!(to_signed(1 << 60), -(1i64 << 60));
        assert_eq!(to_signed((1 << 60) - 1), (1i64 << 60) - 1);
        assert_eq!(round_offset(12), 2048);
        assert_eq!(round_offset(0), 0);
    }
}
