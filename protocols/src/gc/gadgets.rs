//! Arithmetic gadgets written once against [`Backend`]. Bit vectors are least significant
//! bit first. AND counts are given for `n`-bit operands.

use super::circuit::Backend;
use crate::error::{ProtocolError, Result};

fn check_len<W>(x: &[W], y: &[W]) -> Result<()> {
    if x.len() != y.len() || x.is_empty() {
        return Err(ProtocolError::arg(format!(
            "gadget operands must have equal nonzero length (got {} and {})",
            x.len(),
            y.len()
        )));
    }
    Ok(())
}

/// Sum bits and optional carry out of [`add_core`].
pub type SumAndCarry<W> = (Vec<W>, Option<W>);

/// Carry into bit 0 of an adder.
#[derive(Clone, Debug)]
pub enum CarryIn<W> {
    /// Public 0.
    Zero,
    /// Public 1.
    One,
    /// A wire.
    Wire(W),
}

/// Ripple-carry adder with one AND per carry: `c' = c ⊕ ((x ⊕ c) ∧ (y ⊕ c))`.
/// Returns the `n` sum bits and, if `want_carry`, the carry out.
/// ANDs: `n - 1`, plus one if `want_carry` (for a public carry-in; same for a wire carry-in).
pub fn add_core<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
    carry_in: CarryIn<B::Wire>,
    want_carry: bool,
) -> Result<SumAndCarry<B::Wire>> {
    add_core_in(b, x, y, carry_in, want_carry, x.len())
}

/// [`add_core`] with room for `capacity` sum bits, so a caller that appends more does not
/// reallocate (a wide backend's wire is hundreds of bytes).
fn add_core_in<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
    carry_in: CarryIn<B::Wire>,
    want_carry: bool,
    capacity: usize,
) -> Result<SumAndCarry<B::Wire>> {
    check_len(x, y)?;
    let n = x.len();
    let mut sum = Vec::with_capacity(capacity.max(n));
    // Bit 0.
    let xy = b.xor(&x[0], &y[0]);
    let need_c1 = n > 1 || want_carry;
    let mut carry = match carry_in {
        CarryIn::Zero => {
            sum.push(xy);
            if need_c1 {
                Some(b.and(&x[0], &y[0])?)
            } else {
                None
            }
        }
        CarryIn::One => {
            // s0 = ¬(x0 ⊕ y0); c1 = x0 ∨ y0.
            sum.push(b.not(&xy));
            if need_c1 {
                Some(b.or(&x[0], &y[0])?)
            } else {
                None
            }
        }
        CarryIn::Wire(c) => {
            sum.push(b.xor(&xy, &c));
            if need_c1 {
                Some(carry_step(b, &x[0], &y[0], &c)?)
            } else {
                None
            }
        }
    };
    for i in 1..n {
        let c = carry
            .take()
            .ok_or_else(|| ProtocolError::arg("internal: missing carry"))?;
        let xy = b.xor(&x[i], &y[i]);
        sum.push(b.xor(&xy, &c));
        if i + 1 < n || want_carry {
            carry = Some(carry_step(b, &x[i], &y[i], &c)?);
        }
    }
    Ok((sum, carry))
}

/// `c' = c ⊕ ((x ⊕ c) ∧ (y ⊕ c))` = majority(x, y, c), one AND.
#[inline]
fn carry_step<B: Backend>(b: &mut B, x: &B::Wire, y: &B::Wire, c: &B::Wire) -> Result<B::Wire> {
    let xc = b.xor(x, c);
    let yc = b.xor(y, c);
    let t = b.and(&xc, &yc)?;
    Ok(b.xor(&t, c))
}

/// `(x + y) mod 2^n`. ANDs: `n - 1`.
pub fn add_mod<B: Backend>(b: &mut B, x: &[B::Wire], y: &[B::Wire]) -> Result<Vec<B::Wire>> {
    Ok(add_core(b, x, y, CarryIn::Zero, false)?.0)
}

/// `x + y` as `n` sum bits and a carry out. ANDs: `n`.
pub fn add_with_carry<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<(Vec<B::Wire>, B::Wire)> {
    let (s, c) = add_core(b, x, y, CarryIn::Zero, true)?;
    let c = c.ok_or_else(|| ProtocolError::arg("internal: missing carry"))?;
    Ok((s, c))
}

/// `(x - y) mod 2^n`, computed as `x + ¬y + 1`. ANDs: `n - 1`.
pub fn sub_mod<B: Backend>(b: &mut B, x: &[B::Wire], y: &[B::Wire]) -> Result<Vec<B::Wire>> {
    let ny: Vec<B::Wire> = y.iter().map(|w| b.not(w)).collect();
    Ok(add_core(b, x, &ny, CarryIn::One, false)?.0)
}

/// `(x - y) mod 2^n` and the borrow bit (`x < y` as unsigned). ANDs: `n`.
pub fn sub_with_borrow<B: Backend>(
    b: &mut B,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<(Vec<B::Wire>, B::Wire)> {
    let ny: Vec<B::Wire> = y.iter().map(|w| b.not(w)).collect();
    let (s, c) = add_core(b, x, &ny, CarryIn::One, true)?;
    let c = c.ok_or_else(|| ProtocolError::arg("internal: missing carry"))?;
    Ok((s, b.not(&c)))
}

/// `x < y` for unsigned operands: the borrow of `x - y`, computing only the carry chain.
/// ANDs: `n`.
pub fn lt_unsigned<B: Backend>(b: &mut B, x: &[B::Wire], y: &[B::Wire]) -> Result<B::Wire> {
    check_len(x, y)?;
    // Carry chain of x + ¬y + 1; x >= y iff the final carry is 1.
    let ny0 = b.not(&y[0]);
    let mut c = b.or(&x[0], &ny0)?;
    for i in 1..x.len() {
        let nyi = b.not(&y[i]);
        c = carry_step(b, &x[i], &nyi, &c)?;
    }
    Ok(b.not(&c))
}

/// `x < y` for two's-complement signed operands (flip the sign bits, compare unsigned).
/// ANDs: `n`.
pub fn lt_signed<B: Backend>(b: &mut B, x: &[B::Wire], y: &[B::Wire]) -> Result<B::Wire> {
    check_len(x, y)?;
    let n = x.len();
    let mut xf = x.to_vec();
    let mut yf = y.to_vec();
    xf[n - 1] = b.not(&x[n - 1]);
    yf[n - 1] = b.not(&y[n - 1]);
    lt_unsigned(b, &xf, &yf)
}

/// Multiplexer: `x` if `s` is 0, `y` if `s` is 1 (bitwise `x ⊕ s∧(x ⊕ y)`). ANDs: `n`.
pub fn mux<B: Backend>(
    b: &mut B,
    s: &B::Wire,
    x: &[B::Wire],
    y: &[B::Wire],
) -> Result<Vec<B::Wire>> {
    check_len(x, y)?;
    x.iter()
        .zip(y)
        .map(|(xi, yi)| {
            let d = b.xor(xi, yi);
            let t = b.and(s, &d)?;
            Ok(b.xor(xi, &t))
        })
        .collect()
}

/// `short + long mod 2^n` like [`add_mod_zero_extended`], for a `long` operand the
/// evaluator knows in the clear (`long[i]` is evaluator-known wire `i`): above the short
/// operand the carry chain `long_i ∧ c` uses [`Backend::and_evaluator_known`] (one
/// ciphertext per gate instead of two). Same AND count.
pub fn add_mod_zero_extended_known<B: Backend>(
    b: &mut B,
    short: &[B::Wire],
    long: &[B::Wire],
) -> Result<Vec<B::Wire>> {
    add_zero_extended(b, short, long, true)
}

/// `(short + long) mod 2^len(long)` where `short` is zero-extended (`1 <= len(short) <=
/// len(long)`). Above `short`, the carry chain costs one AND per bit (`c' = l ∧ c`).
/// ANDs: `len(long) - 1`.
pub fn add_mod_zero_extended<B: Backend>(
    b: &mut B,
    short: &[B::Wire],
    long: &[B::Wire],
) -> Result<Vec<B::Wire>> {
    add_zero_extended(b, short, long, false)
}

/// The adder of [`add_mod_zero_extended`] and [`add_mod_zero_extended_known`].
fn add_zero_extended<B: Backend>(
    b: &mut B,
    short: &[B::Wire],
    long: &[B::Wire],
    long_known: bool,
) -> Result<Vec<B::Wire>> {
    let k = short.len();
    let n = long.len();
    if k == 0 || k > n {
        return Err(ProtocolError::arg(format!(
            "bad operand lengths {k} and {n}"
        )));
    }
    let (mut out, mut carry) = add_core_in(b, short, &long[..k], CarryIn::Zero, k < n, n)?;
    for (i, li) in long.iter().enumerate().skip(k) {
        let c = carry
            .take()
            .ok_or_else(|| ProtocolError::arg("internal: missing carry"))?;
        out.push(b.xor(li, &c));
        if i + 1 < n {
            carry = Some(if long_known {
                b.and_evaluator_known(&c, li, i)?
            } else {
                b.and(li, &c)?
            });
        }
    }
    Ok(out)
}
