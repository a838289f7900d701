//! Half-gates garbling and evaluation of independent AND gates on 512-bit registers
//! (AVX-512F + VAES), four gates to a register.
//!
//! The same gates, tweaks and tables as the portable kernels of [`wide`](super::wide)
//! (and so as the scalar [`Garbler`](super::Garbler)); only the arithmetic moves: the
//! two AES passes of the TCCR hash `H(x, τ) = π(π(x) ⊕ τ) ⊕ π(x)` and the half-gates
//! combination stay in registers, the colour-bit selections are AVX-512 mask moves, the
//! tweaks `(batch, pos)` are built in registers, and the ciphertext pairs `(T_G, T_E)`
//! are interleaved or split with one two-source permutation per four gates. The portable
//! kernels spend more time on these than on AES (issue 14, item 3).
//!
//! Nothing here branches on a label or a colour bit: the selections are mask moves.
//!
//! The kernels exist only behind a [`RoundKeys`], which exists only on a CPU with the
//! features (checked at run time in [`AesCipher`](crate::aes_hash::AesCipher)).

#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::aes_hash::vaes::{RoundKeys, aes_regs as aes};
use crate::block::Block;
use crate::error::{ProtocolError, Result};

/// Gates per register.
pub(crate) const GROUP: usize = 4;

/// The tweaks `(batch, p_j)` and `(batch, p_j + 1)` of the four gates whose positions
/// are at `p`, one per 128-bit lane (position in the low 64 bits, batch id in the high
/// 64 bits; `batch` is the id broadcast to every 64-bit element).
///
/// # Safety
/// `p` must be valid for reading four `u64`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tweaks(batch: __m512i, p: *const u64) -> (__m512i, __m512i) {
    // SAFETY: the caller's contract; unaligned load.
    let p = _mm512_castsi256_si512(unsafe { _mm256_loadu_si256(p.cast()) });
    let t0 = _mm512_permutex2var_epi64(p, _mm512_set_epi64(8, 3, 8, 2, 8, 1, 8, 0), batch);
    (
        t0,
        _mm512_add_epi64(t0, _mm512_set_epi64(0, 1, 0, 1, 0, 1, 0, 1)),
    )
}

/// The mask selecting the 128-bit lanes of `x` whose block has its least significant bit
/// (the colour bit) set: both 64-bit halves of each such lane.
#[target_feature(enable = "avx512f")]
#[inline]
fn colour_mask(x: __m512i) -> __mmask8 {
    // Each lane's low 64 bits copied to its high 64 bits, then one test per 64 bits.
    let low = _mm512_shuffle_epi32::<0b0100_0100>(x);
    _mm512_test_epi64_mask(low, _mm512_set1_epi64(1))
}

/// Loads the four blocks at `p`.
///
/// # Safety
/// `p` must be valid for reading four blocks.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn load(p: *const Block) -> __m512i {
    // SAFETY: the caller's contract; unaligned load.
    unsafe { _mm512_loadu_si512(p.cast()) }
}

/// Stores four blocks at `p`.
///
/// # Safety
/// `p` must be valid for writing four blocks.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store(p: *mut Block, v: __m512i) {
    // SAFETY: the caller's contract; unaligned store.
    unsafe { _mm512_storeu_si512(p.cast(), v) }
}

/// Garbles `a.len()` independent AND gates (a multiple of [`GROUP`]): gate `j` has zero
/// labels `a[j]`, `b[j]` and its tables at block position `pos[j]` (hash tweaks
/// `(batch, pos[j])` and `(batch, pos[j] + 1)`); its output zero label goes to `out[j]`
/// and its ciphertexts `(T_G, T_E)` to `tables[2j]`, `tables[2j + 1]`.
///
/// Errors (an internal error: callers size the buffers) unless `b`, `out` and `pos` have
/// `a`'s length, `tables` twice that, and the length is a multiple of [`GROUP`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble(
    keys: &RoundKeys,
    delta: Block,
    batch: u64,
    pos: &[u64],
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    tables: &mut [Block],
) -> Result<()> {
    let n = a.len();
    if b.len() != n
        || out.len() != n
        || pos.len() != n
        || tables.len() != 2 * n
        || !n.is_multiple_of(GROUP)
    {
        return Err(ProtocolError::arg("internal: VAES garbling buffers"));
    }
    // SAFETY: `keys` exists only on a CPU with AVX-512F, VAES and AES-NI; the lengths
    // were checked above.
    unsafe { garble_raw(keys, delta, batch, pos, a, b, out, tables) };
    Ok(())
}

/// [`garble`] after its checks.
///
/// # Safety
/// The CPU must have AVX-512F and VAES; `b` and `out` must have `a`'s length, `tables`
/// twice that, and the length must be a multiple of [`GROUP`].
#[target_feature(enable = "avx512f,vaes")]
#[allow(clippy::too_many_arguments)]
unsafe fn garble_raw(
    keys: &RoundKeys,
    delta: Block,
    batch: u64,
    pos: &[u64],
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    tables: &mut [Block],
) {
    let kw = keys.broadcast();
    let (batch, pp) = (_mm512_set1_epi64(batch as i64), pos.as_ptr());
    let d = _mm512_set_epi64(
        (delta.0 >> 64) as i64,
        delta.0 as i64,
        (delta.0 >> 64) as i64,
        delta.0 as i64,
        (delta.0 >> 64) as i64,
        delta.0 as i64,
        (delta.0 >> 64) as i64,
        delta.0 as i64,
    );
    // (T_G, T_E) of gates 0, 1 and of gates 2, 3 from the four T_G and the four T_E.
    let lo = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0);
    let hi = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    let n = a.len();
    let (pa, pb, po, pt) = (
        a.as_ptr(),
        b.as_ptr(),
        out.as_mut_ptr(),
        tables.as_mut_ptr(),
    );
    // Two groups (eight gates, 32 AES blocks per pass) per step where they fit.
    let mut i = 0;
    while i < n {
        if i + 4 * GROUP <= n {
            // SAFETY: gates i .. i + 16 are inside the buffers.
            unsafe { garble_groups::<4, 16>(&kw, d, batch, pp, i, pa, pb, po, pt, lo, hi) };
            i += 4 * GROUP;
        } else if i + 2 * GROUP <= n {
            // SAFETY: gates i .. i + 8 are inside the buffers.
            unsafe { garble_groups::<2, 8>(&kw, d, batch, pp, i, pa, pb, po, pt, lo, hi) };
            i += 2 * GROUP;
        } else {
            // SAFETY: gates i .. i + 4 are inside the buffers.
            unsafe { garble_groups::<1, 4>(&kw, d, batch, pp, i, pa, pb, po, pt, lo, hi) };
            i += GROUP;
        }
    }
}

/// Garbles `G` groups of four gates from gate `i` (`N = 4G` registers per AES pass).
///
/// # Safety
/// Gates `i .. i + 4G` must be inside `a`, `b`, `out`, and their tables inside `tables`;
/// the CPU must have AVX-512F and VAES.
#[target_feature(enable = "avx512f,vaes")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn garble_groups<const G: usize, const N: usize>(
    kw: &[__m512i; 11],
    d: __m512i,
    batch: __m512i,
    pp: *const u64,
    i: usize,
    pa: *const Block,
    pb: *const Block,
    po: *mut Block,
    pt: *mut Block,
    lo: __m512i,
    hi: __m512i,
) {
    const { assert!(N == 4 * G) };
    // x = [A, A ⊕ Δ, B, B ⊕ Δ] of each group.
    let mut x = [_mm512_setzero_si512(); N];
    let mut t = [(_mm512_setzero_si512(), _mm512_setzero_si512()); G];
    for g in 0..G {
        let at = i + GROUP * g;
        // SAFETY: the caller's contract.
        let (av, bv) = unsafe { (load(pa.add(at)), load(pb.add(at))) };
        x[4 * g] = av;
        x[4 * g + 1] = _mm512_xor_si512(av, d);
        x[4 * g + 2] = bv;
        x[4 * g + 3] = _mm512_xor_si512(bv, d);
        // SAFETY: the caller's contract (positions at .. at + 4).
        t[g] = unsafe { tweaks(batch, pp.add(at)) };
    }
    let u = aes(kw, x);
    // τ0 = (batch, pos) for the A halves, τ1 = (batch, pos + 1) for the B halves.
    let v: [__m512i; N] = aes(
        kw,
        core::array::from_fn(|k| {
            let (t0, t1) = t[k / 4];
            _mm512_xor_si512(u[k], if k % 4 < 2 { t0 } else { t1 })
        }),
    );
    for g in 0..G {
        let at = i + GROUP * g;
        let h = |k: usize| _mm512_xor_si512(v[4 * g + k], u[4 * g + k]);
        let (ha0, ha1, hb0, hb1) = (h(0), h(1), h(2), h(3));
        let av = x[4 * g];
        let (ka, kb) = (colour_mask(av), colour_mask(x[4 * g + 2]));
        // Generator half gate: T_G = H(A0) ⊕ H(A1) ⊕ p_b·Δ, W_G = H(A0) ⊕ p_a·T_G.
        let tg = _mm512_xor_si512(_mm512_xor_si512(ha0, ha1), _mm512_maskz_mov_epi64(kb, d));
        let wg = _mm512_xor_si512(ha0, _mm512_maskz_mov_epi64(ka, tg));
        // Evaluator half gate: T_E = H(B0) ⊕ H(B1) ⊕ A0, W_E = H(B0) ⊕ p_b·(T_E ⊕ A0).
        let te = _mm512_xor_si512(_mm512_xor_si512(hb0, hb1), av);
        let we = _mm512_xor_si512(hb0, _mm512_maskz_mov_epi64(kb, _mm512_xor_si512(te, av)));
        // SAFETY: the caller's contract (gates at .. at + 4, table blocks 2·at .. 2·at + 8).
        unsafe {
            store(po.add(at), _mm512_xor_si512(wg, we));
            store(pt.add(2 * at), _mm512_permutex2var_epi64(tg, lo, te));
            store(
                pt.add(2 * at + GROUP),
                _mm512_permutex2var_epi64(tg, hi, te),
            );
        }
    }
}

/// Evaluates `a.len()` independent AND gates (a multiple of [`GROUP`]) with active
/// labels `a[j]`, `b[j]`, hash tweaks `(batch, pos[j])` and `(batch, pos[j] + 1)`, and
/// ciphertexts `tables[2j]`, `tables[2j + 1]`; writes the output labels to `out[j]`.
///
/// Errors (an internal error: callers size the buffers) unless `b`, `out` and `pos` have
/// `a`'s length, `tables` twice that, and the length is a multiple of [`GROUP`].
pub(crate) fn evaluate(
    keys: &RoundKeys,
    batch: u64,
    pos: &[u64],
    a: &[Block],
    b: &[Block],
    tables: &[Block],
    out: &mut [Block],
) -> Result<()> {
    let n = a.len();
    if b.len() != n
        || out.len() != n
        || pos.len() != n
        || tables.len() != 2 * n
        || !n.is_multiple_of(GROUP)
    {
        return Err(ProtocolError::arg("internal: VAES evaluation buffers"));
    }
    // SAFETY: as in `garble`.
    unsafe { evaluate_raw(keys, batch, pos, a, b, tables, out) };
    Ok(())
}

/// [`evaluate`] after its checks.
///
/// # Safety
/// As for [`garble_raw`].
#[target_feature(enable = "avx512f,vaes")]
unsafe fn evaluate_raw(
    keys: &RoundKeys,
    batch: u64,
    pos: &[u64],
    a: &[Block],
    b: &[Block],
    tables: &[Block],
    out: &mut [Block],
) {
    let kw = keys.broadcast();
    let (batch, pp) = (_mm512_set1_epi64(batch as i64), pos.as_ptr());
    // The four T_G and the four T_E from the pairs of gates 0, 1 and 2, 3.
    let even = _mm512_set_epi64(13, 12, 9, 8, 5, 4, 1, 0);
    let odd = _mm512_set_epi64(15, 14, 11, 10, 7, 6, 3, 2);
    let n = a.len();
    let (pa, pb, po, pt) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr(), tables.as_ptr());
    // Four groups (16 gates, 32 AES blocks per pass) per step where they fit.
    let mut i = 0;
    while i < n {
        if i + 4 * GROUP <= n {
            // SAFETY: gates i .. i + 16 are inside the buffers.
            unsafe { eval_groups::<4, 8>(&kw, batch, pp, i, pa, pb, pt, po, even, odd) };
            i += 4 * GROUP;
        } else {
            // SAFETY: gates i .. i + 4 are inside the buffers.
            unsafe { eval_groups::<1, 2>(&kw, batch, pp, i, pa, pb, pt, po, even, odd) };
            i += GROUP;
        }
    }
}

/// Evaluates `G` groups of four gates from gate `i` (`N = 2G` registers per AES pass).
///
/// # Safety
/// Gates `i .. i + 4G` must be inside `a`, `b`, `out`, and their tables inside `tables`;
/// the CPU must have AVX-512F and VAES.
#[target_feature(enable = "avx512f,vaes")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn eval_groups<const G: usize, const N: usize>(
    kw: &[__m512i; 11],
    batch: __m512i,
    pp: *const u64,
    i: usize,
    pa: *const Block,
    pb: *const Block,
    pt: *const Block,
    po: *mut Block,
    even: __m512i,
    odd: __m512i,
) {
    const { assert!(N == 2 * G) };
    // x = [A of each group | B of each group].
    let mut x = [_mm512_setzero_si512(); N];
    let mut t = [(_mm512_setzero_si512(), _mm512_setzero_si512()); G];
    for g in 0..G {
        let at = i + GROUP * g;
        // SAFETY: the caller's contract.
        unsafe {
            x[g] = load(pa.add(at));
            x[G + g] = load(pb.add(at));
        }
        // SAFETY: the caller's contract (positions at .. at + 4).
        t[g] = unsafe { tweaks(batch, pp.add(at)) };
    }
    let u = aes(kw, x);
    let v: [__m512i; N] = aes(
        kw,
        core::array::from_fn(|k| {
            let (t0, t1) = t[k % G];
            _mm512_xor_si512(u[k], if k < G { t0 } else { t1 })
        }),
    );
    for g in 0..G {
        let at = i + GROUP * g;
        let (av, bv) = (x[g], x[G + g]);
        let ha = _mm512_xor_si512(v[g], u[g]);
        let hb = _mm512_xor_si512(v[G + g], u[G + g]);
        // SAFETY: the caller's contract (blocks 2·at .. 2·at + 8 of the tables).
        let (p01, p23) = unsafe { (load(pt.add(2 * at)), load(pt.add(2 * at + GROUP))) };
        let tg = _mm512_permutex2var_epi64(p01, even, p23);
        let te = _mm512_permutex2var_epi64(p01, odd, p23);
        // W_G = H(A) ⊕ s_a·T_G, W_E = H(B) ⊕ s_b·(T_E ⊕ A).
        let wg = _mm512_xor_si512(ha, _mm512_maskz_mov_epi64(colour_mask(av), tg));
        let we = _mm512_xor_si512(
            hb,
            _mm512_maskz_mov_epi64(colour_mask(bv), _mm512_xor_si512(te, av)),
        );
        // SAFETY: the caller's contract.
        unsafe { store(po.add(at), _mm512_xor_si512(wg, we)) };
    }
}
