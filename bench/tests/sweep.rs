//! `snl-bench sweep` end to end on small random LeNet-5 models and a 40-image
//! Fashion-MNIST-format test split written here (six of them classified privately): rows,
//! the full-test accuracy and agreement, resumption, and bad inputs.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bench::results;
use bench::sweep::{self, Method, SweepOptions, Target};
use models::data::{Dataset, DatasetKind, Split};
use models::fixed::FixedProgram;

/// Images classified by private inference (the sample).
const IMAGES: usize = 6;
/// Images of the test split (what the fixed-point executor classifies by default).
const SPLIT: usize = 40;

/// A test split in the IDX layout (uncompressed): [`SPLIT`] 28x28 images and `labels`.
fn write_dataset(dir: &Path, labels: &[u8]) {
    let mut img = vec![0, 0, 8, 3];
    for d in [SPLIT as u32, 28, 28] {
        img.extend(d.to_be_bytes());
    }
    img.extend((0..SPLIT * 784).map(|i| ((i * 37 + i / 784 * 11) % 251) as u8));
    let mut lab = vec![0, 0, 8, 1];
    lab.extend((SPLIT as u32).to_be_bytes());
    lab.extend(labels);
    std::fs::write(dir.join("t10k-images-idx3-ubyte"), img).unwrap();
    std::fs::write(dir.join("t10k-labels-idx1-ubyte"), lab).unwrap();
}

/// The fixed-point executor's class for each of the first `n` test images, computed here
/// directly (the sweep's own code is not used).
fn fixed_predictions(model: &Path, data: &Path, n: usize) -> Vec<usize> {
    let (m, _) = models::format::load(model).unwrap();
    let prog = FixedProgram::lower(&m).unwrap();
    let ds = Dataset::load(DatasetKind::FashionMnist, data, Split::Test, Some(n)).unwrap();
    assert_eq!(ds.len(), n);
    (0..n)
        .map(|i| {
            let x = m.public.normalization.apply(ds.image(i));
            models::tensor::argmax(&prog.forward(&x, false).unwrap().logits).unwrap()
        })
        .collect()
}

/// Accuracy of `preds` against the labels of the first `preds.len()` test images.
fn accuracy(preds: &[usize], data: &Path) -> f64 {
    let ds = Dataset::load(
        DatasetKind::FashionMnist,
        data,
        Split::Test,
        Some(preds.len()),
    )
    .unwrap();
    let hits = preds
        .iter()
        .enumerate()
        .filter(|&(i, &p)| p == ds.label(i))
        .count();
    hits as f64 / preds.len() as f64
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

/// Three models; the labels are chosen so that the first model's fixed-point prediction is
/// right on every third image (0, 3, 6, ...) and wrong elsewhere, so its accuracy on the
/// first n images is ceil(n/3)/n: different for every n the tests use.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    write_dataset(&data, &[0; SPLIT]);
    let models: Vec<PathBuf> = [(1.0, 1), (0.1, 2), (0.02, 3)]
        .iter()
        .map(|&(keep, seed)| write_model(&tmp.path().join(format!("m{seed}")), keep, seed))
        .collect();
    let pred = fixed_predictions(&models[0], &data, SPLIT);
    let labels: Vec<u8> = (0..SPLIT)
        .map(|i| ((pred[i] + usize::from(i % 3 != 0)) % 10) as u8)
        .collect();
    write_dataset(&data, &labels);
    Fixture { tmp, data, models }
}

fn options(f: &Fixture, models: &[PathBuf], out: &Path) -> SweepOptions {
    SweepOptions {
        models: models.to_vec(),
        data: f.data.clone(),
        limit: IMAGES,
        full_limit: None,
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
        // The squared positions the latency model prices (none here: identity sites).
        assert_eq!(
            r.squares,
            Some(models::latency::OnlineWork::of(&public).unwrap().squares)
        );
        // Online bytes are exactly the protocol's formula (docs/runtime.md, "Costs").
        let plan = pi_runtime::engine::Plan::new(
            &models::fixed::FixedProgram::structure(&public).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (r.online_bytes_up, r.online_bytes_down),
            plan.online_bytes()
        );
        // One round per layer with kept ReLUs or exactly truncated positions, plus one.
        let layers = plan
            .layers
            .iter()
            .filter(|l| l.kept_count + l.trunc_count > 0)
            .count();
        assert_eq!(r.rounds, 1 + layers as u64);
        assert_eq!(r.rounds, plan.online_rounds());
        assert!(r.online_ms_min <= r.online_ms_median && r.online_ms_median <= r.online_ms_max);
        assert!(r.offline_bytes_up > 0 && r.offline_ms_median > 0.0);
        for a in [r.f32_accuracy, r.fixed_accuracy, r.secure_accuracy] {
            assert!((0.0..=1.0).contains(&a));
        }
        // The current schema, the whole split in fixed point, the sample privately.
        assert_eq!(r.schema_version, results::SCHEMA_VERSION);
        assert_eq!((r.full_images, r.secure_images), (Some(SPLIT), IMAGES));
        let full = fixed_predictions(dir, &f.data, SPLIT);
        assert_eq!(r.fixed_accuracy_full, Some(accuracy(&full, &f.data)));
        assert_eq!(r.fixed_accuracy, accuracy(&full[..IMAGES], &f.data));
        // Private inference computes exactly the fixed-point executor's classes.
        assert_eq!(r.secure_agreement, Some(1.0));
        assert_eq!(r.secure_accuracy, r.fixed_accuracy);
    }
    // Model 1's labels make its accuracy depend on how many images were counted.
    assert_eq!(rows[0].fixed_accuracy_full, Some(14.0 / 40.0));
    assert_eq!(rows[0].fixed_accuracy, 2.0 / 6.0);
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
    // The table lists every row (and two lines saying what its columns are).
    assert_eq!(
        sweep::table(&results::read(&out).unwrap()).lines().count(),
        1 + 4 + 2
    );
}

/// `--full-limit`: the fixed-point accuracy is over exactly the images asked for (more or
/// fewer than the sample), equals the executor's own, and each size is its own point.
#[test]
fn full_test_accuracy_is_over_the_requested_images() {
    let f = fixture();
    let out = f.tmp.path().join("results.json");
    let direct = fixed_predictions(&f.models[0], &f.data, SPLIT);
    let mut want_rows = 0;
    for (full_limit, n) in [(Some(25), 25), (Some(3), 3), (Some(1000), SPLIT)] {
        let mut o = options(&f, &f.models[..1], &out);
        o.full_limit = full_limit;
        let s = sweep::run(&o).unwrap();
        assert_eq!((s.measured, s.skipped), (1, 0), "{full_limit:?}");
        want_rows += 1;
        assert_eq!(s.rows.len(), want_rows);
        let r = s.rows.last().unwrap();
        assert_eq!(r.full_images, Some(n));
        let want = accuracy(&direct[..n], &f.data);
        assert_eq!(r.fixed_accuracy_full, Some(want), "{full_limit:?}");
        // ceil(n/3)/n by construction of the labels: 9/25, 1/3, 14/40.
        assert_eq!(want, n.div_ceil(3) as f64 / n as f64);
        // The sample is the first six images whatever the full-test size.
        assert_eq!((r.images, r.secure_images), (IMAGES, IMAGES));
        assert_eq!(r.fixed_accuracy, 2.0 / 6.0);
        assert_eq!(r.secure_agreement, Some(1.0));
        assert_eq!(r.secure_accuracy, 2.0 / 6.0);
    }
    // Asking again for the whole split is the point already measured.
    let s = sweep::run(&options(&f, &f.models[..1], &out)).unwrap();
    assert_eq!((s.measured, s.skipped), (0, 1));
    assert_eq!(results::read(&out).unwrap(), s.rows);
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

    let mut o = options(&f, &f.models[..1], &out);
    o.full_limit = Some(0);
    assert!(err(&o).contains("--full-limit must be at least 1"));

    // A results file of schema version 1 is not appended to (it would mix versions), and
    // is left as it was.
    let old = f.tmp.path().join("old.csv");
    let v1 = format!(
        "{}\n1,lenet5,m,00ff,lenet5,fashion-mnist,insecure-dealer,loopback,0.0,false,6,1,6508,\
         6508,1,4,0.5,0.5,0.5,1.0,1.0,1.0,1.0,1.0,1.0,1,2,3,4,0.1.0,1795000000\n",
        results::COLUMNS_V1.join(",")
    );
    std::fs::write(&old, &v1).unwrap();
    assert_eq!(results::read(&old).unwrap()[0].schema_version, 1);
    let e = err(&options(&f, &f.models[..1], &old));
    assert!(
        e.contains("old.csv")
            && e.contains("schema version 1")
            && e.contains("does not mix versions")
            && e.contains("new --out"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&old).unwrap(), v1);
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
