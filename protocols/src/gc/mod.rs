//! Garbled circuits: free-XOR, half-gates AND (two ciphertexts per AND gate),
//! point-and-permute.
//!
//! Circuits are written once against the [`Backend`] trait and run on any backend:
//!
//! * [`PlainBackend`]: evaluates on booleans (the reference semantics);
//! * [`GateCounter`]: counts AND/XOR/NOT gates, constants, inputs and outputs;
//! * [`Garbler`]: produces the garbled tables ([`GarbledTables`]) and keeps the secrets
//!   (global offset `Δ`, input zero-labels, output decoding bits);
//! * [`Evaluator`]: consumes the tables in order, later and elsewhere, given one label
//!   per input wire, and outputs the colour bits of the output wires.
//!
//! Inputs belong to one [`Party`]; each backend keeps one input queue per party and
//! consumes it in declaration order. The evaluator's output colour bits are decoded by the
//! garbler alone ([`decode_colour_bits`]): `value = colour ⊕ decode`.
//!
//! Wire labels: a wire with value `v` carries `W⁰ ⊕ v·Δ` where `W⁰` is its zero label and
//! `lsb(Δ) = 1`, so the colour bit `lsb(W)` equals `v ⊕ lsb(W⁰)`.
//! AND gate `g` uses the hash tweaks `(batch_id, 2g)` and `(batch_id, 2g + 1)`; the pair
//! `(Δ, batch_id)` must never be reused for two garblings.
//!
//! # Example
//!
//! ```
//! use protocols::gc::{Backend, Delta, Evaluator, Garbler, Party, decode_colour_bits, encode_labels};
//! use protocols::{Block, ProtocolError, prg::Prg};
//!
//! // Written once, run on every backend.
//! fn circuit<B: Backend>(b: &mut B) -> Result<(), ProtocolError> {
//!     let x = b.input(Party::Garbler)?;
//!     let y = b.input(Party::Evaluator)?;
//!     let z = b.and(&x, &y)?;
//!     b.output(&z)
//! }
//!
//! # fn main() -> Result<(), ProtocolError> {
//! let mut rng = Prg::from_seed(Block(1));
//! let delta = Delta::random(&mut rng);
//! let mut garbler = Garbler::new(delta, 0, rng);
//! circuit(&mut garbler)?;
//! let (tables, secrets) = garbler.finish()?; // tables go to the evaluator (now or later)
//! assert_eq!(tables.byte_len(), 32); // one AND gate
//!
//! // Labels for x = 1 (sent by the garbler) and y = 1 (obtained by the evaluator via OT).
//! let x_label = encode_labels(&secrets.garbler_zero_labels, &[true], delta).unwrap_or_default();
//! let y_label = encode_labels(&secrets.evaluator_zero_labels, &[true], delta).unwrap_or_default();
//! let mut evaluator = Evaluator::new(&tables, &x_label, &y_label);
//! circuit(&mut evaluator)?;
//! let colours = evaluator.finish()?; // sent back to the garbler
//! assert_eq!(decode_colour_bits(&colours, &secrets.decode), Some(vec![true]));
//! # Ok(())
//! # }
//! ```

mod backends;
pub mod gadgets;
pub mod relu;
pub mod wide;

pub use backends::{
    Evaluator, GarbledTables, Garbler, GarblerSecrets, GateCounter, GateCounts, PlainBackend,
    encode_labels,
};
// The free-XOR offset lives beside `Block` because the correlated OT (`ot`) shares it.
pub use crate::block::Delta;

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

#[cfg(test)]
mod tests;
