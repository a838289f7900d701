//! SNL end to end on a Fashion-MNIST subset (CPU, seconds): budgets reached, exported
//! masks consistent, accuracy far above chance, f32 executor parity, resumption.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

use models::data::{Dataset, DatasetKind, Split};
use models::exec::F32Executor;
use models::format;
use models::model::Replacement;
use tch::{Device, Tensor};
use trainer::TrainError;
use trainer::net::Granularity;
use trainer::poly::PolyInit;
use trainer::schedule::Schedule;
use trainer::snl::{self, Budget, Common, Linearize, Pretrain};

fn fmnist() -> Option<PathBuf> {
    let dir = PathBuf::from("/usr/share/datasets/fashion-mnist");
    if dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        return Some(dir);
    }
    assert!(
        std::env::var("SNL_REQUIRE_DATA").as_deref() != Ok("1"),
        "Fashion-MNIST missing (apt-get install dataset-fashion-mnist)"
    );
    eprintln!("skipping: Fashion-MNIST not installed");
    None
}

fn common(data: &Path, out: &Path, train: usize) -> Common {
    tch::set_num_threads(1);
    Common {
        dataset: DatasetKind::FashionMnist,
        data_dir: data.to_path_buf(),
        batch: 128,
        seed: 7,
        out: out.to_path_buf(),
        device: Device::Cpu,
        train_limit: Some(train),
        test_limit: Some(500),
        progress: false,
        stop_after: None,
        amp: false,
    }
}

/// A LeNet-5 pretrained on the first `train` images, in `dir/pre/model`.
fn pretrained(data: &Path, dir: &Path, train: usize, epochs: usize) -> PathBuf {
    snl::pretrain(&Pretrain {
        common: common(data, &dir.join("pre"), train),
        arch: "lenet5".into(),
        epochs,
        lr: 0.1,
        schedule: Schedule::OneCycle { pct_start: 0.15 },
    })
    .unwrap()
}

fn linearize(c: Common, model: &Path, budgets: Vec<Budget>, finetune: usize) -> Linearize {
    Linearize {
        common: c,
        model: model.to_path_buf(),
        budgets,
        latency_budgets: Vec::new(),
        pricing: None,
        lambda: 1e-3,
        lambda_growth: 1.1,
        min_drop: 0.0,
        warmup: 1,
        threshold: 1e-2,
        search_lr: 5e-3,
        max_search_epochs: 60,
        finetune_epochs: finetune,
        finetune_lr: 1e-3,
        granularity: Granularity::Position,
        replacement: Replacement::Identity,
        poly_penalty: 1.0,
        poly_clip_grad: 5.0,
        square_channels: 1.0,
        poly_init: PolyInit::Fit,
    }
}

#[test]
fn tiny_run_reaches_every_budget_and_exports_what_it_reports() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let c = common(&data, &t.path().join("pre"), 4000);
    let base = snl::pretrain(&Pretrain {
        common: c.clone(),
        arch: "lenet5".into(),
        epochs: 2,
        lr: 0.1,
        schedule: Schedule::OneCycle { pct_start: 0.15 },
    })
    .unwrap();
    let (base_model, _) = format::load(&base).unwrap();
    let total = base_model.public.relu_total();
    assert_eq!(total, 6508);

    let c2 = common(&data, &t.path().join("snl"), 4000);
    let out = snl::linearize(&linearize(
        c2.clone(),
        &base,
        vec![Budget::Relative(0.3), Budget::Absolute(500)],
        1,
    ))
    .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].budget, (6508.0 * 0.3f64).floor() as usize);
    assert_eq!(out[1].budget, 500);

    // An untrained network of the same architecture, for the margin.
    let untrained = models::Model::random(base_model.public.clone(), 99).unwrap();
    let chance = snl::evaluate(&untrained, &c2).unwrap();
    for o in &out {
        let (m, _) = format::load(&o.path).unwrap();
        assert!(
            o.kept <= o.budget,
            "{} kept for budget {}",
            o.kept,
            o.budget
        );
        assert_eq!(m.public.relu_kept(), o.kept);
        assert_eq!(m.provenance["budget"], o.budget);
        assert_eq!(m.provenance["relu_kept"], o.kept);
        let acc = snl::evaluate(&m, &c2).unwrap();
        assert!(
            (acc - o.test_accuracy).abs() < 1e-9,
            "stored {} vs evaluated {acc}",
            o.test_accuracy
        );
        assert!(
            acc > chance + 0.4,
            "budget {}: accuracy {acc} vs untrained {chance}",
            o.budget
        );
    }

    // The models crate's f32 executor reproduces libtorch's logits for the exported model.
    let (m, _) = format::load(&out[1].path).unwrap();
    let ds = Dataset::load(DatasetKind::FashionMnist, &data, Split::Test, Some(100)).unwrap();
    let xs: Vec<Vec<f32>> = (0..ds.len())
        .map(|i| m.public.normalization.apply(ds.image(i)))
        .collect();
    let flat: Vec<f32> = xs.concat();
    let input = Tensor::from_slice(&flat).reshape([100, 1, 28, 28]);
    let torch_logits = snl::logits(&m, &input).unwrap();
    let exec = F32Executor::new(&m).unwrap();
    let mut worst = 0f64;
    for (i, x) in xs.iter().enumerate() {
        let ours = exec.forward(x).unwrap();
        let theirs = Vec::<f32>::try_from(torch_logits.get(i as i64)).unwrap();
        let scale = theirs.iter().fold(1f32, |a, v| a.max(v.abs()));
        for (a, b) in ours.iter().zip(&theirs) {
            worst = worst.max(f64::from((a - b).abs() / scale));
        }
    }
    assert!(worst <= 1e-4, "max relative logit error {worst}");
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let budgets = vec![Budget::Relative(0.2)];
    let whole = snl::linearize(&linearize(
        common(&data, &t.path().join("a"), 2000),
        &base,
        budgets.clone(),
        2,
    ))
    .unwrap();

    // Killed after 2 epochs of work, then after 2 more, then run to the end.
    let mut c = common(&data, &t.path().join("b"), 2000);
    c.stop_after = Some(2);
    for _ in 0..2 {
        match snl::linearize(&linearize(c.clone(), &base, budgets.clone(), 2)) {
            Err(TrainError::Stopped(2)) => {}
            other => panic!("expected a stop, got {other:?}"),
        }
    }
    c.stop_after = None;
    let resumed = snl::linearize(&linearize(c, &base, budgets, 2)).unwrap();

    let (a, _) = format::load(&whole[0].path).unwrap();
    let (b, _) = format::load(&resumed[0].path).unwrap();
    assert_eq!(
        a.public.masks, b.public.masks,
        "masks differ after resumption"
    );
    assert_eq!(whole[0].test_accuracy, resumed[0].test_accuracy);
    assert_eq!(a.weights, b.weights);

    // The log's wall clock continues across resumptions: within each phase (and budget)
    // `seconds` never goes back, although the run was three processes.
    let log = std::fs::read_to_string(t.path().join("b").join("log.jsonl")).unwrap();
    let mut last: std::collections::BTreeMap<String, f64> = Default::default();
    let mut lines = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let (Some(phase), Some(secs)) = (v["phase"].as_str(), v["seconds"].as_f64()) else {
            continue;
        };
        let key = format!("{phase}/{}", v["budget"]);
        let prev = last.insert(key.clone(), secs).unwrap_or(0.0);
        assert!(
            secs >= prev,
            "{key}: seconds went back from {prev} to {secs}"
        );
        lines += 1;
    }
    assert!(lines >= 4, "only {lines} timed log lines");
}

#[test]
fn bad_requests_are_clear_errors() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let c = common(&data, &t.path().join("x"), 500);
    let e = snl::pretrain(&Pretrain {
        common: c.clone(),
        arch: "resnet20".into(),
        epochs: 1,
        lr: 0.1,
        schedule: Schedule::OneCycle { pct_start: 0.15 },
    })
    .unwrap_err();
    assert!(e.to_string().contains("takes [3, 32, 32] images"), "{e}");
    assert!(
        Budget::parse("abc").is_err()
            && Budget::parse("0").is_err()
            && Budget::parse("150%").is_err()
    );
    assert_eq!(Budget::parse("10%").unwrap(), Budget::Relative(0.1));
    assert_eq!(Budget::parse("0.25").unwrap(), Budget::Relative(0.25));
    assert_eq!(Budget::parse("15000").unwrap(), Budget::Absolute(15000));
    let e = snl::linearize(&linearize(
        c.clone(),
        &t.path().join("missing"),
        vec![Budget::Absolute(10)],
        1,
    ))
    .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let mut bad = c;
    bad.data_dir = t.path().join("nodata");
    let e = snl::pretrain(&Pretrain {
        common: bad,
        arch: "lenet5".into(),
        epochs: 1,
        lr: 0.1,
        schedule: Schedule::OneCycle { pct_start: 0.15 },
    })
    .unwrap_err();
    assert!(e.to_string().contains("nodata"), "{e}");
    let e = trainer::device("tpu").unwrap_err();
    assert!(e.to_string().contains("expected cpu, cuda"), "{e}");
}

#[test]
fn channelwise_search_keeps_whole_channels() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let mut l = linearize(
        common(&data, &t.path().join("ch"), 2000),
        &base,
        vec![Budget::Relative(0.5)],
        0,
    );
    l.granularity = Granularity::Channel;
    let out = snl::linearize(&l).unwrap();
    let (m, _) = format::load(&out[0].path).unwrap();
    assert!(out[0].kept <= out[0].budget);
    for (site, mask) in &m.public.masks {
        let plane = mask.shape[1] * mask.shape[2];
        for ch in mask.kept.chunks(plane) {
            assert!(
                ch.iter().all(|&k| k == ch[0]),
                "{site}: a channel is partly kept"
            );
        }
    }
}

/// Budgets close together, with a lambda so large that the threshold count falls through
/// all of them between two checks: each model still keeps exactly its budget's count
/// (top-k alphas at the snapshot), so distinct budgets give distinct models.
#[test]
fn budgets_are_hit_exactly_and_give_distinct_models() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let mut l = linearize(
        common(&data, &t.path().join("exact"), 2000),
        &base,
        vec![
            Budget::Relative(0.5),
            Budget::Relative(0.45),
            Budget::Absolute(2600),
            Budget::Absolute(2590),
        ],
        0,
    );
    l.lambda = 0.5;
    l.search_lr = 5e-2;
    let out = snl::linearize(&l).unwrap();
    assert_eq!(out.len(), 4);
    let mut masks = Vec::new();
    for o in &out {
        let (m, _) = format::load(&o.path).unwrap();
        let tolerance = (o.budget / 50).max(200);
        assert!(
            o.kept <= o.budget && o.budget - o.kept <= tolerance,
            "budget {}: {} kept",
            o.budget,
            o.kept
        );
        // Position alphas: exactly the budget.
        assert_eq!(o.kept, o.budget);
        assert_eq!(m.public.relu_kept(), o.budget);
        masks.push(m.public.masks);
    }
    for i in 0..masks.len() {
        for j in i + 1..masks.len() {
            assert_ne!(
                masks[i], masks[j],
                "budgets {i} and {j} gave the same masks"
            );
        }
    }
    // The snapshot records how far the threshold count had fallen: here below several
    // budgets at once, which is what top-k is for.
    let log = std::fs::read_to_string(t.path().join("exact/log.jsonl")).unwrap();
    assert!(log.contains("\"phase\":\"search\""), "{log}");
}

/// `--replacement quadratic`: every site of the exported model is quadratic, its
/// coefficients were fitted (not the identity), the model loads, and the `models` f32
/// executor reproduces libtorch's logits; a fine-tuning killed after its first epoch
/// resumes (coefficients and their momentum from the checkpoint) to the same model.
#[test]
fn quadratic_replacement_exports_what_the_executor_reproduces_and_resumes() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let budgets = vec![Budget::Relative(0.2)];
    let mut l = linearize(
        common(&data, &t.path().join("q"), 2000),
        &base,
        budgets.clone(),
        2,
    );
    l.replacement = Replacement::Quadratic;
    let out = snl::linearize(&l).unwrap();
    let (m, _) = format::load(&out[0].path).unwrap();
    assert!(m.public.has_quadratic());
    for (site, mask) in &m.public.masks {
        assert_eq!(m.public.replacement(site), Replacement::Quadratic, "{site}");
        let poly = m.weight(&models::model::poly_param(site)).unwrap();
        assert_eq!(poly.shape, vec![3, mask.shape[0]]);
        // Fitted to relu: a > 0 on channels with dropped positions (sites without any
        // keep the identity).
        if mask.kept_count() == mask.len() {
            continue;
        }
        assert!(
            poly.data[..mask.shape[0]].iter().any(|&a| a > 0.01),
            "{site}: {poly:?}"
        );
    }
    assert_eq!(m.provenance["replacement"], "quadratic");
    let log = std::fs::read_to_string(t.path().join("q/log.jsonl")).unwrap();
    assert!(log.contains("\"phase\":\"poly_fit\""), "{log}");
    assert!(log.contains("\"phase\":\"poly_init\""), "{log}");
    assert!(out[0].test_accuracy > 0.5, "{}", out[0].test_accuracy);

    let ds = Dataset::load(DatasetKind::FashionMnist, &data, Split::Test, Some(50)).unwrap();
    let xs: Vec<Vec<f32>> = (0..ds.len())
        .map(|i| m.public.normalization.apply(ds.image(i)))
        .collect();
    let input = Tensor::from_slice(&xs.concat()).reshape([50, 1, 28, 28]);
    let torch_logits = snl::logits(&m, &input).unwrap();
    let exec = F32Executor::new(&m).unwrap();
    let mut worst = 0f64;
    for (i, x) in xs.iter().enumerate() {
        let ours = exec.forward(x).unwrap();
        let theirs = Vec::<f32>::try_from(torch_logits.get(i as i64)).unwrap();
        let scale = theirs.iter().fold(1f32, |a, v| a.max(v.abs()));
        for (a, b) in ours.iter().zip(&theirs) {
            worst = worst.max(f64::from((a - b).abs() / scale));
        }
    }
    assert!(worst <= 1e-4, "max relative logit error {worst}");

    // The same fine-tuning from the same snapshot, killed after one epoch and resumed.
    let r = t.path().join("r");
    std::fs::create_dir_all(r.join("search")).unwrap();
    let snap = format!("snapshot-{}", out[0].budget);
    let (s, _) = format::load(&t.path().join("q/search").join(&snap)).unwrap();
    format::save(&s, &r.join("search").join(&snap), true).unwrap();
    l.common = common(&data, &r, 2000);
    l.common.stop_after = Some(1);
    match snl::linearize(&l) {
        Err(TrainError::Stopped(1)) => {}
        other => panic!("expected a stop, got {other:?}"),
    }
    // An identity run cannot continue it.
    let mut id = l.clone();
    id.replacement = Replacement::Identity;
    let e = snl::linearize(&id).unwrap_err();
    assert!(e.to_string().contains("quadratic replacement"), "{e}");
    l.common.stop_after = None;
    let resumed = snl::linearize(&l).unwrap();
    let (b, _) = format::load(&resumed[0].path).unwrap();
    assert_eq!(out[0].test_accuracy, resumed[0].test_accuracy);
    assert_eq!(m.weights, b.weights);
    assert_eq!(m.public, b.public);
}

/// `--square-channels 50%`: at most half of each site's dropped positions keep their
/// square; the other channels are affine in the public part with `a` exactly 0 after the
/// fine-tuning, the model loads (the format checks it), and the log records the choice.
/// A run with another fraction cannot continue the fine-tuning.
#[test]
fn square_channels_leave_affine_channels_with_a_zero() {
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let mut l = linearize(
        common(&data, &t.path().join("h"), 2000),
        &base,
        vec![Budget::Relative(0.2)],
        1,
    );
    l.replacement = Replacement::Quadratic;
    l.square_channels = 0.5;
    let out = snl::linearize(&l).unwrap();
    let (m, _) = format::load(&out[0].path).unwrap();
    assert!(!m.public.affine_channels.is_empty());
    let (mut squared, mut dropped) = (0, 0);
    for (site, mask) in &m.public.masks {
        let d = mask.len() - mask.kept_count();
        let sq = m.public.squared_positions(site);
        assert!(
            sq as f64 <= 0.5 * d as f64 + 0.5,
            "{site}: {sq} of {d} squared"
        );
        squared += sq;
        dropped += d;
        let poly = m.weight(&models::model::poly_param(site)).unwrap();
        for &c in m.public.affine_channels.get(site).into_iter().flatten() {
            assert_eq!(poly.data[c], 0.0, "{site} channel {c}");
        }
    }
    assert!(squared > 0 && squared < dropped, "{squared} of {dropped}");
    assert_eq!(m.provenance["hyperparameters"]["square_channels"], 0.5);
    let log = std::fs::read_to_string(t.path().join("h/log.jsonl")).unwrap();
    assert!(log.contains("\"squared_positions\""), "{log}");
    // Another fraction on the same run directory is refused, for the finished model and
    // for the checkpoint of an unfinished fine-tuning.
    l.square_channels = 0.25;
    let e = snl::linearize(&l).unwrap_err().to_string();
    assert!(e.contains("squared"), "{e}");
    std::fs::remove_dir_all(&out[0].path).unwrap();
    let e = snl::linearize(&l).unwrap_err().to_string();
    assert!(e.contains("squared"), "{e}");
    // And the fraction is checked.
    l.square_channels = 0.0;
    assert!(snl::linearize(&l).is_err());
    l.square_channels = 0.5;
    l.replacement = Replacement::Identity;
    let e = snl::linearize(&l).unwrap_err().to_string();
    assert!(e.contains("--square-channels"), "{e}");

    // --poly-init identity on the same snapshot: with no fine-tune epoch the model is
    // the identity network (every coefficient (0, 1, 0)), squared channels still chosen
    // by the fit; one epoch learns squares from a = 0 while the affine channels
    // keep a = 0; a run asking for the fit cannot continue it.
    let snap = format!("snapshot-{}", out[0].budget);
    let (s, _) = format::load(&t.path().join("h/search").join(&snap)).unwrap();
    l.replacement = Replacement::Quadratic;
    l.poly_init = PolyInit::Identity;
    for (dir, epochs) in [("i0", 0), ("i1", 1)] {
        format::save(&s, &t.path().join(dir).join("search").join(&snap), true).unwrap();
        l.common = common(&data, &t.path().join(dir), 2000);
        l.finetune_epochs = epochs;
        let out_i = snl::linearize(&l).unwrap();
        let (mi, _) = format::load(&out_i[0].path).unwrap();
        // The fit picks the squared channels on the network as it will start (earlier
        // sites at the identity here), so the choice may differ from the fitted run's.
        assert!(!mi.public.affine_channels.is_empty());
        assert_eq!(mi.provenance["hyperparameters"]["poly_init"], "identity");
        let mut learned = 0;
        for site in m.public.masks.keys() {
            let poly = mi.weight(&models::model::poly_param(site)).unwrap();
            let c = poly.shape[1];
            let affine = mi.public.affine_channels.get(site);
            for ch in 0..c {
                let abc = [poly.data[ch], poly.data[c + ch], poly.data[2 * c + ch]];
                if epochs == 0 {
                    assert_eq!(abc, [0.0, 1.0, 0.0], "{site} channel {ch}");
                } else if affine.is_some_and(|a| a.contains(&ch)) {
                    assert_eq!(abc[0], 0.0, "{site} channel {ch}");
                } else if abc[0] != 0.0 {
                    learned += 1;
                }
            }
        }
        assert!(epochs == 0 || learned > 0, "no square learned from a = 0");
        let log = std::fs::read_to_string(t.path().join(dir).join("log.jsonl")).unwrap();
        assert!(log.contains("\"init\":\"identity\""), "{log}");
    }
    l.poly_init = PolyInit::Fit;
    let e = snl::linearize(&l).unwrap_err().to_string();
    assert!(e.contains("--poly-init identity"), "{e}");
    // The library refuses an identity start without quadratic sites, as the CLI does.
    l.poly_init = PolyInit::Identity;
    l.replacement = Replacement::Identity;
    let e = snl::linearize(&l).unwrap_err().to_string();
    assert!(e.contains("--poly-init applies"), "{e}");
}

/// The affine fit of relu on U[-1, 1] is b = 1/2, c = 1/4; the choice of squared
/// channels follows the gains within the share of positions.
#[test]
fn affine_fit_and_the_choice_of_squared_channels() {
    use trainer::poly::{Moments, affine_channels, fit_relu_affine};
    let exact = Moments {
        s: [1.0, 0.0, 1.0 / 3.0, 0.0, 1.0 / 5.0],
        r: [1.0 / 4.0, 1.0 / 6.0, 1.0 / 8.0],
        ..Default::default()
    };
    let f = fit_relu_affine(&exact).unwrap();
    assert!(
        f[0] == 0.0 && (f[1] - 0.5).abs() < 1e-12 && (f[2] - 0.25).abs() < 1e-12,
        "{f:?}"
    );
    // The quadratic fit never does worse than the affine one.
    let q = trainer::poly::fit_relu(&exact).unwrap();
    assert!(exact.sse(q) <= exact.sse(f));
    assert!(fit_relu_affine(&Moments::default()).is_none());
    assert!(fit_relu_affine(&Moments::of(&[0.5; 10])).is_none());
    // Gains 3, 1, 2, 0 over 10 positions each: half the positions square channels 0 and 2.
    assert_eq!(
        affine_channels(&[10; 4], &[3.0, 1.0, 2.0, 0.0], 0.5),
        vec![1, 3]
    );
    assert_eq!(
        affine_channels(&[10; 4], &[3.0, 1.0, 2.0, 0.0], 1.0),
        Vec::<usize>::new()
    );
    // A large channel that does not fit is passed over for a smaller one.
    assert_eq!(
        affine_channels(&[10, 30, 10], &[1.0, 5.0, 0.5], 0.5),
        vec![1]
    );
    // A channel without dropped positions costs nothing and stays squared.
    assert_eq!(affine_channels(&[0, 10], &[0.0, 1.0], 0.25), vec![1]);
}

/// The normal equations of the least-squares fit of relu by a x^2 + b x + c: for x
/// uniform on [-1, 1] the fit is a = 15/32, b = 1/2, c = 3/32.
#[test]
fn quadratic_fit_of_relu_on_a_uniform_distribution() {
    use trainer::poly::{Moments, channel_moments, fit_relu};
    let close = |got: [f64; 3], tol: f64| {
        let want = [15.0 / 32.0, 0.5, 3.0 / 32.0];
        assert!(
            got.iter().zip(&want).all(|(g, w)| (g - w).abs() < tol),
            "{got:?} vs {want:?}"
        );
    };
    // The exact moments of U[-1, 1] (per sample): E x^k = 1/(k+1) for even k, 0 for odd;
    // E relu(x) x^k = 1/(2(k+2)).
    let exact = Moments {
        s: [1.0, 0.0, 1.0 / 3.0, 0.0, 1.0 / 5.0],
        r: [1.0 / 4.0, 1.0 / 6.0, 1.0 / 8.0],
        ..Default::default()
    };
    close(fit_relu(&exact).unwrap(), 1e-12);
    // Samples through the tensor accumulator: channel 0 a grid on [-1, 1], channel 1 the
    // same grid shifted by 3 with half its positions masked out (kept, not dropped).
    let n = 20_001i64;
    let grid = Tensor::linspace(-1.0, 1.0, n, (tch::Kind::Float, Device::Cpu));
    let x = Tensor::stack(&[grid.shallow_clone(), &grid + 3.0], 0).reshape([1, 2, 1, n]);
    let dropped = Tensor::ones([1, 2, 1, n], (tch::Kind::Float, Device::Cpu));
    let _ = dropped.narrow(1, 1, 1).narrow(3, 0, n / 2).fill_(0.0);
    let m = channel_moments(&x, &dropped);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].s[0], n as f64);
    assert_eq!(m[1].s[0], (n - n / 2) as f64);
    close(fit_relu(&m[0]).unwrap(), 1e-3);
    // All of channel 1's dropped samples are positive: relu is x there, and the fit too.
    let f = fit_relu(&m[1]).unwrap();
    assert!(
        f[0].abs() < 1e-3 && (f[1] - 1.0).abs() < 1e-2 && f[2].abs() < 1e-2,
        "{f:?}"
    );
    // The same moments twice: twice the sums, the same fit.
    let mut twice = m[0];
    twice.add(&m[0]);
    close(fit_relu(&twice).unwrap(), 1e-3);
    // No samples, or one value repeated: no fit.
    assert!(fit_relu(&Moments::default()).is_none());
    assert!(fit_relu(&Moments::of(&[0.5; 100])).is_none());
    assert!(fit_relu(&Moments::of(&[0.5, -0.5])).is_none());
    // Three distinct values: an exact interpolation.
    let f = fit_relu(&Moments::of(&[-1.0, 0.0, 2.0])).unwrap();
    let q = |x: f64| (f[0] * x + f[1]) * x + f[2];
    assert!((q(-1.0)).abs() < 1e-9 && q(0.0).abs() < 1e-9 && (q(2.0) - 2.0).abs() < 1e-9);
}

/// `snl-train linearize --replacement` rejects unknown names before touching anything.
#[test]
fn bad_replacement_is_a_clear_error() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--replacement", "cubic"],
            "--replacement \"cubic\": expected identity or quadratic",
        ),
        (
            &["--replacement", "quadratic", "--poly-init", "zero"],
            "'zero' for '--poly-init <POLY_INIT>': expected fit or identity",
        ),
        (
            &["--replacement", "identity", "--poly-init", "identity"],
            "--poly-init applies to --replacement quadratic",
        ),
    ];
    for (extra, want) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_snl-train"))
            .args([
                "linearize",
                "--model",
                "/nonexistent",
                "--data",
                "/nonexistent",
            ])
            .args(["--budget", "10%"])
            .args(extra)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{err}");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_snl-train"))
        .args(["linearize", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--replacement")
            && help.contains("--poly-penalty")
            && help.contains("--poly-init"),
        "{help}"
    );
}

/// A latency model of `per_kept_relu_ms`, `per_round_ms`, one RTT per round and a small
/// MAC term.
fn cost_model(per_kept_relu_ms: f64, per_round_ms: f64) -> models::latency::LatencyModel {
    models::latency::LatencyModel {
        schema: models::latency::LATENCY_SCHEMA.into(),
        per_kept_relu_ms,
        per_mac_ms: 1e-7,
        per_round_ms,
        per_round_rtt: 1.0,
        per_square_ms: 0.0,
        fitted_rows: 0,
    }
}

/// The predicted online latency of `public` with every ReLU linearized and as it is.
fn latency_range(
    public: &models::model::PublicModel,
    cost: &models::latency::LatencyModel,
    link: models::latency::Link,
) -> (f64, f64) {
    let predict = |p: &models::model::PublicModel| {
        cost.predict(&models::latency::OnlineWork::of(p).unwrap(), link)
            .online_ms
    };
    let mut none = public.clone();
    for m in none.masks.values_mut() {
        *m = models::model::Mask::none_kept(m.shape);
    }
    (predict(&none), predict(public))
}

/// `--latency-budget`: with a cost model and a link, each latency budget's model is
/// predicted (recomputed here from its public part) to fit its budget, and fills it to
/// within one ReLU's price; the penalty weighs the small dense sites (whose emptying saves
/// a 10 ms round) above the first convolution's; budgets the model cannot meet are clear
/// errors.
#[test]
fn latency_budgets_fit_their_prediction() {
    use models::latency::{Link, OnlineWork, site_prices};
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let (base_model, _) = format::load(&base).unwrap();
    let cost = cost_model(0.003, 0.2);
    let link = Link {
        rtt_ms: 10.0,
        mbit: Some(100.0),
    };
    let predict =
        |p: &models::model::PublicModel| cost.predict(&OnlineWork::of(p).unwrap(), link).online_ms;
    let (floor, full) = latency_range(&base_model.public, &cost, link);
    assert!(full > floor + 50.0, "{floor} .. {full}");
    let budgets = [floor + 0.4 * (full - floor), floor + 0.15 * (full - floor)];
    let budgets: Vec<f64> = budgets.iter().map(|b| (b * 10.0).round() / 10.0).collect();
    let pricing = snl::Pricing {
        model: cost.clone(),
        link,
    };
    let mut l = linearize(
        common(&data, &t.path().join("latency"), 2000),
        &base,
        vec![],
        0,
    );
    l.latency_budgets = budgets.clone();
    l.pricing = Some(pricing.clone());
    l.lambda = 0.5;
    l.search_lr = 5e-2;
    let out = snl::linearize(&l).unwrap();
    assert_eq!(out.len(), 2);
    let prices = site_prices(&base_model.public, &cost, link, 1.0).unwrap();
    let dearest = prices.values().map(|p| p.per_relu_ms).fold(0.0, f64::max);
    for (o, &b) in out.iter().zip(&budgets) {
        assert_eq!(o.latency_budget_ms, Some(b));
        assert_eq!(
            o.path.file_name().unwrap(),
            format!("budget-{b}ms").as_str()
        );
        let (m, _) = format::load(&o.path).unwrap();
        let p = predict(&m.public);
        assert_eq!(o.predicted_ms, Some(p));
        assert!(p <= b, "predicted {p} ms for a budget of {b} ms");
        assert!(b - p <= dearest + 1e-9, "predicted {p} ms, {b} ms allowed");
        assert_eq!(m.public.relu_kept(), o.kept);
        assert_eq!(m.provenance["latency_budget_ms"], b);
        assert_eq!(m.provenance["latency"]["predicted_online_ms"], p);
    }
    // The penalty's weights: mean 1 per ReLU; a dense site's ReLUs weigh more than the
    // first convolution's (their share of the round is 10.2 ms over 84 or 120 ReLUs).
    let log = std::fs::read_to_string(t.path().join("latency/log.jsonl")).unwrap();
    let start: serde_json::Value =
        serde_json::from_str(log.lines().find(|l| l.contains("\"start\"")).unwrap()).unwrap();
    let w = start["penalty_weights"].as_object().unwrap();
    let sites = base_model.public.graph.sites().unwrap();
    let weight = |i: usize| w[&sites[i].name].as_f64().unwrap();
    let len = |i: usize| sites[i].shape.iter().product::<usize>() as f64;
    let mean: f64 = (0..sites.len()).map(|i| weight(i) * len(i)).sum::<f64>()
        / (0..sites.len()).map(len).sum::<f64>();
    assert!((mean - 1.0).abs() < 1e-9, "{w:?}");
    assert!(weight(sites.len() - 1) > 2.0 * weight(0), "{w:?}");

    // The search's checkpoint remembers its pricing: resuming it for a new budget without
    // the cost model (or with another link) is refused rather than mixing penalties.
    let mut again = linearize(
        common(&data, &t.path().join("latency"), 2000),
        &base,
        vec![Budget::Absolute(50)],
        0,
    );
    again.lambda = 0.5;
    let e = snl::linearize(&again).unwrap_err().to_string();
    assert!(
        e.contains("holds a mask search with latency pricing"),
        "{e}"
    );
    // Nor is it resumed for the quadratic replacement under the same link: its sites keep
    // their rounds and pay for squares, so the identity-priced masks are not its own.
    // (A ReLU budget: the search's latency budgets are below the quadratic floor, since
    // its sites keep their rounds, and are refused before the checkpoint is read.)
    again.pricing = Some(pricing.clone());
    again.replacement = Replacement::Quadratic;
    let e = snl::linearize(&again).unwrap_err().to_string();
    assert!(
        e.contains("holds a mask search with latency pricing")
            && e.contains("\"replacement\":\"quadratic\""),
        "{e}"
    );

    // A budget below what the linear layers and rounds alone take, and one without a
    // cost model, are refused before any training.
    let mut low = linearize(common(&data, &t.path().join("low"), 2000), &base, vec![], 0);
    low.latency_budgets = vec![floor * 0.5];
    low.pricing = Some(pricing);
    let e = snl::linearize(&low).unwrap_err().to_string();
    assert!(e.contains("cannot get faster"), "{e}");
    low.pricing = None;
    let e = snl::linearize(&low).unwrap_err().to_string();
    assert!(e.contains("needs a cost model"), "{e}");
}

/// At 10 ms RTT a round costs as much as thousands of kept ReLUs: the latency-priced
/// search reaches a budget close to the all-linear floor by emptying a site (one round
/// fewer than the base model), and fills the rest of the budget with ReLUs.
#[test]
fn latency_pricing_at_high_rtt_empties_a_site() {
    use models::latency::{Link, OnlineWork};
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let (base_model, _) = format::load(&base).unwrap();
    let cost = cost_model(0.0018, 0.18);
    let link = Link {
        rtt_ms: 10.0,
        mbit: None,
    };
    let work = |p: &models::model::PublicModel| OnlineWork::of(p).unwrap();
    let (floor, full) = latency_range(&base_model.public, &cost, link);
    let budget = ((floor + 0.2 * (full - floor)) * 10.0).round() / 10.0;
    let mut l = linearize(common(&data, &t.path().join("rtt"), 2000), &base, vec![], 0);
    l.latency_budgets = vec![budget];
    l.pricing = Some(snl::Pricing {
        model: cost.clone(),
        link,
    });
    // SNL's small lambda: with a large one the penalty swamps every alpha's task
    // gradient and Adam moves all alphas alike, whatever their weights.
    l.lambda = 1e-3;
    l.search_lr = 5e-3;
    let out = snl::linearize(&l).unwrap();
    let (m, _) = format::load(&out[0].path).unwrap();
    let w = work(&m.public);
    assert!(cost.predict(&w, link).online_ms <= budget);
    let empty: Vec<&String> = m
        .public
        .masks
        .iter()
        .filter(|(_, k)| k.kept_count() == 0)
        .map(|(s, _)| s)
        .collect();
    assert!(
        !empty.is_empty(),
        "no site emptied: {:?}",
        m.public
            .masks
            .values()
            .map(|k| k.kept_count())
            .collect::<Vec<_>>()
    );
    assert!(
        w.rounds < work(&base_model.public).rounds,
        "{} rounds, as many as the base model's",
        w.rounds
    );
    assert!(w.kept > 1000, "{} ReLUs kept", w.kept);
}

/// With `--replacement quadratic` a latency budget is priced on the quadratic model the
/// run exports (its squares' bytes, and its rounds: a quadratic site keeps its round even
/// when its mask is empty), so the exported model still fits the budget.
#[test]
fn latency_budget_prices_the_quadratic_model_it_exports() {
    use models::latency::{Link, OnlineWork};
    let Some(data) = fmnist() else { return };
    let t = tempfile::tempdir().unwrap();
    let base = pretrained(&data, t.path(), 2000, 1);
    let (base_model, _) = format::load(&base).unwrap();
    let cost = cost_model(0.003, 0.2);
    let link = Link {
        rtt_ms: 10.0,
        mbit: Some(100.0),
    };
    let mut quad = base_model.public.clone();
    let sites: Vec<String> = quad.masks.keys().cloned().collect();
    for s in &sites {
        quad.set_replacement(s, Replacement::Quadratic).unwrap();
    }
    let (floor, full) = latency_range(&quad, &cost, link);
    let (id_floor, _) = latency_range(&base_model.public, &cost, link);
    assert!(
        floor > id_floor,
        "squares cost bytes: {floor} vs {id_floor}"
    );
    let budget = ((floor + 0.3 * (full - floor)) * 10.0).round() / 10.0;
    let mut l = linearize(common(&data, &t.path().join("q"), 2000), &base, vec![], 0);
    l.latency_budgets = vec![budget];
    l.pricing = Some(snl::Pricing {
        model: cost.clone(),
        link,
    });
    l.replacement = Replacement::Quadratic;
    l.lambda = 0.5;
    l.search_lr = 5e-2;
    let out = snl::linearize(&l).unwrap();
    let (m, _) = format::load(&out[0].path).unwrap();
    assert!(m.public.has_quadratic());
    let p = cost
        .predict(&OnlineWork::of(&m.public).unwrap(), link)
        .online_ms;
    assert_eq!(out[0].predicted_ms, Some(p));
    assert!(p <= budget, "predicted {p} ms for a budget of {budget} ms");

    // With squares in a quarter of the linearized positions the search prices a quarter
    // of them (the most the fine-tune's choice keeps): the same budget buys more ReLUs,
    // and the exported model, priced exactly with its affine channels, still fits.
    let mut q25 = linearize(common(&data, &t.path().join("q25"), 2000), &base, vec![], 0);
    q25.latency_budgets = vec![budget];
    q25.pricing = l.pricing.clone();
    q25.replacement = Replacement::Quadratic;
    q25.square_channels = 0.25;
    q25.lambda = 0.5;
    q25.search_lr = 5e-2;
    let out25 = snl::linearize(&q25).unwrap();
    let (m25, _) = format::load(&out25[0].path).unwrap();
    assert!(!m25.public.affine_channels.is_empty());
    let work25 = OnlineWork::of(&m25.public).unwrap();
    let p25 = cost.predict(&work25, link).online_ms;
    assert_eq!(out25[0].predicted_ms, Some(p25));
    assert!(
        p25 <= budget,
        "predicted {p25} ms for a budget of {budget} ms"
    );
    // Its search priced at most what the model now costs: the snapshot's prediction,
    // from the masks alone, bounds the exact one.
    let mut bare = m25.public.clone();
    bare.affine_channels.clear();
    let bound = OnlineWork::with_square_share(&bare, 0.25).unwrap();
    assert!(bound.bytes_up >= work25.bytes_up, "{bound:?} vs {work25:?}");
    assert!(
        out25[0].kept > out[0].kept,
        "{} ReLUs with a quarter of the squares, {} with all",
        out25[0].kept,
        out[0].kept
    );
}
