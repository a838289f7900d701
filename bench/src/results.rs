//! The results file of `snl-bench sweep`: one row per measured point (a model under one
//! method, network and transport), as CSV or JSON by the file's extension.
//!
//! CSV: a header line naming exactly [`COLUMNS`] in that order, then one line per row.
//! JSON: `{"schema": "snl-bench-results", "schema_version": 1, "rows": [...]}` with one
//! object per row, keys as the CSV columns. Every row also carries `schema_version`, so
//! a CSV row copied elsewhere still says what it is. Reading checks the header (or keys)
//! and the version and names the file, line and column of anything wrong.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;

/// Version of the row layout; bump it when a column changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

/// The JSON document's `schema` value.
pub const JSON_SCHEMA: &str = "snl-bench-results";

/// One measured point. Latencies in milliseconds, bytes per inference, accuracies as
/// fractions in [0, 1].
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
    /// Plaintext accuracy of the f32 executor on the same images.
    pub f32_accuracy: f64,
    /// Plaintext accuracy of the fixed-point executor on the same images.
    pub fixed_accuracy: f64,
    /// Accuracy of private inference over all repeats.
    pub secure_accuracy: f64,
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
pub const COLUMNS: [&str; 31] = [
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
    "f32_accuracy",
    "fixed_accuracy",
    "secure_accuracy",
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

/// What identifies a point for resumption: the same model, method, network, transport,
/// images and repeats are not measured twice.
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonDoc {
    schema: String,
    schema_version: u32,
    rows: Vec<Row>,
}

/// Encodes rows in the given format.
pub fn encode(rows: &[Row], format: Format) -> Result<Vec<u8>, Error> {
    match format {
        Format::Json => {
            let doc = JsonDoc {
                schema: JSON_SCHEMA.into(),
                schema_version: SCHEMA_VERSION,
                rows: rows.to_vec(),
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

/// Decodes rows; `path` only names the source in errors.
pub fn decode(bytes: &[u8], format: Format, path: &Path) -> Result<Vec<Row>, Error> {
    let bad = |msg: String| Error::Format {
        path: path.to_path_buf(),
        msg,
    };
    let rows = match format {
        Format::Json => {
            let doc: JsonDoc = serde_json::from_slice(bytes).map_err(|e| {
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
            check_version(doc.schema_version, "the document").map_err(bad)?;
            doc.rows
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
            check_header(&header).map_err(bad)?;
            let mut rows = Vec::new();
            for (i, rec) in r.deserialize::<Row>().enumerate() {
                // Line 1 is the header.
                let row = rec.map_err(|e| bad(format!("row {} (line {}): {e}", i + 1, i + 2)))?;
                rows.push(row);
            }
            rows
        }
    };
    for (i, row) in rows.iter().enumerate() {
        check_version(row.schema_version, &format!("row {}", i + 1)).map_err(bad)?;
    }
    Ok(rows)
}

fn check_version(v: u32, what: &str) -> Result<(), String> {
    if v == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(format!(
            "{what} has schema version {v}; this snl-bench reads version {SCHEMA_VERSION}"
        ))
    }
}

fn check_header(header: &[String]) -> Result<(), String> {
    let want = columns();
    if header.iter().map(String::as_str).eq(want.iter().copied()) {
        return Ok(());
    }
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|c| !header.iter().any(|h| h == c))
        .collect();
    let unknown: Vec<&str> = header
        .iter()
        .map(String::as_str)
        .filter(|h| !want.contains(h))
        .collect();
    if missing.is_empty() && unknown.is_empty() {
        return Err(format!(
            "the header has the right columns in the wrong order; expected: {}",
            want.join(",")
        ));
    }
    Err(format!(
        "not a snl-bench results header: missing columns [{}], unknown columns [{}]",
        missing.join(", "),
        unknown.join(", ")
    ))
}

/// Reads a results file (format by extension).
pub fn read(path: &Path) -> Result<Vec<Row>, Error> {
    let format = Format::of(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode(&bytes, format, path)
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
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A row with distinct, awkward values in every column (commas and quotes in text).
    pub(crate) fn sample(kept: usize, network: &str, latency_ms: f64) -> Row {
        Row {
            schema_version: SCHEMA_VERSION,
            series: "resnet20, \"SNL\"".into(),
            model: format!("runs/r20-snl/budget-{kept}"),
            model_sha256: format!("{kept:064x}"),
            arch: "resnet20".into(),
            dataset: "cifar10".into(),
            method: "insecure-dealer".into(),
            network: network.into(),
            rtt_ms: 1.5,
            tls: false,
            images: 200,
            repeats: 3,
            relus_total: 188_416,
            relus_kept: kept,
            linear_macs: 40_551_424,
            rounds: 20,
            f32_accuracy: 0.78,
            fixed_accuracy: 0.775,
            secure_accuracy: 0.77 + kept as f64 * 1e-7,
            online_ms_median: latency_ms,
            online_ms_p10: latency_ms * 0.9,
            online_ms_p90: latency_ms * 1.1,
            online_ms_min: latency_ms * 0.8,
            online_ms_max: latency_ms * 1.3,
            offline_ms_median: 112.25,
            online_bytes_up: 95_800,
            online_bytes_down: 5_380_000,
            offline_bytes_up: 1_234_567,
            offline_bytes_down: 7_654_321,
            software: "0.1.0".into(),
            finished_unix: 1_795_000_000,
        }
    }

    #[test]
    fn columns_are_the_rows_fields_in_order() {
        let v = serde_json::to_value(sample(1, "loopback", 1.0)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted_cols = columns().to_vec();
        sorted_cols.sort_unstable();
        let mut sorted_keys = keys.clone();
        sorted_keys.sort_unstable();
        assert_eq!(sorted_cols, sorted_keys);
        // And the CSV header is in the struct's order (what `serialize` writes).
        let csv = String::from_utf8(encode(&[], Format::Csv).unwrap()).unwrap();
        assert_eq!(csv.trim_end(), columns().join(","));
    }

    #[test]
    fn csv_and_json_round_trip() {
        let rows = vec![
            sample(9338, "loopback", 44.25),
            sample(188_416, "rtt-10ms", 612.5),
        ];
        for f in [Format::Csv, Format::Json] {
            let bytes = encode(&rows, f).unwrap();
            let back = decode(&bytes, f, Path::new("x")).unwrap();
            assert_eq!(back, rows, "{f:?}");
        }
        // The file functions pick the format by extension and write atomically.
        let dir = tempfile::tempdir().unwrap();
        for name in ["r.csv", "r.json"] {
            let p = dir.path().join(name);
            write(&p, &rows).unwrap();
            assert_eq!(read(&p).unwrap(), rows);
        }
        assert!(
            read_if_exists(&dir.path().join("absent.csv"))
                .unwrap()
                .is_empty()
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary files left behind");
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let p = Path::new("results.csv");
        let good =
            String::from_utf8(encode(&[sample(5, "loopback", 2.0)], Format::Csv).unwrap()).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (
                "relus,top1\n1,2\n".into(),
                "missing columns [schema_version",
            ),
            (
                good.replacen("schema_version", "version", 1),
                "unknown columns [version]",
            ),
            (good.replace(",200,3,", ",many,3,"), "row 1 (line 2)"),
            (good.replacen("\n1,", "\n2,", 1), "schema version 2"),
            (format!("{good}1,2,3\n"), "row 2 (line 3)"),
        ];
        for (text, want) in cases {
            let e = decode(text.as_bytes(), Format::Csv, p)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("results.csv: "), "{e}");
            assert!(e.contains(want), "want {want:?} in: {e}");
        }
        let j = Path::new("r.json");
        let e = decode(b"{\"rows\": 3}", Format::Json, j)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a snl-bench results document"), "{e}");
        let e = decode(
            br#"{"schema":"other","schema_version":1,"rows":[]}"#,
            Format::Json,
            j,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("schema is \"other\""), "{e}");
        let e = Format::of(Path::new("out.txt")).unwrap_err().to_string();
        assert!(e.contains(".csv or .json"), "{e}");
    }

    #[test]
    fn key_tells_points_apart() {
        let a = sample(5, "loopback", 2.0);
        let mut b = a.clone();
        assert_eq!(a.key(), b.key());
        b.online_ms_median = 99.0;
        assert_eq!(a.key(), b.key(), "measurements are not part of the key");
        b.network = "rtt-1ms".into();
        assert_ne!(a.key(), b.key());
    }
}
