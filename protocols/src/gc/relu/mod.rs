//! The ReLU gadget used between two linear layers, and its batched garble/evaluate API.
//!
//! Inputs (per gadget, in this declaration order; `w = m - k` bits of each share are read):
//! * `a` (`w` bits, garbler/server): bits `[k, m)` of `server share + 2^(f-1)`;
//! * `b` (`w` bits, evaluator/client): bits `[k, m)` of the client share;
//! * `q` (`l` bits, evaluator/client): `(-r') mod 2^l`, `r'` the client's next-layer mask.
//!
//! The circuit computes `z = (a + b) mod 2^w` read as a signed `w`-bit value,
//! `t = z >> (f - k)` (arithmetic; only wires), `u = relu(t)` and outputs
//! `o = (u + q) mod 2^l` (`l` bits). Only the garbler can decode `o`; it is the server's
//! share of the next layer's masked input `x' - r'`.
//!
//! Fused truncation (`k > 0`, the default `k = f`): dropping the low `k` bits of each
//! share before the adder loses the carry `c` out of them, so `t` is the exact
//! round-half-up truncation minus `c ∈ {0, 1}`: the output is `relu(rescale(y) - c)`,
//! never more than one unit (2^-f) below the exact gadget's, and a sign can flip only
//! where the exact value is 0. In exchange the server sends `m - k` labels per gadget
//! online instead of `m` (see `docs/protocols.md` §5.2). `k = 0` is the exact gadget.
//!
//! AND gates: `(w - 1)` for the `w`-bit adder, `(m - f - 1)` for the ReLU (bits
//! `f-k..w-2` of `z` masked with `¬sign`), `(l - 1)` for the final adder, whose carry
//! chain above the ReLU output (`l - m + f` gates, `c ∧ q_i`) reads the client's own `q`
//! and is garbled with one ciphertext per gate (an evaluator-known gate,
//! [`Backend::and_evaluator_known`](crate::gc::Backend::and_evaluator_known)): **116**
//! gates and 3,088 bytes of tables for `l = 61, f = 14, m = 36, k = 0`, **102** gates and
//! 2,640 bytes for `k = 14`, 98 and 2,480 bytes with a per-site window `m = 34`.
//!
//! The code is split by concern: `circuit` (parameters, the gadget, its reference and the
//! parties' inputs), `codec` (the garbled batch and the server's secrets, and their byte
//! formats) and `batch` (garbling and evaluating many gadgets at once). The two-party
//! protocol that runs a batch with correlated OT over a channel is [`crate::twopc`]; it
//! sits over `gc` and [`crate::ot`], which do not import each other.

mod batch;
mod circuit;
mod codec;

pub use batch::{evaluate_relus, evaluate_relus_range, garble_relus};
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
