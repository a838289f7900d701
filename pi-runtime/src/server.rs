//! The server: accepts connections (tokio), runs the TLS handshake (rustls), and serves
//! each session on a blocking thread, isolated from the others.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocols::CountingChannel;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::error::{Result, RuntimeError};
use crate::net::{BlockingChannel, Stream};
use crate::session::{ServedModel, ServerOptions, ServerSessionReport, serve_session_from};
use crate::wire::{Message, Reject, Side, VERSION};

/// Everything a server needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// The model served.
    pub model: Arc<ServedModel>,
    /// Session options.
    pub options: ServerOptions,
    /// TLS configuration; `None` serves plain TCP (`--insecure-plaintext`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Sessions served at once; further clients are refused with "busy". A connection
    /// takes a session slot only once it has sent a valid hello.
    pub max_sessions: usize,
    /// Connections held at once, in every stage (TLS handshake, hello, session); the
    /// server closes further ones as soon as it accepts them.
    pub max_connections: usize,
    /// Connections held at once from one IP address; further ones are closed at once.
    pub max_connections_per_ip: usize,
    /// Longest wait for any single read or write of a session.
    pub idle_timeout: Duration,
    /// Longest the TLS handshake and the client's hello may take together.
    pub handshake_timeout: Duration,
    /// Longest a whole session may take.
    pub session_timeout: Duration,
    /// Append one JSON record per session to this file.
    pub metrics_json: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults: 16 sessions, 256 connections (8 per IP address), 60 s idle, 10 s for the
    /// handshake and hello, 1 h per session.
    pub fn new(model: Arc<ServedModel>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        ServerConfig {
            model,
            options: ServerOptions::default(),
            tls,
            max_sessions: 16,
            max_connections: 256,
            max_connections_per_ip: 8,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(3600),
            metrics_json: None,
        }
    }
}

/// Connections held, in total and per source address.
#[derive(Debug)]
struct Connections {
    max_total: usize,
    max_per_ip: usize,
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; releases its place when dropped.
struct ConnectionGuard {
    conns: Arc<Mutex<Connections>>,
    ip: IpAddr,
}

impl Connections {
    fn new(max_total: usize, max_per_ip: usize) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Connections {
            max_total: max_total.max(1),
            max_per_ip: max_per_ip.max(1),
            total: 0,
            per_ip: HashMap::new(),
        }))
    }

    /// Admits a connection from `ip`, or says which limit it hits.
    fn admit(conns: &Arc<Mutex<Self>>, ip: IpAddr) -> Result<ConnectionGuard, String> {
        let mut c = conns.lock().unwrap_or_else(|p| p.into_inner());
        if c.total >= c.max_total {
            return Err(format!("{} connections are open (the limit)", c.total));
        }
        let n = c.per_ip.get(&ip).copied().unwrap_or(0);
        if n >= c.max_per_ip {
            return Err(format!(
                "{n} connections from {ip} are open (the limit per address)"
            ));
        }
        c.total += 1;
        c.per_ip.insert(ip, n + 1);
        Ok(ConnectionGuard {
            conns: conns.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut c = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// One session's metrics record (`--metrics-json`, one JSON object per line).
#[derive(Serialize)]
struct SessionRecord<'a> {
    record: &'static str,
    software: &'static str,
    peer: String,
    tls: bool,
    insecure: bool,
    model_public_sha256: &'a str,
    ok: bool,
    error: Option<String>,
    seconds: f64,
    bytes_sent: u64,
    bytes_received: u64,
    #[serde(flatten)]
    report: &'a ServerSessionReport,
}

/// Serves until `shutdown` completes. Each connection gets its own task, which runs the
/// TLS handshake and reads the client's hello under one deadline; only then does the
/// connection take a session slot, and the session runs on a blocking thread, so a slow
/// or dead client holds only its own thread, and its reads and writes time out.
pub async fn run(
    listener: TcpListener,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
    let conns = Connections::new(cfg.max_connections, cfg.max_connections_per_ip);
    let metrics_lock = Arc::new(Mutex::new(()));
    let cfg = Arc::new(cfg);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("shutting down");
                return Ok(());
            }
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let guard = match Connections::admit(&conns, peer.ip()) {
            Ok(g) => g,
            Err(why) => {
                tracing::warn!(%peer, "connection closed: {why}");
                drop(tcp);
                continue;
            }
        };
        let cfg = cfg.clone();
        let slots = slots.clone();
        let metrics_lock = metrics_lock.clone();
        tokio::spawn(async move {
            let _guard = guard;
            // The TLS handshake and the hello together, under one deadline: a client
            // that dawdles or dribbles is closed without ever holding a session slot.
            let opening = tokio::time::timeout(cfg.handshake_timeout, async {
                let mut stream = handshake(&cfg, tcp).await?;
                let first = Message::recv_async(&mut stream, Side::Client).await;
                Ok::<_, RuntimeError>((stream, first))
            })
            .await;
            let (mut stream, first) = match opening {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "connection failed before the session");
                    return;
                }
                Err(_) => {
                    tracing::warn!(
                        %peer,
                        limit_s = cfg.handshake_timeout.as_secs_f64(),
                        "connection closed: no TLS handshake and hello within the limit"
                    );
                    return;
                }
            };
            // A valid hello takes a session slot; anything else is answered (a reject
            // naming the problem) and recorded without one.
            let permit = match &first {
                Ok(Message::ClientHello(_)) => match slots.try_acquire_owned() {
                    Ok(p) => Some(p),
                    Err(_) => {
                        tracing::warn!(%peer, "refused: the server is at its session limit");
                        let reject = Message::Reject(Reject::new(
                            Reject::BUSY,
                            format!(
                                "busy: the server is at its session limit ({}); try again later",
                                cfg.max_sessions
                            ),
                        ));
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            stream.write_all(&reject.encode()).await?;
                            stream.shutdown().await
                        })
                        .await;
                        return;
                    }
                },
                _ => None,
            };
            let handle = tokio::runtime::Handle::current();
            let res = tokio::task::spawn_blocking(move || {
                let mut ch = BlockingChannel::with_write_queue(
                    handle,
                    stream,
                    cfg.idle_timeout,
                    Some(crate::net::SERVER_WRITE_QUEUE_BYTES),
                );
                ch.set_deadline(Some(Instant::now() + cfg.session_timeout));
                session(&cfg, peer, ch, first, &metrics_lock);
                drop(permit);
            })
            .await;
            if let Err(e) = res {
                tracing::error!(%peer, error = %e, "session thread failed");
            }
        });
    }
}

async fn handshake(cfg: &ServerConfig, tcp: TcpStream) -> Result<Box<dyn Stream>> {
    tcp.set_nodelay(true)?;
    match &cfg.tls {
        None => Ok(Box::new(tcp)),
        Some(tls) => {
            let acceptor = TlsAcceptor::from(tls.clone());
            Ok(Box::new(acceptor.accept(tcp).await?))
        }
    }
}

fn session(
    cfg: &ServerConfig,
    peer: SocketAddr,
    ch: BlockingChannel,
    first: Result<Message>,
    lock: &Mutex<()>,
) {
    let start = Instant::now();
    let mut ch = CountingChannel::new(ch);
    let mut report = ServerSessionReport::default();
    tracing::info!(%peer, "session started");
    let res = serve_session_from(&mut ch, first, &cfg.model, &cfg.options, &mut report);
    ch.inner_mut().shutdown();
    let stats = ch.stats();
    let insecure = report.preprocessing.is_none_or(|m| !m.is_secure());
    match &res {
        Ok(()) => tracing::info!(
            %peer,
            inferences = report.online.len(),
            seconds = start.elapsed().as_secs_f64(),
            bytes_sent = stats.bytes_sent,
            bytes_received = stats.bytes_received,
            insecure,
            "session done"
        ),
        Err(e) => tracing::warn!(
            %peer,
            fault = ?e.fault(),
            error = %e,
            inferences = report.online.len(),
            "session failed"
        ),
    }
    if let Some(path) = &cfg.metrics_json {
        let rec = SessionRecord {
            record: "pi-server-session",
            software: VERSION,
            peer: peer.to_string(),
            tls: cfg.tls.is_some(),
            insecure,
            model_public_sha256: &cfg.model.public_hash,
            ok: res.is_ok(),
            error: res.as_ref().err().map(|e| e.to_string()),
            seconds: start.elapsed().as_secs_f64(),
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
            report: &report,
        };
        if let Err(e) = append_json(path, &rec, lock) {
            tracing::error!(path = %path.display(), error = %e, "cannot write metrics");
        }
    }
}

fn append_json<T: Serialize>(path: &std::path::Path, rec: &T, lock: &Mutex<()>) -> Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(rec).map_err(|e| RuntimeError::config(e.to_string()))?;
    line.push(b'\n');
    let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&line)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn connections_are_capped_in_total_and_per_address_and_released_on_drop() {
        let conns = Connections::new(3, 2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let a1 = Connections::admit(&conns, a).unwrap();
        let a2 = Connections::admit(&conns, a).unwrap();
        let e = Connections::admit(&conns, a).err().unwrap();
        assert!(e.contains("per address"), "{e}");
        let b1 = Connections::admit(&conns, b).unwrap();
        let e = Connections::admit(&conns, b).err().unwrap();
        assert!(e.contains("3 connections are open"), "{e}");
        drop(a1);
        let b2 = Connections::admit(&conns, b).unwrap();
        drop((a2, b1, b2));
        let c = conns.lock().unwrap();
        assert_eq!((c.total, c.per_ip.len()), (0, 0));
    }
}
