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
mod circuit;
pub mod gadgets;
pub mod relu;
#[cfg(target_arch = "x86_64")]
mod vaes;
pub mod wide;

pub use backends::{
    Evaluator, GarbledTables, Garbler, GarblerSecrets, GateCounter, GateCounts, PlainBackend,
    encode_labels,
};
pub use circuit::{Backend, Party, bits_to_u64, decode_colour_bits, u64_to_bits};
// The free-XOR offset lives beside `Block` because the correlated OT (`ot`) shares it.
pub use crate::block::Delta;

#[cfg(test)]
mod tests;
