//! Measurement for the SNL private-inference system.
//!
//! Criterion benchmarks grouped by area (executors, garbling, OT, HE preprocessing,
//! end-to-end inference) and the `snl-bench` sweep that measures online latency against
//! kept-ReLU count and accuracy and draws Pareto fronts. Speed is measured here, never
//! asserted in tests.
//!
//! Benchmarks: `benches/protocols.rs` runs both parties of the two-party protocols (IKNP
//! OT extension, ReLU offline and online phases) in one process over a real loopback TCP
//! connection ([`net::loopback_pair`]); `benches/linear.rs` the linear layers (plaintext
//! and on shares); `benches/runtime.rs` end-to-end online inference at several kept-ReLU
//! counts. The single-core garbling kernels are benchmarked in `protocols/benches/gc.rs`.
//! `bash scripts/bench.sh [--quick]` runs them all.
//!
//! The `snl-bench` binary is a thin layer over [`sweep`] (private inference of real
//! models through the `pi-runtime` server and client over TCP, one [`results::Row`] per
//! model), [`plot`] (Pareto fronts as SVG) and [`cost`] (a fitted latency model).

pub mod cost;
mod error;
pub mod plot;
pub mod relay;
pub mod results;
pub mod sweep;

pub use error::Error;

pub mod net {
    //! Loopback TCP for the two-party benchmarks. The `protocols` crate never opens a
    //! socket; the benchmarks supply one, as `pi-runtime` does.

    use std::io::{self, Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;

    use protocols::ChannelError;
    use protocols::StreamChannel;
    use protocols::channel::Channel;

    /// A connected pair of channels over TCP on `127.0.0.1` (an ephemeral port), with
    /// Nagle's algorithm disabled on both ends: `(server end, client end)`.
    pub fn loopback_pair() -> io::Result<(StreamChannel<TcpStream>, StreamChannel<TcpStream>)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        server.set_nodelay(true)?;
        client.set_nodelay(true)?;
        Ok((StreamChannel::new(server), StreamChannel::new(client)))
    }

    /// [`loopback_pair`] whose writes go behind, as `pi-runtime`'s channel does: a
    /// thread per end writes what [`Channel::flush`] hands it, so each side may send
    /// while the other sends too (the runtime's offline phase needs it since session
    /// protocol 9).
    pub fn loopback_pair_behind() -> io::Result<(WriteBehind, WriteBehind)> {
        let (s, c) = loopback_pair()?;
        Ok((
            WriteBehind::new(s.into_inner())?,
            WriteBehind::new(c.into_inner())?,
        ))
    }

    /// A channel over a TCP stream whose writes a second thread performs.
    pub struct WriteBehind {
        read: TcpStream,
        tx: Option<mpsc::Sender<Vec<u8>>>,
        writer: Option<std::thread::JoinHandle<()>>,
        wbuf: Vec<u8>,
    }

    impl WriteBehind {
        /// Wraps `stream` (a clone of it goes to the writer thread).
        pub fn new(stream: TcpStream) -> io::Result<Self> {
            let mut w = stream.try_clone()?;
            let (tx, rx) = mpsc::channel::<Vec<u8>>();
            let writer = std::thread::spawn(move || {
                for buf in rx {
                    if w.write_all(&buf).is_err() {
                        return;
                    }
                }
            });
            Ok(WriteBehind {
                read: stream,
                tx: Some(tx),
                writer: Some(writer),
                wbuf: Vec::new(),
            })
        }
    }

    impl Channel for WriteBehind {
        fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
            self.wbuf.extend_from_slice(bytes);
            if self.wbuf.len() >= 1 << 20 {
                self.flush()?;
            }
            Ok(())
        }

        fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
            if !self.wbuf.is_empty() {
                return Err(ChannelError::Misuse("recv with unflushed sent data"));
            }
            self.read.read_exact(buf).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ChannelError::PeerClosed { wanted: buf.len() },
                _ => ChannelError::Io(e),
            })
        }

        fn flush(&mut self) -> Result<(), ChannelError> {
            if self.wbuf.is_empty() {
                return Ok(());
            }
            let buf = std::mem::take(&mut self.wbuf);
            match &self.tx {
                Some(tx) if tx.send(buf).is_ok() => Ok(()),
                _ => Err(ChannelError::Io(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the writer thread stopped",
                ))),
            }
        }
    }

    /// Lets the writer finish what is queued, then closes the stream.
    impl Drop for WriteBehind {
        fn drop(&mut self) {
            let _ = self.flush();
            self.tx = None;
            if let Some(w) = self.writer.take() {
                let _ = w.join();
            }
            let _ = self.read.shutdown(std::net::Shutdown::Both);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use protocols::block::Delta;
    use protocols::channel::{Channel, ChannelExt};
    use protocols::ot::{OtReceiver, OtSender};
    use protocols::prg::Prg;
    use protocols::{Block, CountingChannel};

    #[test]
    fn loopback_pair_carries_ot_extension() {
        let (mut s, mut c) = super::net::loopback_pair().unwrap();
        let delta = Delta::from_block(Block(0x1234_5678_9abc_def1));
        let choices: Vec<bool> = (0..1000).map(|i| i % 7 < 3).collect();
        let ch2 = choices.clone();
        let h = std::thread::spawn(move || {
            let mut cc = CountingChannel::new(&mut c);
            let mut r = OtReceiver::setup(&mut cc, &mut Prg::from_seed(Block(1))).unwrap();
            let got = r.receive_correlated(&mut cc, &ch2).unwrap();
            // Echo a few bytes back to exercise both directions.
            cc.send_u64s(&[7, 8]).unwrap();
            cc.flush().unwrap();
            (got, cc.stats())
        });
        let mut sd = OtSender::setup(&mut s, delta, &mut Prg::from_seed(Block(2))).unwrap();
        let zero = sd.send_correlated(&mut s, choices.len()).unwrap();
        assert_eq!(s.recv_u64s(2).unwrap(), vec![7, 8]);
        let (got, stats) = h.join().unwrap();
        for i in 0..choices.len() {
            assert_eq!(got[i], zero[i] ^ delta.block().select(choices[i]));
        }
        // One base-OT point, 16 bytes per OT (1000 rounded up to 1024), two u64s.
        assert_eq!(stats.bytes_sent, 32 + 16 * 1024 + 16);
    }
}
