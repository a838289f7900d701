//! Byte channels between the two parties.
//!
//! Protocols in this crate are synchronous: they call [`Channel::send`], [`Channel::flush`]
//! and [`Channel::recv`] and block until the bytes are through. The runtime runs them on
//! blocking threads over TCP/TLS; tests run both parties on two threads over a
//! [`MemoryChannel::pair`].
//!
//! Contract: `send` may buffer; data is only guaranteed to reach the peer after `flush`.
//! A party must flush before it waits on the peer, otherwise a buffered transport
//! deadlocks. [`MemoryChannel`] enforces this: `recv` with unflushed sent data fails with
//! [`ChannelError::Misuse`].
//!
//! Accounting ([`CountingChannel`]): bytes sent and received, *messages* (flushes that
//! carried data) and *rounds*. A round is counted by a party each time it calls `recv`
//! after having flushed data since its previous `recv`, i.e. each time it turns from
//! talking to waiting on the peer. The protocol's latency in one-way network delays is at
//! most the total number of messages of both parties.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::block::{Block, pack_bits, unpack_bits};
use crate::error::{ChannelError, ProtocolError};

/// A reliable, ordered, bidirectional byte channel to the other party.
pub trait Channel {
    /// Queues `bytes` for the peer (may buffer until [`Channel::flush`]).
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError>;
    /// Fills `buf` entirely with the next bytes from the peer, blocking as needed.
    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError>;
    /// Pushes all queued bytes to the peer.
    fn flush(&mut self) -> Result<(), ChannelError>;
}

impl<C: Channel + ?Sized> Channel for &mut C {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        (**self).send(bytes)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        (**self).recv(buf)
    }
    fn flush(&mut self) -> Result<(), ChannelError> {
        (**self).flush()
    }
}

impl<C: Channel + ?Sized> Channel for Box<C> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        (**self).send(bytes)
    }
    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        (**self).recv(buf)
    }
    fn flush(&mut self) -> Result<(), ChannelError> {
        (**self).flush()
    }
}

/// Blocks per chunk when (de)serialising many blocks.
const CHUNK_BLOCKS: usize = 4096;

/// Typed helpers on top of any [`Channel`]. All integers are little-endian.
pub trait ChannelExt: Channel {
    /// Sends one block (16 bytes).
    fn send_block(&mut self, b: Block) -> Result<(), ChannelError> {
        self.send(&b.to_bytes())
    }

    /// Receives one block.
    fn recv_block(&mut self) -> Result<Block, ChannelError> {
        let mut b = [0u8; 16];
        self.recv(&mut b)?;
        Ok(Block::from_bytes(b))
    }

    /// Sends blocks back to back (16 bytes each, no length prefix).
    fn send_blocks(&mut self, blocks: &[Block]) -> Result<(), ChannelError> {
        let mut buf = Vec::with_capacity(16 * blocks.len().min(CHUNK_BLOCKS));
        for chunk in blocks.chunks(CHUNK_BLOCKS) {
            buf.clear();
            for b in chunk {
                buf.extend_from_slice(&b.to_bytes());
            }
            self.send(&buf)?;
        }
        Ok(())
    }

    /// Receives exactly `n` blocks.
    fn recv_blocks(&mut self, n: usize) -> Result<Vec<Block>, ChannelError> {
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; 16 * n.min(CHUNK_BLOCKS)];
        let mut left = n;
        while left > 0 {
            let k = left.min(CHUNK_BLOCKS);
            self.recv(&mut buf[..16 * k])?;
            out.extend(buf[..16 * k].chunks_exact(16).map(|c| {
                let mut a = [0u8; 16];
                a.copy_from_slice(c);
                Block::from_bytes(a)
            }));
            left -= k;
        }
        Ok(out)
    }

    /// Sends one u64 (8 bytes).
    fn send_u64(&mut self, v: u64) -> Result<(), ChannelError> {
        self.send(&v.to_le_bytes())
    }

    /// Receives one u64.
    fn recv_u64(&mut self) -> Result<u64, ChannelError> {
        let mut b = [0u8; 8];
        self.recv(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Sends u64s back to back (8 bytes each, no length prefix).
    fn send_u64s(&mut self, vs: &[u64]) -> Result<(), ChannelError> {
        let buf: Vec<u8> = vs.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.send(&buf)
    }

    /// Receives exactly `n` u64s.
    fn recv_u64s(&mut self, n: usize) -> Result<Vec<u64>, ChannelError> {
        let mut buf = vec![0u8; 8 * n];
        self.recv(&mut buf)?;
        Ok(buf
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                u64::from_le_bytes(a)
            })
            .collect())
    }

    /// Sends bits packed eight per byte (see [`pack_bits`]).
    fn send_bits(&mut self, bits: &[bool]) -> Result<(), ChannelError> {
        self.send(&pack_bits(bits))
    }

    /// Receives exactly `n` bits packed by [`ChannelExt::send_bits`]. Padding bits of the
    /// last byte must be zero, otherwise the peer is misbehaving.
    fn recv_bits(&mut self, n: usize) -> Result<Vec<bool>, ProtocolError> {
        let mut buf = vec![0u8; n.div_ceil(8)];
        self.recv(&mut buf)?;
        if !n.is_multiple_of(8) && buf.last().is_some_and(|&last| last >> (n % 8) != 0) {
            return Err(ProtocolError::peer("nonzero padding bits in bit vector"));
        }
        unpack_bits(&buf, n).ok_or_else(|| ProtocolError::peer("short bit vector"))
    }

    /// Sends a byte string with a u64 length prefix.
    fn send_prefixed(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.send_u64(bytes.len() as u64)?;
        self.send(bytes)
    }

    /// Receives the u64 length prefix of [`ChannelExt::send_prefixed`], refusing lengths
    /// above `max_len` before anything is allocated.
    fn recv_prefix(&mut self, max_len: usize) -> Result<usize, ProtocolError> {
        let len = self.recv_u64()?;
        usize::try_from(len)
            .ok()
            .filter(|&l| l <= max_len)
            .ok_or_else(|| {
                ProtocolError::peer(format!("length prefix {len} exceeds limit {max_len}"))
            })
    }

    /// Receives a byte string sent by [`ChannelExt::send_prefixed`], refusing lengths
    /// above `max_len` (so a peer cannot make us allocate without bound).
    fn recv_prefixed(&mut self, max_len: usize) -> Result<Vec<u8>, ProtocolError> {
        let len = self.recv_prefix(max_len)?;
        let mut buf = vec![0u8; len];
        self.recv(&mut buf)?;
        Ok(buf)
    }
}

impl<C: Channel + ?Sized> ChannelExt for C {}

// ---------------------------------------------------------------------------------------
// In-memory channel
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct PipeState {
    data: VecDeque<u8>,
    closed: bool,
}

#[derive(Default)]
struct Pipe {
    state: Mutex<PipeState>,
    cv: Condvar,
}

impl Pipe {
    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // A poisoned lock only means the other thread panicked; the byte queue is intact.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One end of an in-memory channel, usable from two threads.
///
/// Sent bytes are buffered locally until [`Channel::flush`]. Dropping an end flushes it
/// and closes it; the peer then gets [`ChannelError::PeerClosed`] once the data runs out.
pub struct MemoryChannel {
    tx: Arc<Pipe>,
    rx: Arc<Pipe>,
    pending: Vec<u8>,
    timeout: Option<Duration>,
}

impl core::fmt::Debug for MemoryChannel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("MemoryChannel")
            .field("pending", &self.pending.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl MemoryChannel {
    /// Default receive timeout, so that a buggy test fails instead of hanging.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

    /// Two connected ends.
    pub fn pair() -> (MemoryChannel, MemoryChannel) {
        let a = Arc::new(Pipe::default());
        let b = Arc::new(Pipe::default());
        (
            MemoryChannel {
                tx: a.clone(),
                rx: b.clone(),
                pending: Vec::new(),
                timeout: Some(Self::DEFAULT_TIMEOUT),
            },
            MemoryChannel {
                tx: b,
                rx: a,
                pending: Vec::new(),
                timeout: Some(Self::DEFAULT_TIMEOUT),
            },
        )
    }

    /// Sets the receive timeout (`None`: wait forever).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }
}

impl Channel for MemoryChannel {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        if !self.pending.is_empty() {
            return Err(ChannelError::Misuse("recv called with unflushed sent data"));
        }
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut off = 0;
        let mut st = self.rx.lock();
        while off < buf.len() {
            let n = st.data.len().min(buf.len() - off);
            let (front, back) = st.data.as_slices();
            let k = n.min(front.len());
            buf[off..off + k].copy_from_slice(&front[..k]);
            buf[off + k..off + n].copy_from_slice(&back[..n - k]);
            st.data.drain(..n);
            off += n;
            if off == buf.len() {
                break;
            }
            if st.closed {
                return Err(ChannelError::PeerClosed {
                    wanted: buf.len() - off,
                });
            }
            st = match deadline {
                None => self.rx.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(ChannelError::Timeout);
                    }
                    self.rx
                        .cv
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut st = self.tx.lock();
        st.data.extend(self.pending.iter());
        drop(st);
        self.pending.clear();
        self.tx.cv.notify_all();
        Ok(())
    }
}

impl Drop for MemoryChannel {
    fn drop(&mut self) {
        let mut st = self.tx.lock();
        st.data.extend(self.pending.drain(..));
        st.closed = true;
        drop(st);
        self.tx.cv.notify_all();
    }
}

// ---------------------------------------------------------------------------------------
// Byte streams
// ---------------------------------------------------------------------------------------

/// A channel over any blocking byte stream (`Read + Write`: a TCP or TLS stream, a Unix
/// socket, ...), with writes buffered until [`Channel::flush`]. The stream is supplied by
/// the caller; this crate never opens one.
///
/// Like [`MemoryChannel`], receiving while sent data is unflushed is
/// [`ChannelError::Misuse`]. End of stream in the middle of a receive is
/// [`ChannelError::PeerClosed`]; read timeouts configured on the stream
/// (`WouldBlock`/`TimedOut`) are [`ChannelError::Timeout`]. Dropping the channel does
/// not flush it.
#[derive(Debug)]
pub struct StreamChannel<S> {
    stream: S,
    wbuf: Vec<u8>,
    unflushed: bool,
}

impl<S: std::io::Read + std::io::Write> StreamChannel<S> {
    /// Bytes buffered before a write is issued to the stream (without flushing it).
    pub const WRITE_CHUNK: usize = 1 << 16;

    /// Wraps `stream`.
    pub fn new(stream: S) -> Self {
        StreamChannel {
            stream,
            wbuf: Vec::with_capacity(Self::WRITE_CHUNK),
            unflushed: false,
        }
    }

    /// Returns the stream (buffered data that was not flushed is dropped).
    pub fn into_inner(self) -> S {
        self.stream
    }
}

impl<S: std::io::Read + std::io::Write> Channel for StreamChannel<S> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.unflushed |= !bytes.is_empty();
        if self.wbuf.len() + bytes.len() > Self::WRITE_CHUNK {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
            if bytes.len() >= Self::WRITE_CHUNK {
                self.stream.write_all(bytes)?;
                return Ok(());
            }
        }
        self.wbuf.extend_from_slice(bytes);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        if self.unflushed {
            return Err(ChannelError::Misuse("recv called with unflushed sent data"));
        }
        let mut off = 0;
        while off < buf.len() {
            match self.stream.read(&mut buf[off..]) {
                Ok(0) => {
                    return Err(ChannelError::PeerClosed {
                        wanted: buf.len() - off,
                    });
                }
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(ChannelError::Timeout);
                }
                Err(e) => return Err(ChannelError::Io(e)),
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf)?;
            self.wbuf.clear();
        }
        self.stream.flush()?;
        self.unflushed = false;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Counting and recording wrappers
// ---------------------------------------------------------------------------------------

/// Traffic statistics of one party (see the module docs for the definitions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Bytes passed to `send`.
    pub bytes_sent: u64,
    /// Bytes returned by `recv`.
    pub bytes_received: u64,
    /// Flushes that carried data (one network message each).
    pub messages: u64,
    /// Turns from talking to waiting: `recv` calls preceded by a data-carrying flush
    /// since this party's previous `recv`.
    pub rounds: u64,
}

/// Wraps a channel and counts bytes, messages and rounds.
#[derive(Debug)]
pub struct CountingChannel<C> {
    inner: C,
    stats: ChannelStats,
    unflushed: u64,
    flushed_since_recv: bool,
}

impl<C: Channel> CountingChannel<C> {
    /// Wraps `inner` with zeroed counters.
    pub fn new(inner: C) -> Self {
        CountingChannel {
            inner,
            stats: ChannelStats::default(),
            unflushed: 0,
            flushed_since_recv: false,
        }
    }

    /// The statistics so far.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Starts a phase: its first `recv`, if it comes before any flush, counts as a round,
    /// whatever the previous phase ended with (a phase that opens by waiting on the peer
    /// waits one flight, even after a phase that ended by receiving).
    pub fn begin_phase(&mut self) {
        self.flushed_since_recv = true;
    }

    /// Resets the counters to zero.
    pub fn reset(&mut self) {
        self.stats = ChannelStats::default();
        self.flushed_since_recv = false;
    }

    /// The wrapped channel.
    pub fn into_inner(self) -> C {
        self.inner
    }

    /// Borrows the wrapped channel.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C: Channel> Channel for CountingChannel<C> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.inner.send(bytes)?;
        self.stats.bytes_sent += bytes.len() as u64;
        self.unflushed += bytes.len() as u64;
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        if self.flushed_since_recv {
            self.stats.rounds += 1;
            self.flushed_since_recv = false;
        }
        self.inner.recv(buf)?;
        self.stats.bytes_received += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        self.inner.flush()?;
        if self.unflushed > 0 {
            self.stats.messages += 1;
            self.flushed_since_recv = true;
            self.unflushed = 0;
        }
        Ok(())
    }
}

/// Wraps a channel and records every byte sent and received (for transcript tests).
#[derive(Debug)]
pub struct RecordingChannel<C> {
    inner: C,
    /// Every byte passed to `send`, in order.
    pub sent: Vec<u8>,
    /// Every byte returned by `recv`, in order.
    pub received: Vec<u8>,
}

impl<C: Channel> RecordingChannel<C> {
    /// Wraps `inner` with empty transcripts.
    pub fn new(inner: C) -> Self {
        RecordingChannel {
            inner,
            sent: Vec::new(),
            received: Vec::new(),
        }
    }
}

impl<C: Channel> Channel for RecordingChannel<C> {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.inner.send(bytes)?;
        self.sent.extend_from_slice(bytes);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        self.inner.recv(buf)?;
        self.received.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Fault;
    use std::thread;

    #[test]
    fn memory_pair_roundtrip_and_counting() {
        let (a, b) = MemoryChannel::pair();
        let h = thread::spawn(move || {
            let mut b = CountingChannel::new(b);
            let x = b.recv_u64().unwrap();
            let blocks = b.recv_blocks(5000).unwrap();
            let bits = b.recv_bits(13).unwrap();
            b.send_u64(x + 1).unwrap();
            b.send_blocks(&blocks).unwrap();
            b.send_bits(&bits).unwrap();
            b.flush().unwrap();
            b.stats()
        });
        let mut a = CountingChannel::new(a);
        let blocks: Vec<Block> = (0..5000u128).map(Block).collect();
        let bits: Vec<bool> = (0..13).map(|i| i % 2 == 0).collect();
        a.send_u64(7).unwrap();
        a.send_blocks(&blocks).unwrap();
        a.send_bits(&bits).unwrap();
        a.flush().unwrap();
        assert_eq!(a.recv_u64().unwrap(), 8);
        assert_eq!(a.recv_blocks(5000).unwrap(), blocks);
        assert_eq!(a.recv_bits(13).unwrap(), bits);
        let sa = a.stats();
        let sb = h.join().unwrap();
        let total = 8 + 16 * 5000 + 2;
        assert_eq!(sa.bytes_sent, total);
        assert_eq!(sa.bytes_received, total);
        assert_eq!(sb.bytes_sent, total);
        assert_eq!(sb.bytes_received, total);
        assert_eq!((sa.messages, sa.rounds), (1, 1));
        assert_eq!((sb.messages, sb.rounds), (1, 0));
    }

    #[test]
    fn a_phase_that_opens_by_waiting_counts_a_round() {
        let (mut a, b) = MemoryChannel::pair();
        a.send(&[1, 2, 3]).unwrap();
        a.flush().unwrap();
        let mut b = CountingChannel::new(b);
        let mut buf = [0u8; 1];
        b.recv(&mut buf).unwrap();
        b.recv(&mut buf).unwrap();
        assert_eq!(b.stats().rounds, 0);
        b.begin_phase();
        b.recv(&mut buf).unwrap();
        assert_eq!(b.stats().rounds, 1);
    }

    #[test]
    fn peer_closed_and_misuse() {
        let (mut a, b) = MemoryChannel::pair();
        drop(b);
        let mut buf = [0u8; 4];
        let e = a.recv(&mut buf).unwrap_err();
        assert!(matches!(e, ChannelError::PeerClosed { wanted: 4 }));
        assert_eq!(e.fault(), Fault::Peer);

        let (mut a, mut b) = MemoryChannel::pair();
        b.send(&[1, 2]).unwrap();
        drop(b); // drop flushes, then closes
        let e = a.recv(&mut buf).unwrap_err();
        assert!(matches!(e, ChannelError::PeerClosed { wanted: 2 }));

        let (mut a, _b) = MemoryChannel::pair();
        a.send(&[1]).unwrap();
        let e = a.recv(&mut buf).unwrap_err();
        assert_eq!(e.fault(), Fault::Caller);
    }

    #[test]
    fn timeout_and_bad_input() {
        let (mut a, mut b) = MemoryChannel::pair();
        a.set_timeout(Some(Duration::from_millis(10)));
        let e = a.recv_u64().unwrap_err();
        assert!(matches!(e, ChannelError::Timeout));
        // Nonzero padding in a bit vector is the peer's fault.
        b.send(&[0xff]).unwrap();
        b.flush().unwrap();
        let e = a.recv_bits(3).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        // Oversized length prefix is refused before allocating.
        b.send_u64(1 << 40).unwrap();
        b.flush().unwrap();
        let e = a.recv_prefixed(1024).unwrap_err();
        assert_eq!(e.fault(), Fault::Peer);
        b.send_prefixed(b"hello").unwrap();
        b.flush().unwrap();
        assert_eq!(a.recv_prefixed(1024).unwrap(), b"hello");
    }

    #[cfg(unix)]
    #[test]
    fn stream_channel_over_socket_pair() {
        use std::os::unix::net::UnixStream;
        let (x, y) = UnixStream::pair().unwrap();
        let h = thread::spawn(move || {
            let mut b = StreamChannel::new(y);
            let blocks = b.recv_blocks(10_000).unwrap();
            b.send_blocks(&blocks).unwrap();
            b.send_u64(5).unwrap();
            b.flush().unwrap();
            let mut one = [0u8; 1];
            b.recv(&mut one).unwrap_err()
        });
        let mut a = StreamChannel::new(x);
        let blocks: Vec<Block> = (0..10_000u128).map(|i| Block(i * 31)).collect();
        a.send_blocks(&blocks).unwrap();
        a.send(&[]).unwrap();
        assert!(matches!(a.recv_u64(), Err(ChannelError::Misuse(_))));
        a.flush().unwrap();
        assert_eq!(a.recv_blocks(10_000).unwrap(), blocks);
        assert_eq!(a.recv_u64().unwrap(), 5);
        drop(a);
        let e = h.join().unwrap();
        assert!(matches!(e, ChannelError::PeerClosed { wanted: 1 }));
    }

    #[test]
    fn recording() {
        let (a, b) = MemoryChannel::pair();
        let mut a = RecordingChannel::new(a);
        let mut b = RecordingChannel::new(b);
        a.send(b"abc").unwrap();
        a.flush().unwrap();
        let mut buf = [0u8; 3];
        b.recv(&mut buf).unwrap();
        assert_eq!(a.sent, b"abc");
        assert_eq!(b.received, b"abc");
    }
}
