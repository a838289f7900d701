//! The client's side of the HE preprocessing: it holds the secret key, sends its public
//! key and encrypted masks, and decrypts the results.

use fhe::bfv::{Encoding, Plaintext, SecretKey};
use fhe_math::rq::{Poly, Representation, traits::TryConvertFrom};
use fhe_traits::FheEncrypter;
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;
use zeroize::Zeroizing;

use super::codec::{N, ScalarEncoder, fhe_err, math_err, put_field};
use super::layout::ConvLayout;
use super::params::{HE_VERSION, HeParams, MODULI, RESULT_C1_BITS};
use super::rekey::{fresh_encryption, secret_poly, seeded_ciphertext};
use super::switch::{C1_BYTES, decode, get_c1};
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

/// The client: holds the secret key.
pub struct HeClient {
    pub(super) params: HeParams,
    /// The `fhe` crate's secret key (the tests decrypt and measure noise with it; the
    /// protocol itself uses the polynomials below).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) sk: SecretKey,
    /// The secret key as a polynomial in NTT form (encrypting masks).
    pub(super) s: Zeroizing<Poly>,
    /// The same modulo the first two primes (decrypting switched results).
    pub(super) s2: Zeroizing<Poly>,
}

impl std::fmt::Debug for HeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeClient")
            .field("ring_bits", &self.params.ring_bits())
            .finish_non_exhaustive()
    }
}

impl HeClient {
    /// Draws a key pair (OS CSPRNG) and sends the version, the ring and the public key.
    pub fn setup(ch: &mut dyn Channel, params: HeParams) -> Result<Self> {
        Self::setup_with_rng(ch, params, &mut Prg::from_entropy())
    }

    /// [`Self::setup`] with the key pair drawn from `rng` (a seeded one in tests).
    pub fn setup_with_rng<R: RngCore + CryptoRng + ?Sized>(
        ch: &mut dyn Channel,
        params: HeParams,
        rng: &mut R,
    ) -> Result<Self> {
        let mut prg = Prg::from_rng(rng);
        let par = params.bfv();
        let sk = SecretKey::random(par, &mut prg);
        let s = secret_poly(&sk, &params, 0)?;
        let s2 = secret_poly(&sk, &params, 1)?;
        // `PublicKey::new`: an encryption of zero, both polynomials constant-time.
        let zero = Plaintext::zero(Encoding::poly(), par).map_err(fhe_err("zero"))?;
        let ct = sk
            .try_encrypt(&zero, &mut prg)
            .map_err(fhe_err("drawing the public key"))?;
        let mut key = Vec::new();
        put_field(&mut key, 0x0a, &seeded_ciphertext(&ct, &s, &mut prg, true)?);
        ch.send(&[HE_VERSION, params.ring_bits() as u8])?;
        ch.send_prefixed(&key)?;
        ch.flush()?;
        Ok(HeClient { params, sk, s, s2 })
    }

    /// Runs one term: returns `L(x) - s` for the layout's operator `L`, the client's
    /// value `x` and the server's `s` (ring elements).
    pub fn term(&self, ch: &mut dyn Channel, layout: &ConvLayout, x: &[u64]) -> Result<Vec<u64>> {
        self.term_with_rng(ch, layout, x, &mut Prg::from_entropy())
    }

    /// [`Self::term`] with the encryptions drawn from `rng` (a seeded one in tests):
    /// [`Self::term_send`] then [`Self::term_recv`].
    pub fn term_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        x: &[u64],
        rng: &mut R,
    ) -> Result<Vec<u64>> {
        self.term_send(ch, layout, x, rng)?;
        self.term_recv(ch, layout)
    }

    /// A term's first half: encrypts `x` and sends the input ciphertexts (flushed). The
    /// server answers with the results that [`Self::term_recv`] reads; in between the
    /// client may send other terms' inputs (the server reads them in order).
    pub fn term_send<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        x: &[u64],
        rng: &mut R,
    ) -> Result<()> {
        self.check_layout(layout)?;
        let polys = layout.encode_input(x)?;
        // One generator per ciphertext, drawn in order: the parallel encryptions do not
        // depend on the scheduling.
        let prgs: Vec<Prg> = polys.iter().map(|_| Prg::from_rng(rng)).collect();
        let enc = ScalarEncoder::new(self.params.ring_bits());
        let cts = polys
            .par_iter()
            .zip(prgs)
            .map(|(p, mut prg)| fresh_encryption(p, &enc, &self.s, &mut prg))
            .collect::<Result<Vec<_>>>()?;
        for c in &cts {
            ch.send_prefixed(c)?;
        }
        ch.flush()?;
        Ok(())
    }

    /// A term's second half: receives and decrypts the results of the inputs that
    /// [`Self::term_send`] sent for `layout`, returning `L(x) - s`.
    pub fn term_recv(&self, ch: &mut dyn Channel, layout: &ConvLayout) -> Result<Vec<u64>> {
        self.check_layout(layout)?;
        let mut received = Vec::with_capacity(layout.output_cts());
        // Group-major: the server sends each group's tiles as soon as the group is done.
        for g in 0..layout.groups {
            for t in 0..layout.tiles {
                let pos = layout.output_positions(t, g);
                // Every bit pattern is a valid switched result: only the sizes (fixed by
                // the layout) are checked, by reading exactly that much.
                let mut c1 = vec![0u8; N * C1_BYTES];
                ch.recv(&mut c1)?;
                let c0 = ch.recv_u64s(pos.len())?;
                received.push((pos, c0, c1));
            }
        }
        let parts = received
            .into_par_iter()
            .map(|(pos, c0, c1)| self.decrypt(&pos, &c0, &c1))
            .collect::<Result<Vec<_>>>()?;
        let mut out = vec![0u64; layout.shape.out_len()];
        for part in parts {
            for (idx, v) in part {
                out[idx] = v;
            }
        }
        Ok(out)
    }

    /// A fresh encryption of the message coefficients `m` under the secret key,
    /// serialized in the seeded form.
    #[cfg(test)]
    pub(super) fn encrypt(&self, m: &[u64], rng: &mut Prg) -> Result<Vec<u8>> {
        fresh_encryption(
            m,
            &ScalarEncoder::new(self.params.ring_bits()),
            &self.s,
            rng,
        )
    }

    fn check_layout(&self, layout: &ConvLayout) -> Result<()> {
        if layout.n != N {
            return Err(ProtocolError::arg(format!(
                "layout for degree {} with HE degree {N}",
                layout.n
            )));
        }
        Ok(())
    }

    /// Decrypts the output coefficients `pos` of one switched result: `c0` there
    /// (mod `2^RESULT_C0_BITS`) and the packed `c1` (mod `2^RESULT_C1_BITS`).
    pub(super) fn decrypt(
        &self,
        pos: &[(usize, usize)],
        c0: &[u64],
        c1: &[u8],
    ) -> Result<Vec<(usize, u64)>> {
        let c1s = c1_times_secret(&self.s2, &get_c1(c1), pos)?;
        let l = self.params.ring_bits();
        Ok(pos
            .iter()
            .zip(c0.iter().zip(c1s))
            .map(|(&(_, idx), (&c0, c1s))| (idx, decode(c0, c1s, l)))
            .collect())
    }
}

/// `(c1 s mod 2^RESULT_C1_BITS)` at the coefficients `pos`, for `c1` with coefficients
/// below `2^RESULT_C1_BITS` and `s` (in NTT form modulo the first two primes) with
/// coefficients of magnitude at most `SECRET_BOUND`: the product's coefficients are below
/// `2^RESULT_C1_BITS * SECRET_BOUND * N < 2^98`, so the two primes (`2^124`) hold them
/// exactly, centred.
pub(super) fn c1_times_secret(s2: &Poly, c1: &[u128], pos: &[(usize, usize)]) -> Result<Vec<u128>> {
    let (q0, q1) = (MODULI[0], MODULI[1]);
    let mut res = vec![0u64; 2 * N];
    for (i, &q) in [q0, q1].iter().enumerate() {
        // x = hi 2^62 + lo with 2^62 = q + d, d < 2^20: x = hi d + lo (mod q).
        let d = (1u64 << 62) - q;
        for (r, &x) in res[i * N..(i + 1) * N].iter_mut().zip(c1) {
            let v = ((x >> 62) as u64) * d + (x as u64 & ((1 << 62) - 1));
            *r = if v >= q { v - q } else { v };
        }
    }
    let mut p = Poly::try_convert_from(res, s2.ctx(), false, Representation::PowerBasis)
        .map_err(math_err("result c1"))?;
    p.change_representation(Representation::Ntt);
    p *= s2;
    p.change_representation(Representation::PowerBasis);
    let prod = Vec::<u64>::from(&p);
    let big = u128::from(q0) * u128::from(q1);
    let inv = crt_inverse();
    let mask = (1u128 << RESULT_C1_BITS) - 1;
    Ok(pos
        .iter()
        .map(|&(coeff, _)| {
            let (r0, r1) = (prod[coeff], prod[N + coeff]);
            let k =
                ((u128::from((r1 + q1 - r0 % q1) % q1) * u128::from(inv)) % u128::from(q1)) as u64;
            let x = u128::from(r0) + u128::from(q0) * u128::from(k);
            let x = if x > big / 2 { x.wrapping_sub(big) } else { x };
            x & mask
        })
        .collect())
}

/// `q0^-1 mod q1`.
fn crt_inverse() -> u64 {
    let (q0, q1) = (u128::from(MODULI[0]), u128::from(MODULI[1]));
    let (mut base, mut e, mut r) = (q0 % q1, q1 - 2, 1u128);
    while e > 0 {
        if e & 1 == 1 {
            r = r * base % q1;
        }
        base = base * base % q1;
        e >>= 1;
    }
    r as u64
}
