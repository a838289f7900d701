//! The client's seeded ciphertexts: its public key re-keyed to a seed of its own
//! generator, and its masks' encryptions drawn directly from that generator, so that a
//! seeded client sends the same bytes every run (the `fhe` crate seeds `a` from the
//! thread RNG; see the `he` module's documentation).

use fhe::bfv::{Ciphertext, SecretKey};
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_traits::Serialize;
use rand_core::RngCore;
use zeroize::Zeroizing;

use super::codec::{K, N, ScalarEncoder, cbd, fhe_err, math_err, proto_field, put_field, varint};
use super::params::HeParams;
use super::params::MODULI;
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

/// The secret key's coefficients (read back from its serialization, `SecretKey {
/// repeated sint64 coeffs = 1; }`, packed) as a polynomial in NTT form at `level` (0:
/// all three moduli; 1: the first two, where the client multiplies switched results).
pub(super) fn secret_poly(
    sk: &SecretKey,
    params: &HeParams,
    level: usize,
) -> Result<Zeroizing<Poly>> {
    let bad = || ProtocolError::arg("the secret key does not serialize as expected");
    let bytes = Zeroizing::new(sk.to_bytes());
    let (mut packed, rest) = proto_field(&bytes, 0x0a).ok_or_else(bad)?;
    if !rest.is_empty() {
        return Err(bad());
    }
    let mut coeffs = Zeroizing::new(Vec::with_capacity(N));
    while !packed.is_empty() {
        let (v, r) = varint(packed).ok_or_else(bad)?;
        packed = r;
        coeffs.push(((v >> 1) as i64) ^ -((v & 1) as i64));
    }
    if coeffs.len() != N {
        return Err(bad());
    }
    let ctx = params
        .bfv()
        .context_at_level(level)
        .map_err(fhe_err("context"))?;
    let mut s = Zeroizing::new(
        Poly::try_convert_from(coeffs.as_slice(), ctx, false, Representation::PowerBasis)
            .map_err(math_err("secret key"))?,
    );
    s.change_representation(Representation::Ntt);
    Ok(s)
}

/// A fresh secret-key ciphertext `ct = (b, a)` re-keyed to `(b + (a - a') s, a')`, `a'`
/// expanded from a seed drawn from `rng`, serialized as the `fhe` crate serializes a
/// seeded ciphertext (`Ciphertext { c = [b]; seed; }` at level 0). The arithmetic on the
/// secret runs in constant time; `b` then carries the crate's variable-time mark of a
/// fresh ciphertext (which the server's products use), or none for a public key
/// (`public_key`, as `PublicKey::new` leaves it).
pub(super) fn seeded_ciphertext(
    ct: &Ciphertext,
    s: &Poly,
    rng: &mut Prg,
    public_key: bool,
) -> Result<Vec<u8>> {
    if ct.len() != 2 {
        return Err(ProtocolError::arg(
            "re-keying a ciphertext of more than two parts",
        ));
    }
    let mut seed = [0u8; 32];
    RngCore::fill_bytes(rng, &mut seed);
    let ctx = ct[1].ctx();
    let a = Poly::random_from_seed(ctx, Representation::Ntt, seed);
    let mut d = Zeroizing::new(&ct[1] - &a);
    d.disallow_variable_time_computations();
    *d *= s;
    let mut b = ct[0].clone();
    b.disallow_variable_time_computations();
    b += &*d;
    if !public_key {
        b = Poly::try_convert_from(Vec::<u64>::from(&b), ctx, true, Representation::Ntt)
            .map_err(math_err("re-keyed ciphertext"))?;
    }
    let mut out = Vec::new();
    put_field(&mut out, 0x0a, &b.to_bytes());
    put_field(&mut out, 0x12, &seed);
    Ok(out)
}

/// A fresh symmetric encryption of the message coefficients `m` (each below `t`) under
/// the secret `s` (NTT form), in the seeded form: `(b, a)` with `a` expanded from a seed
/// drawn from `rng` and `b = floor(q m / t) + e - a s`, `e` from the `fhe` crate's centred
/// binomial distribution of variance 10. The same distribution as the crate's
/// `try_encrypt` followed by [`seeded_ciphertext`], with one forward NTT (of
/// `floor(q m / t) + e`) instead of several, serialized the same way.
pub(super) fn fresh_encryption(
    m: &[u64],
    enc: &ScalarEncoder,
    s: &Poly,
    rng: &mut Prg,
) -> Result<Vec<u8>> {
    if m.len() != N {
        return Err(ProtocolError::arg("a message of the wrong length"));
    }
    let ctx = s.ctx();
    let mut r = vec![0u64; K * N];
    for (j, &v) in m.iter().enumerate() {
        let e = cbd(rng);
        let mv = enc.encode(v);
        for (i, &q) in MODULI.iter().enumerate() {
            let x = mv[i] as i128 + i128::from(e);
            r[i * N + j] = x.rem_euclid(i128::from(q)) as u64;
        }
    }
    let mut b = Poly::try_convert_from(r, ctx, false, Representation::PowerBasis)
        .map_err(math_err("encrypting a mask"))?;
    b.change_representation(Representation::Ntt);
    let mut seed = [0u8; 32];
    RngCore::fill_bytes(rng, &mut seed);
    let a = Poly::random_from_seed(ctx, Representation::Ntt, seed);
    let mut d = Zeroizing::new(a);
    d.disallow_variable_time_computations();
    *d *= s;
    b.disallow_variable_time_computations();
    b -= &*d;
    let b = Poly::try_convert_from(Vec::<u64>::from(&b), ctx, true, Representation::Ntt)
        .map_err(math_err("encrypting a mask"))?;
    let mut out = Vec::new();
    put_field(&mut out, 0x0a, &b.to_bytes());
    put_field(&mut out, 0x12, &seed);
    Ok(out)
}
