//! The two-party private-inference runtime.
//!
//! A model owner runs `pi-server`, a data owner runs `pi-client`; the client obtains the
//! prediction for its image while the server never sees the image and the client never sees
//! the weights. Linear layers run on additive secret shares, kept ReLUs through garbled
//! circuits, linearized positions at no online cost. This crate owns sockets, TLS, sessions
//! and metrics; the cryptography lives in `protocols` and the model format in `models`.
//! The binaries are tracked by the project's runtime issue.
