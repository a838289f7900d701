//! The client: connects over TCP (tokio) and TLS (rustls), then runs private inferences
//! on a blocking thread and reports predictions, accuracy and latency.

use std::path::Path;
use std::time::Duration;

use models::data::{Dataset, DatasetKind, Split};
use models::tensor::argmax;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

use crate::engine::{LayerMetrics, PhaseMetrics};
use crate::error::{Result, RuntimeError};
use crate::net::{BlockingChannel, ClientTls, Stream, client_tls, server_name};
use crate::session::{ClientOptions, ClientSession};
use crate::wire::VERSION;

/// Connects to `addr` (`HOST:PORT`); `tls: None` is plain TCP. Must run inside a tokio
/// runtime; the returned channel must then be used from a blocking thread.
pub async fn connect(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<BlockingChannel> {
    let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(RuntimeError::Io(std::io::Error::new(
                e.kind(),
                format!("cannot connect to {addr}: {e}"),
            )));
        }
        Err(_) => return Err(RuntimeError::Timeout(format!("connecting to {addr}"))),
    };
    tcp.set_nodelay(true)?;
    let stream: Box<dyn Stream> = match tls {
        None => Box::new(tcp),
        Some(how) => {
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let name = server_name(host)?;
            let conn = TlsConnector::from(client_tls(how)?);
            match tokio::time::timeout(timeout, conn.connect(name, tcp)).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    return Err(RuntimeError::Io(std::io::Error::new(
                        e.kind(),
                        format!("TLS handshake with {addr} failed: {e}"),
                    )));
                }
                Err(_) => return Err(RuntimeError::Timeout(format!("TLS handshake with {addr}"))),
            }
        }
    };
    Ok(BlockingChannel::new(
        tokio::runtime::Handle::current(),
        stream,
        timeout,
    ))
}

/// The tokio runtime a synchronous client connects with: `workers` worker threads (`None`:
/// tokio's default, one per core), I/O and time enabled. Its workers drive the channels
/// [`connect_blocking`] opens on it, so it must outlive them.
pub fn runtime(workers: Option<usize>) -> std::io::Result<Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.enable_all().build()
}

/// [`connect`] from synchronous code: connects on `rt` and returns the channel, to be used
/// from this (or another blocking) thread while `rt` lives, e.g. by [`run`].
pub fn connect_blocking(
    rt: &Runtime,
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<BlockingChannel> {
    rt.block_on(connect(addr, tls, timeout))
}

/// What to classify.
#[derive(Clone, Debug)]
pub enum Images {
    /// One image file: binary PGM/PPM (P5/P6, maxval 255) or raw bytes in channel-major
    /// order (C x H x W, exactly the model's input size).
    File(std::path::PathBuf),
    /// A test split in a dataset directory (CIFAR-10/100 binary, Fashion-MNIST IDX).
    Dataset {
        /// Directory.
        dir: std::path::PathBuf,
        /// At most this many images.
        limit: Option<usize>,
    },
}

/// Pixels (u8, channel-major) and labels, if known.
pub fn load_images(
    images: &Images,
    shape: models::graph::Shape,
) -> Result<Vec<(Vec<u8>, Option<usize>)>> {
    match images {
        Images::File(path) => Ok(vec![(read_image(path, shape)?, None)]),
        Images::Dataset { dir, limit } => {
            let kind = DatasetKind::detect(dir).map_err(|e| RuntimeError::config(e.to_string()))?;
            if kind.shape() != shape {
                return Err(RuntimeError::config(format!(
                    "{} holds {} images of shape {:?}; the model takes {:?}",
                    dir.display(),
                    kind.name(),
                    kind.shape(),
                    shape
                )));
            }
            let ds = Dataset::load(kind, dir, Split::Test, *limit)
                .map_err(|e| RuntimeError::config(e.to_string()))?;
            Ok((0..ds.len())
                .map(|i| (ds.image(i).to_vec(), Some(ds.label(i))))
                .collect())
        }
    }
}

fn read_image(path: &Path, shape: models::graph::Shape) -> Result<Vec<u8>> {
    let n: usize = shape.iter().product();
    let meta = std::fs::metadata(path)
        .map_err(|e| RuntimeError::config(format!("cannot read {}: {e}", path.display())))?;
    if meta.len() > (64 << 20) {
        return Err(RuntimeError::config(format!(
            "{} is too large for an image",
            path.display()
        )));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| RuntimeError::config(format!("cannot read {}: {e}", path.display())))?;
    if bytes.starts_with(b"P5") || bytes.starts_with(b"P6") {
        return parse_pnm(path, &bytes, shape);
    }
    if bytes.len() != n {
        return Err(RuntimeError::config(format!(
            "{}: {} bytes, neither a binary PGM/PPM nor raw {:?} pixels ({n} bytes)",
            path.display(),
            bytes.len(),
            shape
        )));
    }
    Ok(bytes)
}

/// Binary PGM (P5, one channel) or PPM (P6, RGB interleaved → channel-major).
fn parse_pnm(path: &Path, bytes: &[u8], shape: models::graph::Shape) -> Result<Vec<u8>> {
    let bad = |m: &str| RuntimeError::config(format!("{}: {m}", path.display()));
    let channels = if bytes[1] == b'5' { 1 } else { 3 };
    // Header: magic, width, height, maxval, separated by whitespace (comments allowed).
    let mut fields = Vec::new();
    let mut i = 2;
    while fields.len() < 3 {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'#') {
            if bytes[i] == b'#' {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            i += 1;
        }
        let s = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let v: usize = std::str::from_utf8(&bytes[s..i])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("malformed PNM header"))?;
        fields.push(v);
    }
    i += 1; // the single whitespace after maxval
    let (w, h, maxval) = (fields[0], fields[1], fields[2]);
    if maxval != 255 {
        return Err(bad("only 8-bit PNM (maxval 255) is supported"));
    }
    if [channels, h, w] != shape {
        return Err(bad(&format!(
            "image is {channels}x{h}x{w}, the model takes {}x{}x{}",
            shape[0], shape[1], shape[2]
        )));
    }
    let data = bytes.get(i..).ok_or_else(|| bad("truncated"))?;
    if data.len() != channels * h * w {
        return Err(bad(&format!(
            "{} pixel bytes, expected {}",
            data.len(),
            channels * h * w
        )));
    }
    let mut out = vec![0u8; data.len()];
    for (p, px) in data.chunks_exact(channels).enumerate() {
        for (c, &v) in px.iter().enumerate() {
            out[c * h * w + p] = v;
        }
    }
    Ok(out)
}

/// One inference in the client's report.
#[derive(Clone, Debug, Serialize)]
pub struct InferenceRecord {
    /// Index in the session.
    pub index: usize,
    /// True label, when known.
    pub label: Option<usize>,
    /// Predicted class.
    pub predicted: usize,
    /// Decoded logits.
    pub logits: Vec<f64>,
    /// Offline phase (client side).
    pub offline: PhaseSummary,
    /// Online phase (client side): `seconds` is the online latency.
    pub online: PhaseSummary,
    /// Online phase per layer.
    pub online_layers: Vec<LayerMetrics>,
}

/// A phase without its per-layer breakdown.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseSummary {
    /// Seconds.
    pub seconds: f64,
    /// Bytes the client sent.
    pub bytes_sent: u64,
    /// Bytes the client received.
    pub bytes_received: u64,
    /// Rounds.
    pub rounds: u64,
}

impl From<&PhaseMetrics> for PhaseSummary {
    fn from(m: &PhaseMetrics) -> Self {
        PhaseSummary {
            seconds: m.seconds,
            bytes_sent: m.bytes_sent,
            bytes_received: m.bytes_received,
            rounds: m.rounds,
        }
    }
}

/// Median, spread and extremes of a sample.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    /// Smallest.
    pub min: f64,
    /// 10th percentile.
    pub p10: f64,
    /// Median.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// Of a non-empty sample (all zeros for an empty one).
    pub fn of(xs: &[f64]) -> Self {
        if xs.is_empty() {
            return Spread::default();
        }
        let mut v = xs.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Spread {
            min: v[0],
            p10: q(0.1),
            median: q(0.5),
            p90: q(0.9),
            max: v[v.len() - 1],
        }
    }
}

/// The client's report of a run (`--json`).
#[derive(Clone, Debug, Serialize)]
pub struct ClientReport {
    /// Record type.
    pub record: &'static str,
    /// Client software version.
    pub software: &'static str,
    /// Server software version.
    pub server_software: String,
    /// Server address.
    pub server: String,
    /// TLS used.
    pub tls: bool,
    /// Preprocessing method.
    pub preprocessing: crate::preprocess::Method,
    /// True when the run did not protect the input (insecure dealer).
    pub insecure: bool,
    /// SHA-256 of the served model's `public.json`.
    pub model_public_sha256: String,
    /// Architecture.
    pub arch: String,
    /// ReLUs of the model.
    pub relus_total: usize,
    /// ReLUs kept (garbled circuits online).
    pub relus_kept: usize,
    /// Online bytes per inference predicted by the formula (client → server, back).
    pub predicted_online_bytes: (u64, u64),
    /// Every inference.
    pub inferences: Vec<InferenceRecord>,
    /// Correct predictions, where labels are known.
    pub correct: Option<usize>,
    /// Accuracy, where labels are known.
    pub accuracy: Option<f64>,
    /// Online latency (s) over the inferences.
    pub online_seconds: Spread,
    /// Offline time (s) over the inferences.
    pub offline_seconds: Spread,
    /// Seconds from connecting to closing.
    pub session_seconds: f64,
    /// Bytes of the whole session (client sent, received).
    pub session_bytes: (u64, u64),
}

/// Runs private inference on every image in one session over `ch`. `progress` is called
/// after each inference.
pub fn run(
    ch: BlockingChannel,
    server: &str,
    tls: bool,
    images: &Images,
    opts: &ClientOptions,
    mut progress: impl FnMut(&InferenceRecord, usize),
) -> Result<ClientReport> {
    let start = std::time::Instant::now();
    let mut s = ClientSession::start(ch, opts)?;
    let public = s.public().clone();
    let items = load_images(images, public.graph.input)?;
    let mut records = Vec::with_capacity(items.len());
    let total = items.len();
    let mut done = 0;
    for chunk in items.chunks(s.max_prepare() as usize) {
        s.prepare(chunk.len() as u32)?;
        for (pixels, label) in chunk {
            let x = public.normalization.apply(pixels);
            let inf = s.infer(&x)?;
            let rec = InferenceRecord {
                index: done,
                label: *label,
                predicted: argmax(&inf.output.logits).unwrap_or(0),
                logits: inf.output.logits.clone(),
                offline: (&inf.offline).into(),
                online: (&inf.online).into(),
                online_layers: inf.online.layers.clone(),
            };
            done += 1;
            progress(&rec, total);
            records.push(rec);
        }
    }
    let plan = s.plan().clone();
    let (method, hash, server_software) = (
        s.method(),
        s.public_hash().to_string(),
        s.server_software().to_string(),
    );
    let stats = s.close()?;
    let labelled: Vec<_> = records
        .iter()
        .filter_map(|r| r.label.map(|l| l == r.predicted))
        .collect();
    let correct = (!labelled.is_empty()).then(|| labelled.iter().filter(|&&c| c).count());
    let on: Vec<f64> = records.iter().map(|r| r.online.seconds).collect();
    let off: Vec<f64> = records.iter().map(|r| r.offline.seconds).collect();
    Ok(ClientReport {
        record: "pi-client",
        software: VERSION,
        server_software,
        server: server.into(),
        tls,
        preprocessing: method,
        insecure: !method.is_secure(),
        model_public_sha256: hash,
        arch: public.arch.clone(),
        relus_total: plan.relu_total(),
        relus_kept: plan.kept_total(),
        predicted_online_bytes: plan.online_bytes(),
        correct,
        accuracy: correct.map(|c| c as f64 / labelled.len() as f64),
        inferences: records,
        online_seconds: Spread::of(&on),
        offline_seconds: Spread::of(&off),
        session_seconds: start.elapsed().as_secs_f64(),
        session_bytes: (stats.bytes_sent, stats.bytes_received),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("pi-client-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn images_from_pnm_and_raw_bytes() {
        // A 2x1 PPM with a comment: RGB interleaved becomes channel-major.
        let p = write(
            "a.ppm",
            b"P6\n# made by hand\n2 1\n255\n\x01\x02\x03\x04\x05\x06",
        );
        assert_eq!(read_image(&p, [3, 1, 2]).unwrap(), vec![1, 4, 2, 5, 3, 6]);
        let g = write("b.pgm", b"P5 2 2 255\n\x09\x08\x07\x06");
        assert_eq!(read_image(&g, [1, 2, 2]).unwrap(), vec![9, 8, 7, 6]);
        let r = write("c.bin", &[7u8; 12]);
        assert_eq!(read_image(&r, [3, 2, 2]).unwrap(), vec![7u8; 12]);
        for q in [p, g, r] {
            let _ = std::fs::remove_file(q);
        }
    }

    #[test]
    fn bad_images_are_clear_errors() {
        let cases: [(&str, &[u8], &str); 5] = [
            ("d.ppm", b"P6\n2 1\n255\n\x01\x02\x03", "pixel bytes"),
            ("e.ppm", b"P6\n2 1\n65535\n", "maxval 255"),
            ("f.pgm", b"P5\n3 3\n255\n\x00", "image is 1x3x3"),
            ("g.pgm", b"P5\nx y\n", "malformed PNM header"),
            ("h.bin", &[0u8; 5], "neither a binary PGM/PPM nor raw"),
        ];
        for (name, bytes, want) in cases {
            let shape = if name.ends_with("ppm") {
                [3, 1, 2]
            } else {
                [1, 2, 2]
            };
            let p = write(name, bytes);
            let e = read_image(&p, shape).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
            let _ = std::fs::remove_file(p);
        }
        let e = read_image(Path::new("/nonexistent/img"), [1, 2, 2]).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }
}
