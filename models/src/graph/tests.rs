//! Tests of `graph`.

use super::*;

fn tiny() -> Graph {
    let mut b = GraphBuilder::new([1, 4, 4]);
    let x = b.conv(0, "conv", 2, 3, 1, 1, true);
    let x = b.relu(x, "act");
    b.linear(x, "fc", 3, true);
    b.finish().unwrap()
}

#[test]
fn forward_reference_is_rejected() {
    let mut g = tiny();
    if let Op::Relu { input, .. } = &mut g.nodes[2] {
        *input = 3;
    }
    let e = g.shapes().unwrap_err().to_string();
    assert!(e.contains("does not precede"), "{e}");
}

#[test]
fn channel_mismatch_and_bad_stride_are_rejected() {
    let mut g = tiny();
    if let Op::Conv2d { in_channels, .. } = &mut g.nodes[1] {
        *in_channels = 5;
    }
    assert!(
        g.shapes()
            .unwrap_err()
            .to_string()
            .contains("in_channels 5")
    );
    let mut g = tiny();
    if let Op::Conv2d { stride, .. } = &mut g.nodes[1] {
        *stride = 0;
    }
    assert!(g.shapes().unwrap_err().to_string().contains("do not fit"));
}

#[test]
fn duplicate_and_bad_names_are_rejected() {
    let mut g = tiny();
    if let Op::Relu { site, .. } = &mut g.nodes[2] {
        *site = "conv".into();
    }
    assert!(g.shapes().unwrap_err().to_string().contains("used twice"));
    let mut g = tiny();
    if let Op::Relu { site, .. } = &mut g.nodes[2] {
        *site = "a/b".into();
    }
    assert!(g.shapes().unwrap_err().to_string().contains("must be"));
}

#[test]
fn params_sites_and_counts() {
    let g = tiny();
    let names: Vec<_> = g.params().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]);
    assert_eq!(g.relu_count().unwrap(), 32);
    assert_eq!(g.macs().unwrap(), (2 * 16 * 9 + 32 * 3) as u64);
    assert_eq!(g.consumers(), vec![1, 1, 1, 1]);
}

#[test]
fn json_round_trip_rejects_unknown_fields() {
    let g = tiny();
    let s = serde_json::to_string(&g).unwrap();
    let back: Graph = serde_json::from_str(&s).unwrap();
    assert_eq!(back, g);
    let bad = s.replace("\"stride\"", "\"strides\"");
    assert!(serde_json::from_str::<Graph>(&bad).is_err());
}
