//! Error types shared by every protocol in this crate.
//!
//! Every error says whose fault it is (see [`Fault`]): the peer (it sent data that does
//! not parse or violates the protocol, or it went away), the local caller (it misused an
//! API), or the environment (I/O). Nothing received from a peer can make this crate panic.

use std::io;

/// Who is to blame for an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// The peer sent malformed data or closed the connection early.
    Peer,
    /// The local caller passed arguments that violate an API contract.
    Caller,
    /// The transport or operating system failed (I/O error, timeout).
    Environment,
}

/// Errors raised by a [`Channel`](crate::channel::Channel).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// The peer closed its end before we received all the bytes we expected.
    #[error("peer closed the channel (wanted {wanted} more bytes)")]
    PeerClosed {
        /// How many bytes were still missing when the channel closed.
        wanted: usize,
    },
    /// The underlying transport failed.
    #[error("channel I/O error: {0}")]
    Io(#[from] io::Error),
    /// A receive waited longer than the channel's configured timeout.
    #[error("channel receive timed out")]
    Timeout,
    /// The local caller used the channel in a way that can deadlock or is invalid,
    /// for example receiving while its own sent data is still unflushed.
    #[error("channel misuse: {0}")]
    Misuse(&'static str),
}

impl ChannelError {
    /// Who is to blame for this error.
    pub fn fault(&self) -> Fault {
        match self {
            ChannelError::PeerClosed { .. } => Fault::Peer,
            ChannelError::Io(_) | ChannelError::Timeout => Fault::Environment,
            ChannelError::Misuse(_) => Fault::Caller,
        }
    }
}

/// Errors raised by the protocols (garbled circuits, oblivious transfer, sharing).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The channel failed; see [`ChannelError::fault`] for whose fault it is.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The peer sent data that does not decode or violates the protocol
    /// (invalid curve point, truncated garbled tables, bad length field, ...).
    #[error("peer sent invalid data: {0}")]
    InvalidPeerData(String),
    /// The local caller passed invalid arguments (wrong lengths, out-of-range parameters).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl ProtocolError {
    /// Who is to blame for this error.
    pub fn fault(&self) -> Fault {
        match self {
            ProtocolError::Channel(e) => e.fault(),
            ProtocolError::InvalidPeerData(_) => Fault::Peer,
            ProtocolError::InvalidArgument(_) => Fault::Caller,
        }
    }

    pub(crate) fn peer(msg: impl Into<String>) -> Self {
        ProtocolError::InvalidPeerData(msg.into())
    }

    pub(crate) fn arg(msg: impl Into<String>) -> Self {
        ProtocolError::InvalidArgument(msg.into())
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = ProtocolError> = std::result::Result<T, E>;
