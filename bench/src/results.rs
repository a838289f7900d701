//! The results file of `snl-bench sweep`: one row per measured point (a model under one
//! method, network and transport), as CSV or JSON by the file's extension.
//!
//! CSV: a header line naming exactly [`COLUMNS`] in that order, then one line per row.
//! JSON: `{"schema": "snl-bench-results", "schema_version": 3, "rows": [...]}` with one
//! object per row, keys as the CSV columns. Every row also carries `schema_version`, so
//! a CSV row copied elsewhere still says what it is. Reading checks the header (or keys)
//! and the version and names the file, line and column of anything wrong.
//!
//! Versions. 3 (written now) adds the positions squared online (`squares`, quadratic
//! sites), which the latency model prices. 2 added the fixed-point accuracy on the full
//! test split (`fixed_accuracy_full` over `full_images` images) and the size and
//! per-image agreement of the secure measurement (`secure_images`, `secure_agreement`).
//! Older files are still read, and their rows keep their `schema_version`: version 2 files
//! (the columns [`COLUMNS_V2`]) have `squares` `None` (`snl-bench model-cost` counts them
//! from the model directory when it is still there); version 1 files (the columns
//! [`COLUMNS_V1`]) have `secure_images` their `images` (what their secure accuracy was
//! measured on), and the values version 1 never measured (`fixed_accuracy_full`,
//! `full_images`, `secure_agreement`, `squares`) `None`. Nothing writes old rows, and a
//! file holds one version: [`encode`] refuses to mix them, and a sweep refuses to append
//! to an older file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Version of the row layout written now; bump it when a column is added, removed or
/// changes meaning.
pub const SCHEMA_VERSION: u32 = 3;

/// The oldest version still read (see the module documentation).
pub const OLDEST_READ: u32 = 1;

/// The JSON document's `schema` value.
pub const JSON_SCHEMA: &str = "snl-bench-results";

/// One measured point. Latencies in milliseconds, bytes per inference, accuracies as
/// fractions in [0, 1].
///
/// Accuracy is measured on two sets of test images. The *sample* is the first `images`
/// images of the test split, classified by private inference (`secure_accuracy`,
/// `secure_agreement`) and, for comparison, by the plaintext executors on the same images
/// (`f32_accuracy`, `fixed_accuracy`). The *full* set is the first `full_images` images
/// (by default the whole test split), classified only by the fixed-point executor, the
/// plaintext twin of the secure arithmetic (`fixed_accuracy_full`): that is the accuracy
/// tables and plots show, with the sample's size and agreement beside it. The secure
/// logits equal the executor's up to +1-ulp truncation differences at linearized
/// positions (docs/runtime.md), which can change a class only at a near-tie:
/// `secure_agreement` measures how often that happened on the sample.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    /// Row layout version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Series the point belongs to in plots (default: the architecture).
    pub series: String,
    /// Model directory as given to the sweep.
    pub model: String,
    /// SHA-256 of the model's `public.json` (what the server served).
    pub model_sha256: String,
    /// Architecture.
    pub arch: String,
    /// Dataset directory's kind (`cifar10`, `fashion-mnist`, ...).
    pub dataset: String,
    /// Linear-layer preprocessing the session negotiated (`insecure-dealer`, ...).
    pub method: String,
    /// Network condition label (`loopback`, `rtt-1ms`, ...).
    pub network: String,
    /// Round-trip time added on top of the path (delay relay), milliseconds.
    pub rtt_ms: f64,
    /// TLS on the connection.
    pub tls: bool,
    /// Test images classified per repeat.
    pub images: usize,
    /// Sessions run (each classifies every image once).
    pub repeats: usize,
    /// ReLUs of the network.
    pub relus_total: usize,
    /// ReLUs kept (garbled online).
    pub relus_kept: usize,
    /// Multiply-accumulates of the linear layers, one forward pass.
    pub linear_macs: u64,
    /// Online rounds per inference.
    pub rounds: u64,
    /// Positions squared on shares per inference (quadratic sites' linearized positions
    /// outside their affine channels). `None` only in rows of versions 1 and 2.
    #[serde(default)]
    pub squares: Option<u64>,
    /// Plaintext accuracy of the f32 executor on the sampled images.
    pub f32_accuracy: f64,
    /// Plaintext accuracy of the fixed-point executor on the sampled images.
    pub fixed_accuracy: f64,
    /// Accuracy of private inference on the sampled images, over all repeats.
    pub secure_accuracy: f64,
    /// Test images classified by private inference (per repeat; the first ones of the
    /// split): the sample behind `secure_accuracy`. Equal to `images`; named so that the
    /// accuracy columns state their sample size. Filled from `images` for version 1 rows.
    #[serde(default)]
    pub secure_images: usize,
    /// Fraction of the private inferences (every image of every repeat) whose predicted
    /// class equals the fixed-point executor's on the same image. `None` only in version 1
    /// rows, which did not record it.
    #[serde(default)]
    pub secure_agreement: Option<f64>,
    /// Accuracy of the fixed-point executor on the first `full_images` test images (by
    /// default the whole test split). `None` only in version 1 rows.
    #[serde(default)]
    pub fixed_accuracy_full: Option<f64>,
    /// Test images behind `fixed_accuracy_full`. `None` only in version 1 rows.
    #[serde(default)]
    pub full_images: Option<usize>,
    /// Online latency, median over all inferences of all repeats (ms).
    pub online_ms_median: f64,
    /// Online latency, 10th percentile (ms).
    pub online_ms_p10: f64,
    /// Online latency, 90th percentile (ms).
    pub online_ms_p90: f64,
    /// Online latency, smallest (ms).
    pub online_ms_min: f64,
    /// Online latency, largest (ms).
    pub online_ms_max: f64,
    /// Offline time per inference, median (ms).
    pub offline_ms_median: f64,
    /// Online bytes client to server per inference.
    pub online_bytes_up: u64,
    /// Online bytes server to client per inference.
    pub online_bytes_down: u64,
    /// Offline bytes client to server per inference.
    pub offline_bytes_up: u64,
    /// Offline bytes server to client per inference.
    pub offline_bytes_down: u64,
    /// Software version of the client that measured the row.
    pub software: String,
    /// When the point finished (seconds since the Unix epoch).
    pub finished_unix: u64,
}

/// The CSV columns, in order (the fields of [`Row`]).
pub const COLUMNS: [&str; 36] = [
    "schema_version",
    "series",
    "model",
    "model_sha256",
    "arch",
    "dataset",
    "method",
    "network",
    "rtt_ms",
    "tls",
    "images",
    "repeats",
    "relus_total",
    "relus_kept",
    "linear_macs",
    "rounds",
    "squares",
    "f32_accuracy",
    "fixed_accuracy",
    "secure_accuracy",
    "secure_images",
    "secure_agreement",
    "fixed_accuracy_full",
    "full_images",
    "online_ms_median",
    "online_ms_p10",
    "online_ms_p90",
    "online_ms_min",
    "online_ms_max",
    "offline_ms_median",
    "online_bytes_up",
    "online_bytes_down",
    "offline_bytes_up",
    "offline_bytes_down",
    "software",
    "finished_unix",
];

/// The CSV columns (kept in sync with [`Row`] by a test).
pub fn columns() -> &'static [&'static str] {
    &COLUMNS
}

/// The columns schema version 2 added to version 1.
const ADDED_IN_V2: [&str; 4] = [
    "secure_images",
    "secure_agreement",
    "fixed_accuracy_full",
    "full_images",
];

/// The column schema version 3 added to version 2.
const ADDED_IN_V3: [&str; 1] = ["squares"];

/// `cols` without `added`, in order: the columns of the version before `added`.
fn without(cols: &[&'static str], added: &[&str]) -> Vec<&'static str> {
    cols.iter()
        .copied()
        .filter(|c| !added.contains(c))
        .collect()
}

/// The columns of schema version 2, in order: [`COLUMNS`] without `squares`.
pub static COLUMNS_V2: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| without(&COLUMNS, &ADDED_IN_V3));

/// The columns of schema version 1, in order: [`COLUMNS_V2`] without `secure_images`,
/// `secure_agreement`, `fixed_accuracy_full` and `full_images`.
pub static COLUMNS_V1: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| without(&COLUMNS_V2, &ADDED_IN_V2));

/// The columns of a schema version this crate reads.
fn columns_of(version: u32) -> Option<&'static [&'static str]> {
    match version {
        1 => Some(COLUMNS_V1.as_slice()),
        2 => Some(COLUMNS_V2.as_slice()),
        SCHEMA_VERSION => Some(&COLUMNS),
        _ => None,
    }
}

/// What identifies a point for resumption: the same model, method, network, transport,
/// images, repeats and full-test size are not measured twice.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PointKey {
    /// Model public SHA-256.
    pub model_sha256: String,
    /// Method.
    pub method: String,
    /// Network label.
    pub network: String,
    /// TLS.
    pub tls: bool,
    /// Images per repeat.
    pub images: usize,
    /// Repeats.
    pub repeats: usize,
    /// Test images behind the full-test accuracy (`None`: a version 1 row, which never
    /// matches a point measured now).
    pub full_images: Option<usize>,
}

impl Row {
    /// The row's resumption key.
    pub fn key(&self) -> PointKey {
        PointKey {
            model_sha256: self.model_sha256.clone(),
            method: self.method.clone(),
            network: self.network.clone(),
            tls: self.tls,
            images: self.images,
            repeats: self.repeats,
            full_images: self.full_images,
        }
    }
}

/// File format, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `.csv`
    Csv,
    /// `.json`
    Json,
}

impl Format {
    /// From the path's extension (`.csv` or `.json`).
    pub fn of(path: &Path) -> Result<Format, Error> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => Ok(Format::Csv),
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(Format::Json),
            _ => Err(Error::Config(format!(
                "{}: results files end in .csv or .json",
                path.display()
            ))),
        }
    }
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    schema: &'a str,
    schema_version: u32,
    rows: &'a [Row],
}

/// The JSON document as read: rows are checked key by key before they become [`Row`]s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDocIn {
    schema: String,
    schema_version: u32,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// Encodes rows in the given format. Every row must be of the current [`SCHEMA_VERSION`]:
/// a file holds one version, and older rows (read from an old file) cannot be written as
/// current ones, which they lack the measurements of.
pub fn encode(rows: &[Row], format: Format) -> Result<Vec<u8>, Error> {
    if let Some((i, r)) = rows
        .iter()
        .enumerate()
        .find(|(_, r)| r.schema_version != SCHEMA_VERSION)
    {
        return Err(Error::Config(format!(
            "row {} ({}, {}) has schema version {}; results files are written in version \
             {SCHEMA_VERSION} only, one version per file",
            i + 1,
            r.model,
            r.network,
            r.schema_version
        )));
    }
    match format {
        Format::Json => {
            let doc = JsonDoc {
                schema: JSON_SCHEMA,
                schema_version: SCHEMA_VERSION,
                rows,
            };
            let mut v = serde_json::to_vec_pretty(&doc)
                .map_err(|e| Error::Config(format!("encoding results as JSON: {e}")))?;
            v.push(b'\n');
            Ok(v)
        }
        Format::Csv => {
            let mut w = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(vec![]);
            let enc = |e: csv::Error| Error::Config(format!("encoding results as CSV: {e}"));
            w.write_record(columns()).map_err(enc)?;
            for r in rows {
                w.serialize(r).map_err(enc)?;
            }
            w.into_inner()
                .map_err(|e| Error::Config(format!("encoding results as CSV: {e}")))
        }
    }
}

/// Decodes rows of schema version 3, or of versions 2 and 1 (see the module documentation
/// for what their rows hold); `path` only names the source in errors.
pub fn decode(bytes: &[u8], format: Format, path: &Path) -> Result<Vec<Row>, Error> {
    let bad = |msg: String| Error::Format {
        path: path.to_path_buf(),
        msg,
    };
    let (version, mut rows) = match format {
        Format::Json => {
            let doc: JsonDocIn = serde_json::from_slice(bytes).map_err(|e| {
                bad(format!(
                    "not a snl-bench results document (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ))
            })?;
            if doc.schema != JSON_SCHEMA {
                return Err(bad(format!(
                    "schema is {:?}, expected {JSON_SCHEMA:?}",
                    doc.schema
                )));
            }
            let want = check_version(doc.schema_version, "the document").map_err(&bad)?;
            let mut rows = Vec::with_capacity(doc.rows.len());
            for (i, obj) in doc.rows.into_iter().enumerate() {
                let keys: Vec<String> = obj.keys().cloned().collect();
                check_names(&keys, want, "keys", false)
                    .map_err(|m| bad(format!("row {}: {m}", i + 1)))?;
                let row: Row = serde_json::from_value(serde_json::Value::Object(obj))
                    .map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
                rows.push(row);
            }
            (doc.schema_version, rows)
        }
        Format::Csv => {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_reader(bytes);
            let header: Vec<String> = r
                .headers()
                .map_err(|e| bad(format!("cannot read the CSV header: {e}")))?
                .iter()
                .map(str::to_string)
                .collect();
            // Only version 1's columns: checked against version 1 (an old file); only
            // version 2's, against version 2; anything else against the current version.
            let within = |cols: &[&str]| header.iter().all(|h| cols.contains(&h.as_str()));
            let version = if within(&COLUMNS_V1) {
                1
            } else if within(&COLUMNS_V2) {
                2
            } else {
                SCHEMA_VERSION
            };
            let want = columns_of(version).unwrap_or(&COLUMNS);
            check_names(&header, want, "columns", true)
                .map_err(|m| bad(format!("not a snl-bench results header: {m}")))?;
            let mut rows = Vec::new();
            for (i, rec) in r.deserialize::<Row>().enumerate() {
                // Line 1 is the header.
                let row = rec.map_err(|e| bad(format!("row {} (line {}): {e}", i + 1, i + 2)))?;
                rows.push(row);
            }
            (version, rows)
        }
    };
    for (i, row) in rows.iter_mut().enumerate() {
        let what = format!("row {}", i + 1);
        check_version(row.schema_version, &what).map_err(&bad)?;
        if row.schema_version != version {
            return Err(bad(format!(
                "{what} has schema version {}, the file's {} is version {version}: a \
                 results file holds one version",
                row.schema_version,
                match format {
                    Format::Csv => "header",
                    Format::Json => "document",
                }
            )));
        }
        if version == 1 {
            row.secure_images = row.images;
        } else {
            complete(row, version).map_err(|m| bad(format!("{what}: {m}")))?;
        }
    }
    Ok(rows)
}

/// A row of version 2 or later carries every measurement of its version.
fn complete(row: &Row, version: u32) -> Result<(), String> {
    let missing: Vec<&str> = [
        ("squares", version >= 3 && row.squares.is_none()),
        ("secure_agreement", row.secure_agreement.is_none()),
        ("fixed_accuracy_full", row.fixed_accuracy_full.is_none()),
        ("full_images", row.full_images.is_none()),
    ]
    .into_iter()
    .filter_map(|(n, m)| m.then_some(n))
    .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} empty; schema version {version} rows carry them",
            missing.join(", ")
        ));
    }
    if row.secure_images != row.images {
        return Err(format!(
            "secure_images {} differs from images {}",
            row.secure_images, row.images
        ));
    }
    Ok(())
}

/// The columns of version `v`, or why it is not read.
fn check_version(v: u32, what: &str) -> Result<&'static [&'static str], String> {
    columns_of(v).ok_or_else(|| {
        format!(
            "{what} has schema version {v}; this snl-bench reads versions {OLDEST_READ} to \
             {SCHEMA_VERSION} (and writes {SCHEMA_VERSION})"
        )
    })
}

/// `names` are exactly `want` (in order too, if `ordered`); otherwise what is missing or
/// unknown.
fn check_names(names: &[String], want: &[&str], what: &str, ordered: bool) -> Result<(), String> {
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|c| !names.iter().any(|h| h == c))
        .collect();
    let unknown: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|h| !want.contains(h))
        .collect();
    if missing.is_empty() && unknown.is_empty() {
        if !ordered || names.iter().map(String::as_str).eq(want.iter().copied()) {
            return Ok(());
        }
        return Err(format!(
            "the right {what} in the wrong order; expected: {}",
            want.join(",")
        ));
    }
    Err(format!(
        "missing {what} [{}], unknown {what} [{}]",
        missing.join(", "),
        unknown.join(", ")
    ))
}

/// The largest results file read: 256 MiB, about 350,000 rows (a row of CSV takes about
/// 700 bytes).
pub const MAX_FILE_BYTES: u64 = 256 << 20;

/// Reads a results file (format by extension, at most [`MAX_FILE_BYTES`]).
pub fn read(path: &Path) -> Result<Vec<Row>, Error> {
    let format = Format::of(path)?;
    let bytes = read_bounded(path, MAX_FILE_BYTES, "a results file")?;
    decode(&bytes, format, path)
}

/// The bytes of `path` if it holds at most `max`; `what` names the kind of file in the
/// error (never reads more than `max + 1` bytes, so a huge file or a device such as
/// `/dev/zero` is an error, not an exhausted memory).
pub(crate) fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, Error> {
    let bytes = models::format::read_capped(path, max).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(Error::Format {
            path: path.to_path_buf(),
            msg: format!("larger than the limit of {what} ({max} bytes); split it"),
        });
    }
    Ok(bytes)
}

/// Reads a results file if it exists; an absent file is no rows.
pub fn read_if_exists(path: &Path) -> Result<Vec<Row>, Error> {
    match std::fs::metadata(path) {
        Ok(_) => read(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Writes the rows to `path` atomically (a temporary file beside it, then a rename), so
/// a sweep killed while writing leaves the previous complete file.
pub fn write(path: &Path, rows: &[Row]) -> Result<(), Error> {
    let bytes = encode(rows, Format::of(path)?)?;
    let tmp = tmp_path(path);
    std::fs::write(&tmp, &bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
pub(crate) mod tests;
