//! The `snl-model` command line: the documented JSON and clear errors.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snl-model"))
        .args(args)
        .output()
        .unwrap()
}

fn ok_json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn fails_with(args: &[&str], needle: &str) {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: stderr {err:?} lacks {needle:?}"
    );
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
}

/// A tiny CIFAR-10-layout test set of `n` images.
fn cifar_dir(dir: &Path, n: usize) {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.push((i % 10) as u8);
        bytes.extend((0..3072).map(|j| ((i * 31 + j * 7) % 256) as u8));
    }
    std::fs::write(dir.join("test_batch.bin"), &bytes).unwrap();
    for b in 1..=5 {
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), &bytes).unwrap();
    }
}

#[test]
fn new_inspect_eval_and_public() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    let ms = m.to_str().unwrap();
    let d = t.path().join("data");
    std::fs::create_dir(&d).unwrap();
    cifar_dir(&d, 12);
    let ds = d.to_str().unwrap();
    let o = run(&[
        "new",
        "--arch",
        "resnet20",
        "--out",
        ms,
        "--keep-fraction",
        "0.25",
        "--seed",
        "4",
        "--calibrate-data",
        ds,
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = ok_json(&["inspect", ms, "--json"]);
    assert_eq!(j["schema"], "snl-model-inspect/1");
    assert_eq!(j["format_version"], 4);
    assert_eq!(j["arch"], "resnet20");
    assert_eq!(j["input"], serde_json::json!([3, 32, 32]));
    assert_eq!(j["relus"]["total"], 188_416);
    let kept = j["relus"]["kept"].as_u64().unwrap();
    let per_site: u64 = j["relus"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kept"].as_u64().unwrap())
        .sum();
    assert_eq!(kept, per_site);
    assert!((40_000..54_000).contains(&kept), "{kept}");
    assert_eq!(j["relus"]["linearized"].as_u64().unwrap(), 188_416 - kept);
    assert_eq!(j["parameters"], 272_474);
    assert_eq!(j["parts"]["private"], true);
    assert_eq!(j["hashes"]["public"].as_str().unwrap().len(), 64);

    let p = t.path().join("pub");
    let ps = p.to_str().unwrap();
    assert!(run(&["public", ms, "--out", ps]).status.success());
    let jp = ok_json(&["inspect", ps, "--json"]);
    assert_eq!(jp["parts"]["private"], false);
    assert_eq!(jp["parameters"], serde_json::Value::Null);
    assert_eq!(jp["hashes"]["public"], j["hashes"]["public"]);
    fails_with(
        &["eval", ps, "--data", t.path().to_str().unwrap()],
        "only a public part",
    );

    assert_eq!(
        j["provenance"]["init"]["batchnorm_calibration"]["images"],
        60
    );
    for exec in ["f32", "fixed"] {
        let e = ok_json(&[
            "eval",
            ms,
            "--data",
            d.to_str().unwrap(),
            "--executor",
            exec,
            "--json",
        ]);
        assert_eq!(e["schema"], "snl-model-eval/1");
        assert_eq!(e["images"], 12);
        assert_eq!(e["executor"], exec);
        let acc = e["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
        assert_eq!(e["correct"].as_f64().unwrap(), (acc * 12.0).round());
    }
    let e = ok_json(&[
        "eval",
        ms,
        "--data",
        d.to_str().unwrap(),
        "--executor",
        "fixed",
        "--limit",
        "5",
        "--json",
    ]);
    assert_eq!(e["images"], 5);
    assert_eq!(e["relu_overflows"], 0);

    // Per-site windows from the (identical) training images: every site gets one, the
    // evaluation on those images sees no overflow, and inspect shows them.
    let w = t.path().join("windowed");
    let ws = w.to_str().unwrap();
    let wj = ok_json(&[
        "windows", ms, "--data", ds, "--images", "12", "--margin", "1.5", "--out", ws, "--json",
    ]);
    assert_eq!(wj["schema"], "snl-model-windows/1");
    let sites = wj["sites"].as_array().unwrap();
    assert_eq!(sites.len(), 19);
    for s in sites {
        let m = s["relu_bits"].as_u64().unwrap();
        let (max, range) = (s["max_abs"].as_f64().unwrap(), s["range"].as_f64().unwrap());
        assert!((30..=61).contains(&m), "{s}");
        assert!(range > 1.5 * max && (m == 30 || range <= 3.0 * max), "{s}");
    }
    let jw = ok_json(&["inspect", ws, "--json"]);
    assert_eq!(jw["relu_windows"].as_object().unwrap().len(), 19);
    let first = sites[0]["site"].as_str().unwrap();
    assert_eq!(jw["relu_windows"][first], sites[0]["relu_bits"]);
    let e = ok_json(&["eval", ws, "--data", ds, "--executor", "fixed", "--json"]);
    assert_eq!(e["relu_overflows"], 0);
    assert_eq!(e["relu_windows"], jw["relu_windows"]);
    fails_with(
        &[
            "windows", ms, "--data", ds, "--margin", "0.5", "--out", ws, "--force",
        ],
        "margin",
    );
    fails_with(
        &[
            "windows",
            ms,
            "--data",
            ds,
            "--dropped-bits",
            "15",
            "--out",
            ws,
            "--force",
        ],
        "--dropped-bits",
    );
}

#[test]
fn bad_flags_and_inputs_give_clear_errors() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("x");
    let o = out.to_str().unwrap();
    fails_with(
        &["new", "--arch", "vgg16", "--out", o],
        "unknown architecture \"vgg16\"",
    );
    fails_with(
        &["new", "--arch", "lenet5", "--out", o, "--input", "1x28"],
        "CxHxW",
    );
    fails_with(
        &[
            "new",
            "--arch",
            "lenet5",
            "--out",
            o,
            "--keep-fraction",
            "1.5",
        ],
        "must be in [0, 1]",
    );
    fails_with(
        &["new", "--arch", "lenet5", "--out", o, "--relu-bits", "70"],
        "fixed-point parameters",
    );
    fails_with(
        &["inspect", t.path().join("none").to_str().unwrap()],
        "public.json",
    );
    assert!(
        run(&["new", "--arch", "lenet5", "--out", o])
            .status
            .success()
    );
    fails_with(&["new", "--arch", "lenet5", "--out", o], "already exists");
    fails_with(
        &[
            "eval",
            o,
            "--data",
            t.path().join("nodata").to_str().unwrap(),
        ],
        "does not exist",
    );
    // A CIFAR directory for a 28x28 model: the shapes disagree.
    let d = t.path().join("cifar");
    std::fs::create_dir(&d).unwrap();
    cifar_dir(&d, 2);
    fails_with(
        &["eval", o, "--data", d.to_str().unwrap()],
        "the model takes",
    );
}

/// The key lines of pretty-printed JSON (indentation and key), in output order.
fn key_lines(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let key = t.strip_prefix('"')?.split_once("\":")?.0;
            Some(format!("{}{key}", &l[..l.len() - t.len()]))
        })
        .collect()
}

/// `inspect --json` is a stable document (docs/model-format.md): its keys, their nesting
/// and their order stay as they are, for a full model and for a public part.
#[test]
fn inspect_json_keys_are_pinned() {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    let p = t.path().join("p");
    let (ms, ps) = (m.to_str().unwrap(), p.to_str().unwrap());
    let o = run(&["new", "--arch", "lenet5", "--out", ms, "--seed", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run(&["public", ms, "--out", ps]).status.success());
    let site = [
        "        kept",
        "        name",
        "        shape",
        "        total",
    ];
    let mut want: Vec<&str> = vec![
        "  arch",
        "  classes",
        "  fixed_point",
        "    frac_bits",
        "    relu_bits",
        "    relu_dropped_bits",
        "    ring_bits",
        "    square_frac_bits",
        "  format_version",
        "  hashes",
        "    content",
        "    public",
        "    weights",
        "  input",
        "  linear_layers",
        "  macs",
        "  normalization",
        "    mean",
        "    std",
        "  parameters",
        "  parts",
        "    private",
        "    public",
        "  path",
        "  provenance",
        "    init",
        "      kind",
        "      seed",
        "  relu_windows",
        "  relus",
        "    kept",
        "    linearized",
        "    sites",
    ];
    for _ in 0..4 {
        want.extend(site);
    }
    want.extend(["    total", "  replacements", "  schema", "  writer"]);
    let full = run(&["inspect", ms, "--json"]);
    assert!(full.status.success());
    assert_eq!(key_lines(&full.stdout), want);
    // The public part has no provenance: `"provenance": null`, nothing nested.
    let public = run(&["inspect", ps, "--json"]);
    assert!(public.status.success());
    want.retain(|k| !["    init", "      kind", "      seed"].contains(k));
    assert_eq!(key_lines(&public.stdout), want);
    let j: serde_json::Value = serde_json::from_slice(&public.stdout).unwrap();
    assert_eq!(j["schema"], "snl-model-inspect/1");
    assert_eq!(j["provenance"], serde_json::Value::Null);
    assert_eq!(j["hashes"]["weights"], serde_json::Value::Null);
}
