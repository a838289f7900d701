//! A channel whose peer messages are the fuzzer's input; everything sent is discarded.
//! Also: a channel that records what one side sends (to build valid peer messages once,
//! for the targets that mutate them), and the byte patches those targets apply.
#![allow(dead_code)] // each target uses part of this module

use protocols::channel::Channel;
use protocols::error::ChannelError;

pub struct ReplayChannel<'a> {
    data: &'a [u8],
}

impl<'a> ReplayChannel<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        ReplayChannel { data }
    }

    /// Bytes not yet received.
    pub fn remaining(&self) -> usize {
        self.data.len()
    }
}

impl Channel for ReplayChannel<'_> {
    fn send(&mut self, _bytes: &[u8]) -> Result<(), ChannelError> {
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        if buf.len() > self.data.len() {
            let wanted = buf.len() - self.data.len();
            self.data = &[];
            return Err(ChannelError::PeerClosed { wanted });
        }
        let (head, rest) = self.data.split_at(buf.len());
        buf.copy_from_slice(head);
        self.data = rest;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// Records everything sent; serves `incoming` to `recv`, then the peer has closed.
#[derive(Default)]
pub struct Recorder {
    pub sent: Vec<u8>,
    incoming: Vec<u8>,
    at: usize,
}

impl Recorder {
    pub fn new(incoming: Vec<u8>) -> Self {
        Recorder {
            sent: Vec::new(),
            incoming,
            at: 0,
        }
    }
}

impl Channel for Recorder {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.sent.extend_from_slice(bytes);
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        let rest = &self.incoming[self.at..];
        if buf.len() > rest.len() {
            return Err(ChannelError::PeerClosed {
                wanted: buf.len() - rest.len(),
            });
        }
        buf.copy_from_slice(&rest[..buf.len()]);
        self.at += buf.len();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        Ok(())
    }
}

/// `valid` changed by the fuzz bytes `edits`: the first two bytes (LE) truncate it to
/// `len - n` bytes for `n < 2^15` (bit 15 set: keep its length), then every 4 bytes
/// XOR the byte at a 24-bit offset (modulo the length) with the fourth.
pub fn patch(valid: &[u8], edits: &[u8]) -> Vec<u8> {
    let mut out = valid.to_vec();
    let Some((cut, edits)) = edits.split_first_chunk::<2>() else {
        return out;
    };
    let cut = u16::from_le_bytes(*cut);
    if cut & 0x8000 == 0 {
        out.truncate(out.len().saturating_sub(usize::from(cut)));
    }
    if out.is_empty() {
        return out;
    }
    for e in edits.chunks_exact(4) {
        let at = (usize::from(e[0]) | usize::from(e[1]) << 8 | usize::from(e[2]) << 16) % out.len();
        out[at] ^= e[3];
    }
    out
}
