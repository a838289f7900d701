//! The server: accepts connections (tokio), runs the TLS handshake (rustls), and serves
//! each session on a blocking thread, isolated from the others.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocols::CountingChannel;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::error::{Result, RuntimeError};
use crate::net::{BlockingChannel, Stream};
use crate::session::{ServedModel, ServerOptions, ServerSessionReport, serve_session};
use crate::wire::{Message, Reject};

/// Everything a server needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// The model served.
    pub model: Arc<ServedModel>,
    /// Session options.
    pub options: ServerOptions,
    /// TLS configuration; `None` serves plain TCP (`--insecure-plaintext`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Sessions served at once; further clients are refused with "busy".
    pub max_sessions: usize,
    /// Longest wait for any single read or write of a session.
    pub idle_timeout: Duration,
    /// Longest a TLS handshake and hello may take.
    pub handshake_timeout: Duration,
    /// Longest a whole session may take.
    pub session_timeout: Duration,
    /// Append one JSON record per session to this file.
    pub metrics_json: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults: 16 sessions, 60 s idle, 10 s handshake, 1 h per session.
    pub fn new(model: Arc<ServedModel>, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        ServerConfig {
            model,
            options: ServerOptions::default(),
            tls,
            max_sessions: 16,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            session_timeout: Duration::from_secs(3600),
            metrics_json: None,
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

/// Serves until `shutdown` completes. Each connection gets its own task; the session runs
/// on a blocking thread, so a slow or dead client holds only its own thread, and its
/// reads and writes time out.
pub async fn run(
    listener: TcpListener,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let slots = Arc::new(Semaphore::new(cfg.max_sessions.max(1)));
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
        let cfg = cfg.clone();
        let slots = slots.clone();
        let metrics_lock = metrics_lock.clone();
        tokio::spawn(async move {
            let permit = slots.try_acquire_owned().ok();
            let stream = match handshake(&cfg, tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "connection failed before the session");
                    return;
                }
            };
            let handle = tokio::runtime::Handle::current();
            let res = tokio::task::spawn_blocking(move || {
                let mut ch = BlockingChannel::new(handle, stream, cfg.idle_timeout);
                if permit.is_none() {
                    tracing::warn!(%peer, "refused: the server is at its session limit");
                    let _ = Message::Reject(Reject::new(
                        Reject::BUSY,
                        format!(
                            "the server is busy ({} sessions); try again later",
                            cfg.max_sessions
                        ),
                    ))
                    .send(&mut ch);
                    ch.shutdown();
                    return;
                }
                ch.set_deadline(Some(Instant::now() + cfg.session_timeout));
                session(&cfg, peer, ch, &metrics_lock);
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
            match tokio::time::timeout(cfg.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => Ok(Box::new(s)),
                Ok(Err(e)) => Err(RuntimeError::Io(e)),
                Err(_) => Err(RuntimeError::Timeout("TLS handshake".into())),
            }
        }
    }
}

fn session(cfg: &ServerConfig, peer: SocketAddr, ch: BlockingChannel, lock: &Mutex<()>) {
    let start = Instant::now();
    let mut ch = CountingChannel::new(ch);
    let mut report = ServerSessionReport::default();
    tracing::info!(%peer, "session started");
    let res = serve_session(&mut ch, &cfg.model, &cfg.options, &mut report);
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
            software: crate::VERSION,
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
