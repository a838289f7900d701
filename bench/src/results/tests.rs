//! Tests of `results`.

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
        squares: Some(kept as u64 / 2),
        f32_accuracy: 0.78,
        fixed_accuracy: 0.775,
        secure_accuracy: 0.77 + kept as f64 * 1e-7,
        secure_images: 200,
        secure_agreement: Some(0.995),
        fixed_accuracy_full: Some(0.7712 - kept as f64 * 1e-8),
        full_images: Some(10_000),
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
        (
            good.replacen("\n3,", "\n4,", 1),
            "schema version 4; this snl-bench reads versions 1 to 3",
        ),
        (
            good.replacen("\n3,", "\n1,", 1),
            "row 1 has schema version 1, the file's header is version 3",
        ),
        (good.replace(",20,2,", ",20,,"), "row 1: squares empty"),
        (
            good.replace(",0.995,", ",,"),
            "row 1: secure_agreement empty",
        ),
        (good.replace(",10000,", ",,"), "row 1: full_images empty"),
        (good.replace(",0.995,", ",1.5e,"), "row 1 (line 2)"),
        (format!("{good}2,2,3\n"), "row 2 (line 3)"),
        (
            COLUMNS_V1[..30].join(","),
            "missing columns [finished_unix], unknown columns []",
        ),
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
    // A JSON row is checked key by key against its document's version.
    let mut doc: serde_json::Value =
        serde_json::from_slice(&encode(&[sample(5, "loopback", 2.0)], Format::Json).unwrap())
            .unwrap();
    let row = doc["rows"][0].as_object_mut().unwrap();
    row.remove("fixed_accuracy_full");
    row.insert("top5".into(), 0.9.into());
    let e = decode(doc.to_string().as_bytes(), Format::Json, j)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("row 1: missing keys [fixed_accuracy_full], unknown keys [top5]"),
        "{e}"
    );
    let e = Format::of(Path::new("out.txt")).unwrap_err().to_string();
    assert!(e.contains(".csv or .json"), "{e}");
}

/// Two rows of a schema version 1 file as `snl-bench` 0.1.0 wrote them (the first is
/// a row of docs/figures/r20-cifar10-results-2026-11-25.csv).
const V1_CSV: &str = "\
schema_version,series,model,model_sha256,arch,dataset,method,network,rtt_ms,tls,images,repeats,relus_total,relus_kept,linear_macs,rounds,f32_accuracy,fixed_accuracy,secure_accuracy,online_ms_median,online_ms_p10,online_ms_p90,online_ms_min,online_ms_max,offline_ms_median,online_bytes_up,online_bytes_down,offline_bytes_up,offline_bytes_down,software,finished_unix
1,resnet20,runs/r20-snl/budget-37683,c1c8f77d7fb616d7a0b561b5350d65f7eaa0f8c6bd0f6663a524bdbb1f911288,resnet20,cifar10,insecure-dealer,loopback,0.0,false,200,1,188416,36574,40813184,20,0.785,0.785,0.785,143.351922,111.52165699999999,210.510728,106.869376,252.089383,567.155938,303461,21066704,58314752,137270856,0.1.0,1795618890
1,resnet20,runs/r20/model,00ff,resnet20,cifar10,he-bfv,rtt-10ms,10.0,true,30,2,188416,188416,40813184,20,0.9,0.8666666666666667,0.85,1203.4,1100.5,1300.25,1000.0,1400.0,2741.0,1,2,3,4,0.1.0,1795618999
";

#[test]
fn version_1_files_are_read_with_what_they_measured() {
    let p = Path::new("old.csv");
    let rows = decode(V1_CSV.as_bytes(), Format::Csv, p).unwrap();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r.schema_version, 1);
    assert_eq!(r.model, "runs/r20-snl/budget-37683");
    assert_eq!((r.images, r.repeats, r.relus_kept), (200, 1, 36_574));
    assert_eq!(
        (r.f32_accuracy, r.fixed_accuracy, r.secure_accuracy),
        (0.785, 0.785, 0.785)
    );
    assert_eq!(r.online_ms_p10, 111.521_656_999_999_99);
    assert_eq!(r.finished_unix, 1_795_618_890);
    // What version 1 knew: the secure sample's size; not what it never measured.
    assert_eq!(r.secure_images, 200);
    assert_eq!(rows[1].secure_images, 30);
    for r in &rows {
        assert_eq!(
            (r.secure_agreement, r.fixed_accuracy_full, r.full_images),
            (None, None, None)
        );
    }
    assert!(rows.iter().all(|r| r.squares.is_none()));
    // A version 1 row never matches a point measured now.
    let mut now = rows[0].clone();
    now.schema_version = SCHEMA_VERSION;
    now.full_images = Some(10_000);
    assert_ne!(rows[0].key(), now.key());
    // The same rows as a version 1 JSON document.
    let absent: Vec<&str> = ADDED_IN_V3.iter().chain(&ADDED_IN_V2).copied().collect();
    let doc = old_document(&rows, 1, &absent);
    let back = decode(
        doc.to_string().as_bytes(),
        Format::Json,
        Path::new("old.json"),
    );
    assert_eq!(back.unwrap(), rows);
    // A version 1 document whose rows have version 2's keys is malformed.
    let mut doc2 = doc.clone();
    doc2["rows"][0]["secure_images"] = 200.into();
    let e = decode(
        doc2.to_string().as_bytes(),
        Format::Json,
        Path::new("old.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown keys [secure_images]"), "{e}");
    // They are never written back: one version per file, and they lack measurements.
    for f in [Format::Csv, Format::Json] {
        let e = encode(&rows, f).unwrap_err().to_string();
        assert!(e.contains("row 1") && e.contains("schema version 1"), "{e}");
        let mut mixed = vec![sample(5, "loopback", 2.0)];
        mixed.push(rows[1].clone());
        let e = encode(&mixed, f).unwrap_err().to_string();
        assert!(e.contains("row 2 (runs/r20/model, rtt-10ms)"), "{e}");
    }
}

/// `rows` as a JSON document of an older `version`, without the keys it did not have.
fn old_document(rows: &[Row], version: u32, absent: &[&str]) -> serde_json::Value {
    let objs: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in absent {
                o.remove(*k).unwrap();
            }
            v
        })
        .collect();
    serde_json::json!({"schema": JSON_SCHEMA, "schema_version": version, "rows": objs})
}

/// A version 2 file (no `squares` column, as snl-bench wrote it until 2026-12-03) reads
/// with `squares` unknown; a version 2 document with the key is malformed.
#[test]
fn version_2_files_are_read_without_squares() {
    let now = vec![sample(9338, "loopback", 44.25), sample(50, "rtt-10ms", 9.5)];
    let mut v2 = now.clone();
    for r in &mut v2 {
        r.schema_version = 2;
        r.squares = None;
    }
    // The CSV as version 2 wrote it: the current one without the column.
    let csv = String::from_utf8(encode(&now, Format::Csv).unwrap()).unwrap();
    let at = COLUMNS.iter().position(|&c| c == "squares").unwrap();
    let old: String = csv
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut rec = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(line.as_bytes());
            let mut f: Vec<String> = rec
                .records()
                .next()
                .unwrap()
                .unwrap()
                .iter()
                .map(str::to_string)
                .collect();
            f.remove(at);
            if i > 0 {
                f[0] = "2".into();
            }
            let mut w = csv::Writer::from_writer(vec![]);
            w.write_record(&f).unwrap();
            String::from_utf8(w.into_inner().unwrap()).unwrap()
        })
        .collect();
    assert!(old.starts_with(&COLUMNS_V2.join(",")));
    let back = decode(old.as_bytes(), Format::Csv, Path::new("v2.csv")).unwrap();
    assert_eq!(back, v2);
    // As JSON.
    let doc = old_document(&v2, 2, &ADDED_IN_V3);
    let back = decode(
        doc.to_string().as_bytes(),
        Format::Json,
        Path::new("v2.json"),
    );
    assert_eq!(back.unwrap(), v2);
    let mut with = doc.clone();
    with["rows"][0]["squares"] = 3.into();
    let e = decode(
        with.to_string().as_bytes(),
        Format::Json,
        Path::new("v2.json"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown keys [squares]"), "{e}");
    // Never written back, nor mixed with current rows.
    let e = encode(&v2, Format::Csv).unwrap_err().to_string();
    assert!(e.contains("schema version 2"), "{e}");
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
    let mut c = a.clone();
    c.full_images = Some(100);
    assert_ne!(a.key(), c.key(), "a shorter full-test run is another point");
}

#[test]
fn oversized_files_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.csv");
    let rows = [sample(5, "loopback", 2.0)];
    write(&path, &rows).unwrap();
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(
        read_bounded(&path, len, "a results file").unwrap().len() as u64,
        len
    );
    let e = read_bounded(&path, len - 1, "a results file")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("r.csv") && e.contains(&format!("limit of a results file ({} bytes)", len - 1)),
        "{e}"
    );
    // An endless file is cut at the limit, not read to the end.
    let e = read_bounded(Path::new("/dev/zero"), 1 << 20, "a results file")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/dev/zero") && e.contains("limit"), "{e}");
    assert_eq!(read(&path).unwrap(), rows);
}
