//! The HE messages' encodings and the checks on what the peer sends: bounds, residues,
//! the public key's form, and the `fhe` crate's deserializers run under [`guarded`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use fhe::bfv::{Ciphertext, PublicKey};
use fhe_math::rq::Representation;
use fhe_traits::DeserializeParametrized;

use super::params::{HeParams, MODULI, POLY_DEGREE};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;
use rand_core::RngCore;

pub(super) const N: usize = POLY_DEGREE;
pub(super) const K: usize = MODULI.len();
/// Bound on one serialized input ciphertext (3 x N residues of at most 64 bits, seed,
/// framing).
pub(super) const MAX_CT_BYTES: usize = K * N * 8 + 1024;
/// Bound on the serialized public key.
pub(super) const MAX_KEY_BYTES: usize = 2 * K * N * 8 + 1024;

pub(super) fn fhe_err(what: &str) -> impl Fn(fhe::Error) -> ProtocolError + '_ {
    move |e| ProtocolError::arg(format!("{what}: {e}"))
}

pub(super) fn math_err(what: &str) -> impl Fn(fhe_math::Error) -> ProtocolError + '_ {
    move |e| ProtocolError::arg(format!("{what}: {e}"))
}

/// Checks residues received from the peer against the moduli (`rows` residues per
/// modulus, modulus-major).
pub(super) fn check_residues(v: &[u64], rows: usize, what: &str) -> Result<()> {
    for (i, q) in MODULI.iter().enumerate() {
        if v[i * rows..(i + 1) * rows].iter().any(|&x| x >= *q) {
            return Err(ProtocolError::peer(format!(
                "{what}: a residue is not reduced modulo the ciphertext modulus"
            )));
        }
    }
    Ok(())
}

/// Appends a protobuf length-delimited field.
pub(super) fn put_field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    let mut n = body.len();
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(body);
}

/// Splits a protobuf varint off the front of `b`.
pub(super) fn varint(mut b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&x, r) = b.split_first()?;
        b = r;
        v |= u64::from(x & 0x7f).checked_shl(shift)?;
        if x & 0x80 == 0 {
            return Some((v, b));
        }
    }
    None
}

/// Splits a protobuf length-delimited field `tag` off the front of `b`: returns its
/// contents and the rest.
pub(super) fn proto_field(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&t, rest) = b.split_first()?;
    if t != tag {
        return None;
    }
    let (len, rest) = varint(rest)?;
    let len = usize::try_from(len).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// Decodes the client's public key and checks what the `fhe` crate's decoder does not:
/// that it is exactly one ciphertext of two polynomials at the top level, both in NTT
/// representation (a key in power-basis or NTT-Shoup form decodes, then panics in
/// `try_encrypt`) with every residue, in NTT and in coefficient form, reduced modulo its
/// modulus, and its second polynomial expanded from a seed.
///
/// Returns the key as its two-polynomial ciphertext `(pk0, pk1)` (NTT form), after
/// checking that the `fhe` crate decodes it as a public key too.
pub(super) fn parse_public_key(bytes: &[u8], params: &HeParams) -> Result<Ciphertext> {
    let par = params.bfv().clone();
    let bad = |m: &str| ProtocolError::peer(format!("HE public key: {m}"));
    // `PublicKey { Ciphertext c = 1; }`, encoded by the client as one field.
    let (inner, rest) =
        proto_field(bytes, 0x0a).ok_or_else(|| bad("not a single ciphertext field"))?;
    if !rest.is_empty() {
        return Err(bad("trailing bytes after the ciphertext"));
    }
    let ct = guarded(|| Ciphertext::from_bytes(inner, &par), "HE public key")?;
    let ctx = par.context_at_level(0).map_err(fhe_err("context"))?;
    if ct.len() != 2 || ct.iter().any(|p| p.ctx() != ctx) {
        return Err(bad("not a two-part ciphertext at the top level"));
    }
    for p in ct.iter() {
        if *p.representation() != Representation::Ntt {
            return Err(bad(&format!(
                "a polynomial is in {:?} representation, not NTT",
                p.representation()
            )));
        }
        check_residues(&Vec::<u64>::from(p), N, "HE public key")?;
        let mut c = p.clone();
        c.change_representation(Representation::PowerBasis);
        check_residues(&Vec::<u64>::from(&c), N, "HE public key")?;
    }
    // An honest key is `(-(a s + e), a)` with `a` expanded from a seed, which is how it
    // travels: `c = [c0]`, then the seed. Requiring that form keeps `a` pseudorandom, so
    // the server's re-randomization `u a + e2` of each result's `c1` cannot be stripped
    // by a degenerate key (`a = 0` would hand out `sum c1_b K_b`, i.e. the weights).
    let seeded = proto_field(inner, 0x0a)
        .and_then(|(_, rest)| proto_field(rest, 0x12))
        .is_some_and(|(seed, rest)| seed.len() == 32 && rest.is_empty());
    if !seeded {
        return Err(bad("its second polynomial is not expanded from a seed"));
    }
    guarded(|| PublicKey::from_bytes(bytes, &par), "HE public key")?;
    Ok(ct)
}

/// Runs a deserializer on peer bytes; a panic inside the library becomes a peer error.
pub(super) fn guarded<T>(f: impl FnOnce() -> fhe::Result<T>, what: &str) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ProtocolError::peer(format!("{what} does not decode: {e}"))),
        Err(_) => Err(ProtocolError::peer(format!("{what} does not decode"))),
    }
}

/// A sample of the `fhe` crate's centred binomial distribution of variance 10 (the
/// difference of two 20-bit popcounts), as `fhe_util::sample_vec_cbd` draws it.
pub(super) fn cbd(rng: &mut Prg) -> i64 {
    let x = rng.next_u64();
    i64::from((x & 0xf_ffff).count_ones()) - i64::from(((x >> 20) & 0xf_ffff).count_ones())
}

/// The `fhe` crate's encoding of a message `m` of `Z_t` (`t = 2^l`) as
/// `floor(q m / t) = -((q mod t) m mod t) t^-1 mod q_i`.
pub(super) struct ScalarEncoder {
    mask: u64,
    q_mod_t: u64,
    /// `-t^-1 mod q_i` and its Shoup companion `floor(2^64 v / q_i)`.
    neg_tinv: [(u64, u64); K],
}

impl ScalarEncoder {
    pub(super) fn new(l: u32) -> Self {
        let mask = (1u64 << l) - 1;
        let q_mod_t = MODULI.iter().fold(1u64, |a, &q| a.wrapping_mul(q)) & mask;
        let neg_tinv = std::array::from_fn(|i| {
            let q = u128::from(MODULI[i]);
            let (mut b, mut e, mut r) = ((1u128 << l) % q, q - 2, 1u128);
            while e > 0 {
                if e & 1 == 1 {
                    r = r * b % q;
                }
                b = b * b % q;
                e >>= 1;
            }
            let v = ((q - r) % q) as u64;
            (v, ((u128::from(v) << 64) / q) as u64)
        });
        ScalarEncoder {
            mask,
            q_mod_t,
            neg_tinv,
        }
    }

    /// The residues of `floor(q m / t)`, `m < t`.
    #[inline]
    pub(super) fn encode(&self, m: u64) -> [u64; K] {
        let r = self.q_mod_t.wrapping_mul(m) & self.mask;
        std::array::from_fn(|i| {
            let q = MODULI[i];
            let (v, vs) = self.neg_tinv[i];
            let est = ((u128::from(r) * u128::from(vs)) >> 64) as u64;
            let y = r.wrapping_mul(v).wrapping_sub(est.wrapping_mul(q));
            if y >= q { y - q } else { y }
        })
    }
}
