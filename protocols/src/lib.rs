//! Two-party cryptography for private inference on selectively linearized networks.
//!
//! A server holds the model weights, a client holds an image. Linear layers run on
//! additive secret shares in `Z_{2^61}`; the ReLUs that were not linearized run as garbled
//! circuits (the server garbles, the client evaluates).
//!
//! This crate computes; it never opens a socket or a file. Everything the two parties
//! exchange goes through a [`Channel`] supplied by the caller
//! (`pi-runtime` supplies TCP and TLS; tests use [`MemoryChannel`]).
//! Protocols are synchronous and blocking (see `docs/protocols.md` for why).
//!
//! Modules:
//! * [`block`]: the 128-bit [`Block`] (labels, hash inputs, OT messages)
//!   and the free-XOR offset [`Delta`](block::Delta) that garbling and correlated OT share;
//! * [`aes_hash`]: fixed-key AES-128 (a VAES-512 kernel where the CPU has one) and the
//!   tweakable circular correlation-robust hash of Guo, Katz, Wang and Yu;
//! * [`prg`]: AES-CTR pseudorandom generator seeded from the OS or a given seed;
//! * [`channel`]: the [`Channel`] trait, typed helpers, an in-memory
//!   pair, a wrapper for caller-supplied byte streams, byte/round counting and
//!   transcript recording wrappers;
//! * [`gc`]: garbled circuits (free-XOR, half-gates, point-and-permute), backends,
//!   gadgets and the batched ReLU gadget API (circuit, byte formats, batch garbling);
//! * [`ot`]: base OT over ristretto255 and IKNP OT extension (random, correlated and
//!   chosen-message OTs);
//! * [`twopc`]: the two-party ReLU protocol over `gc` and `ot` (offline: correlated OTs
//!   for the client's labels, garbling, tables; online: labels and colour bits), as
//!   swanky's `twopac` sits over `fancy-garbling` and `ocelot`; `gc` and `ot` do not
//!   import each other;
//! * [`he`]: homomorphic-encryption (BFV) preprocessing of linear layers: coefficient
//!   layouts of convolutions, the client's and the server's side;
//! * [`share`]: additive secret sharing and fixed-point encoding in `Z_{2^61}`, local
//!   share truncation;
//! * [`trunc`]: exact truncation of shares with one preprocessed OT per value;
//! * [`square`]: exact truncation at two shifts and the exact square of the second (one
//!   preprocessed OT and a Gilboa OLE per value), for learned quadratic activations;
//! * [`error`]: error types that say whose fault an error is.

pub mod aes_hash;
pub mod block;
pub mod channel;
pub mod error;
pub mod gc;
pub mod he;
pub mod ot;
pub mod prg;
pub mod share;
pub mod square;
pub mod trunc;
pub mod twopc;

pub use block::Block;
pub use channel::{Channel, ChannelExt, CountingChannel, MemoryChannel, StreamChannel};
pub use error::{ChannelError, Fault, ProtocolError};
