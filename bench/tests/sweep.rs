//! `snl-bench sweep` end to end on small random LeNet-5 models and a six-image
//! Fashion-MNIST-format test set written here: rows, resumption, and bad inputs.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bench::results;
use bench::sweep::{self, Method, SweepOptions, Target};

const IMAGES: usize = 6;

/// A test split in the IDX layout (uncompressed): `n` 28x28 images and labels.
fn write_dataset(dir: &Path) {
    let mut img = vec![0, 0, 8, 3];
    for d in [IMAGES as u32, 28, 28] {
        img.extend(d.to_be_bytes());
    }
    img.extend((0..IMAGES * 784).map(|i| (i * 37 % 251) as u8));
    let mut lab = vec![0, 0, 8, 1];
    lab.extend((IMAGES as u32).to_be_bytes());
    lab.extend((0..IMAGES).map(|i| (i % 10) as u8));
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), img).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), lab).unwrap();
}

fn write_model(dir: &Path, keep: f64, seed: u64) -> PathBuf {
    let m = models::testing::random_model("lenet5", keep, seed).unwrap();
    models::format::save(&m, dir, false).unwrap();
    dir.to_path_buf()
}

struct Fixture {
    tmp: tempfile::TempDir,
    data: PathBuf,
    models: Vec<PathBuf>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_dataset(&data);
    let models = [(1.0, 1), (0.1, 2), (0.02, 3)]
        .iter()
        .map(|&(keep, seed)| write_model(&tmp.path().join(format!("m{seed}")), keep, seed))
        .collect();
    Fixture { tmp, data, models }
}

fn options(f: &Fixture, models: &[PathBuf], out: &Path) -> SweepOptions {
    SweepOptions {
        models: models.to_vec(),
        data: f.data.clone(),
        limit: IMAGES,
        repeats: 1,
        out: out.to_path_buf(),
        method: Method::InsecureDealer,
        target: Target::Loopback { tls: false },
        network: "loopback".into(),
        rtt_ms: 0.0,
        series: None,
        timeout: Duration::from_secs(30),
        progress: false,
    }
}

#[test]
fn sweep_records_rows_and_resumes_without_redoing_points() {
    let f = fixture();
    let out = f.tmp.path().join("results.csv");
    let s = sweep::run(&options(&f, &f.models[..2], &out)).unwrap();
    assert_eq!((s.measured, s.skipped), (2, 0));
    let rows = results::read(&out).unwrap();
    assert_eq!(rows.len(), 2);
    for (r, dir) in rows.iter().zip(&f.models) {
        let (public, hash) = models::format::load_public(dir).unwrap();
        assert_eq!(r.model_sha256, hash);
        assert_eq!(r.relus_kept, public.relu_kept());
        assert_eq!(r.relus_total, 6508);
        assert_eq!(r.method, "insecure-dealer");
        assert_eq!((r.images, r.repeats, r.tls), (IMAGES, 1, false));
        assert_eq!(r.linear_macs, public.graph.macs().unwrap());
        // Online bytes are exactly the protocol's formula (docs/runtime.md, "Costs").
        let plan = pi_runtime::engine::Plan::new(
            &models::fixed::FixedProgram::structure(&public).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (r.online_bytes_up, r.online_bytes_down),
            plan.online_bytes()
        );
        let layers_kept = plan.layers.iter().filter(|l| l.kept_count > 0).count();
        assert_eq!(r.rounds, 1 + layers_kept as u64);
        assert!(r.online_ms_min <= r.online_ms_median && r.online_ms_median <= r.online_ms_max);
        assert!(r.offline_bytes_up > 0 && r.offline_ms_median > 0.0);
        for a in [r.f32_accuracy, r.fixed_accuracy, r.secure_accuracy] {
            assert!((0.0..=1.0).contains(&a));
        }
    }
    // A second sweep over all three models measures only the new one and leaves the
    // finished rows exactly as they were.
    let s = sweep::run(&options(&f, &f.models, &out)).unwrap();
    assert_eq!((s.measured, s.skipped), (1, 2));
    let again = results::read(&out).unwrap();
    assert_eq!(again.len(), 3);
    assert_eq!(&again[..2], &rows[..]);
    // Another network label is another point.
    let mut o = options(&f, &f.models[2..], &out);
    o.network = "rtt-1ms".into();
    o.rtt_ms = 1.0;
    assert_eq!(sweep::run(&o).unwrap().measured, 1);
    // The table lists every row.
    assert_eq!(
        sweep::table(&results::read(&out).unwrap()).lines().count(),
        1 + 4
    );
}

#[test]
fn bad_inputs_are_clear_errors_and_touch_nothing() {
    let f = fixture();
    let out = f.tmp.path().join("r.json");
    let err = |o: &SweepOptions| sweep::run(o).unwrap_err().to_string();

    let missing = f.tmp.path().join("no-such-model");
    let e = err(&options(&f, std::slice::from_ref(&missing), &out));
    assert!(e.contains("no-such-model"), "{e}");
    assert!(!out.exists(), "nothing written on error");

    let mut o = options(&f, &f.models[..1], &out);
    o.data = f.tmp.path().join("no-data");
    let e = err(&o);
    assert!(e.contains("dataset") && e.contains("no-data"), "{e}");

    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = options(&f, &f.models[..1], &out);
    o.target = Target::Remote {
        addr: format!("127.0.0.1:{port}"),
        tls: None,
    };
    let e = err(&o);
    assert!(e.contains("cannot connect to 127.0.0.1"), "{e}");
    o.models = f.models.clone();
    assert!(err(&o).contains("exactly one model directory"));

    let bad = f.tmp.path().join("bad.csv");
    std::fs::write(&bad, "this,is,not\na,results,file\n").unwrap();
    let e = err(&options(&f, &f.models[..1], &bad));
    assert!(
        e.contains("bad.csv") && e.contains("missing columns"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "this,is,not\na,results,file\n",
        "a malformed results file is left alone"
    );

    let e = err(&options(&f, &f.models[..1], &f.tmp.path().join("r.txt")));
    assert!(e.contains(".csv or .json"), "{e}");
}

/// The method column holds the session's names (what `pi-client --json` reports).
#[test]
fn method_names_are_the_sessions() {
    assert_eq!(
        sweep::method_name(Method::InsecureDealer),
        "insecure-dealer"
    );
    assert_eq!(sweep::method_name(Method::HeBfv), "he-bfv");
}
