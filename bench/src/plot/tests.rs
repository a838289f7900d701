//! Tests of `plot`.

#![allow(clippy::unwrap_used)]
use super::*;
use crate::results::tests::sample;

#[test]
fn pareto_front_keeps_undominated_points() {
    // (cost, accuracy)
    let pts = [
        (10.0, 80.0),
        (5.0, 70.0),
        (20.0, 79.0),
        (7.0, 70.0),
        (30.0, 90.0),
    ];
    assert_eq!(pareto_front(&pts), vec![1, 0, 4]);
    assert!(pareto_front(&[]).is_empty());
}

#[test]
fn renders_a_two_panel_svg_with_fronts_and_reference() {
    let rows = vec![
        sample(9_338, "loopback", 44.0),
        sample(18_678, "loopback", 60.0),
        sample(188_416, "loopback", 300.0),
        sample(9_338, "rtt-10ms", 250.0),
    ];
    let refs = vec![RefSeries {
        label: "ResNet18 <published>".into(),
        points: vec![
            RefPoint {
                relus: 12_900.0,
                accuracy_pct: 88.23,
            },
            RefPoint {
                relus: 150_000.0,
                accuracy_pct: 94.26,
            },
        ],
    }];
    let svg = render_svg(&rows, &refs, &PlotOptions::default()).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    // 4 latency points + 3 distinct models + 2 reference points, plus legend markers.
    let points =
        svg.matches("class=\"front-point\"").count() + svg.matches("class=\"point\"").count();
    let legend = 2 + 2; // two latency series, one ours + one reference in the ReLU panel
    assert_eq!(points, 4 + 3 + 2 + legend);
    assert!(svg.contains("online latency per inference (ms, log scale)"));
    assert!(svg.contains("kept ReLUs (log scale)"));
    assert!(svg.contains("top-1 accuracy (%)"));
    assert!(
        svg.contains("ResNet18 &lt;published&gt;"),
        "labels are escaped"
    );
    assert!(svg.contains("class=\"front\""));
    assert!(svg.contains("loopback") && svg.contains("rtt-10ms"));
    let e = render_svg(&[], &[], &PlotOptions::default()).unwrap_err();
    assert!(e.to_string().contains("nothing to plot"));
}

/// The y axes show the full-test accuracy by default and say on how many images; the
/// legend gives each series' secure sample and agreement.
#[test]
fn full_test_accuracy_with_the_secure_sample_stated() {
    let mut rows = vec![
        sample(9_338, "loopback", 44.0),
        sample(18_678, "loopback", 60.0),
        sample(9_338, "rtt-10ms", 250.0),
    ];
    // Full-test accuracy near 30%, secure near 77%: the axis shows which is plotted.
    for (r, a) in rows.iter_mut().zip([0.301, 0.312, 0.301]) {
        r.fixed_accuracy_full = Some(a);
    }
    rows[1].secure_agreement = Some(1.0);
    rows[1].secure_images = 20;
    let svg = render_svg(&rows, &[], &PlotOptions::default()).unwrap();
    let ticks = |svg: &str| -> Vec<f64> {
        svg.split(r#"text-anchor="end">"#)
            .skip(1)
            .map(|t| t[..t.find('<').unwrap()].parse().unwrap())
            .collect()
    };
    let t = ticks(&svg);
    assert!(t.iter().all(|&v| (29.0..=32.0).contains(&v)), "{t:?}");
    assert!(svg.contains(
        "fixed-point executor (plaintext twin of the secure arithmetic) on 10,000 test images"
    ));
    // Loopback: two models with 200 and 20 secure images, agreement 99.5% and 100%.
    assert!(svg.contains("secure: 20-200 images x 3 repeats, agreement 99.5%-100%"));
    assert!(svg.contains("secure: 200 images x 3 repeats, agreement 99.5%"));
    let secure = render_svg(
        &rows,
        &[],
        &PlotOptions {
            title: None,
            accuracy: Accuracy::Secure,
        },
    )
    .unwrap();
    let t = ticks(&secure);
    assert!(t.iter().all(|&v| (76.0..=78.0).contains(&v)), "{t:?}");
    assert!(secure.contains("private inference on the first 20-200 test images"));
    // A schema version 1 row has no full-test accuracy: refused by default, plotted
    // with its sampled secure accuracy on request.
    let mut old = sample(36_574, "loopback", 140.0);
    old.schema_version = 1;
    old.fixed_accuracy_full = None;
    old.full_images = None;
    old.secure_agreement = None;
    rows.push(old);
    let e = render_svg(&rows, &[], &PlotOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("1 rows have no full-test accuracy")
            && e.contains("runs/r20-snl/budget-36574 (loopback)")
            && e.contains("--accuracy secure"),
        "{e}"
    );
    let svg = render_svg(
        &rows[3..],
        &[],
        &PlotOptions {
            title: None,
            accuracy: Accuracy::Secure,
        },
    )
    .unwrap();
    assert!(svg.contains("secure: 200 images x 3 repeats, agreement not recorded"));
}

#[test]
fn reference_csv_reads_and_rejects_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ref.csv");
    std::fs::write(&p, "relus,top1,network,dataset,source\n12900,88.23,ResNet18,CIFAR-10,\"SNL, 2022\"\n150000,94.26,ResNet18,CIFAR-10,x\n").unwrap();
    let r = read_reference(&p, None).unwrap();
    assert_eq!(r.label, "ResNet18, published");
    assert_eq!(r.points.len(), 2);
    assert_eq!(r.points[1].accuracy_pct, 94.26);
    assert_eq!(read_reference(&p, Some("SNL")).unwrap().label, "SNL");
    let cases = [
        ("relus,acc\n1,2\n", "needs columns relus and top1"),
        ("relus,top1\n1,abc\n", "line 2: top1 \"abc\""),
        ("relus,top1\n1,101\n", "above 100"),
        ("relus,top1\n", "no points"),
        ("relus,top1\n1,2,3\n", "line 2"),
    ];
    for (text, want) in cases {
        std::fs::write(&p, text).unwrap();
        let e = read_reference(&p, None).unwrap_err().to_string();
        assert!(e.contains(want), "want {want:?} in: {e}");
    }
    let e = read_reference(&dir.path().join("none.csv"), None).unwrap_err();
    assert!(e.to_string().contains("none.csv"), "{e}");
}
