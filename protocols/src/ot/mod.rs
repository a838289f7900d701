//! Oblivious transfer: base OT over ristretto255 and IKNP OT extension.
//!
//! * [`base`]: Chou–Orlandi "simplest OT" (semi-honest use), 128 random OTs to seed the
//!   extension (32 bytes per OT plus 32 bytes once, one flight each way).
//! * [`iknp`]: the IKNP extension (semi-honest). [`OtSender`] / [`OtReceiver`] run the
//!   128 base OTs once in `setup` (with roles reversed), then produce in bulk:
//!   correlated OTs (the sender's pairs are `(m0, m0 ⊕ Δ)` with `Δ` the garbler's
//!   free-XOR offset, so the zero labels of the client's inputs come out of the OT),
//!   random OTs and chosen-message OTs. One flight (receiver → sender) per extension
//!   chunk, 16 bytes per OT; chosen-message OTs add 32 bytes per OT from the sender.

pub mod base;
pub mod iknp;

pub use base::{BaseOtReceiver, BaseOtSender};
pub use iknp::{OtReceiver, OtSender, transpose_128};
