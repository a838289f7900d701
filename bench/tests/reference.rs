//! The SNL paper's published CIFAR-10 points shipped in `bench/data/` for plots: they
//! read as a reference series and are the numbers (and, where the shared data
//! is present, the same as `../shared/data/published/`).

#![allow(clippy::unwrap_used)]

use std::path::Path;

use bench::plot::{RefPoint, read_reference};

#[test]
fn shipped_snl_points_are_the_published_ones() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let r = read_reference(&dir.join("data/snl_resnet18_cifar10.csv"), None).unwrap();
    assert_eq!(r.label, "ResNet18, published");
    let want = [
        (12.9, 88.23),
        (14.9, 88.43),
        (25.0, 90.88),
        (29.8, 90.92),
        (40.0, 91.68),
        (49.4, 92.27),
        (60.0, 92.63),
        (69.8, 93.02),
        (79.1, 93.16),
        (99.9, 93.50),
        (150.0, 94.26),
    ];
    let got: Vec<(f64, f64)> = r
        .points
        .iter()
        .map(|p| (p.relus / 1e3, p.accuracy_pct))
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.0 - w.0).abs() < 1e-9 && (g.1 - w.1).abs() < 1e-9,
            "{g:?} vs {w:?}"
        );
    }
    let shared = dir.join("../../shared/data/published/snl_resnet18_cifar10.csv");
    if shared.is_file() {
        let s = read_reference(&shared, None).unwrap();
        let pts = |v: &[RefPoint]| {
            v.iter()
                .map(|p| (p.relus, p.accuracy_pct))
                .collect::<Vec<_>>()
        };
        assert_eq!(pts(&s.points), pts(&r.points));
    } else {
        eprintln!("skipping the comparison: {} not found", shared.display());
    }
}
