//! `delay-relay`: a TCP relay that adds round-trip time (each direction delayed), for
//! latency measurements on kernels without `netem`.
//!
//! ```text
//! delay-relay --listen 127.0.0.1:7071 --upstream 127.0.0.1:7070 --delay-ms 5   # +10 ms RTT
//! pi-client --connect 127.0.0.1:7071 ...
//! ```

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// Relays TCP connections from --listen to --upstream, releasing every chunk --delay-ms
/// after it was read, in both directions: the round-trip time grows by twice the delay.
#[derive(Parser, Debug)]
#[command(name = "delay-relay", version)]
struct Cli {
    /// Address to accept clients on.
    #[arg(long)]
    listen: String,
    /// The server to forward to (an IP address and port).
    #[arg(long)]
    upstream: std::net::SocketAddr,
    /// One-way delay added to each direction, in milliseconds (RTT grows by twice this).
    #[arg(long)]
    delay_ms: f64,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.delay_ms.is_finite() && (0.0..=60_000.0).contains(&cli.delay_ms),
        "--delay-ms must be between 0 and 60000"
    );
    let l = std::net::TcpListener::bind(&cli.listen)
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    println!(
        "relaying {} -> {} with {} ms each way",
        l.local_addr()?,
        cli.upstream,
        cli.delay_ms
    );
    bench::relay::run(l, cli.upstream, Duration::from_secs_f64(cli.delay_ms / 1e3))?;
    Ok(())
}
