//! The ReLU gadget's parameters, its circuit (written once against [`Backend`]), its
//! integer reference and the two parties' gadget inputs.

use crate::error::{ProtocolError, Result};
use crate::gc::circuit::{Backend, Party};
use crate::gc::gadgets::{add_mod, add_mod_zero_extended};

/// Parameters of the ReLU gadget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReluParams {
    /// Ring bit width `l` (shares live in `Z_{2^l}`).
    pub l: u32,
    /// Fractional bits `f` dropped by the truncation.
    pub f: u32,
    /// Low bits `m` of each share read by the circuit (`|y| < 2^(m-1)` required).
    pub m: u32,
}

impl Default for ReluParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// `2^bits - 1` for `bits <= 64` (the ring's mask, [`crate::share::bit_mask`]).
pub(crate) use crate::share::bit_mask as mask;

impl ReluParams {
    /// The project's parameters: `l = 61, f = 14, m = 36` (the defaults of
    /// `models::fixed::FixedPointParams`; see `docs/fixed-point.md`).
    pub const DEFAULT: ReluParams = ReluParams {
        l: 61,
        f: 14,
        m: 36,
    };

    /// Checks `1 <= f`, `f + 2 <= m <= l <= 64`.
    pub fn validate(&self) -> Result<()> {
        let f_ok = self.f >= 1 && self.f.checked_add(2).is_some_and(|x| x <= self.m);
        if f_ok && self.m <= self.l && self.l <= 64 {
            Ok(())
        } else {
            Err(ProtocolError::arg(format!(
                "invalid ReLU parameters {self:?}: need 1 <= f, f + 2 <= m <= l <= 64"
            )))
        }
    }

    /// AND gates per gadget: `(m - 1) + (m - f - 1) + (l - 1)`.
    pub const fn and_gates(&self) -> usize {
        let adder = self.m.saturating_sub(1);
        let relu = self.m.saturating_sub(self.f).saturating_sub(1);
        let out = self.l.saturating_sub(1);
        adder as usize + relu as usize + out as usize
    }

    /// Garbled-table bytes per gadget (`32 × AND gates`).
    pub const fn table_bytes(&self) -> usize {
        32 * self.and_gates()
    }

    /// Garbler (server) input bits per gadget: `m`.
    pub const fn garbler_input_bits(&self) -> usize {
        self.m as usize
    }

    /// Evaluator (client) input bits per gadget: `m + l`.
    pub const fn evaluator_input_bits(&self) -> usize {
        self.m as usize + self.l as usize
    }

    /// Output bits per gadget: `l`.
    pub const fn output_bits(&self) -> usize {
        self.l as usize
    }
}

/// The server's gadget input `a = (share + 2^(f-1)) mod 2^m` (round half up).
pub fn server_gadget_input(share: u64, params: ReluParams) -> u64 {
    share.wrapping_add(crate::share::round_offset(params.f)) & mask(params.m)
}

/// The client's gadget inputs `b = share mod 2^m` and `q = (-r_next) mod 2^l`.
pub fn client_gadget_inputs(share: u64, r_next: u64, params: ReluParams) -> (u64, u64) {
    (
        share & mask(params.m),
        r_next.wrapping_neg() & mask(params.l),
    )
}

/// Integer reference of the gadget: `((max((a + b) mod 2^m as signed) >> f, 0) + q) mod 2^l`.
/// Inputs are reduced mod `2^m`, `2^m` and `2^l` first. Meaningful for valid parameters
/// (see [`ReluParams::validate`]); `m` is clamped to `1..=64` and `f` to `0..=63`.
pub fn relu_gadget_reference(a: u64, b: u64, q: u64, params: ReluParams) -> u64 {
    let m = params.m.clamp(1, 64);
    let z = (a & mask(m)).wrapping_add(b & mask(m)) & mask(m);
    // Sign-extend from m bits.
    let z = ((z << (64 - m)) as i64) >> (64 - m);
    let t = z >> params.f.min(63);
    let u = t.max(0) as u64;
    u.wrapping_add(q & mask(params.l)) & mask(params.l)
}

/// Declares the inputs of one gadget on `b`, builds it and marks its `l` outputs.
pub fn relu_gadget<B: Backend>(b: &mut B, params: ReluParams) -> Result<()> {
    params.validate()?;
    let (m, l) = (params.m as usize, params.l as usize);
    let a_bits = b.inputs(Party::Garbler, m)?;
    let b_bits = b.inputs(Party::Evaluator, m)?;
    let q_bits = b.inputs(Party::Evaluator, l)?;
    let o = relu_core(b, &a_bits, &b_bits, &q_bits, params)?;
    b.outputs(&o)
}

/// The gadget on given input wires (`m`, `m` and `l` of them); returns the `l` output
/// wires. Used by [`relu_gadget`] and by the lane-parallel batch garbling.
pub fn relu_core<B: Backend>(
    b: &mut B,
    a_bits: &[B::Wire],
    b_bits: &[B::Wire],
    q_bits: &[B::Wire],
    params: ReluParams,
) -> Result<Vec<B::Wire>> {
    params.validate()?;
    let (m, f, l) = (params.m as usize, params.f as usize, params.l as usize);
    if a_bits.len() != m || b_bits.len() != m || q_bits.len() != l {
        return Err(ProtocolError::arg(
            "ReLU gadget: wrong number of input wires",
        ));
    }
    let z = add_mod(b, a_bits, b_bits)?;
    let not_sign = b.not(&z[m - 1]);
    let u = z[f..m - 1]
        .iter()
        .map(|w| b.and(w, &not_sign))
        .collect::<Result<Vec<_>>>()?;
    add_mod_zero_extended(b, &u, q_bits)
}

/// The client's choice bits (evaluator input bits) for gadgets with inputs `bs` and `qs`,
/// in the order the garbling consumes evaluator labels.
pub fn client_input_bits(bs: &[u64], qs: &[u64], params: ReluParams) -> Result<Vec<bool>> {
    if bs.len() != qs.len() {
        return Err(ProtocolError::arg("b and q must have equal lengths"));
    }
    let mut out = Vec::with_capacity(bs.len() * params.evaluator_input_bits());
    for (&bv, &qv) in bs.iter().zip(qs) {
        if bv > mask(params.m) || qv > mask(params.l) {
            return Err(ProtocolError::arg("client gadget input out of range"));
        }
        out.extend((0..params.m).map(|i| (bv >> i) & 1 == 1));
        out.extend((0..params.l).map(|i| (qv >> i) & 1 == 1));
    }
    Ok(out)
}
