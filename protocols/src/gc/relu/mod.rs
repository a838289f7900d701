//! The ReLU gadget used between two linear layers, and its batched garble/evaluate API.
//!
//! Inputs (per gadget, in this declaration order):
//! * `a` (`m` bits, garbler/server): `(server share + 2^(f-1)) mod 2^m`;
//! * `b` (`m` bits, evaluator/client): `client share mod 2^m`;
//! * `q` (`l` bits, evaluator/client): `(-r') mod 2^l`, `r'` the client's next-layer mask.
//!
//! The circuit computes `z = (a + b) mod 2^m` read as a signed `m`-bit value,
//! `t = z >> f` (arithmetic; only wires), `u = relu(t)` and outputs `o = (u + q) mod 2^l`
//! (`l` bits). Only the garbler can decode `o`; it is the server's share of the next
//! layer's masked input `x' - r'`.
//!
//! AND gates: `(m - 1)` for the `m`-bit adder, `(m - f - 1)` for the ReLU (bits
//! `f..m-2` of `z` masked with `¬sign`), `(l - 1)` for the final adder:
//! `(m - 1) + (m - f - 1) + (l - 1)`, which is **116** for `l = 61, f = 14, m = 36`,
//! i.e. 3,712 bytes of garbled tables per ReLU.
//!
//! The code is split by concern: `circuit` (parameters, the gadget, its reference and the
//! parties' inputs), `codec` (the garbled batch and the server's secrets, and their byte
//! formats) and `batch` (garbling and evaluating many gadgets at once). The two-party
//! protocol that runs a batch with correlated OT over a channel is [`crate::twopc`]; it
//! sits over `gc` and [`crate::ot`], which do not import each other.

mod batch;
mod circuit;
mod codec;

pub use batch::{evaluate_relus, garble_relus};
pub use circuit::{
    ReluParams, client_gadget_inputs, client_input_bits, relu_core, relu_gadget,
    relu_gadget_reference, server_gadget_input,
};
pub use codec::{GarbledRelus, ReluGarblerSecrets, ReluOnlineSecrets};

// Internals that tests use: `gc`'s check the batch machinery directly, `twopc`'s build
// inputs with `mask`.
#[cfg(test)]
pub(super) use batch::{Labels, evaluate_into, garble_into};
#[cfg(test)]
pub(crate) use circuit::mask;
