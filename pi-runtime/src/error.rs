//! The runtime's error type: every error says whose fault it is.

use protocols::{ChannelError, Fault, ProtocolError};

/// Errors of a private-inference session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The peer sent something that does not decode or violates the session protocol.
    #[error("peer sent invalid data: {0}")]
    Peer(String),
    /// The peer speaks another protocol version, wants other security parameters, or
    /// serves another model than the one required.
    #[error("peer is incompatible: {0}")]
    Incompatible(String),
    /// The peer refused the session and said why.
    #[error("peer refused: {0}")]
    Refused(String),
    /// A two-party protocol failed (its own error says whose fault).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The model is invalid or cannot be lowered.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// The local caller passed invalid arguments or configuration.
    #[error("invalid argument: {0}")]
    Config(String),
    /// Network, TLS or file I/O failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A phase or a receive took longer than its configured limit.
    #[error("timed out: {0}")]
    Timeout(String),
    /// This side is at one of its limits (sessions, connections, memory) and refused.
    #[error("busy: {0}")]
    Busy(String),
}

impl RuntimeError {
    /// Who is to blame.
    pub fn fault(&self) -> Fault {
        match self {
            RuntimeError::Peer(_) | RuntimeError::Incompatible(_) | RuntimeError::Refused(_) => {
                Fault::Peer
            }
            RuntimeError::Protocol(e) => e.fault(),
            RuntimeError::Model(_) | RuntimeError::Config(_) => Fault::Caller,
            RuntimeError::Io(_) | RuntimeError::Timeout(_) | RuntimeError::Busy(_) => {
                Fault::Environment
            }
        }
    }

    pub(crate) fn peer(msg: impl Into<String>) -> Self {
        RuntimeError::Peer(msg.into())
    }

    pub(crate) fn config(msg: impl Into<String>) -> Self {
        RuntimeError::Config(msg.into())
    }

    /// Adds where in the session the error happened.
    pub(crate) fn context(self, what: &str) -> Self {
        match self {
            RuntimeError::Peer(m) => RuntimeError::Peer(format!("{what}: {m}")),
            RuntimeError::Protocol(ProtocolError::Channel(ChannelError::PeerClosed { .. })) => {
                RuntimeError::Peer(format!("{what}: the peer closed the connection"))
            }
            RuntimeError::Protocol(ProtocolError::Channel(ChannelError::Timeout)) => {
                RuntimeError::Timeout(format!("{what}: no data from the peer in time"))
            }
            RuntimeError::Protocol(ProtocolError::InvalidPeerData(m)) => {
                RuntimeError::Peer(format!("{what}: {m}"))
            }
            other => other,
        }
    }
}

impl From<ChannelError> for RuntimeError {
    fn from(e: ChannelError) -> Self {
        RuntimeError::Protocol(ProtocolError::Channel(e))
    }
}

/// Result alias of this crate.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
