//! Batched half-gates kernels and lane-parallel garbling and evaluation.
//!
//! Two ways to keep the AES pipeline full:
//!
//! * **Independent AND gates** ([`garble_ands`], [`evaluate_ands`]): a whole layer of
//!   independent gates is hashed [`GARBLE_CHUNK`] (garbler, 4 hashes per gate) or
//!   [`EVAL_CHUNK`] (evaluator, 2 hashes per gate) gates per pair of cipher calls, i.e.
//!   64 AES blocks per call, with tables written straight into a caller-provided buffer. Gate
//!   `i` of the call has gate id `first_gate + i`; the tables and labels are exactly
//!   those of the scalar [`Garbler`](super::Garbler) / [`Evaluator`](super::Evaluator)
//!   garbling the same gates one after another from gate counter `first_gate`.
//! * **Lane-parallel circuits** (crate-internal `WideGarbler` / `WideEvaluator`, used by
//!   the batched ReLU API): `W` copies of the same circuit run in lockstep, so that each
//!   AND layer along a carry chain hashes `4W` (garbler) or `2W` (evaluator) blocks at
//!   once. Wires are `[Block; W]` (lane `j` is copy `j`). Inputs and outputs are handled
//!   by the caller, so `input`, `constant` and `output` return an error.
//!
//! Table layout of the lane-parallel backends: lane `j` is lane `lane[j]` of a group of
//! `stride` lanes whose current gate's tables start at block `base[j]` (relative to the
//! start of the batch). An AND gate's two ciphertexts `(T_G, T_E)` sit at blocks
//! `p = base + 2·lane` and `p + 1`, with hash tweaks `(batch_id, p)` and
//! `(batch_id, p + 1)`, and `base` then advances by `2·stride`; an AND gate with an
//! evaluator-known input ([`Backend::and_evaluator_known`]) has one ciphertext at
//! `p = base + lane`, tweak `(batch_id, p)`, and `base` advances by `stride`. Every block
//! of a batch is therefore written once and every tweak used once. The wire format of the
//! ReLU batches ([`LANES`] consecutive gadgets per group, see
//! [`garble_relus`](super::relu::garble_relus)) is one choice of `base`, `lane` and
//! `stride`, so it does not depend on how many lanes are processed together.
//!
//! Hash: `H(x, τ) = π(π(x) ⊕ τ) ⊕ π(x)` ([`TccrHash`](crate::aes_hash::TccrHash)), in
//! two passes over the batch: first `π(x)` for every input, then `π(π(x) ⊕ τ)`.

use super::circuit::{Backend, Party};
use crate::aes_hash::AesCipher;
use crate::block::{Block, Delta};
use crate::error::{ProtocolError, Result};

/// Number of consecutive ReLU gadgets whose tables are interleaved gate by gate (the
/// group size of the ReLU table layout; part of the wire format).
pub const LANES: usize = 8;

/// AND gates garbled per cipher call by [`garble_ands`] (`4 ×` this many AES blocks per pass).
pub const GARBLE_CHUNK: usize = 16;

/// AND gates evaluated per cipher call by [`evaluate_ands`] (`2 ×` this many AES blocks per pass).
pub const EVAL_CHUNK: usize = 32;

#[inline(always)]
fn tweak(batch_hi: u128, k: u64) -> Block {
    Block(batch_hi | k as u128)
}

fn unsupported<T>() -> Result<T> {
    Err(ProtocolError::arg(
        "lane-parallel backends take inputs and outputs explicitly",
    ))
}

/// Garbles `K` independent AND gates (`N = 4K` AES blocks per pass, two passes). Gate
/// `j` has zero labels `a[j]`, `b[j]` and its tables at block position `pos[j]` (hash
/// tweaks `pos[j]` and `pos[j] + 1`); its output zero label goes to `out[j]` and its
/// ciphertexts `(T_G, T_E)` to `emit(j, T_G, T_E)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn garble_kernel<const K: usize, const N: usize>(
    pi: &AesCipher,
    delta: Block,
    batch_hi: u128,
    pos: &[u64; K],
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    mut emit: impl FnMut(usize, Block, Block) -> Result<()>,
) -> Result<()> {
    const { assert!(N == 4 * K) };
    let (a, b, out) = (&a[..K], &b[..K], &mut out[..K]);
    // First pass, u = π(x) for x in [a | a ⊕ Δ | b | b ⊕ Δ], K each.
    let mut u = [Block::ZERO; N];
    for j in 0..K {
        u[j] = a[j];
        u[K + j] = a[j] ^ delta;
        u[2 * K + j] = b[j];
        u[3 * K + j] = b[j] ^ delta;
    }
    pi.encrypt_many(&mut u);
    // Second pass, π(u ⊕ τ): τ0 = (batch, pos) for the a halves, τ1 = (batch, pos + 1)
    // for b.
    let mut v = u;
    for j in 0..K {
        let t0 = tweak(batch_hi, pos[j]);
        let t1 = tweak(batch_hi, pos[j] + 1);
        v[j] ^= t0;
        v[K + j] ^= t0;
        v[2 * K + j] ^= t1;
        v[3 * K + j] ^= t1;
    }
    pi.encrypt_many(&mut v);
    for j in 0..K {
        let h = |i: usize| v[i] ^ u[i];
        let (ha0, ha1, hb0, hb1) = (h(j), h(K + j), h(2 * K + j), h(3 * K + j));
        let (pa, pb) = (a[j].lsb(), b[j].lsb());
        // Generator half gate.
        let tg = ha0 ^ ha1 ^ delta.select(pb);
        let wg = ha0 ^ tg.select(pa);
        // Evaluator half gate.
        let te = hb0 ^ hb1 ^ a[j];
        let we = hb0 ^ (te ^ a[j]).select(pb);
        out[j] = wg ^ we;
        emit(j, tg, te)?;
    }
    Ok(())
}

/// Evaluates `K` independent AND gates (`N = 2K` AES blocks per pass, two passes) with
/// active labels `a[j]`, `b[j]`, tables at block positions `pos[j]` and ciphertexts
/// `tab(j) = (T_G, T_E)`; writes the output labels to `out[j]`.
#[inline(always)]
fn eval_kernel<const K: usize, const N: usize>(
    pi: &AesCipher,
    batch_hi: u128,
    pos: &[u64; K],
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    mut tab: impl FnMut(usize) -> Result<(Block, Block)>,
) -> Result<()> {
    const { assert!(N == 2 * K) };
    let (a, b, out) = (&a[..K], &b[..K], &mut out[..K]);
    let mut u = [Block::ZERO; N];
    u[..K].copy_from_slice(a);
    u[K..].copy_from_slice(b);
    pi.encrypt_many(&mut u);
    let mut v = u;
    for j in 0..K {
        v[j] ^= tweak(batch_hi, pos[j]);
        v[K + j] ^= tweak(batch_hi, pos[j] + 1);
    }
    pi.encrypt_many(&mut v);
    for j in 0..K {
        let (tg, te) = tab(j)?;
        let (ha, hb) = (v[j] ^ u[j], v[K + j] ^ u[K + j]);
        let wg = ha ^ tg.select(a[j].lsb());
        let we = hb ^ (te ^ a[j]).select(b[j].lsb());
        out[j] = wg ^ we;
    }
    Ok(())
}

/// Garbles `a.len()` independent AND gates in AES batches: gate `i` has input zero labels
/// `a[i]`, `b[i]` and gate id `first_gate + i` (hash tweaks `(batch_id, 2·id)` and
/// `(batch_id, 2·id + 1)`). Writes the output zero labels to `out` and the ciphertexts
/// `(T_G, T_E)` of gate `i` to `tables[2i]`, `tables[2i + 1]`.
///
/// The result is identical to a scalar [`Garbler`](super::Garbler) with the same `Δ` and
/// batch id whose gate counter is at `first_gate`, garbling the same gates in order.
/// Errors (`Fault::Caller`) if the lengths are not `a.len() = b.len() = out.len()` and
/// `tables.len() = 2 × a.len()`, or if the gate ids overflow.
pub fn garble_ands(
    delta: Delta,
    batch_id: u64,
    first_gate: u64,
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    tables: &mut [Block],
) -> Result<()> {
    let n = a.len();
    if b.len() != n || out.len() != n || tables.len() != 2 * n {
        return Err(ProtocolError::arg(
            "garble_ands: need a, b, out of equal length and tables of twice that",
        ));
    }
    check_ids(first_gate, n)?;
    garble_ands_with(
        &AesCipher::fixed(),
        delta,
        batch_id,
        first_gate,
        a,
        b,
        out,
        tables,
    )
}

/// [`garble_ands`] after its checks, over the given permutation (tests: with and without
/// the VAES kernels).
#[allow(clippy::too_many_arguments)]
pub(crate) fn garble_ands_with(
    pi: &AesCipher,
    delta: Delta,
    batch_id: u64,
    first_gate: u64,
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    tables: &mut [Block],
) -> Result<()> {
    let n = a.len();
    let d = delta.block();
    let hi = (batch_id as u128) << 64;
    #[cfg(target_arch = "x86_64")]
    if let Some(keys) = pi.vaes_keys() {
        let full = n - n % super::vaes::GROUP;
        in_vaes_chunks(first_gate, full, |at, m, pos| {
            super::vaes::garble(
                keys,
                d,
                batch_id,
                pos,
                &a[at..at + m],
                &b[at..at + m],
                &mut out[at..at + m],
                &mut tables[2 * at..2 * (at + m)],
            )
        })?;
        return garble_tail(pi, d, hi, first_gate, full, a, b, out, tables);
    }
    const K: usize = GARBLE_CHUNK;
    let full = n - n % K;
    for at in (0..full).step_by(K) {
        let pos: [u64; K] = core::array::from_fn(|j| 2 * (first_gate + (at + j) as u64));
        let t = &mut tables[2 * at..2 * (at + K)];
        garble_kernel::<K, { 4 * K }>(
            pi,
            d,
            hi,
            &pos,
            &a[at..],
            &b[at..],
            &mut out[at..],
            |j, tg, te| {
                t[2 * j] = tg;
                t[2 * j + 1] = te;
                Ok(())
            },
        )?;
    }
    garble_tail(pi, d, hi, first_gate, full, a, b, out, tables)
}

/// Garbles gates `from ..` of a [`garble_ands`] call one at a time (4 blocks per call).
#[allow(clippy::too_many_arguments)]
fn garble_tail(
    pi: &AesCipher,
    d: Block,
    hi: u128,
    first_gate: u64,
    from: usize,
    a: &[Block],
    b: &[Block],
    out: &mut [Block],
    tables: &mut [Block],
) -> Result<()> {
    for i in from..a.len() {
        let pos = [2 * (first_gate + i as u64)];
        let t = &mut tables[2 * i..2 * i + 2];
        garble_kernel::<1, 4>(
            pi,
            d,
            hi,
            &pos,
            &a[i..],
            &b[i..],
            &mut out[i..],
            |_, tg, te| {
                t[0] = tg;
                t[1] = te;
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// Evaluates `a.len()` independent AND gates in AES batches: gate `i` has active input
/// labels `a[i]`, `b[i]`, gate id `first_gate + i` and ciphertexts `tables[2i]`,
/// `tables[2i + 1]` (as written by [`garble_ands`] or a scalar
/// [`Garbler`](super::Garbler)). Writes the active output labels to `out`.
///
/// Errors if the lengths are not `a.len() = b.len() = out.len()` and `tables.len() = 2 ×
/// a.len()` (`Fault::Peer` for a wrong table length, `Fault::Caller` otherwise).
pub fn evaluate_ands(
    batch_id: u64,
    first_gate: u64,
    a: &[Block],
    b: &[Block],
    tables: &[Block],
    out: &mut [Block],
) -> Result<()> {
    let n = a.len();
    if b.len() != n || out.len() != n {
        return Err(ProtocolError::arg(
            "evaluate_ands: need a, b, out of equal length",
        ));
    }
    if tables.len() != 2 * n {
        return Err(ProtocolError::peer(format!(
            "evaluate_ands: {} table blocks for {n} gates",
            tables.len()
        )));
    }
    check_ids(first_gate, n)?;
    evaluate_ands_with(&AesCipher::fixed(), batch_id, first_gate, a, b, tables, out)
}

/// [`evaluate_ands`] after its checks, over the given permutation (tests: with and
/// without the VAES kernels).
pub(crate) fn evaluate_ands_with(
    pi: &AesCipher,
    batch_id: u64,
    first_gate: u64,
    a: &[Block],
    b: &[Block],
    tables: &[Block],
    out: &mut [Block],
) -> Result<()> {
    let n = a.len();
    let hi = (batch_id as u128) << 64;
    // Gates done by the VAES kernel (where the CPU has it), then by the portable kernel
    // in chunks of K, then one at a time.
    #[cfg(target_arch = "x86_64")]
    let start = if let Some(keys) = pi.vaes_keys() {
        let full = n - n % super::vaes::GROUP;
        in_vaes_chunks(first_gate, full, |at, m, pos| {
            super::vaes::evaluate(
                keys,
                batch_id,
                pos,
                &a[at..at + m],
                &b[at..at + m],
                &tables[2 * at..2 * (at + m)],
                &mut out[at..at + m],
            )
        })?;
        full
    } else {
        0
    };
    #[cfg(not(target_arch = "x86_64"))]
    let start = 0;
    const K: usize = EVAL_CHUNK;
    let full = n - (n - start) % K;
    for at in (start..full).step_by(K) {
        let pos: [u64; K] = core::array::from_fn(|j| 2 * (first_gate + (at + j) as u64));
        let t = &tables[2 * at..2 * (at + K)];
        eval_kernel::<K, { 2 * K }>(pi, hi, &pos, &a[at..], &b[at..], &mut out[at..], |j| {
            Ok((t[2 * j], t[2 * j + 1]))
        })?;
    }
    for i in full..n {
        let pos = [2 * (first_gate + i as u64)];
        let t = &tables[2 * i..2 * i + 2];
        eval_kernel::<1, 2>(pi, hi, &pos, &a[i..], &b[i..], &mut out[i..], |_| {
            Ok((t[0], t[1]))
        })?;
    }
    Ok(())
}

/// Gates per call of the VAES kernels in [`garble_ands`] and [`evaluate_ands`] (their
/// table positions are materialised this many at a time).
#[cfg(target_arch = "x86_64")]
const VAES_CHUNK: usize = 256;

/// Calls `f(at, m, pos)` for the gates `at .. at + m` of `0 .. full`, [`VAES_CHUNK`] at a
/// time, with their table positions `pos[j] = 2·(first_gate + at + j)`.
#[cfg(target_arch = "x86_64")]
fn in_vaes_chunks(
    first_gate: u64,
    full: usize,
    mut f: impl FnMut(usize, usize, &[u64]) -> Result<()>,
) -> Result<()> {
    let mut pos = [0u64; VAES_CHUNK];
    for at in (0..full).step_by(VAES_CHUNK) {
        let m = VAES_CHUNK.min(full - at);
        for (j, p) in pos[..m].iter_mut().enumerate() {
            *p = 2 * (first_gate + (at + j) as u64);
        }
        f(at, m, &pos[..m])?;
    }
    Ok(())
}

/// Gate ids `first_gate .. first_gate + n` and the tweak `2·id + 1` must not overflow.
fn check_ids(first_gate: u64, n: usize) -> Result<()> {
    (n as u64)
        .checked_add(first_gate)
        .and_then(|end| end.checked_mul(2))
        .map(|_| ())
        .ok_or_else(|| ProtocolError::arg("gate ids overflow"))
}

/// Lane-parallel garbler: `W` lanes (a multiple of 8), of which the first `active` write
/// tables (the others are computed and ignored).
pub(crate) struct WideGarbler<'a, const W: usize> {
    pub(crate) delta: Block,
    pub(crate) pi: &'a AesCipher,
    pub(crate) batch_hi: u128,
    /// Where the tables of the next gate start (see the module documentation).
    pub(crate) layout: LaneLayout<W>,
    pub(crate) active: usize,
    /// The batch's tables.
    pub(crate) tables: &'a mut [Block],
}

/// The table positions of `W` lanes (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LaneLayout<const W: usize> {
    /// Block where each lane's group has the tables of its next gate.
    pub(crate) base: [u64; W],
    /// Each lane's index within its group.
    pub(crate) lane: [u64; W],
    /// Lanes per group (each group's tables of one gate are `stride` gates wide).
    pub(crate) stride: u64,
}

impl<const W: usize> LaneLayout<W> {
    /// Block positions of the next gate with `blocks` ciphertexts, then advances.
    #[inline(always)]
    fn next(&mut self, blocks: u64) -> [u64; W] {
        let pos = core::array::from_fn(|j| self.base[j] + blocks * self.lane[j]);
        for b in &mut self.base {
            *b += blocks * self.stride;
        }
        pos
    }
}

impl<'a, const W: usize> WideGarbler<'a, W> {
    /// A garbler for batch `batch_id` with offset `delta` writing into `tables`.
    pub(crate) fn new(
        delta: Delta,
        pi: &'a AesCipher,
        batch_id: u64,
        layout: LaneLayout<W>,
        active: usize,
        tables: &'a mut [Block],
    ) -> Self {
        WideGarbler {
            delta: delta.block(),
            pi,
            batch_hi: (batch_id as u128) << 64,
            layout,
            active,
            tables,
        }
    }
}

/// The table blocks `pos .. pos + n`, or an error if they are out of range.
#[inline(always)]
fn slot(tables: &mut [Block], pos: u64, n: usize) -> Result<&mut [Block]> {
    usize::try_from(pos)
        .ok()
        .and_then(|i| tables.get_mut(i..i + n))
        .ok_or_else(|| ProtocolError::arg("internal: gate outside the table buffer"))
}

#[inline(always)]
fn slot_ref(tables: &[Block], pos: u64, n: usize) -> Result<&[Block]> {
    usize::try_from(pos)
        .ok()
        .and_then(|i| tables.get(i..i + n))
        .ok_or_else(|| ProtocolError::peer("garbled tables too short"))
}

/// `H(x, τ) = π(π(x) ⊕ τ) ⊕ π(x)` of every block of `xs` (at most 64) with its tweak
/// `(batch, pos(i))`, in two cipher calls.
#[inline(always)]
fn tccr_many(pi: &AesCipher, batch_hi: u128, xs: &mut [Block], pos: impl Fn(usize) -> u64) {
    #[cfg(target_arch = "x86_64")]
    if let Some(keys) = pi.vaes_keys() {
        let mut p = [0u64; 64];
        let p = &mut p[..xs.len()];
        for (i, q) in p.iter_mut().enumerate() {
            *q = pos(i);
        }
        if keys.tccr_positions(xs, (batch_hi >> 64) as u64, p) {
            return;
        }
    }
    let mut scratch = [Block::ZERO; 64];
    let u = &mut scratch[..xs.len()];
    u.copy_from_slice(xs);
    pi.encrypt_many(u);
    for (i, (x, ui)) in xs.iter_mut().zip(u.iter()).enumerate() {
        *x = *ui ^ tweak(batch_hi, pos(i));
    }
    pi.encrypt_many(xs);
    for (x, ui) in xs.iter_mut().zip(u.iter()) {
        *x ^= *ui;
    }
}

impl<const W: usize> Backend for WideGarbler<'_, W> {
    type Wire = [Block; W];

    fn input(&mut self, _owner: Party) -> Result<Self::Wire> {
        unsupported()
    }

    fn constant(&mut self, _value: bool) -> Result<Self::Wire> {
        unsupported()
    }

    #[inline(always)]
    fn xor(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire {
        let mut r = *a;
        for (x, y) in r.iter_mut().zip(b) {
            *x ^= *y;
        }
        r
    }

    #[inline(always)]
    fn not(&mut self, a: &Self::Wire) -> Self::Wire {
        let mut r = *a;
        for x in &mut r {
            *x ^= self.delta;
        }
        r
    }

    #[inline]
    fn and(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire> {
        const { assert!(W.is_multiple_of(8) && W > 0) };
        let mut out = [Block::ZERO; W];
        let pos = self.layout.next(2);
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = self.pi.vaes_keys() {
            let mut pairs = [[Block::ZERO; 2]; W];
            let batch = (self.batch_hi >> 64) as u64;
            super::vaes::garble(
                keys,
                self.delta,
                batch,
                &pos,
                a,
                b,
                &mut out,
                pairs.as_flattened_mut(),
            )?;
            for (j, pair) in pairs.iter().enumerate().take(self.active) {
                slot(self.tables, pos[j], 2)?.copy_from_slice(pair);
            }
            return Ok(out);
        }
        // 16 gates (64 AES blocks) per cipher call when W allows, else 8 (32 blocks).
        if W.is_multiple_of(16) {
            for c in (0..W).step_by(16) {
                self.and_chunk::<16, 64>(a, b, c, &pos, &mut out)?;
            }
        } else {
            for c in (0..W).step_by(8) {
                self.and_chunk::<8, 32>(a, b, c, &pos, &mut out)?;
            }
        }
        Ok(out)
    }

    fn and_evaluator_known(
        &mut self,
        a: &Self::Wire,
        k: &Self::Wire,
        _known: usize,
    ) -> Result<Self::Wire> {
        const { assert!(W <= 32) };
        let pos = self.layout.next(1);
        // H(K_0, τ) for every lane, then H(K_1, τ), in one pass of 2W blocks.
        let mut h = [*k, *k];
        for x in &mut h[1] {
            *x ^= self.delta;
        }
        tccr_many(self.pi, self.batch_hi, h.as_flattened_mut(), |i| pos[i % W]);
        let mut out = [Block::ZERO; W];
        for j in 0..W {
            out[j] = h[0][j];
            if j < self.active {
                slot(self.tables, pos[j], 1)?[0] = h[0][j] ^ h[1][j] ^ a[j];
            }
        }
        Ok(out)
    }

    fn output(&mut self, _a: &Self::Wire) -> Result<()> {
        unsupported()
    }
}

impl<const W: usize> WideGarbler<'_, W> {
    #[inline(always)]
    fn and_chunk<const K: usize, const N: usize>(
        &mut self,
        a: &[Block; W],
        b: &[Block; W],
        c: usize,
        pos: &[u64; W],
        out: &mut [Block; W],
    ) -> Result<()> {
        let p: [u64; K] = core::array::from_fn(|j| pos[c + j]);
        let active = self.active.saturating_sub(c);
        let tables = &mut *self.tables;
        garble_kernel::<K, N>(
            self.pi,
            self.delta,
            self.batch_hi,
            &p,
            &a[c..],
            &b[c..],
            &mut out[c..],
            |j, tg, te| {
                if j < active {
                    let t = slot(tables, p[j], 2)?;
                    t[0] = tg;
                    t[1] = te;
                }
                Ok(())
            },
        )
    }
}

/// Lane-parallel evaluator: `W` lanes (a multiple of 8), of which the first `active`
/// read tables (the others compute garbage and must be ignored by the caller).
pub(crate) struct WideEvaluator<'a, const W: usize> {
    pub(crate) pi: &'a AesCipher,
    pub(crate) batch_hi: u128,
    /// Where the tables of the next gate start (see the module documentation).
    pub(crate) layout: LaneLayout<W>,
    pub(crate) active: usize,
    /// The batch's tables.
    pub(crate) tables: &'a [Block],
    /// The evaluator's values of its evaluator-known wires, per wire, per lane.
    pub(crate) known: &'a [[bool; W]],
}

impl<'a, const W: usize> WideEvaluator<'a, W> {
    /// An evaluator for batch `batch_id` reading `tables`, knowing the values `known`.
    pub(crate) fn new(
        pi: &'a AesCipher,
        batch_id: u64,
        layout: LaneLayout<W>,
        active: usize,
        tables: &'a [Block],
        known: &'a [[bool; W]],
    ) -> Self {
        WideEvaluator {
            pi,
            batch_hi: (batch_id as u128) << 64,
            layout,
            active,
            tables,
            known,
        }
    }
}

impl<const W: usize> Backend for WideEvaluator<'_, W> {
    type Wire = [Block; W];

    fn input(&mut self, _owner: Party) -> Result<Self::Wire> {
        unsupported()
    }

    fn constant(&mut self, _value: bool) -> Result<Self::Wire> {
        unsupported()
    }

    #[inline(always)]
    fn xor(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire {
        let mut r = *a;
        for (x, y) in r.iter_mut().zip(b) {
            *x ^= *y;
        }
        r
    }

    #[inline]
    fn not(&mut self, a: &Self::Wire) -> Self::Wire {
        *a
    }

    #[inline]
    fn and(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire> {
        const { assert!(W.is_multiple_of(8) && W > 0) };
        let mut out = [Block::ZERO; W];
        let pos = self.layout.next(2);
        #[cfg(target_arch = "x86_64")]
        if let Some(keys) = self.pi.vaes_keys() {
            // Inactive lanes evaluate zero tables, as below.
            let mut pairs = [[Block::ZERO; 2]; W];
            for (j, pair) in pairs.iter_mut().enumerate().take(self.active) {
                pair.copy_from_slice(slot_ref(self.tables, pos[j], 2)?);
            }
            let batch = (self.batch_hi >> 64) as u64;
            super::vaes::evaluate(keys, batch, &pos, a, b, pairs.as_flattened(), &mut out)?;
            return Ok(out);
        }
        // 32 gates (64 AES blocks) per cipher call when W allows, else 16 or 8.
        if W.is_multiple_of(32) {
            for c in (0..W).step_by(32) {
                self.and_chunk::<32, 64>(a, b, c, &pos, &mut out)?;
            }
        } else if W.is_multiple_of(16) {
            for c in (0..W).step_by(16) {
                self.and_chunk::<16, 32>(a, b, c, &pos, &mut out)?;
            }
        } else {
            for c in (0..W).step_by(8) {
                self.and_chunk::<8, 16>(a, b, c, &pos, &mut out)?;
            }
        }
        Ok(out)
    }

    fn and_evaluator_known(
        &mut self,
        a: &Self::Wire,
        k: &Self::Wire,
        known: usize,
    ) -> Result<Self::Wire> {
        let bits = self
            .known
            .get(known)
            .ok_or_else(|| ProtocolError::arg("internal: no value for an evaluator-known wire"))?;
        let pos = self.layout.next(1);
        let mut h = *k;
        tccr_many(self.pi, self.batch_hi, &mut h, |i| pos[i]);
        let mut out = [Block::ZERO; W];
        for j in 0..W {
            let t = if j < self.active {
                slot_ref(self.tables, pos[j], 1)?[0]
            } else {
                Block::ZERO
            };
            out[j] = h[j] ^ (t ^ a[j]).select(bits[j]);
        }
        Ok(out)
    }

    fn output(&mut self, _a: &Self::Wire) -> Result<()> {
        unsupported()
    }
}

impl<const W: usize> WideEvaluator<'_, W> {
    #[inline(always)]
    fn and_chunk<const K: usize, const N: usize>(
        &mut self,
        a: &[Block; W],
        b: &[Block; W],
        c: usize,
        pos: &[u64; W],
        out: &mut [Block; W],
    ) -> Result<()> {
        let p: [u64; K] = core::array::from_fn(|j| pos[c + j]);
        let active = self.active.saturating_sub(c);
        let tables = self.tables;
        eval_kernel::<K, N>(
            self.pi,
            self.batch_hi,
            &p,
            &a[c..],
            &b[c..],
            &mut out[c..],
            |j| {
                if j < active {
                    slot_ref(tables, p[j], 2).map(|t| (t[0], t[1]))
                } else {
                    Ok((Block::ZERO, Block::ZERO))
                }
            },
        )
    }
}
