//! The two parties of the HE preprocessing: key setup and one operator ("term") at a time.
//!
//! Messages of one term, all of sizes fixed by the public layout:
//! 1. client -> server: `input_cts` BFV ciphertexts of the client's mask (the `fhe`
//!    crate's serialization, `c1` replaced by its seed), each length-prefixed and bounded;
//! 2. server -> client: per output ciphertext, `c1` (3 x N residues) and `c0` at the
//!    layout's output coefficients only (both in coefficient form, so the wire format
//!    does not depend on the NTT implementation's ordering) (3 x positions
//!    residues), after subtracting `s`, adding a fresh public-key encryption of zero and
//!    flooding `c0`. The other coefficients of `c0`, which hold partial sums of the
//!    convolution, never leave the server.
//!
//! Randomness: every draw (key, encryption noise, the seeds of the uniform polynomials,
//! re-randomization, flooding) comes from the generator the caller passes (`*_with_rng`;
//! the plain methods key one from the OS CSPRNG), one [`Prg`] per ciphertext drawn in
//! order before the parallel work, so a seeded party sends the same bytes every run. The
//! `fhe` crate's secret-key encryption expands its uniform `a` from a seed of the thread
//! RNG, whatever generator it is given; the client therefore re-keys each fresh
//! ciphertext `(b, a)` to `(b + (a - a') s, a')` with `a'` expanded from a seed of its
//! own generator, which is the same encryption of the same message under the same noise,
//! serialized exactly as the crate serializes a seeded ciphertext.

use std::panic::{AssertUnwindSafe, catch_unwind};

use fhe::bfv::{Ciphertext, Encoding, Plaintext, PublicKey, SecretKey};
use fhe_math::rq::{Poly, Representation, dot_product, traits::TryConvertFrom};
use fhe_traits::{
    DeserializeParametrized, FheDecoder, FheDecrypter, FheEncoder, FheEncrypter, Serialize,
};
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;
use zeroize::Zeroizing;

use super::{
    ConvLayout, FLOOD_BITS, HE_VERSION, HeParams, MAX_KERNEL_NORM_BITS, MODULI, POLY_DEGREE,
};
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

const N: usize = POLY_DEGREE;
const K: usize = MODULI.len();
/// Bound on one serialized input ciphertext (3 x N residues of at most 64 bits, seed,
/// framing).
const MAX_CT_BYTES: usize = K * N * 8 + 1024;
/// Bound on the serialized public key.
const MAX_KEY_BYTES: usize = 2 * K * N * 8 + 1024;

fn fhe_err(what: &str) -> impl Fn(fhe::Error) -> ProtocolError + '_ {
    move |e| ProtocolError::arg(format!("{what}: {e}"))
}

fn math_err(what: &str) -> impl Fn(fhe_math::Error) -> ProtocolError + '_ {
    move |e| ProtocolError::arg(format!("{what}: {e}"))
}

/// Checks residues received from the peer against the moduli (`rows` residues per
/// modulus, modulus-major).
fn check_residues(v: &[u64], rows: usize, what: &str) -> Result<()> {
    for (i, q) in MODULI.iter().enumerate() {
        if v[i * rows..(i + 1) * rows].iter().any(|&x| x >= *q) {
            return Err(ProtocolError::peer(format!(
                "{what}: a residue is not reduced modulo the ciphertext modulus"
            )));
        }
    }
    Ok(())
}

/// The client: holds the secret key.
pub struct HeClient {
    params: HeParams,
    sk: SecretKey,
    /// The secret key as a polynomial in NTT form (re-keying fresh ciphertexts).
    s: Zeroizing<Poly>,
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
        let s = secret_poly(&sk, &params)?;
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
        Ok(HeClient { params, sk, s })
    }

    /// Runs one term: returns `L(x) - s` for the layout's operator `L`, the client's
    /// value `x` and the server's `s` (ring elements).
    pub fn term(&self, ch: &mut dyn Channel, layout: &ConvLayout, x: &[u64]) -> Result<Vec<u64>> {
        self.term_with_rng(ch, layout, x, &mut Prg::from_entropy())
    }

    /// [`Self::term`] with the encryptions drawn from `rng` (a seeded one in tests).
    pub fn term_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        x: &[u64],
        rng: &mut R,
    ) -> Result<Vec<u64>> {
        self.check_layout(layout)?;
        let par = self.params.bfv();
        let polys = layout.encode_input(x)?;
        // One generator per ciphertext, drawn in order: the parallel encryptions do not
        // depend on the scheduling.
        let prgs: Vec<Prg> = polys.iter().map(|_| Prg::from_rng(rng)).collect();
        let cts = polys
            .par_iter()
            .zip(prgs)
            .map(|(p, mut prg)| {
                let pt = Plaintext::try_encode(p.as_slice(), Encoding::poly(), par)
                    .map_err(fhe_err("encoding a mask"))?;
                self.encrypt(&pt, &mut prg)
            })
            .collect::<Result<Vec<_>>>()?;
        for c in &cts {
            ch.send_prefixed(c)?;
        }
        ch.flush()?;
        drop(cts);
        let mut received = Vec::with_capacity(layout.output_cts());
        for t in 0..layout.tiles {
            for g in 0..layout.groups {
                let pos = layout.output_positions(t, g);
                let c1 = ch.recv_u64s(K * N)?;
                check_residues(&c1, N, "HE result c1")?;
                let c0 = ch.recv_u64s(K * pos.len())?;
                check_residues(&c0, pos.len(), "HE result c0")?;
                received.push((pos, c0, c1));
            }
        }
        let parts = received
            .into_par_iter()
            .map(|(pos, c0, c1)| self.decrypt(&pos, &c0, c1))
            .collect::<Result<Vec<_>>>()?;
        let mut out = vec![0u64; layout.shape.out_len()];
        for part in parts {
            for (idx, v) in part {
                out[idx] = v;
            }
        }
        Ok(out)
    }

    /// A fresh encryption of `pt` under the secret key, serialized in the seeded form.
    fn encrypt(&self, pt: &Plaintext, rng: &mut Prg) -> Result<Vec<u8>> {
        let ct: Ciphertext = self
            .sk
            .try_encrypt(pt, rng)
            .map_err(fhe_err("encrypting a mask"))?;
        seeded_ciphertext(&ct, &self.s, rng, false)
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

    /// Decrypts the output coefficients `pos` of one result.
    fn decrypt(
        &self,
        pos: &[(usize, usize)],
        c0: &[u64],
        c1: Vec<u64>,
    ) -> Result<Vec<(usize, u64)>> {
        let par = self.params.bfv();
        let ctx = par.context_at_level(0).map_err(fhe_err("context"))?;
        let mut full = vec![0u64; K * N];
        for i in 0..K {
            for (k, &(coeff, _)) in pos.iter().enumerate() {
                full[i * N + coeff] = c0[i * pos.len() + k];
            }
        }
        let mut p0 = Poly::try_convert_from(full, ctx, false, Representation::PowerBasis)
            .map_err(math_err("result c0"))?;
        p0.change_representation(Representation::Ntt);
        let mut p1 = Poly::try_convert_from(c1, ctx, false, Representation::PowerBasis)
            .map_err(math_err("result c1"))?;
        p1.change_representation(Representation::Ntt);
        let ct = Ciphertext::new(vec![p0, p1], par).map_err(fhe_err("result"))?;
        let pt = self.sk.try_decrypt(&ct).map_err(fhe_err("decrypting"))?;
        let v = Vec::<u64>::try_decode(&pt, Encoding::poly()).map_err(fhe_err("decoding"))?;
        Ok(pos.iter().map(|&(coeff, idx)| (idx, v[coeff])).collect())
    }
}

/// The server: holds the client's public key.
pub struct HeServer {
    params: HeParams,
    pk: PublicKey,
}

impl std::fmt::Debug for HeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeServer")
            .field("ring_bits", &self.params.ring_bits())
            .finish_non_exhaustive()
    }
}

impl HeServer {
    /// Receives the client's version, ring and public key.
    pub fn setup(ch: &mut dyn Channel, params: HeParams) -> Result<Self> {
        let mut hdr = [0u8; 2];
        ch.recv(&mut hdr)?;
        if hdr[0] != HE_VERSION {
            return Err(ProtocolError::peer(format!(
                "HE preprocessing version {} (this side speaks {HE_VERSION})",
                hdr[0]
            )));
        }
        if u32::from(hdr[1]) != params.ring_bits() {
            return Err(ProtocolError::peer(format!(
                "HE key for the ring Z_2^{}, expected Z_2^{}",
                hdr[1],
                params.ring_bits()
            )));
        }
        let bytes = ch.recv_prefixed(MAX_KEY_BYTES)?;
        let pk = parse_public_key(&bytes, &params)?;
        Ok(HeServer { params, pk })
    }

    /// Runs one term: lets the client learn `L(x) - s` for the operator `L` of `layout`
    /// with weights `w` (`layout.shape.weight_len()`, signed ring values) and the
    /// server's `s` (`layout.shape.out_len()` ring elements).
    pub fn term(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        w: &[i64],
        s: &[u64],
    ) -> Result<()> {
        self.term_with_rng(ch, layout, w, s, &mut Prg::from_entropy())
    }

    /// [`Self::term`] with the re-randomization and flooding drawn from `rng` (a seeded
    /// one in tests).
    pub fn term_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        w: &[i64],
        s: &[u64],
        rng: &mut R,
    ) -> Result<()> {
        let shape = &layout.shape;
        if layout.n != N || w.len() != shape.weight_len() || s.len() != shape.out_len() {
            return Err(ProtocolError::arg(format!(
                "HE term: {} weights and {} outputs for a layout of degree {} expecting {} \
                 and {}",
                w.len(),
                s.len(),
                layout.n,
                shape.weight_len(),
                shape.out_len()
            )));
        }
        let par = self.params.bfv().clone();
        let mut raw = Vec::with_capacity(layout.input_cts());
        for _ in 0..layout.input_cts() {
            raw.push(ch.recv_prefixed(MAX_CT_BYTES)?);
        }
        let inputs = raw
            .par_iter()
            .map(|b| self.parse_input(b))
            .collect::<Result<Vec<_>>>()?;
        drop(raw);
        // One generator per output ciphertext, drawn in order (group-major).
        let prgs: Vec<Vec<Prg>> = (0..layout.groups)
            .map(|_| (0..layout.tiles).map(|_| Prg::from_rng(rng)).collect())
            .collect();
        let outs = prgs
            .into_par_iter()
            .enumerate()
            .map(|(g, prgs)| {
                let ctx = par.context_at_level(0).map_err(fhe_err("context"))?;
                let mut norm = 0u128;
                let mut kernels = Vec::new();
                for blk in layout.blocks_of_group(g) {
                    let (k, n1) = layout.kernel(w, g, blk);
                    norm += n1;
                    let mut p = Poly::try_convert_from(
                        k.as_slice(),
                        ctx,
                        false,
                        Representation::PowerBasis,
                    )
                    .map_err(math_err("kernel"))?;
                    p.change_representation(Representation::Ntt);
                    kernels.push(p);
                }
                if norm > 1u128 << MAX_KERNEL_NORM_BITS {
                    return Err(ProtocolError::arg(format!(
                        "weights too large for the HE parameters: a kernel 1-norm of \
                         {norm} exceeds 2^{MAX_KERNEL_NORM_BITS}"
                    )));
                }
                (0..layout.tiles)
                    .zip(prgs)
                    .map(|(t, mut prg)| {
                        let cts: Vec<&Ciphertext> = layout
                            .blocks_of_group(g)
                            .map(|b| &inputs[t * layout.channel_blocks + b])
                            .collect();
                        self.result(layout, &cts, &kernels, (t, g), s, &mut prg)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        for t in 0..layout.tiles {
            for group in &outs {
                let (c1, c0) = &group[t];
                ch.send_u64s(c1)?;
                ch.send_u64s(c0)?;
            }
        }
        ch.flush()?;
        Ok(())
    }

    fn parse_input(&self, bytes: &[u8]) -> Result<Ciphertext> {
        let par = self.params.bfv().clone();
        let mut ct = guarded(|| Ciphertext::from_bytes(bytes, &par), "input ciphertext")?;
        let ctx = par.context_at_level(0).map_err(fhe_err("context"))?;
        if ct.len() != 2 || ct.iter().any(|p| p.ctx() != ctx) {
            return Err(ProtocolError::peer(
                "an input ciphertext is not a fresh two-part ciphertext at the top level",
            ));
        }
        for p in ct.iter_mut() {
            match *p.representation() {
                Representation::PowerBasis => {
                    check_residues(&Vec::<u64>::from(&*p), N, "input ciphertext")?;
                    p.change_representation(Representation::Ntt);
                }
                Representation::Ntt => {
                    check_residues(&Vec::<u64>::from(&*p), N, "input ciphertext")?;
                    let mut c = p.clone();
                    c.change_representation(Representation::PowerBasis);
                    check_residues(&Vec::<u64>::from(&c), N, "input ciphertext")?;
                }
                // NTT-Shoup (or anything newer): not what a client sends, and not what
                // the products below expect.
                r => {
                    return Err(ProtocolError::peer(format!(
                        "an input ciphertext polynomial is in {r:?} representation"
                    )));
                }
            }
        }
        Ok(ct)
    }

    /// One output ciphertext (tile `t`, group `g`): products, minus `s`, re-randomized,
    /// flooded, trimmed.
    fn result(
        &self,
        layout: &ConvLayout,
        cts: &[&Ciphertext],
        kernels: &[Poly],
        (t, g): (usize, usize),
        s: &[u64],
        rng: &mut Prg,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let pos = layout.output_positions(t, g);
        let ct = self.evaluate(cts, kernels, &pos, s, rng)?;
        Ok(flood_and_trim(&ct, &pos, rng))
    }

    /// `sum_b ct_b * K_b - s + Enc_pk(0)`, before flooding.
    fn evaluate(
        &self,
        cts: &[&Ciphertext],
        kernels: &[Poly],
        pos: &[(usize, usize)],
        s: &[u64],
        rng: &mut Prg,
    ) -> Result<Ciphertext> {
        let par = self.params.bfv();
        let c0 =
            dot_product(cts.iter().map(|c| &c[0]), kernels.iter()).map_err(math_err("product"))?;
        let c1 =
            dot_product(cts.iter().map(|c| &c[1]), kernels.iter()).map_err(math_err("product"))?;
        let ct = Ciphertext::new(vec![c0, c1], par).map_err(fhe_err("result"))?;
        let mut sp = vec![0u64; N];
        for &(coeff, idx) in pos {
            sp[coeff] = s[idx];
        }
        let pt = Plaintext::try_encode(sp.as_slice(), Encoding::poly(), par)
            .map_err(fhe_err("encoding s"))?;
        let zero = Plaintext::zero(Encoding::poly(), par).map_err(fhe_err("zero"))?;
        let fresh = self
            .pk
            .try_encrypt(&zero, rng)
            .map_err(fhe_err("re-randomizing"))?;
        Ok(&(&ct - &pt) + &fresh)
    }
}

/// `c1` (all residues) and `c0` at the output coefficients `pos` only, plus flooding
/// noise uniform in `[-2^FLOOD_BITS, 2^FLOOD_BITS)`; coefficient form, modulus-major.
fn flood_and_trim(ct: &Ciphertext, pos: &[(usize, usize)], rng: &mut Prg) -> (Vec<u64>, Vec<u64>) {
    let mut c0 = ct[0].clone();
    c0.change_representation(Representation::PowerBasis);
    let c0 = Vec::<u64>::from(&c0);
    let mut c1 = ct[1].clone();
    c1.change_representation(Representation::PowerBasis);
    let c1 = Vec::<u64>::from(&c1);
    let mut sel = vec![0u64; K * pos.len()];
    let span = 1u128 << (FLOOD_BITS + 1);
    for (k, &(coeff, _)) in pos.iter().enumerate() {
        let u = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) % span;
        let flood = u as i128 - (1i128 << FLOOD_BITS);
        for (i, &q) in MODULI.iter().enumerate() {
            let f = flood.rem_euclid(i128::from(q)) as u64;
            let v = c0[i * N + coeff];
            sel[i * pos.len() + k] = ((u128::from(v) + u128::from(f)) % u128::from(q)) as u64;
        }
    }
    (c1, sel)
}

/// The secret key's coefficients (read back from its serialization, `SecretKey {
/// repeated sint64 coeffs = 1; }`, packed) as a polynomial in NTT form.
fn secret_poly(sk: &SecretKey, params: &HeParams) -> Result<Zeroizing<Poly>> {
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
        .context_at_level(0)
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
fn seeded_ciphertext(
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

/// Appends a protobuf length-delimited field.
fn put_field(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
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
fn varint(mut b: &[u8]) -> Option<(u64, &[u8])> {
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
fn proto_field(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
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
fn parse_public_key(bytes: &[u8], params: &HeParams) -> Result<PublicKey> {
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
    guarded(|| PublicKey::from_bytes(bytes, &par), "HE public key")
}

/// Runs a deserializer on peer bytes; a panic inside the library becomes a peer error.
fn guarded<T>(f: impl FnOnce() -> fhe::Result<T>, what: &str) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ProtocolError::peer(format!("{what} does not decode: {e}"))),
        Err(_) => Err(ProtocolError::peer(format!("{what} does not decode"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::block::Block;
    use crate::channel::{MemoryChannel, RecordingChannel};
    use crate::he::ConvShape;

    /// The client's key and input ciphertexts, re-keyed to seeds of its own generator,
    /// are what the `fhe` crate itself would serialize (decoding and re-encoding gives
    /// the same bytes), decrypt correctly, and repeat exactly under a seeded generator.
    #[test]
    fn seeded_client_messages_are_canonical_and_reproducible() {
        let params = HeParams::new(37).unwrap();
        let par = params.bfv().clone();
        let key = |seed: u128| {
            let (a, mut b) = MemoryChannel::pair();
            let mut a = RecordingChannel::new(a);
            let mut rng = Prg::from_seed(Block(seed));
            let he = HeClient::setup_with_rng(&mut a, params.clone(), &mut rng).unwrap();
            let server = HeServer::setup(&mut b, params.clone()).unwrap();
            (he, server, a.sent)
        };
        let (he, server, sent) = key(5);
        assert_eq!(key(5).2, sent);
        assert_ne!(key(6).2, sent);
        let bytes = &sent[2 + 8..];
        let pk = PublicKey::from_bytes(bytes, &par).unwrap();
        assert_eq!(pk.to_bytes(), bytes);
        // Same length as the crate's own key: the variable-time mark (a proto3 bool,
        // written only when set) is as `PublicKey::new` leaves it.
        let lib = PublicKey::new(&he.sk, &mut Prg::from_entropy()).to_bytes();
        assert_eq!(lib.len(), bytes.len());
        let x: Vec<u64> = (0..N as u64)
            .map(|i| i * 0x1_0000_0001 % (1 << 37))
            .collect();
        let pt = Plaintext::try_encode(x.as_slice(), Encoding::poly(), &par).unwrap();
        let ct = he.encrypt(&pt, &mut Prg::from_seed(Block(9))).unwrap();
        assert_eq!(ct, he.encrypt(&pt, &mut Prg::from_seed(Block(9))).unwrap());
        let parsed = server.parse_input(&ct).unwrap();
        assert_eq!(Ciphertext::from_bytes(&ct, &par).unwrap().to_bytes(), ct);
        let lib: Ciphertext = he.sk.try_encrypt(&pt, &mut Prg::from_entropy()).unwrap();
        assert_eq!(lib.to_bytes().len(), ct.len());
        let dec = he.sk.try_decrypt(&parsed).unwrap();
        assert_eq!(Vec::<u64>::try_decode(&dec, Encoding::poly()).unwrap(), x);
        // An encryption under the re-keyed public key decrypts too.
        let fresh = pk.try_encrypt(&pt, &mut Prg::from_entropy()).unwrap();
        let dec = he.sk.try_decrypt(&fresh).unwrap();
        assert_eq!(Vec::<u64>::try_decode(&dec, Encoding::poly()).unwrap(), x);
    }

    /// A client's public key whose polynomials are in power-basis (or NTT-Shoup) form
    /// decodes in the `fhe` crate and made `try_encrypt` panic at the first term; the
    /// server now refuses it at the key setup, as the peer's fault.
    #[test]
    fn a_public_key_not_in_ntt_form_is_refused_at_setup() {
        let params = HeParams::new(61).unwrap();
        let par = params.bfv().clone();
        let mut rng = Prg::from_entropy();
        let sk = SecretKey::random(&par, &mut rng);
        let good = PublicKey::new(&sk, &mut rng).to_bytes();
        let setup = |key: &[u8]| {
            let (mut a, mut b) = crate::channel::MemoryChannel::pair();
            a.send(&[HE_VERSION, 61]).unwrap();
            a.send_prefixed(key).unwrap();
            a.flush().unwrap();
            HeServer::setup(&mut b, params.clone())
        };
        assert!(setup(&good).is_ok());
        let (inner, _) = proto_field(&good, 0x0a).unwrap();
        let ct = Ciphertext::from_bytes(inner, &par).unwrap();
        for repr in [Representation::PowerBasis, Representation::NttShoup] {
            let mut polys = Vec::new();
            for p in ct.iter() {
                let mut q = p.clone();
                q.change_representation(repr);
                put_field(&mut polys, 0x0a, &q.to_bytes());
            }
            let mut key = Vec::new();
            put_field(&mut key, 0x0a, &polys);
            // The library's own decoder accepts it ...
            assert!(PublicKey::from_bytes(&key, &par).is_ok());
            // ... the server does not.
            let e = setup(&key).unwrap_err();
            assert_eq!(e.fault(), crate::Fault::Peer, "{e}");
            assert!(e.to_string().contains("representation, not NTT"), "{e}");
        }
        // A well-formed key whose second polynomial is sent explicitly (here: zero, which
        // would make the re-randomization of every result strippable) is refused.
        let mut polys = Vec::new();
        put_field(&mut polys, 0x0a, &ct[0].to_bytes());
        let zero = Poly::zero(ct[1].ctx(), Representation::Ntt);
        put_field(&mut polys, 0x0a, &zero.to_bytes());
        let mut key = Vec::new();
        put_field(&mut key, 0x0a, &polys);
        assert!(PublicKey::from_bytes(&key, &par).is_ok());
        let e = setup(&key).unwrap_err();
        assert!(e.to_string().contains("not expanded from a seed"), "{e}");
        // An input ciphertext in NTT-Shoup form is refused as well.
        let server = setup(&good).unwrap();
        let mut polys = Vec::new();
        for p in ct.iter() {
            let mut q = p.clone();
            q.change_representation(Representation::NttShoup);
            put_field(&mut polys, 0x0a, &q.to_bytes());
        }
        let e = server.parse_input(&polys).unwrap_err();
        assert!(e.to_string().contains("NttShoup representation"), "{e}");
        // Framing other than one ciphertext field is refused too.
        let mut extra = good.clone();
        extra.push(0);
        assert!(setup(&extra).unwrap_err().to_string().contains("trailing"));
        assert!(setup(&good[1..]).is_err());
    }

    /// The noise budget of the largest layer: the widest ResNet18 convolution (512 x 512
    /// x 3 x 3 on 4 x 4) with every weight at 2^17 in magnitude (|w| = 8 at scale 2^14,
    /// far above trained networks), before flooding, must leave the flooding room below
    /// `q / 2t` and stay 71 bits under it.
    #[test]
    #[allow(unsafe_code)] // `measure_noise` is `unsafe` only because it runs in variable time
    fn noise_budget_of_the_largest_layer() {
        let params = HeParams::new(61).unwrap();
        let par = params.bfv().clone();
        let mut rng = Prg::from_entropy();
        let sk = SecretKey::random(&par, &mut rng);
        let pk = PublicKey::new(&sk, &mut rng);
        let server = HeServer {
            params: params.clone(),
            pk,
        };
        let s = secret_poly(&sk, &params).unwrap();
        let client = HeClient { params, sk, s };
        let shape = ConvShape {
            channels: 512,
            height: 4,
            width: 4,
            out_channels: 512,
            kh: 3,
            kw: 3,
            stride: 1,
            padding: 1,
            depthwise: false,
        };
        let layout = ConvLayout::new(shape, N).unwrap();
        let w: Vec<i64> = (0..shape.weight_len())
            .map(|i| if i % 3 == 0 { -(1 << 17) } else { 1 << 17 })
            .collect();
        let x: Vec<u64> = (0..shape.in_len())
            .map(|_| rng.next_u64() & ((1 << 61) - 1))
            .collect();
        let cts: Vec<Ciphertext> = layout
            .encode_input(&x)
            .unwrap()
            .iter()
            .map(|p| {
                let pt = Plaintext::try_encode(p.as_slice(), Encoding::poly(), &par).unwrap();
                client.sk.try_encrypt(&pt, &mut rng).unwrap()
            })
            .collect();
        let ctx = par.context_at_level(0).unwrap();
        let g = 0;
        let mut norm = 0u128;
        let kernels: Vec<Poly> = layout
            .blocks_of_group(g)
            .map(|b| {
                let (k, n1) = layout.kernel(&w, g, b);
                norm += n1;
                let mut p =
                    Poly::try_convert_from(k.as_slice(), ctx, false, Representation::PowerBasis)
                        .unwrap();
                p.change_representation(Representation::Ntt);
                p
            })
            .collect();
        assert!(norm <= 1 << MAX_KERNEL_NORM_BITS);
        let refs: Vec<&Ciphertext> = layout.blocks_of_group(g).map(|b| &cts[b]).collect();
        let pos = layout.output_positions(0, g);
        let s = vec![0u64; shape.out_len()];
        let ct = server
            .evaluate(&refs, &kernels, &pos, &s, &mut rng)
            .unwrap();
        let noise = unsafe { client.sk.measure_noise(&ct) }.unwrap() as f64;
        let log_q: f64 = MODULI.iter().map(|&q| (q as f64).log2()).sum();
        let room = log_q - 61.0 - 1.0; // log2(q / 2t)
        eprintln!(
            "kernel 1-norm 2^{:.1}, noise before flooding 2^{noise}, flooding 2^{FLOOD_BITS}, \
             decryption bound 2^{room:.1}",
            (norm as f64).log2()
        );
        assert!(f64::from(FLOOD_BITS) - noise >= 71.0, "noise 2^{noise}");
        assert!(f64::from(FLOOD_BITS) + 1.0 < room - 4.0);
        // And the flooded result decrypts to the right values.
        let (c1, c0) = flood_and_trim(&ct, &pos, &mut rng);
        let got = client.decrypt(&pos, &c0, c1).unwrap();
        let want = shape.apply(&w, &x, (1 << 61) - 1);
        for (idx, v) in got {
            assert_eq!(v, want[idx]);
        }
    }
}
