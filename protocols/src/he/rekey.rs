//! Re-keying the client's fresh ciphertexts (and its public key) to a seed of its own
//! generator, so that a seeded client sends the same bytes every run (the `fhe` crate
//! seeds `a` from the thread RNG; see the `he` module's documentation).

use fhe::bfv::{Ciphertext, SecretKey};
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_traits::Serialize;
use rand_core::RngCore;
use zeroize::Zeroizing;

use super::codec::{N, fhe_err, math_err, proto_field, put_field, varint};
use super::params::HeParams;
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
