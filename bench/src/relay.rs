//! A delaying TCP relay: adds round-trip time between a client and a server where the
//! kernel has no `netem`. Every chunk read on one side is written to the other side
//! `delay` after it was read, in order, in both directions; the round trip therefore
//! grows by `2 × delay` and bandwidth is not limited. Run it in the client's network
//! namespace (or on the client's host) and point the client at it.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Relays connections accepted on `listener` to `upstream`, each direction delayed by
/// `delay`, until the listener fails.
pub async fn run(
    listener: TcpListener,
    upstream: SocketAddr,
    delay: Duration,
) -> std::io::Result<()> {
    loop {
        let (down, peer) = listener.accept().await?;
        tokio::spawn(async move {
            match TcpStream::connect(upstream).await {
                Ok(up) => {
                    if let Err(e) = relay_pair(down, up, delay).await {
                        eprintln!("relay {peer} -> {upstream}: {e}");
                    }
                }
                Err(e) => eprintln!("relay {peer}: cannot reach {upstream}: {e}"),
            }
        });
    }
}

async fn relay_pair(a: TcpStream, b: TcpStream, delay: Duration) -> std::io::Result<()> {
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    let (ar, aw) = a.into_split();
    let (br, bw) = b.into_split();
    let one = tokio::spawn(direction(ar, bw, delay));
    let two = tokio::spawn(direction(br, aw, delay));
    let (x, y) = tokio::join!(one, two);
    x.map_err(std::io::Error::other)??;
    y.map_err(std::io::Error::other)??;
    Ok(())
}

/// Copies `r` to `w`, releasing each chunk `delay` after it was read.
async fn direction(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at + delay).await;
            w.write_all(&chunk).await?;
        }
        w.shutdown().await
    });
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    writer.await.map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The relay delays each direction (a functional check: the round trip through it
    /// cannot be shorter than twice the delay) and passes every byte in order.
    #[test]
    fn relay_adds_round_trip_time_and_keeps_bytes() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let echo_addr = echo.local_addr().unwrap();
            tokio::spawn(async move {
                let (mut s, _) = echo.accept().await.unwrap();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = s.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    s.write_all(&buf[..n]).await.unwrap();
                }
            });
            let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let relay_addr = relay.local_addr().unwrap();
            let delay = Duration::from_millis(20);
            tokio::spawn(run(relay, echo_addr, delay));
            let mut c = TcpStream::connect(relay_addr).await.unwrap();
            c.set_nodelay(true).unwrap();
            let msg: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let t = std::time::Instant::now();
            c.write_all(&msg).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            c.read_exact(&mut back).await.unwrap();
            assert!(t.elapsed() >= 2 * delay, "round trip {:?}", t.elapsed());
            assert_eq!(back, msg);
        });
    }
}
