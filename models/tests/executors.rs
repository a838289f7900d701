//! The fixed-point executor against the f32 executor on real images, within the error
//! bound derived in docs/fixed-point.md.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use models::data::{Dataset, DatasetKind, Split};
use models::exec::{F32Executor, calibrate_batchnorm};
use models::fixed::FixedProgram;
use models::tensor::argmax;

struct Report {
    images: usize,
    worst_ratio: f64,
    max_err: f64,
    max_sigma: f64,
    agree: usize,
    decided: usize,
    logit_scale: f64,
    overflows: usize,
}

/// Compares the executors on the first `n` images; fails on any logit outside the bound.
fn compare(m: &models::Model, ds: &Dataset, n: usize) -> Report {
    let f = F32Executor::new(m).unwrap();
    let p = FixedProgram::lower(m).unwrap();
    let mut r = Report {
        images: 0,
        worst_ratio: 0.0,
        max_err: 0.0,
        max_sigma: 0.0,
        agree: 0,
        decided: 0,
        logit_scale: 0.0,
        overflows: 0,
    };
    for i in 0..n.min(ds.len()) {
        let x = m.public.normalization.apply(ds.image(i));
        let a = f.forward(&x).unwrap();
        let b = p.forward(&x, true).unwrap();
        let est = b.error.as_ref().unwrap();
        let sigma = est.bound();
        r.overflows += b.stats.iter().map(|s| s.relu_overflows).sum::<usize>();
        for ((&ya, &yb), &s) in a.iter().zip(&b.logits).zip(&sigma) {
            let err = (f64::from(ya) - yb).abs();
            // f32 rounding of the reference itself: a few ulps of the logit's magnitude.
            let bound = s + 1e-5 * (1.0 + f64::from(ya).abs());
            assert!(
                err <= bound,
                "image {i}: logit error {err:.3e} exceeds the bound {bound:.3e} (f32 {ya}, fixed {yb})"
            );
            r.worst_ratio = r.worst_ratio.max(err / s);
            r.max_err = r.max_err.max(err);
            r.max_sigma = r.max_sigma.max(s);
        }
        let same = argmax(&a) == argmax(&b.logits);
        r.agree += usize::from(same);
        // Where the f32 winner leads by more than both bounds, the classes must agree.
        let top = argmax(&a).unwrap();
        let margin = a
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != top)
            .map(|(j, &v)| f64::from(a[top] - v) - (sigma[top] + sigma[j]))
            .fold(f64::INFINITY, f64::min);
        if margin > 0.0 {
            r.decided += 1;
            assert!(
                same,
                "image {i}: the class changed although the margin exceeds the bound"
            );
        }
        let mean = a.iter().map(|&v| f64::from(v)).sum::<f64>() / a.len() as f64;
        let sd = (a
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / a.len() as f64)
            .sqrt();
        r.logit_scale = r.logit_scale.max(sd);
        r.images += 1;
    }
    r
}

fn calibrated(name: &str, keep: f64, ds: &Dataset, calib: &Dataset) -> models::Model {
    let mut m = common::model(name, keep, 11);
    let xs: Vec<Vec<f32>> = (0..calib.len())
        .map(|i| m.public.normalization.apply(calib.image(i)))
        .collect();
    calibrate_batchnorm(&mut m, &xs).unwrap();
    assert_eq!(ds.shape, m.public.graph.input);
    m
}

fn check(name: &str, keep: f64, kind: DatasetKind, dir: &std::path::Path, n: usize) {
    let ds = Dataset::load(kind, dir, Split::Test, Some(n)).unwrap();
    let calib = Dataset::load(kind, dir, Split::Train, Some(64)).unwrap();
    let m = calibrated(name, keep, &ds, &calib);
    let r = compare(&m, &ds, n);
    eprintln!(
        "{name} keep {keep}: {} images, logit spread (sd) up to {:.2}, max logit error {:.2e}, max bound {:.2e}, worst error/bound {:.2}, argmax agrees on {} ({} decided by the bound), {} ReLU-window overflows",
        r.images,
        r.logit_scale,
        r.max_err,
        r.max_sigma,
        r.worst_ratio,
        r.agree,
        r.decided,
        r.overflows
    );
    assert_eq!(r.images, n);
    // The bound must not be vacuous: within two orders of magnitude of the errors seen
    // (a worst-case interval bound would be astronomically larger on these depths).
    assert!(
        r.max_sigma <= 20.0 * r.max_err.max(1e-6),
        "{name}: bound {} is vacuous against observed error {}",
        r.max_sigma,
        r.max_err
    );
    assert_eq!(
        r.overflows, 0,
        "{name}: pre-activations left the ReLU circuit's window"
    );
    assert!(
        r.agree * 10 >= r.images * 9,
        "{name}: argmax agrees on only {} of {}",
        r.agree,
        r.images
    );
}

#[test]
fn fixed_matches_f32_on_cifar10_resnet20() {
    let Some(dir) = common::cifar10_dir() else {
        return;
    };
    check("resnet20", 1.0, DatasetKind::Cifar10, &dir, 100);
    check("resnet20", 0.1, DatasetKind::Cifar10, &dir, 100);
}

#[test]
fn fixed_matches_f32_on_cifar10_resnet18() {
    let Some(dir) = common::cifar10_dir() else {
        return;
    };
    check("resnet18", 0.5, DatasetKind::Cifar10, &dir, 8);
}

#[test]
fn fixed_matches_f32_on_cifar10_wrn22_8() {
    let Some(dir) = common::cifar10_dir() else {
        return;
    };
    check("wrn22_8", 1.0, DatasetKind::Cifar10, &dir, 2);
}

#[test]
fn fixed_matches_f32_on_fashion_mnist_lenet5() {
    let Some(dir) = common::fashion_mnist_dir() else {
        return;
    };
    check("lenet5", 1.0, DatasetKind::FashionMnist, &dir, 200);
    check("lenet5", 0.0, DatasetKind::FashionMnist, &dir, 200);
}

#[test]
fn fully_linearized_network_is_affine() {
    // With every ReLU linearized the network is affine: f(a) + f(b) - f(0) == f(a + b - 0)
    // in f32 up to rounding, for both executors' shared description.
    let m = common::model("lenet5", 0.0, 5);
    let f = F32Executor::new(&m).unwrap();
    let n = 784;
    let a: Vec<f32> = (0..n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let b: Vec<f32> = (0..n)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
        .collect();
    let z = vec![0.0f32; n];
    let ab: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    let (fa, fb, fz, fab) = (
        f.forward(&a).unwrap(),
        f.forward(&b).unwrap(),
        f.forward(&z).unwrap(),
        f.forward(&ab).unwrap(),
    );
    for i in 0..10 {
        assert!((fa[i] + fb[i] - fz[i] - fab[i]).abs() < 1e-3, "{i}");
    }
    // Keeping the ReLUs breaks affinity on the same inputs.
    let m = common::model("lenet5", 1.0, 5);
    let f = F32Executor::new(&m).unwrap();
    let d: f32 = (0..10)
        .map(|i| {
            let (fa, fb, fz, fab) = (
                f.forward(&a).unwrap()[i],
                f.forward(&b).unwrap()[i],
                f.forward(&z).unwrap()[i],
                f.forward(&ab).unwrap()[i],
            );
            (fa + fb - fz - fab).abs()
        })
        .sum();
    assert!(d > 1e-2);
}

#[test]
fn lowering_folds_into_the_expected_layers() {
    // ResNet18: stem (no ReLU, read twice) + 16 site layers + logits = 18 linear layers.
    let m = common::model("resnet18", 1.0, 1);
    let p = FixedProgram::lower(&m).unwrap();
    assert_eq!(p.layers.len(), 18);
    assert_eq!(p.kept_per_layer().iter().sum::<usize>(), 491_520);
    // LeNet: the two average pools fold into the following conv / dense as their own
    // terms, so each site is one layer: 4 sites + logits.
    let m = common::model("lenet5", 1.0, 1);
    assert_eq!(FixedProgram::lower(&m).unwrap().layers.len(), 5 + 2);
    let m = common::model("wrn22_8", 1.0, 1);
    let p = FixedProgram::lower(&m).unwrap();
    assert_eq!(p.kept_per_layer().iter().sum::<usize>(), 1_359_872);
}

/// What a client can know of a layer: what it reads, its operations' shapes, its output.
fn layer_signature(p: &FixedProgram) -> Vec<String> {
    use models::fixed::TermOp;
    p.layers
        .iter()
        .map(|l| {
            let terms: Vec<String> = l
                .terms
                .iter()
                .map(|t| match &t.op {
                    TermOp::Conv {
                        out_channels,
                        kernel,
                        stride,
                        padding,
                        ..
                    } => format!(
                        "conv({}, {out_channels}x{kernel}/{stride}+{padding})",
                        t.input
                    ),
                    TermOp::Dense { out_features, .. } => {
                        format!("dense({}, {out_features})", t.input)
                    }
                    TermOp::ChannelScale { .. } => format!("scale({})", t.input),
                    TermOp::AvgPool { kernel, stride, .. } => {
                        format!("pool({}, {kernel}/{stride})", t.input)
                    }
                })
                .collect();
            format!("{:?} {:?} {}", l.out_shape, l.activation, terms.join(" + "))
        })
        .collect()
}

/// The client lowers the public part alone; its layer structure must be the server's for
/// any weights, including batch norms whose folded bias is exactly zero (a fresh network).
#[test]
fn public_structure_matches_the_lowering_of_any_weights() {
    for name in ["lenet5", "resnet20", "resnet18", "wrn22_8"] {
        let mut m = common::model(name, 0.3, 5);
        let public = FixedProgram::structure(&m.public).unwrap();
        let sig = layer_signature(&public);
        assert_eq!(
            sig,
            layer_signature(&FixedProgram::lower(&m).unwrap()),
            "{name}"
        );
        // Identity batch norms: every folded bias is 0.0.
        for (k, t) in m.weights.iter_mut() {
            let fill = if k.ends_with(".running_var") || k.ends_with("bn1.weight") {
                1.0
            } else if k.ends_with(".bias") || k.ends_with(".running_mean") {
                0.0
            } else {
                continue;
            };
            t.data.iter_mut().for_each(|x| *x = fill);
        }
        assert_eq!(
            sig,
            layer_signature(&FixedProgram::lower(&m).unwrap()),
            "{name}, zero biases"
        );
        assert_eq!(public.masks, FixedProgram::lower(&m).unwrap().masks);
    }
}

/// Quadratic sites in fixed point: every linearized position's polynomial equals
/// `a x^2 + b x + c` of the fixed-point `x` within the error of its encoding (the square's
/// operand at 2^-h, the coefficients' quantization), the layers that read a polynomial
/// accumulate at 2^(3f), and the logits follow the f32 executor's.
#[test]
fn quadratic_sites_match_their_polynomial_and_f32() {
    use models::fixed::Activation;
    use rand::{Rng, SeedableRng};
    for (name, keep, affine) in [
        ("lenet5", 0.2, false),
        ("resnet20", 0.1, false),
        ("lenet5", 0.2, true),
        ("resnet20", 0.1, true),
    ] {
        let mut m = common::model(name, keep, 21);
        models::testing::make_quadratic(&mut m, 5).unwrap();
        if affine {
            // Every third channel computes b x + c: no square there.
            models::testing::make_affine_channels(&mut m, 2).unwrap();
        }
        let n: usize = m.public.graph.input.iter().product();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let xs: Vec<Vec<f32>> = (0..8)
            .map(|_| (0..n).map(|_| rng.gen_range(-1.5f32..1.5)).collect())
            .collect();
        calibrate_batchnorm(&mut m, &xs).unwrap();
        let f = F32Executor::new(&m).unwrap();
        let p = FixedProgram::lower(&m).unwrap();
        assert!(p.has_quadratic());
        // The structure a client lowers from the public part agrees.
        assert_eq!(
            layer_signature(&FixedProgram::structure(&m.public).unwrap()),
            layer_signature(&p),
            "{name}"
        );
        let fp = p.params;
        let (fb, h) = (fp.frac_bits, fp.square_frac_bits);
        let sites = m.public.masks.len();
        let quads = p
            .layers
            .iter()
            .filter(|l| {
                matches!(
                    l.activation,
                    Activation::Rescale {
                        quadratic: Some(_),
                        ..
                    }
                )
            })
            .count();
        assert_eq!(quads, sites, "{name}");
        // Every reader of a polynomial accumulates at 3f; the polynomial layers at 2f.
        for (i, l) in p.layers.iter().enumerate() {
            let reads_poly = l.terms.iter().any(|t| p.value_scales[t.input] == 2 * fb);
            let is_poly = matches!(l.activation, Activation::Keep { .. });
            let want = if reads_poly && !is_poly {
                3 * fb
            } else {
                2 * fb
            };
            assert_eq!(l.scale_bits, want, "{name} layer {i}");
        }
        let mut agree = 0;
        let mut worst = 0f64;
        for x in &xs {
            let a = f.forward(x).unwrap();
            let out = p.forward(x, false).unwrap();
            assert!(p.forward(x, true).is_err(), "the error model refuses");
            let beyond: usize = out.stats.iter().map(|s| s.range_overflows).sum();
            assert_eq!(beyond, 0, "{name}: values beyond the ring's quarter");
            // Re-run layer by layer to see the values.
            let vals = values_of(&p, x);
            for (i, l) in p.layers.iter().enumerate() {
                let Activation::Rescale {
                    site: Some(site),
                    quadratic: Some(q),
                    ..
                } = &l.activation
                else {
                    continue;
                };
                let Activation::Keep { output: z, .. } = p.layers[i + 1].activation else {
                    panic!("the polynomial follows its site");
                };
                // The one-pass form the secure runtime evaluates gives the same layer.
                let f = p.fused_polynomial(i).expect("a fusable polynomial");
                assert_eq!((f.layer, f.output), (i + 1, z));
                let Activation::Rescale { output: r, .. } = l.activation else {
                    unreachable!()
                };
                let plane = (l.out_shape[1] * l.out_shape[2]).max(1);
                for (j, &zj) in vals[z].iter().enumerate() {
                    let c = j / plane;
                    let v = f.coef[0][c]
                        .wrapping_mul(vals[r][j])
                        .wrapping_add(f.coef[1][c].wrapping_mul(vals[q.linear][j]))
                        .wrapping_add(f.coef[2][c].wrapping_mul(vals[q.square][j]))
                        .wrapping_add(f.bias[j]);
                    assert_eq!(fp.reduce(v), zj, "{name} layer {i} fused {j}");
                }
                let poly = &m.weights[&models::model::poly_param(site)].data;
                let ch = l.out_shape[0];
                let plane = l.out_shape[1] * l.out_shape[2];
                let mask = &p.masks[site];
                for j in 0..mask.len() {
                    let zr = vals[z][j] as f64 / (1u64 << (2 * fb)) as f64;
                    if mask[j] != 0 {
                        assert_eq!(vals[q.linear][j], 0);
                        assert_eq!(vals[q.square][j], 0);
                        let Activation::Rescale { output, .. } = l.activation else {
                            unreachable!()
                        };
                        let r = vals[output][j];
                        assert_eq!(vals[z][j], r << fb, "kept positions pass the ReLU");
                        continue;
                    }
                    let xr = vals[q.linear][j] as f64 / (1u64 << fb) as f64;
                    let c = j / plane;
                    let is_affine = m
                        .public
                        .affine_channels
                        .get(site)
                        .is_some_and(|a| a.contains(&c));
                    assert_eq!(is_affine, !p.squared(i).unwrap()[j], "{name} layer {i}");
                    if is_affine {
                        assert_eq!(vals[q.square][j], 0, "no square in an affine channel");
                        assert_eq!(poly[c], 0.0);
                    }
                    let (pa, pb, pc) = (
                        f64::from(poly[c]),
                        f64::from(poly[ch + c]),
                        f64::from(poly[2 * ch + c]),
                    );
                    let want = (pa * xr + pb) * xr + pc;
                    // x~ lies within 2^-h below x (+ one ulp of x); coefficients and the
                    // bias are rounded at 2^-(2f-2h), 2^-f and 2^-2f.
                    let ulp_h = 1.0 / (1u64 << h) as f64;
                    let bound = pa * (2.0 * xr.abs() + ulp_h) * ulp_h
                        + xr * xr * 0.5 / (1u64 << (2 * fb - 2 * h)) as f64
                        + xr.abs() * 0.5 / (1u64 << fb) as f64
                        + 2.0 / (1u64 << (2 * fb)) as f64;
                    let err = (zr - want).abs();
                    assert!(
                        err <= bound,
                        "{name} layer {i} position {j}: polynomial {zr} vs {want} (x = {xr}), error {err:e} > {bound:e}"
                    );
                    worst = worst.max(err);
                }
            }
            let scale = a.iter().map(|v| v.abs()).fold(0f32, f32::max) as f64;
            let err = a
                .iter()
                .zip(&out.logits)
                .map(|(&u, &v)| (f64::from(u) - v).abs())
                .fold(0.0, f64::max);
            assert!(
                err <= 0.05 * (1.0 + scale),
                "{name}: logits differ by {err} (scale {scale})"
            );
            agree += usize::from(argmax(&a) == argmax(&out.logits));
        }
        eprintln!("{name}: worst polynomial error {worst:.2e}, argmax agrees on {agree} of 8");
        assert!(agree >= 7, "{name}: argmax agrees on {agree} of 8");
    }
}

/// Every stored value of a fixed-point run.
fn values_of(p: &FixedProgram, x: &[f32]) -> Vec<Vec<i64>> {
    p.forward_values(x).unwrap().1
}

/// Squares that leave the ring are counted, not silent: the same random ResNet-20 with its
/// quadratic coefficients `a` scaled up 10^4 times drives values past a quarter of the
/// ring (`LayerStats::range_overflows`), where the unscaled one has none (checked above).
#[test]
fn exploding_squares_are_counted() {
    use rand::{Rng, SeedableRng};
    let mut m = common::model("resnet20", 0.1, 21);
    models::testing::make_quadratic(&mut m, 5).unwrap();
    let n: usize = m.public.graph.input.iter().product();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let xs: Vec<Vec<f32>> = (0..4)
        .map(|_| (0..n).map(|_| rng.gen_range(-1.5f32..1.5)).collect())
        .collect();
    calibrate_batchnorm(&mut m, &xs).unwrap();
    let sites: Vec<String> = m.public.masks.keys().cloned().collect();
    for site in sites {
        let t = m
            .weights
            .get_mut(&models::model::poly_param(&site))
            .unwrap();
        let ch = t.shape[1];
        t.data[..ch].iter_mut().for_each(|a| *a *= 1e4);
    }
    let p = FixedProgram::lower(&m).unwrap();
    let out = p.forward(&xs[0], false).unwrap();
    let beyond: usize = out.stats.iter().map(|s| s.range_overflows).sum();
    assert!(beyond > 0, "no value beyond the ring's quarter counted");
}
