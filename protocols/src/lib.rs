//! Two-party cryptography for private inference on selectively linearized networks.
//!
//! This crate computes; it never opens a socket or a file. The cryptographic core is
//! tracked by the project's issue on the cryptographic core.
