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

/// Buffered bytes after which `send` writes through without waiting for `flush`.
const WRITE_THROUGH: usize = 1 << 20;

/// A [`Channel`] over an asynchronous stream, for protocol code running on a blocking
/// thread (`spawn_blocking` or a plain thread; never inside an async task). Every read and
/// write is bounded by the idle timeout and by the session deadline, so a silent or dead
/// peer cannot hold a session forever.
pub struct BlockingChannel {
    handle: Handle,
    stream: Box<dyn Stream>,
    wbuf: Vec<u8>,
    idle: Duration,
    deadline: Option<Instant>,
    phase_deadline: Option<Instant>,
}

impl BlockingChannel {
    /// Wraps `stream`; `handle` is the runtime that drives it.
    pub fn new(handle: Handle, stream: Box<dyn Stream>, idle: Duration) -> Self {
        BlockingChannel {
            handle,
            stream,
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

    fn write_out(&mut self) -> Result<(), ChannelError> {
        let limit = self.limit();
        let BlockingChannel {
            handle,
            stream,
            wbuf,
            ..
        } = self;
        let r = handle.block_on(async {
            tokio::time::timeout(limit, async {
                stream.write_all(wbuf).await?;
                stream.flush().await
            })
            .await
        });
        wbuf.clear();
        match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ChannelError::Io(e)),
            Err(_) => Err(ChannelError::Timeout),
        }
    }

    /// Sends close_notify (TLS) and shuts the write side down, best effort.
    pub fn shutdown(&mut self) {
        let limit = Duration::from_secs(2).min(self.idle);
        let stream = &mut self.stream;
        let _ = self
            .handle
            .block_on(async { tokio::time::timeout(limit, stream.shutdown()).await });
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
        let limit = self.limit();
        let stream = &mut self.stream;
        let wanted = buf.len();
        let r = self
            .handle
            .block_on(async { tokio::time::timeout(limit, stream.read_exact(buf)).await });
        match r {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(ChannelError::PeerClosed { wanted })
            }
            Ok(Err(e)) => Err(ChannelError::Io(e)),
            Err(_) => Err(ChannelError::Timeout),
        }
    }

    fn flush(&mut self) -> Result<(), ChannelError> {
        if self.wbuf.is_empty() {
            return Ok(());
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
