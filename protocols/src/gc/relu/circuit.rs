//! The ReLU gadget's parameters, its circuit (written once against [`Backend`]), its
//! integer reference and the two parties' gadget inputs.

use crate::error::{ProtocolError, Result};
use crate::gc::circuit::{Backend, Party};
use crate::gc::gadgets::{add_mod, add_mod_zero_extended_known};

/// Parameters of the ReLU gadget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReluParams {
    /// Ring bit width `l` (shares live in `Z_{2^l}`).
    pub l: u32,
    /// Fractional bits `f` dropped by the truncation.
    pub f: u32,
    /// Low bits `m` of each share read by the circuit (`|y| < 2^(m-1)` required).
    pub m: u32,
    /// Low bits `k <= f` of each share the circuit drops before adding (the truncation
    /// fused into the circuit): it reads bits `[k, m)` of each share, `m - k` per party.
    /// `0` is exact; `k > 0` misses the carry out of the dropped bits, so the truncated
    /// value is `0` or `1` below the exact one (see [`relu_gadget_reference`]).
    pub k: u32,
}

impl Default for ReluParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `2^bits - 1` for `bits <= 64` (the ring's mask, [`crate::share::bit_mask`]).
pub(crate) use crate::share::bit_mask as mask;

impl ReluParams {
    /// The project's default parameters: `l = 61, f = 14, m = 36, k = 14` (the defaults
    /// of `models::fixed::FixedPointParams`; see `docs/fixed-point.md`). A model's
    /// per-site window lowers `m` site by site.
    pub const DEFAULT: ReluParams = ReluParams {
        l: 61,
        f: 14,
        m: 36,
        k: 14,
    };

    /// The exact gadget of session protocol 4 and earlier: `l = 61, f = 14, m = 36, k = 0`.
    pub const EXACT: ReluParams = ReluParams {
        l: 61,
        f: 14,
        m: 36,
        k: 0,
    };

    /// Checks `1 <= f`, `k <= f`, `f + 2 <= m <= l <= 64`.
    pub fn validate(&self) -> Result<()> {
        let f_ok = self.f >= 1 && self.f.checked_add(2).is_some_and(|x| x <= self.m);
        if f_ok && self.k <= self.f && self.m <= self.l && self.l <= 64 {
            Ok(())
        } else {
            Err(ProtocolError::arg(format!(
                "invalid ReLU parameters {self:?}: need 1 <= f, k <= f, f + 2 <= m <= l <= 64"
            )))
        }
    }

    /// Bits of each share the circuit reads: `m - k`.
    pub const fn width(&self) -> u32 {
        self.m.saturating_sub(self.k)
    }

    /// AND gates per gadget: `(m - k - 1) + (m - f - 1) + (l - 1)` (adder, ReLU, output
    /// adder).
    pub const fn and_gates(&self) -> usize {
        let adder = self.width().saturating_sub(1);
        let relu = self.m.saturating_sub(self.f).saturating_sub(1);
        let out = self.l.saturating_sub(1);
        adder as usize + relu as usize + out as usize
    }

    /// Of the AND gates, those with an input the evaluator knows (the output adder's carry
    /// chain above the ReLU output, `c ∧ q_i`): `l - m + f`, one ciphertext each.
    pub const fn known_and_gates(&self) -> usize {
        let low = self.m.saturating_sub(self.f).saturating_sub(1);
        self.l.saturating_sub(1).saturating_sub(low) as usize
    }

    /// Garbled-table blocks per gadget: two per AND gate, one per evaluator-known AND gate.
    pub const fn table_blocks(&self) -> usize {
        2 * self.and_gates() - self.known_and_gates()
    }

    /// Garbled-table bytes per gadget (`16 × table blocks`).
    pub const fn table_bytes(&self) -> usize {
        16 * self.table_blocks()
    }

    /// Garbler (server) input bits per gadget: `m - k`.
    pub const fn garbler_input_bits(&self) -> usize {
        self.width() as usize
    }

    /// Evaluator (client) input bits per gadget: `m - k + l`.
    pub const fn evaluator_input_bits(&self) -> usize {
        self.width() as usize + self.l as usize
    }

    /// Output bits per gadget: `l`.
    pub const fn output_bits(&self) -> usize {
        self.l as usize
    }
}

/// The server's gadget input `a = ((share + 2^(f-1)) mod 2^m) >> k` (round half up; bits
/// `[k, m)`).
pub fn server_gadget_input(share: u64, params: ReluParams) -> u64 {
    (share.wrapping_add(crate::share::round_offset(params.f)) & mask(params.m)) >> params.k.min(63)
}

/// The client's gadget inputs `b = (share mod 2^m) >> k` and `q = (-r_next) mod 2^l`.
pub fn client_gadget_inputs(share: u64, r_next: u64, params: ReluParams) -> (u64, u64) {
    (
        (share & mask(params.m)) >> params.k.min(63),
        r_next.wrapping_neg() & mask(params.l),
    )
}

/// Integer reference of the gadget on its inputs (`a`, `b` of `w = m - k` bits, `q` of
/// `l`): `((max((a + b) mod 2^w as signed) >> (f - k), 0) + q) mod 2^l`. Inputs are reduced
/// mod `2^w`, `2^w` and `2^l` first. Meaningful for valid parameters (see
/// [`ReluParams::validate`]); `w` is clamped to `1..=64` and `f - k` to `0..=63`.
///
/// With `k > 0` the sum of the inputs is `floor((A + B) / 2^k) - c` for the full `m`-bit
/// inputs `A`, `B` and the carry `c` in `{0, 1}` out of their dropped low bits, so the
/// gadget computes `relu(t - c)` where the exact gadget computes `relu(t)`.
pub fn relu_gadget_reference(a: u64, b: u64, q: u64, params: ReluParams) -> u64 {
    let w = params.width().clamp(1, 64);
    let z = (a & mask(w)).wrapping_add(b & mask(w)) & mask(w);
    // Sign-extend from w bits.
    let z = ((z << (64 - w)) as i64) >> (64 - w);
    let t = z >> params.f.saturating_sub(params.k).min(63);
    let u = t.max(0) as u64;
    u.wrapping_add(q & mask(params.l)) & mask(params.l)
}

/// Declares the inputs of one gadget on `b`, builds it and marks its `l` outputs.
pub fn relu_gadget<B: Backend>(b: &mut B, params: ReluParams) -> Result<()> {
    params.validate()?;
    let (w, l) = (params.width() as usize, params.l as usize);
    let a_bits = b.inputs(Party::Garbler, w)?;
    let b_bits = b.inputs(Party::Evaluator, w)?;
    let q_bits = b.inputs(Party::Evaluator, l)?;
    let o = relu_core(b, &a_bits, &b_bits, &q_bits, params)?;
    b.outputs(&o)
}

/// The gadget on given input wires (`m - k`, `m - k` and `l` of them); returns the `l`
/// output wires. Used by [`relu_gadget`] and by the lane-parallel batch garbling.
pub fn relu_core<B: Backend>(
    b: &mut B,
    a_bits: &[B::Wire],
    b_bits: &[B::Wire],
    q_bits: &[B::Wire],
    params: ReluParams,
) -> Result<Vec<B::Wire>> {
    params.validate()?;
    let (w, l) = (params.width() as usize, params.l as usize);
    let shift = (params.f - params.k) as usize;
    if a_bits.len() != w || b_bits.len() != w || q_bits.len() != l {
        return Err(ProtocolError::arg(
            "ReLU gadget: wrong number of input wires",
        ));
    }
    let z = add_mod(b, a_bits, b_bits)?;
    let not_sign = b.not(&z[w - 1]);
    let u = z[shift..w - 1]
        .iter()
        .map(|w| b.and(w, &not_sign))
        .collect::<Result<Vec<_>>>()?;
    // q is the client's own input: the carry chain above u uses evaluator-known gates.
    add_mod_zero_extended_known(b, &u, q_bits)
}

/// The client's choice bits (evaluator input bits) for gadgets with inputs `bs` and `qs`,
/// in the order the garbling consumes evaluator labels.
pub fn client_input_bits(bs: &[u64], qs: &[u64], params: ReluParams) -> Result<Vec<bool>> {
    if bs.len() != qs.len() {
        return Err(ProtocolError::arg("b and q must have equal lengths"));
    }
    let mut out = Vec::with_capacity(bs.len() * params.evaluator_input_bits());
    for (&bv, &qv) in bs.iter().zip(qs) {
        if bv > mask(params.width()) || qv > mask(params.l) {
            return Err(ProtocolError::arg("client gadget input out of range"));
        }
        out.extend((0..params.width()).map(|i| (bv >> i) & 1 == 1));
        out.extend((0..params.l).map(|i| (qv >> i) & 1 == 1));
    }
    Ok(out)
}
