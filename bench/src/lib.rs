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

    use std::io;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use pi_runtime::net::{BlockingChannel, SERVER_WRITE_QUEUE_BYTES};
    use protocols::StreamChannel;

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

    /// A connected pair of `pi-runtime` channels over TCP on `127.0.0.1`, driven by `rt`
    /// (which must outlive them): `(server end, client end)`, writing behind as the
    /// binaries do (the runtime's offline phase needs it since session protocol 9; the
    /// server's queue bounded as `pi-server`'s). Reads time out after 10 minutes.
    pub fn loopback_pair_runtime(
        rt: &tokio::runtime::Runtime,
    ) -> io::Result<(BlockingChannel, BlockingChannel)> {
        let (server, client) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let c = tokio::net::TcpStream::connect(l.local_addr()?);
            let (c, s) = tokio::join!(c, l.accept());
            io::Result::Ok((s?.0, c?))
        })?;
        server.set_nodelay(true)?;
        client.set_nodelay(true)?;
        let idle = Duration::from_secs(600);
        Ok((
            BlockingChannel::with_write_queue(
                rt.handle().clone(),
                Box::new(server),
                idle,
                Some(SERVER_WRITE_QUEUE_BYTES),
            ),
            BlockingChannel::new(rt.handle().clone(), Box::new(client), idle),
        ))
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
