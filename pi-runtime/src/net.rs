//! Transport: tokio TCP, rustls TLS, and the bridge that lets the synchronous protocols
//! (see `protocols::channel`) run over an asynchronous stream on a blocking thread.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocols::ChannelError;
use protocols::channel::Channel;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::runtime::Handle;

use crate::error::{Result, RuntimeError};

/// A bidirectional byte stream: plain TCP or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Buffered bytes after which `send` hands them to the writer without waiting for
/// `flush`.
const WRITE_THROUGH: usize = 1 << 20;

/// How many bytes a server session's writer may hold that the peer has not yet taken
/// (reserved against the server's memory budget with each offline phase): enough for a
/// large layer's garbled tables, which then drain while the session reads the client's
/// next HE inputs and computes.
pub const SERVER_WRITE_QUEUE_BYTES: usize = 32 << 20;

/// What the writer task is asked to do.
enum WriterMsg {
    /// Bytes to write, and the queue room they took (given back once written).
    Data(Vec<u8>, u32),
    /// Write what is queued, send close_notify (TLS) and shut the write side down.
    Shutdown(std::sync::mpsc::Sender<()>),
}

/// Why the writer stopped: rebuilt into a [`ChannelError`] for every later call.
#[derive(Clone)]
enum WriterFailure {
    Timeout,
    Io(std::io::ErrorKind, String),
}

/// A reset or broken connection is the peer having closed it.
fn closed_by_peer(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        kind,
        BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof
    )
}

impl WriterFailure {
    fn error(&self) -> ChannelError {
        match self {
            WriterFailure::Timeout => ChannelError::Timeout,
            WriterFailure::Io(kind, _) if closed_by_peer(*kind) => {
                ChannelError::PeerClosed { wanted: 0 }
            }
            WriterFailure::Io(kind, msg) => ChannelError::Io(std::io::Error::new(
                *kind,
                format!("writing to the peer: {msg}"),
            )),
        }
    }
}

/// A [`Channel`] over an asynchronous stream, for protocol code running on a blocking
/// thread (`spawn_blocking` or a plain thread; never inside an async task). Every read is
/// bounded by the idle timeout and by the session deadline, so a silent or dead peer
/// cannot hold a session forever.
///
/// Writes never wait for the peer to read: [`Channel::flush`] (and a `send` past 1 MiB)
/// writes what the socket takes at once on the calling thread and hands the rest to a
/// writer task on the runtime, so the protocol thread can read and compute while a large
/// message crosses the link. The session protocol relies on it (version 9: the client
/// sends layer `i + 1`'s HE inputs while the server sends layer `i`'s garbled tables).
/// Small messages thus cost no hand-over to another thread; while the writer still holds
/// bytes, later ones queue behind them. The client's queue is unbounded: it never blocks
/// on a write, so it always reaches the read the server's writes wait for, and neither
/// side can stall the other. A server bounds its queue ([`SERVER_WRITE_QUEUE_BYTES`]) and
/// waits for room, within the same limits as a read. Each write of the writer is bounded
/// by the idle timeout; a failed write is reported by the next call.
/// [`BlockingChannel::shutdown`] and dropping the channel wait (within the idle timeout)
/// for the writer to finish what is queued.
pub struct BlockingChannel {
    handle: Handle,
    reader: tokio::io::ReadHalf<Box<dyn Stream>>,
    /// The write side, shared with the writer task (which holds it while it writes).
    write: Arc<tokio::sync::Mutex<tokio::io::WriteHalf<Box<dyn Stream>>>>,
    writer: Option<tokio::sync::mpsc::UnboundedSender<WriterMsg>>,
    /// Messages handed to the writer and not yet written.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    /// Room left in a bounded write queue, in bytes (`None`: unbounded).
    room: Option<(Arc<tokio::sync::Semaphore>, usize)>,
    failed: Arc<std::sync::Mutex<Option<WriterFailure>>>,
    wbuf: Vec<u8>,
    idle: Duration,
    deadline: Option<Instant>,
    phase_deadline: Option<Instant>,
}

/// What the writer task shares with its channel.
struct WriterShared {
    write: Arc<tokio::sync::Mutex<tokio::io::WriteHalf<Box<dyn Stream>>>>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    room: Option<Arc<tokio::sync::Semaphore>>,
    failed: Arc<std::sync::Mutex<Option<WriterFailure>>>,
}

/// Writes what it is given in order, flushing whenever its queue runs empty.
async fn write_behind(
    sh: WriterShared,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<WriterMsg>,
    idle: Duration,
) {
    use std::sync::atomic::Ordering;
    let fail = |f: WriterFailure| {
        *sh.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    };
    while let Some(msg) = rx.recv().await {
        match msg {
            WriterMsg::Data(buf, taken) => {
                let r = {
                    let mut w = sh.write.lock().await;
                    tokio::time::timeout(idle, async {
                        w.write_all(&buf).await?;
                        if rx.is_empty() {
                            w.flush().await?;
                        }
                        Ok::<(), std::io::Error>(())
                    })
                    .await
                };
                if let Some(room) = &sh.room {
                    room.add_permits(taken as usize);
                }
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return fail(WriterFailure::Io(e.kind(), e.to_string())),
                    Err(_) => return fail(WriterFailure::Timeout),
                }
                sh.queued.fetch_sub(1, Ordering::AcqRel);
            }
            WriterMsg::Shutdown(done) => {
                let limit = Duration::from_secs(2).min(idle);
                let mut w = sh.write.lock().await;
                let _ = tokio::time::timeout(limit, w.shutdown()).await;
                let _ = done.send(());
                return;
            }
        }
    }
}

impl BlockingChannel {
    /// Wraps `stream` with an unbounded write queue (the client's side); `handle` is the
    /// runtime that drives it.
    pub fn new(handle: Handle, stream: Box<dyn Stream>, idle: Duration) -> Self {
        Self::with_write_queue(handle, stream, idle, None)
    }

    /// [`Self::new`] whose writer holds at most `limit` bytes the peer has not taken
    /// (`None`: unbounded); a write that finds no room waits for it.
    pub fn with_write_queue(
        handle: Handle,
        stream: Box<dyn Stream>,
        idle: Duration,
        limit: Option<usize>,
    ) -> Self {
        let (reader, w) = tokio::io::split(stream);
        let write = Arc::new(tokio::sync::Mutex::new(w));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let room = limit.map(|l| {
            let l = l.clamp(1, u32::MAX as usize);
            (Arc::new(tokio::sync::Semaphore::new(l)), l)
        });
        let failed = Arc::new(std::sync::Mutex::new(None));
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shared = WriterShared {
            write: write.clone(),
            queued: queued.clone(),
            room: room.as_ref().map(|(r, _)| r.clone()),
            failed: failed.clone(),
        };
        handle.spawn(write_behind(shared, rx, idle));
        BlockingChannel {
            handle,
            reader,
            write,
            writer: Some(tx),
            queued,
            room,
            failed,
            wbuf: Vec::with_capacity(1 << 16),
            idle,
            deadline: None,
            phase_deadline: None,
        }
    }

    /// Ends every operation after `deadline`.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn limit(&self) -> Duration {
        let now = Instant::now();
        [self.deadline, self.phase_deadline]
            .into_iter()
            .flatten()
            .fold(self.idle, |l, d| l.min(d.saturating_duration_since(now)))
    }

    fn check_writer(&self) -> Result<(), ChannelError> {
        match &*self.failed.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(f) => Err(f.error()),
            None => Ok(()),
        }
    }

    /// Writes what the stream takes without waiting, when the writer holds nothing:
    /// returns how many bytes of `buf` were written and whether the stream still has to
    /// be flushed (`None`: the writer is busy, nothing was written).
    fn write_now(&mut self, buf: &[u8]) -> Result<Option<(usize, bool)>, ChannelError> {
        use std::pin::Pin;
        use std::sync::atomic::Ordering;
        use std::task::Poll;
        use tokio::io::AsyncWrite;
        if self.queued.load(Ordering::Acquire) != 0 {
            return Ok(None);
        }
        let Ok(mut w) = self.write.try_lock() else {
            return Ok(None);
        };
        let mut off = 0;
        // Polled once each on this thread (inside the runtime's context): `Pending` means
        // the socket is full, and the rest goes to the writer.
        let r = self.handle.block_on(std::future::poll_fn(|cx| {
            while off < buf.len() {
                match Pin::new(&mut *w).poll_write(cx, &buf[off..]) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(std::io::Error::from(
                            std::io::ErrorKind::WriteZero,
                        )));
                    }
                    Poll::Ready(Ok(n)) => off += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Ready(Ok(true)),
                }
            }
            match Pin::new(&mut *w).poll_flush(cx) {
                Poll::Ready(Ok(())) => Poll::Ready(Ok(false)),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Ready(Ok(true)),
            }
        }));
        match r {
            Ok(unflushed) => Ok(Some((off, unflushed))),
            Err(e) => {
                let f = WriterFailure::Io(e.kind(), e.to_string());
                let err = f.error();
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
                Err(err)
            }
        }
    }

    /// Writes the buffered bytes: what the socket takes now on this thread, the rest
    /// through the writer, waiting for room in a bounded queue.
    fn write_out(&mut self) -> Result<(), ChannelError> {
        self.check_writer()?;
        let mut buf = std::mem::replace(&mut self.wbuf, Vec::with_capacity(1 << 16));
        match self.write_now(&buf)? {
            Some((n, false)) if n == buf.len() => return Ok(()),
            // The rest, or nothing but a flush, goes to the writer.
            Some((n, _)) => {
                buf.drain(..n);
            }
            None => {}
        }
        let mut taken = 0u32;
        if let Some((room, cap)) = &self.room {
            // A buffer larger than the whole queue takes all of it.
            taken = buf.len().min(*cap) as u32;
            let limit = self.limit();
            let room = room.clone();
            match self
                .handle
                .block_on(async { tokio::time::timeout(limit, room.acquire_many(taken)).await })
            {
                Ok(Ok(permit)) => permit.forget(),
                Ok(Err(_)) => return Err(ChannelError::Misuse("write queue closed")),
                Err(_) => return Err(ChannelError::Timeout),
            }
        }
        self.queued
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let sent = self
            .writer
            .as_ref()
            .is_some_and(|tx| tx.send(WriterMsg::Data(buf, taken)).is_ok());
        if sent {
            Ok(())
        } else {
            self.check_writer()?;
            Err(ChannelError::Misuse("send after shutdown"))
        }
    }

    /// Waits (within the idle timeout) for the writer to write what is queued, then sends
    /// close_notify (TLS) and shuts the write side down; best effort. Dropping the
    /// channel does the same. It only waits on a plain channel (no `block_on`), so a
    /// channel dropped inside an async task does not panic (it blocks that worker until
    /// the writer is done, at most the idle timeout).
    pub fn shutdown(&mut self) {
        let Some(tx) = self.writer.take() else {
            return;
        };
        // What `send` buffered goes behind the rest, regardless of a bounded queue's room.
        if !self.wbuf.is_empty() {
            let buf = std::mem::take(&mut self.wbuf);
            self.queued
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let _ = tx.send(WriterMsg::Data(buf, 0));
        }
        let (done, wait) = std::sync::mpsc::channel();
        if tx.send(WriterMsg::Shutdown(done)).is_ok() {
            let _ = wait.recv_timeout(self.idle);
        }
    }
}

/// Flushes and waits for the writer (as [`BlockingChannel::shutdown`]), so that what was
/// sent reaches the peer even when the runtime is dropped next.
impl Drop for BlockingChannel {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Channel for BlockingChannel {
    fn send(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.wbuf.extend_from_slice(bytes);
        if self.wbuf.len() >= WRITE_THROUGH {
            self.write_out()?;
        }
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> Result<(), ChannelError> {
        if !self.wbuf.is_empty() {
            return Err(ChannelError::Misuse("recv with unflushed sent data"));
        }
        self.check_writer()?;
        let limit = self.limit();
        let reader = &mut self.reader;
        let wanted = buf.len();
        let r = self
            .handle
            .block_on(async { tokio::time::timeout(limit, reader.read_exact(buf)).await });
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if closed_by_peer(e.kind()) => Err(ChannelError::PeerClosed { wanted }),
            Ok(Err(e)) => Err(ChannelError::Io(e)),
            Err(_) => Err(ChannelError::Timeout),
        }
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        if self.wbuf.is_empty() {
            return self.check_writer();
        }
        self.write_out()
    }
}

/// A channel whose operations can be bounded by the deadline of the current protocol
/// phase (the session code sets it at the start of each offline and online phase).
pub trait PhaseDeadline {
    /// Ends every operation after `deadline` (`None`: no phase limit).
    fn set_phase_deadline(&mut self, deadline: Option<Instant>);
}

impl PhaseDeadline for BlockingChannel {
    fn set_phase_deadline(&mut self, deadline: Option<Instant>) {
        self.phase_deadline = deadline;
    }
}

/// In-memory channels (tests) have no phase limit.
impl PhaseDeadline for protocols::MemoryChannel {
    fn set_phase_deadline(&mut self, _deadline: Option<Instant>) {}
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            RuntimeError::config(format!(
                "cannot read certificates from {}: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(RuntimeError::config(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The server's TLS configuration from a PEM certificate chain and a PEM private key.
pub fn server_tls(cert_pem: &Path, key_pem: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = read_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| {
        RuntimeError::config(format!(
            "cannot read a private key from {}: {e}",
            key_pem.display()
        ))
    })?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RuntimeError::config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| RuntimeError::config(format!("TLS certificate and key do not fit: {e}")))?;
    Ok(Arc::new(cfg))
}

/// How the client authenticates the server.
#[derive(Clone, Debug)]
pub enum ClientTls {
    /// Trust the CA certificate(s) in this PEM file (e.g. the server's self-signed one).
    Ca(std::path::PathBuf),
    /// Accept exactly the server certificate with this SHA-256 (of its DER encoding).
    Pin([u8; 32]),
}

/// Parses a certificate pin: 64 hex digits, optionally with `:` separators.
pub fn parse_pin(s: &str) -> Result<[u8; 32]> {
    let clean: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&clean)
        .map_err(|_| RuntimeError::config(format!("--tls-pin {s:?} is not hexadecimal")))?;
    bytes.try_into().map_err(|_| {
        RuntimeError::config(format!("--tls-pin {s:?} must be a SHA-256: 64 hex digits"))
    })
}

/// SHA-256 of a certificate's DER encoding, in hex (what `--tls-pin` takes).
pub fn cert_pin(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server certificate SHA-256 {} does not match the pinned {}",
                hex::encode(got),
                hex::encode(self.pin)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client's TLS configuration.
pub fn client_tls(how: &ClientTls) -> Result<Arc<rustls::ClientConfig>> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| RuntimeError::config(format!("TLS: {e}")))?;
    let cfg = match how {
        ClientTls::Ca(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(path)? {
                roots.add(c).map_err(|e| {
                    RuntimeError::config(format!(
                        "{}: unusable CA certificate: {e}",
                        path.display()
                    ))
                })?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        ClientTls::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// A self-signed certificate and its key, PEM-encoded, with the certificate's pin.
pub struct GeneratedCert {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key (PKCS#8), PEM.
    pub key_pem: String,
    /// SHA-256 of the certificate's DER encoding, hex.
    pub pin: String,
}

/// Makes a self-signed certificate for the given DNS names and IP addresses.
pub fn generate_cert(sans: &[String]) -> Result<GeneratedCert> {
    if sans.is_empty() {
        return Err(RuntimeError::config(
            "give at least one --san (a DNS name or IP address clients will connect to)",
        ));
    }
    let ck = rcgen::generate_simple_self_signed(sans.to_vec())
        .map_err(|e| RuntimeError::config(format!("cannot generate a certificate: {e}")))?;
    Ok(GeneratedCert {
        cert_pem: ck.cert.pem(),
        key_pem: ck.signing_key.serialize_pem(),
        pin: cert_pin(ck.cert.der()),
    })
}

/// The TLS server name for a `HOST:PORT` or `HOST` string (DNS name or IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        RuntimeError::config(format!("{host:?} is not a valid DNS name or IP address"))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocols::ChannelError;
    use protocols::channel::Channel;

    use super::BlockingChannel;

    /// A TCP pair on loopback as `(server end with a write queue of `limit` bytes, client
    /// end)`, driven by `rt`.
    fn pair(rt: &tokio::runtime::Runtime, limit: usize) -> (BlockingChannel, BlockingChannel) {
        let h = rt.handle().clone();
        let (a, b) = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let c = tokio::net::TcpStream::connect(l.local_addr().unwrap());
            let (c, s) = tokio::join!(c, l.accept());
            (s.unwrap().0, c.unwrap())
        });
        let idle = Duration::from_secs(20);
        (
            BlockingChannel::with_write_queue(h.clone(), Box::new(a), idle, Some(limit)),
            BlockingChannel::new(h, Box::new(b), idle),
        )
    }

    fn pattern(n: usize, k: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ k).collect()
    }

    /// Both ends send far more than the sockets hold before either reads: with plain
    /// blocking writes this deadlocks; here the client's writer queues and the server's
    /// waits for room in its small queue while the client reads.
    #[test]
    fn both_ends_may_send_at_once() {
        let rt = crate::client::runtime(Some(2)).unwrap();
        let (mut s, mut c) = pair(&rt, 64 << 10);
        let n = 24 << 20;
        let server = std::thread::spawn(move || {
            s.send(&pattern(n, 1)).unwrap();
            s.flush().unwrap();
            let mut got = vec![0u8; n];
            s.recv(&mut got).unwrap();
            assert!(got == pattern(n, 2), "the server read other bytes");
            s
        });
        for chunk in pattern(n, 2).chunks(1 << 16) {
            c.send(chunk).unwrap();
        }
        c.flush().unwrap();
        let mut got = vec![0u8; n];
        c.recv(&mut got).unwrap();
        assert!(got == pattern(n, 1), "the client read other bytes");
        drop(server.join().unwrap());
    }

    /// What was flushed before the channel and its runtime are dropped still arrives.
    #[test]
    fn a_dropped_channel_delivers_what_it_sent() {
        let rt = crate::client::runtime(Some(1)).unwrap();
        let (mut s, mut c) = pair(&rt, 1 << 20);
        let n = 8 << 20;
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut got = vec![0u8; n];
            s.recv(&mut got).unwrap();
            assert!(got == pattern(n, 3));
            let e = s.recv(&mut [0u8; 1]).unwrap_err();
            assert!(matches!(e, ChannelError::PeerClosed { .. }), "{e}");
        });
        c.send(&pattern(n, 3)).unwrap();
        c.flush().unwrap();
        drop(c);
        reader.join().unwrap();
    }

    /// Dropping a channel inside async code neither panics nor loses what `send`
    /// buffered without a flush.
    #[test]
    fn a_channel_dropped_in_async_code_still_delivers() {
        let rt = crate::client::runtime(Some(2)).unwrap();
        let (mut s, mut c) = pair(&rt, 1 << 20);
        c.send(b"bye").unwrap();
        rt.block_on(async move { drop(c) });
        let mut got = [0u8; 3];
        s.recv(&mut got).unwrap();
        assert_eq!(&got, b"bye");
    }

    /// A write that fails after the peer has gone is reported by a later call, as the
    /// peer having closed the connection.
    #[test]
    fn a_failed_write_is_reported_later() {
        let rt = crate::client::runtime(Some(1)).unwrap();
        let (s, mut c) = pair(&rt, 1 << 20);
        drop(s);
        let r = (0..200).find_map(|_| {
            std::thread::sleep(Duration::from_millis(5));
            c.send(&[7u8; 1 << 16]).and_then(|()| c.flush()).err()
        });
        let e = r.expect("writes to a closed peer kept succeeding");
        assert!(matches!(e, ChannelError::PeerClosed { .. }), "{e}");
        assert!(c.recv(&mut [0u8; 4]).is_err());
    }
}
