//! The two-party private-inference runtime.
//!
//! A model owner runs `pi-server`, a data owner runs `pi-client`; the client obtains the
//! prediction for its image while the server never sees the image and the client never sees
//! the weights. Linear layers run on additive secret shares, kept ReLUs through garbled
//! circuits, linearized positions by exact share truncation. This crate owns sockets, TLS,
//! sessions and metrics; the cryptography lives in `protocols` and the model format in
//! `models`.
//!
//! Layers of the crate, from the inside out:
//! - [`plan`]: the public schedule both parties derive from the model's public part, its
//!   exact costs, and the ring helpers shared by the engine and the preprocessing;
//! - [`engine`]: the secure evaluation of a lowered network over any synchronous
//!   [`protocols::Channel`] (offline and online phases, per-layer metrics);
//! - [`preprocess`]: how the client obtains the linear layers' correlations;
//! - [`wire`]: the session protocol's control messages (versioned, bounded frames);
//! - [`session`]: one session of either party over a channel (hello, model check,
//!   prepare, infer, bye);
//! - [`net`]: tokio TCP, rustls TLS, and the blocking bridge the synchronous protocols
//!   run on;
//! - [`server`] and [`client`]: what the `pi-server` and `pi-client` binaries run.
//!
//! See `docs/runtime.md` in the repository for the protocol and its costs.

pub mod client;
pub mod engine;
pub mod error;
pub mod net;
pub mod plan;
pub mod preprocess;
pub mod server;
pub mod session;
pub mod wire;

pub use error::{Result, RuntimeError};
pub use wire::VERSION;
