//! The circuit interface: who owns an input wire ([`Party`]), the [`Backend`] trait every
//! circuit is written against, and the bit encodings of integers and outputs.

use crate::error::Result;

/// Which party owns an input wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Party {
    /// The garbler (the server in this project).
    Garbler,
    /// The evaluator (the client in this project).
    Evaluator,
}

/// A boolean-circuit backend. Gadgets are generic over it.
pub trait Backend {
    /// The representation of a wire (a bool, a label, nothing, ...).
    type Wire: Clone + core::fmt::Debug;

    /// Declares the next input wire owned by `owner`.
    fn input(&mut self, owner: Party) -> Result<Self::Wire>;
    /// A wire with a public constant value.
    fn constant(&mut self, value: bool) -> Result<Self::Wire>;
    /// `a ⊕ b` (free).
    fn xor(&mut self, a: &Self::Wire, b: &Self::Wire) -> Self::Wire;
    /// `¬a` (free).
    fn not(&mut self, a: &Self::Wire) -> Self::Wire;
    /// `a ∧ b` (two ciphertexts when garbled).
    fn and(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire>;
    /// `a ∧ k` where `k` is an input wire of the evaluator whose value the evaluator knows
    /// in the clear; `known` indexes it among the evaluator-known wires the caller gave the
    /// backend (the ReLU gadget's `q` bits). Garbled, it is the evaluator half gate of
    /// half-gates alone, with the evaluator's own bit in place of the permuted one: **one**
    /// ciphertext (`T = H(K_0, τ) ⊕ H(K_1, τ) ⊕ A_0`, output zero label `H(K_0, τ)`; the
    /// evaluator holding `K_k` outputs `H(K_k, τ) ⊕ k·(T ⊕ A)`). The default is
    /// [`Backend::and`], right for backends without tables.
    fn and_evaluator_known(
        &mut self,
        a: &Self::Wire,
        k: &Self::Wire,
        known: usize,
    ) -> Result<Self::Wire> {
        let _ = known;
        self.and(a, k)
    }
    /// Marks `a` as the next output wire.
    fn output(&mut self, a: &Self::Wire) -> Result<()>;

    /// Declares `n` input wires owned by `owner` (least significant bit first).
    fn inputs(&mut self, owner: Party, n: usize) -> Result<Vec<Self::Wire>> {
        (0..n).map(|_| self.input(owner)).collect()
    }
    /// Marks each of `ws` as an output, in order.
    fn outputs(&mut self, ws: &[Self::Wire]) -> Result<()> {
        ws.iter().try_for_each(|w| self.output(w))
    }
    /// `a ∨ b = ¬(¬a ∧ ¬b)` (one AND).
    fn or(&mut self, a: &Self::Wire, b: &Self::Wire) -> Result<Self::Wire> {
        let na = self.not(a);
        let nb = self.not(b);
        let t = self.and(&na, &nb)?;
        Ok(self.not(&t))
    }
}

/// Decodes output colour bits with the garbler's decoding bits: `value = colour ⊕ decode`.
/// Returns `None` if the lengths differ.
pub fn decode_colour_bits(colour: &[bool], decode: &[bool]) -> Option<Vec<bool>> {
    (colour.len() == decode.len()).then(|| colour.iter().zip(decode).map(|(c, d)| c ^ d).collect())
}

/// Bits of `v`, least significant first (`n <= 64`).
pub fn u64_to_bits(v: u64, n: usize) -> Vec<bool> {
    (0..n).map(|i| (v >> i) & 1 == 1).collect()
}

/// The integer whose least significant bits are `bits` (at most 64 bits).
pub fn bits_to_u64(bits: &[bool]) -> u64 {
    bits.iter()
        .enumerate()
        .fold(0u64, |acc, (i, &b)| acc | ((b as u64) << i))
}
