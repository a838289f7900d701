//! The session protocol's control messages: typed, versioned, length-bounded frames.
//!
//! A frame is `tag (u8) ‖ length (u32 LE) ‖ payload`. Each tag has its own payload limit,
//! checked before anything is allocated; decoding rejects unknown tags, short payloads and
//! trailing bytes. Between control frames the two-party protocols of the offline and online
//! phases exchange their own messages, whose sizes follow from the public plan.
//!
//! Session: `ClientHello` → `ServerHello` (or `Reject`), then repeatedly `Prepare{n}` →
//! `Ready{n}` (or `Reject`; then the base OTs before the first one, and `n` offline
//! phases) and `n × (Infer{k}, online phase)`, and finally `Bye`. Either side may send `Reject` instead of the next control frame.

use protocols::ChannelError;
use protocols::channel::Channel;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Result, RuntimeError};

/// This crate's version, sent in the session hello and recorded in metrics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Magic at the start of the client's hello.
pub const MAGIC: [u8; 6] = *b"SNLPI\0";
/// Version of this session protocol (2: the server answers `Prepare` with `Ready`, and
/// its hello says how many inferences one HE key serves; 3: garbled tables use the TCCR
/// hash `π(π(x) ⊕ i) ⊕ π(x)`, so a version 2 peer would evaluate them to garbage; 4:
/// linearized and ReLU-free positions are truncated exactly, with a second set of base
/// OTs in the other direction and one truncation OT per position in every layer; 5: the
/// ReLU gadget reads bits `[k, m)` of each share, with `k` and the per-site window `m`
/// from the model's public part, and garbled batches carry `k` in their header, `RLT2`;
/// 6: a layer without a ReLU to evaluate whose inputs are at 2^f is kept without a round
/// and its readers truncate by 2f, and quadratic sites' linearized positions go through
/// the exact truncation with a square, so a version 5 peer would follow another plan;
/// 7: the exact truncation's and the square's OTs are derandomized into correlated OTs,
/// one correction per position up offline and one message instead of two in the client's
/// online answer; the truncation's corrections of all layers follow the client's last
/// offline layer; 8: in a layer's online round the client sends its truncation (and
/// square) answers once it holds every label, before it evaluates the last of them, and
/// its colour bits after them, so a version 7 peer would read the messages in another
/// order; 9: in a layer's offline step the server sends its garbled tables after the
/// truncations and squares, and the client sends the next layer's HE inputs before it
/// reads them, so they cross the link at the same time).
pub const PROTOCOL_VERSION: u16 = 9;
/// Computational security parameter (bits) of the garbling and OT.
pub const KAPPA: u16 = 128;
/// Statistical security parameter (bits).
pub const STAT_SEC: u16 = 40;
/// Largest `public.json` the client accepts from a server.
pub const MAX_PUBLIC_JSON: usize = 16 << 20;
/// Largest masks file the client accepts (WRN-22-8's is about 1.4 MB).
pub const MAX_MASKS: usize = 64 << 20;
/// Longest free-text field (software version, reason).
pub const MAX_TEXT: usize = 1024;
/// Most inferences one `Prepare` may ask for.
pub const MAX_PREPARE: u32 = 1024;

/// A control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Client → server, first.
    ClientHello(ClientHello),
    /// Server → client, the answer to a hello.
    ServerHello(ServerHello),
    /// Either side: the session cannot go on, and why.
    Reject(Reject),
    /// Client → server: run the offline phase for this many inferences.
    Prepare {
        /// Number of inferences.
        count: u32,
    },
    /// Client → server: the online phase of the `index`-th prepared inference follows.
    Infer {
        /// Index of the inference in the session.
        index: u32,
    },
    /// Client → server: the session ends.
    Bye,
    /// Server → client, the answer to `Prepare`: the offline phases of `count` inferences
    /// follow (otherwise the server answers with a `Reject`, e.g. when busy).
    Ready {
        /// Number of inferences, as asked.
        count: u32,
    },
}

/// The client's hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// Session protocol version.
    pub version: u16,
    /// Client software version.
    pub software: String,
    /// Computational security parameter the client requires.
    pub kappa: u16,
    /// Statistical security parameter the client requires.
    pub stat_sec: u16,
    /// Linear preprocessing the client asks for (wire code of
    /// [`crate::preprocess::Method`]).
    pub preprocessing: u8,
}

/// The server's hello: the model's public part and how the session will run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// Session protocol version.
    pub version: u16,
    /// Server software version.
    pub software: String,
    /// Linear preprocessing of the session.
    pub preprocessing: u8,
    /// Most inferences a session may hold prepared at once on this server.
    pub max_prepare: u32,
    /// Inferences one HE key serves; the client sends a fresh key before the next one.
    pub key_inferences: u32,
    /// `public.json` of the model (the client checks it and hashes it).
    pub public_json: Vec<u8>,
    /// `masks.safetensors` of the model.
    pub masks: Vec<u8>,
}

/// Why a session was refused or ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// What kind of problem (see the constants).
    pub code: u16,
    /// Human-readable reason.
    pub reason: String,
}

impl Reject {
    /// The peer speaks another protocol version.
    pub const VERSION: u16 = 1;
    /// Security parameters or preprocessing not acceptable.
    pub const PARAMETERS: u16 = 2;
    /// The server has reached its session limit.
    pub const BUSY: u16 = 3;
    /// The peer sent something invalid.
    pub const PROTOCOL: u16 = 4;
    /// The client does not accept the served model.
    pub const MODEL: u16 = 5;
    /// Any other failure.
    pub const INTERNAL: u16 = 6;

    /// A rejection with a code and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason: String = reason.into();
        if reason.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        Reject { code, reason }
    }
}

const T_CLIENT_HELLO: u8 = 1;
const T_SERVER_HELLO: u8 = 2;
const T_REJECT: u8 = 3;
const T_PREPARE: u8 = 4;
const T_INFER: u8 = 5;
const T_BYE: u8 = 6;
const T_READY: u8 = 7;

/// Which party sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client (`pi-client`).
    Client,
    /// The server (`pi-server`).
    Server,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// The largest payload of a frame with `tag` from `from`: `None` for an unknown tag,
/// `Some(None)` for a message that side never sends.
fn max_payload(tag: u8, from: Side) -> Option<Option<usize>> {
    use Side::{Client, Server};
    Some(match (tag, from) {
        (T_CLIENT_HELLO, Client) => Some(6 + 2 + 4 + MAX_TEXT + 2 + 2 + 1),
        (T_SERVER_HELLO, Server) => {
            Some(2 + 4 + MAX_TEXT + 1 + 4 + 4 + 4 + MAX_PUBLIC_JSON + 4 + MAX_MASKS)
        }
        (T_REJECT, _) => Some(2 + 4 + MAX_TEXT),
        (T_PREPARE | T_INFER, Client) | (T_READY, Server) => Some(4),
        (T_BYE, Client) => Some(0),
        (T_CLIENT_HELLO | T_PREPARE | T_INFER | T_BYE, Server)
        | (T_SERVER_HELLO | T_READY, Client) => None,
        _ => return None,
    })
}

/// The tag and payload length of a frame header from `from`, checked against the limit
/// of that tag in that direction (before anything is allocated).
fn check_header(head: [u8; 5], from: Side) -> Result<(u8, usize)> {
    let tag = head[0];
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
    let max = max_payload(tag, from).ok_or_else(|| match tag {
        // TLS records start with 0x14..0x17 (alert 21, handshake 22).
        0x14..=0x17 => RuntimeError::Incompatible(
            "the peer speaks TLS and this side plain TCP: use TLS on both sides \
             (--tls-ca/--tls-pin) or --insecure-plaintext on both"
                .into(),
        ),
        _ => RuntimeError::peer(format!("unknown message type {tag}")),
    })?;
    let Some(max) = max else {
        return Err(RuntimeError::peer(format!(
            "a {} never sends a {} (frame of {len} bytes refused unread)",
            from.name(),
            tag_name(tag)
        )));
    };
    if len > max {
        return Err(RuntimeError::peer(format!(
            "{} of {len} bytes exceeds the limit of {max}",
            tag_name(tag)
        )));
    }
    Ok((tag, len))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

impl Message {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::new();
        let tag = match self {
            Message::ClientHello(h) => {
                p.extend_from_slice(&MAGIC);
                p.extend_from_slice(&h.version.to_le_bytes());
                put_bytes(&mut p, h.software.as_bytes());
                p.extend_from_slice(&h.kappa.to_le_bytes());
                p.extend_from_slice(&h.stat_sec.to_le_bytes());
                p.push(h.preprocessing);
                T_CLIENT_HELLO
            }
            Message::ServerHello(h) => {
                p.extend_from_slice(&h.version.to_le_bytes());
                put_bytes(&mut p, h.software.as_bytes());
                p.push(h.preprocessing);
                p.extend_from_slice(&h.max_prepare.to_le_bytes());
                p.extend_from_slice(&h.key_inferences.to_le_bytes());
                put_bytes(&mut p, &h.public_json);
                put_bytes(&mut p, &h.masks);
                T_SERVER_HELLO
            }
            Message::Reject(r) => {
                p.extend_from_slice(&r.code.to_le_bytes());
                put_bytes(&mut p, r.reason.as_bytes());
                T_REJECT
            }
            Message::Prepare { count } => {
                p.extend_from_slice(&count.to_le_bytes());
                T_PREPARE
            }
            Message::Infer { index } => {
                p.extend_from_slice(&index.to_le_bytes());
                T_INFER
            }
            Message::Bye => T_BYE,
            Message::Ready { count } => {
                p.extend_from_slice(&count.to_le_bytes());
                T_READY
            }
        };
        let mut out = Vec::with_capacity(5 + p.len());
        out.push(tag);
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&p);
        out
    }

    /// Decodes one frame's payload.
    pub fn decode(tag: u8, payload: &[u8]) -> Result<Self> {
        let mut r = Reader {
            b: payload,
            what: tag_name(tag),
        };
        let m = match tag {
            T_CLIENT_HELLO => {
                let magic = r.take(6)?;
                if magic != MAGIC {
                    return Err(RuntimeError::Incompatible(
                        "not a pi-client (bad magic in the hello)".into(),
                    ));
                }
                Message::ClientHello(ClientHello {
                    version: r.u16()?,
                    software: r.text()?,
                    kappa: r.u16()?,
                    stat_sec: r.u16()?,
                    preprocessing: r.u8()?,
                })
            }
            T_SERVER_HELLO => Message::ServerHello(ServerHello {
                version: r.u16()?,
                software: r.text()?,
                preprocessing: r.u8()?,
                max_prepare: r.u32()?,
                key_inferences: r.u32()?,
                public_json: r.bytes(MAX_PUBLIC_JSON)?.to_vec(),
                masks: r.bytes(MAX_MASKS)?.to_vec(),
            }),
            T_REJECT => Message::Reject(Reject {
                code: r.u16()?,
                reason: r.text()?,
            }),
            T_PREPARE => Message::Prepare { count: r.u32()? },
            T_INFER => Message::Infer { index: r.u32()? },
            T_BYE => Message::Bye,
            T_READY => Message::Ready { count: r.u32()? },
            t => return Err(RuntimeError::peer(format!("unknown message type {t}"))),
        };
        if !r.b.is_empty() {
            return Err(RuntimeError::peer(format!(
                "{}: {} trailing bytes",
                r.what,
                r.b.len()
            )));
        }
        Ok(m)
    }

    /// Sends the frame and flushes.
    pub fn send<C: Channel + ?Sized>(&self, ch: &mut C) -> Result<()> {
        ch.send(&self.encode())?;
        ch.flush()?;
        Ok(())
    }

    /// Receives one frame sent by `from`, checking the message kind against the
    /// direction and the length against its limit before reading the payload.
    pub fn recv<C: Channel + ?Sized>(ch: &mut C, from: Side) -> Result<Self> {
        let mut head = [0u8; 5];
        ch.recv(&mut head)?;
        let (tag, len) = check_header(head, from)?;
        let mut payload = vec![0u8; len];
        ch.recv(&mut payload)?;
        Self::decode(tag, &payload)
    }

    /// [`Self::recv`] on an asynchronous stream (the server reads the client's hello so,
    /// under one deadline with the TLS handshake, before it gives the client a session).
    pub async fn recv_async<R: AsyncRead + Unpin + ?Sized>(r: &mut R, from: Side) -> Result<Self> {
        async fn read<R: AsyncRead + Unpin + ?Sized>(r: &mut R, buf: &mut [u8]) -> Result<()> {
            match r.read_exact(buf).await {
                Ok(_) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Err(ChannelError::PeerClosed { wanted: buf.len() }.into())
                }
                Err(e) => Err(ChannelError::Io(e).into()),
            }
        }
        let mut head = [0u8; 5];
        read(r, &mut head).await?;
        let (tag, len) = check_header(head, from)?;
        let mut payload = vec![0u8; len];
        read(r, &mut payload).await?;
        Self::decode(tag, &payload)
    }

    /// Short name for errors and logs.
    pub fn name(&self) -> &'static str {
        tag_name(match self {
            Message::ClientHello(_) => T_CLIENT_HELLO,
            Message::ServerHello(_) => T_SERVER_HELLO,
            Message::Reject(_) => T_REJECT,
            Message::Prepare { .. } => T_PREPARE,
            Message::Infer { .. } => T_INFER,
            Message::Bye => T_BYE,
            Message::Ready { .. } => T_READY,
        })
    }
}

fn tag_name(tag: u8) -> &'static str {
    match tag {
        T_CLIENT_HELLO => "client hello",
        T_SERVER_HELLO => "server hello",
        T_REJECT => "reject",
        T_PREPARE => "prepare",
        T_INFER => "infer",
        T_BYE => "bye",
        T_READY => "ready",
        _ => "unknown message",
    }
}

struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(RuntimeError::peer(format!("{}: truncated", self.what)));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self, max: usize) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(RuntimeError::peer(format!(
                "{}: a field of {n} bytes exceeds the limit of {max}",
                self.what
            )));
        }
        self.take(n)
    }
    fn text(&mut self) -> Result<String> {
        let b = self.bytes(MAX_TEXT)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| RuntimeError::peer(format!("{}: text is not UTF-8", self.what)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all() -> Vec<Message> {
        vec![
            Message::ClientHello(ClientHello {
                version: PROTOCOL_VERSION,
                software: "0.1.0".into(),
                kappa: KAPPA,
                stat_sec: STAT_SEC,
                preprocessing: 1,
            }),
            Message::ServerHello(ServerHello {
                version: PROTOCOL_VERSION,
                software: "0.1.0".into(),
                preprocessing: 1,
                max_prepare: 8,
                key_inferences: 4096,
                public_json: b"{}".to_vec(),
                masks: vec![1, 2, 3],
            }),
            Message::Reject(Reject::new(Reject::BUSY, "busy")),
            Message::Prepare { count: 3 },
            Message::Infer { index: 2 },
            Message::Bye,
            Message::Ready { count: 3 },
        ]
    }

    fn sender(m: &Message) -> Side {
        match m {
            Message::ServerHello(_) | Message::Ready { .. } | Message::Reject(_) => Side::Server,
            _ => Side::Client,
        }
    }

    #[test]
    fn round_trip_and_every_truncation_fails() {
        for m in all() {
            let bytes = m.encode();
            let (a, b) = protocols::MemoryChannel::pair();
            let (mut a, mut b) = (a, b);
            a.send(&bytes).unwrap();
            a.flush().unwrap();
            assert_eq!(Message::recv(&mut b, sender(&m)).unwrap(), m);
            let payload = &bytes[5..];
            for cut in 0..payload.len() {
                assert!(
                    Message::decode(bytes[0], &payload[..cut]).is_err(),
                    "{} cut at {cut}",
                    m.name()
                );
            }
            let mut longer = payload.to_vec();
            longer.push(0);
            let e = Message::decode(bytes[0], &longer).unwrap_err();
            assert!(e.to_string().contains("trailing"), "{e}");
        }
    }

    #[test]
    fn bad_frames_are_clear_errors() {
        let e = Message::decode(99, &[]).unwrap_err();
        assert!(e.to_string().contains("unknown message type 99"), "{e}");
        // An oversized length is refused before allocation.
        let (mut a, mut b) = protocols::MemoryChannel::pair();
        let mut f = vec![T_PREPARE];
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        a.send(&f).unwrap();
        a.flush().unwrap();
        let e = Message::recv(&mut b, Side::Client).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        // A message kind the sender never sends is refused from its header alone (the
        // payload is never read, so nothing is allocated for it), whatever its length.
        for m in all() {
            let wrong = match sender(&m) {
                Side::Client => Side::Server,
                Side::Server if matches!(m, Message::Reject(_)) => continue,
                Side::Server => Side::Client,
            };
            for len in [0u32, 4, 50 << 20] {
                let (mut a, mut b) = protocols::MemoryChannel::pair();
                let mut f = vec![m.encode()[0]];
                f.extend_from_slice(&len.to_le_bytes());
                a.send(&f).unwrap();
                a.flush().unwrap();
                let e = Message::recv(&mut b, wrong).unwrap_err();
                assert!(e.to_string().contains("never sends"), "{}: {e}", m.name());
            }
        }
        // Each kind has its own limit: a reject may not be as large as a server hello.
        let (mut a, mut b) = protocols::MemoryChannel::pair();
        let mut f = vec![T_REJECT];
        f.extend_from_slice(&(4096u32).to_le_bytes());
        a.send(&f).unwrap();
        a.flush().unwrap();
        let e = Message::recv(&mut b, Side::Server).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        let mut hello = all()[0].encode();
        hello[5] = b'X';
        let e = Message::decode(hello[0], &hello[5..]).unwrap_err();
        assert!(e.to_string().contains("bad magic"), "{e}");
    }
}
