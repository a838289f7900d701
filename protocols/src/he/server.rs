//! The server's side of the HE preprocessing: it holds the client's public key and
//! evaluates each operator on the client's ciphertexts with its plaintext weights.

use fhe::bfv::Ciphertext;
use fhe_math::rq::{Poly, Representation, dot_product, traits::TryConvertFrom};
use fhe_traits::DeserializeParametrized;
use rand_core::{CryptoRng, RngCore};
use rayon::prelude::*;

use super::codec::{
    K, MAX_CT_BYTES, MAX_KEY_BYTES, N, ScalarEncoder, cbd, check_residues, fhe_err, guarded,
    math_err, parse_public_key,
};
use super::layout::ConvLayout;
use super::params::{
    FLOOD_BITS, HE_VERSION, HeParams, MAX_KERNEL_NORM_BITS, MODULI, RESULT_C0_BITS, RESULT_C1_BITS,
};
use super::switch::{C1_BYTES, put_c1, switcher};
use crate::channel::{Channel, ChannelExt};
use crate::error::{ProtocolError, Result};
use crate::prg::Prg;

/// The server: holds the client's public key.
pub struct HeServer {
    pub(super) params: HeParams,
    /// The client's public key `(pk0, pk1)`, NTT form.
    pub(super) pk: Ciphertext,
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
        self.term_cached_with_rng(ch, layout, w, s, rng, None)
    }

    /// [`Self::term_with_rng`] taking the kernel polynomials (NTT form) from `cache`
    /// under `key` when it holds them for this layout and these weights, and otherwise
    /// storing them there if they fit in its budget. The messages are the same.
    pub fn term_cached_with_rng<R: RngCore + CryptoRng + ?Sized>(
        &self,
        ch: &mut dyn Channel,
        layout: &ConvLayout,
        w: &[i64],
        s: &[u64],
        rng: &mut R,
        cache: Option<(&mut KernelCache, u64)>,
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
        let (cached, store) = match cache {
            Some((cache, key)) => {
                let digest = weights_digest(layout, w);
                match cache.terms.get(&key) {
                    Some((d, k)) if *d == digest => (Some(k), None),
                    _ => {
                        let bytes = kernel_bytes(layout);
                        let fits = cache.used + bytes <= cache.budget;
                        (None, fits.then_some((cache, key, digest, bytes)))
                    }
                }
            }
            None => (None, None),
        };
        let keep = store.is_some();
        // Groups in order on worker threads; each group's results are sent (tiles in
        // order) as soon as it and the groups before it are done, so the download
        // overlaps the rest of the computation.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut kept: Vec<Vec<Poly>> = Vec::with_capacity(if keep { layout.groups } else { 0 });
        super::ordered::for_each_ordered(
            prgs,
            threads,
            |g, prgs: Vec<Prg>| {
                let ctx = par.context_at_level(0).map_err(fhe_err("context"))?;
                let mut norm = 0u128;
                let mut kernels = Vec::new();
                let from_cache = cached.map(|c| &c[g]);
                for blk in layout.blocks_of_group(g) {
                    if from_cache.is_some() {
                        break;
                    }
                    let (k, n1) = layout.kernel(w, g, blk);
                    norm += n1;
                    let mut p = Poly::try_convert_from(
                        kernel_residues(&k),
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
                let use_kernels = from_cache.unwrap_or(&kernels);
                let res = (0..layout.tiles)
                    .zip(prgs)
                    .map(|(t, mut prg)| {
                        let cts: Vec<&Ciphertext> = layout
                            .blocks_of_group(g)
                            .map(|b| &inputs[t * layout.channel_blocks + b])
                            .collect();
                        self.result(layout, &cts, use_kernels, (t, g), s, &mut prg)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((res, if keep { kernels } else { Vec::new() }))
            },
            |_, (res, kernels)| {
                for (c1, c0) in &res {
                    ch.send(c1)?;
                    ch.send_u64s(c0)?;
                }
                ch.flush()?;
                if keep {
                    kept.push(kernels);
                }
                Ok(())
            },
        )?;
        if let Some((cache, key, digest, bytes)) = store {
            if let Some((_, old)) = cache.terms.insert(key, (digest, kept)) {
                cache.used -= old.iter().map(Vec::len).sum::<usize>() as u64 * POLY_BYTES;
            }
            cache.used += bytes;
        }
        Ok(())
    }

    pub(super) fn parse_input(&self, bytes: &[u8]) -> Result<Ciphertext> {
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
    ) -> Result<(Vec<u8>, Vec<u64>)> {
        let pos = layout.output_positions(t, g);
        let (c0, c1) = self.evaluate(cts, kernels, &pos, s, rng)?;
        Ok(flood_and_trim(&c0, &c1, &pos, rng))
    }

    /// `sum_b ct_b * K_b - s + Enc_pk(0)` before flooding, in coefficient form
    /// (modulus-major residues of `c0` and `c1`).
    ///
    /// The public-key encryption of zero is the `fhe` crate's, `(u pk0 + e1, u pk1 + e2)`
    /// with `u`, `e1`, `e2` from the same centred binomial distribution (variance 10),
    /// computed with one forward NTT (`u`) instead of building a ciphertext: `e2` is
    /// added to `c1` in coefficient form, and `e1` and the encoding of `-s` only at the
    /// output coefficients `pos`, the only coefficients of `c0` that are ever released.
    pub(super) fn evaluate(
        &self,
        cts: &[&Ciphertext],
        kernels: &[Poly],
        pos: &[(usize, usize)],
        s: &[u64],
        rng: &mut Prg,
    ) -> Result<(Vec<u64>, Vec<u64>)> {
        let ctx = self
            .params
            .bfv()
            .context_at_level(0)
            .map_err(fhe_err("context"))?;
        let mut c0 =
            dot_product(cts.iter().map(|c| &c[0]), kernels.iter()).map_err(math_err("product"))?;
        let mut c1 =
            dot_product(cts.iter().map(|c| &c[1]), kernels.iter()).map_err(math_err("product"))?;
        let u: Vec<i64> = (0..N).map(|_| cbd(rng)).collect();
        let mut u = Poly::try_convert_from(u.as_slice(), ctx, false, Representation::PowerBasis)
            .map_err(math_err("re-randomizing"))?;
        u.change_representation(Representation::Ntt);
        c0 += &(&u * &self.pk[0]);
        c1 += &(&u * &self.pk[1]);
        c0.change_representation(Representation::PowerBasis);
        c1.change_representation(Representation::PowerBasis);
        let mut c0 = Vec::<u64>::from(&c0);
        let mut c1 = Vec::<u64>::from(&c1);
        for j in 0..N {
            let e = cbd(rng);
            for (i, &q) in MODULI.iter().enumerate() {
                c1[i * N + j] = add_small(c1[i * N + j], e, q);
            }
        }
        let enc = ScalarEncoder::new(self.params.ring_bits());
        for &(coeff, idx) in pos {
            let e = cbd(rng);
            let m = enc.encode(s[idx]);
            for (i, &q) in MODULI.iter().enumerate() {
                let v = add_small(c0[i * N + coeff], e, q);
                // - floor(q s / t)
                c0[i * N + coeff] = if v >= m[i] { v - m[i] } else { v + q - m[i] };
            }
        }
        Ok((c0, c1))
    }
}

/// `v + e mod q` for `v < q` and a small signed `e`.
fn add_small(v: u64, e: i64, q: u64) -> u64 {
    let r = v as i128 + i128::from(e);
    r.rem_euclid(i128::from(q)) as u64
}

/// The residues (modulus-major) of a kernel polynomial whose coefficients are weights in
/// the ring's signed range (`|v| < 2^60`, below every 62-bit modulus): the same
/// polynomial as the `fhe` crate's conversion from `&[i64]`, without its per-coefficient
/// iterator chain. Every coefficient costs the same, zero weights included: no branch or
/// division depends on a weight (the GEMM's rule, issue 13 item 6).
pub(super) fn kernel_residues(k: &[i64]) -> Vec<u64> {
    let mut out = vec![0u64; K * N];
    for (j, &v) in k.iter().enumerate() {
        // All ones for a negative v: v + q, else v (|v| < q).
        let neg = (v >> 63) as u64;
        for (i, &q) in MODULI.iter().enumerate() {
            out[i * N + j] = (v as u64).wrapping_add(q & neg);
        }
    }
    out
}

/// Bytes of one polynomial in NTT form (three residues per coefficient).
const POLY_BYTES: u64 = (K * N * 8) as u64;

/// Bytes of the kernel polynomials of a term.
fn kernel_bytes(layout: &ConvLayout) -> u64 {
    (0..layout.groups)
        .map(|g| layout.blocks_of_group(g).len() as u64)
        .sum::<u64>()
        * POLY_BYTES
}

/// What a cached term's kernels were computed from: the layout and the weights.
fn weights_digest(layout: &ConvLayout, w: &[i64]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(format!("{layout:?}").as_bytes());
    let mut buf = Vec::with_capacity(8 * 4096);
    for chunk in w.chunks(4096) {
        buf.clear();
        chunk
            .iter()
            .for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
        h.update(&buf);
    }
    *h.finalize().as_bytes()
}

/// The server's kernel polynomials in NTT form, kept across inferences up to a budget of
/// bytes (a kernel polynomial is 192 KiB; ResNet18 has about 15,600): each cached one
/// saves its NTTs (about a third of a millisecond) at every later use. Terms are cached
/// whole, first come first served, under a key the caller chooses (one per term of the
/// model); an entry is used only for the same layout and weights (checked by a digest).
#[derive(Default)]
pub struct KernelCache {
    budget: u64,
    used: u64,
    terms: std::collections::HashMap<u64, ([u8; 32], Vec<Vec<Poly>>)>,
}

impl std::fmt::Debug for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KernelCache")
            .field("budget", &self.budget)
            .field("used", &self.used)
            .field("terms", &self.terms.len())
            .finish()
    }
}

impl KernelCache {
    /// An empty cache that holds at most `budget` bytes of kernel polynomials.
    pub fn new(budget: u64) -> Self {
        KernelCache {
            budget,
            ..Default::default()
        }
    }

    /// Bytes of kernel polynomials held.
    pub fn used(&self) -> u64 {
        self.used
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }
}

/// The released part of a result: `c0` at the output coefficients `pos` only, plus
/// flooding noise uniform in `[-2^FLOOD_BITS, 2^FLOOD_BITS)`, and `c1`, both then
/// switched from `q` to `2^RESULT_C0_BITS` (`c0`, one `u64` per position) and
/// `2^RESULT_C1_BITS` (`c1`, `C1_BYTES` little-endian bytes per coefficient).
pub(super) fn flood_and_trim(
    c0: &[u64],
    c1: &[u64],
    pos: &[(usize, usize)],
    rng: &mut Prg,
) -> (Vec<u8>, Vec<u64>) {
    let sw = switcher();
    let span = 1u128 << (FLOOD_BITS + 1);
    let sel = pos
        .iter()
        .map(|&(coeff, _)| {
            let u = ((u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())) % span;
            let flood = u as i128 - (1i128 << FLOOD_BITS);
            let r: [u64; K] = std::array::from_fn(|i| {
                let q = MODULI[i];
                let f = flood.rem_euclid(i128::from(q)) as u64;
                ((u128::from(c0[i * N + coeff]) + u128::from(f)) % u128::from(q)) as u64
            });
            sw.round(r, RESULT_C0_BITS) as u64
        })
        .collect();
    let mut packed = Vec::with_capacity(N * C1_BYTES);
    for j in 0..N {
        let r: [u64; K] = std::array::from_fn(|i| c1[i * N + j]);
        put_c1(&mut packed, sw.round(r, RESULT_C1_BITS));
    }
    (packed, sel)
}
