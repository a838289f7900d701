//! The built-in networks, laid out as SNL's reference code lays them out.
//!
//! | name       | layout                                                        | ReLUs at default input |
//! |------------|---------------------------------------------------------------|------------------------|
//! | `resnet18` | SNL `resnet18_in`: 3x3 stem conv + BN (no ReLU), BasicBlocks `[2,2,2,2]`, widths 64/128/256/512, sites after `bn1` and after the residual add, global average pool, linear | 491,520 (3x32x32) |
//! | `wrn22_8`  | SNL `wide_resnet_22_8`: pre-activation wide blocks, widths 128/256/512, final BN without ReLU | 1,359,872 (3x32x32) |
//! | `resnet20` | He et al.'s CIFAR ResNet-20 (16/32/64, 3 blocks per stage) with a stem ReLU and 1x1-conv shortcuts (option B); the small network for CPU work | 188,416 (3x32x32) |
//! | `lenet5`   | LeNet-5 for 28x28 grey images: conv5-avgpool-conv5-avgpool-fc120-fc84-fc | 6,508 (1x28x28) |
//!
//! Every architecture takes the number of classes and the input shape; the final pooling
//! is global, so other square inputs work too (with other ReLU counts).

use crate::error::ModelError;
use crate::graph::{Graph, GraphBuilder, NodeId, Shape};

/// A built-in architecture's name, summary and default input.
#[derive(Clone, Copy, Debug)]
pub struct ArchInfo {
    /// Name used on the command line and in model files.
    pub name: &'static str,
    /// One-line description.
    pub summary: &'static str,
    /// The input shape it is designed for.
    pub default_input: Shape,
}

/// All built-in architectures.
pub const ARCHS: &[ArchInfo] = &[
    ArchInfo {
        name: "resnet18",
        summary: "SNL's CIFAR ResNet18 (resnet18_in), 491,520 ReLUs at 32x32",
        default_input: [3, 32, 32],
    },
    ArchInfo {
        name: "wrn22_8",
        summary: "SNL's WideResNet-22-8, pre-activation, 1,359,872 ReLUs at 32x32",
        default_input: [3, 32, 32],
    },
    ArchInfo {
        name: "resnet20",
        summary: "CIFAR ResNet-20 (16/32/64), the small network for CPU work, 188,416 ReLUs at 32x32",
        default_input: [3, 32, 32],
    },
    ArchInfo {
        name: "lenet5",
        summary: "LeNet-5 for 28x28 grey images (Fashion-MNIST), 6,508 ReLUs",
        default_input: [1, 28, 28],
    },
];

/// Looks up a built-in architecture.
pub fn info(name: &str) -> Result<&'static ArchInfo, ModelError> {
    ARCHS.iter().find(|a| a.name == name).ok_or_else(|| {
        let known: Vec<_> = ARCHS.iter().map(|a| a.name).collect();
        ModelError::InvalidArgument(format!(
            "unknown architecture {name:?}; known: {}",
            known.join(", ")
        ))
    })
}

/// Builds the description of a built-in architecture.
pub fn build(name: &str, classes: usize, input: Shape) -> Result<Graph, ModelError> {
    info(name)?;
    if !(1..=100_000).contains(&classes) {
        return Err(ModelError::InvalidArgument(format!(
            "classes must be in 1..=100000, got {classes}"
        )));
    }
    if input.contains(&0) || input[1] != input[2] {
        return Err(ModelError::InvalidArgument(format!(
            "input {input:?} must be non-empty and square (C x H x H)"
        )));
    }
    match name {
        "resnet18" => resnet(input, classes, &[64, 128, 256, 512], &[2, 2, 2, 2], false),
        "resnet20" => resnet(input, classes, &[16, 32, 64], &[3, 3, 3], true),
        "wrn22_8" => wide_resnet(input, classes, 22, 8),
        "lenet5" => lenet5(input, classes),
        _ => unreachable!("checked by info()"),
    }
}

/// Global average pool over the remaining square feature map.
fn global_pool(b: &mut GraphBuilder, x: NodeId) -> NodeId {
    let side = b.shape(x)[1];
    b.avg_pool(x, side, side)
}

fn resnet(
    input: Shape,
    classes: usize,
    widths: &[usize],
    blocks: &[usize],
    stem_relu: bool,
) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new(input);
    let x = b.conv(0, "conv1", widths[0], 3, 1, 1, false);
    let mut x = b.bn(x, "bn1");
    if stem_relu {
        x = b.relu(x, "alpha1");
    }
    for (l, (&width, &n)) in widths.iter().zip(blocks).enumerate() {
        for i in 0..n {
            let stride = if l > 0 && i == 0 { 2 } else { 1 };
            let p = format!("layer{}.{}", l + 1, i);
            let in_ch = b.shape(x)[0];
            let y = b.conv(x, &format!("{p}.conv1"), width, 3, stride, 1, false);
            let y = b.bn(y, &format!("{p}.bn1"));
            let y = b.relu(y, &format!("{p}.alpha1"));
            let y = b.conv(y, &format!("{p}.conv2"), width, 3, 1, 1, false);
            let y = b.bn(y, &format!("{p}.bn2"));
            let shortcut = if stride != 1 || in_ch != width {
                let s = b.conv(x, &format!("{p}.shortcut.0"), width, 1, stride, 0, false);
                b.bn(s, &format!("{p}.shortcut.1"))
            } else {
                x
            };
            let y = b.add(y, shortcut);
            x = b.relu(y, &format!("{p}.alpha2"));
        }
    }
    let x = global_pool(&mut b, x);
    b.linear(x, "linear", classes, true);
    b.finish()
}

fn wide_resnet(
    input: Shape,
    classes: usize,
    depth: usize,
    widen: usize,
) -> Result<Graph, ModelError> {
    let n = (depth - 4) / 6;
    let widths = [16 * widen, 32 * widen, 64 * widen];
    let mut b = GraphBuilder::new(input);
    let mut x = b.conv(0, "conv1", 16, 3, 1, 1, false);
    for (g, &width) in widths.iter().enumerate() {
        for i in 0..n {
            let stride = if g > 0 && i == 0 { 2 } else { 1 };
            let p = format!("block{}.layer.{}", g + 1, i);
            let equal = b.shape(x)[0] == width;
            // Pre-activation: BN and the first site act on the block input. When the block
            // changes width the activated input also feeds the 1x1 shortcut.
            let a = b.bn(x, &format!("{p}.bn1"));
            let a = b.relu(a, &format!("{p}.alpha1"));
            let y = b.conv(a, &format!("{p}.conv1"), width, 3, stride, 1, false);
            let y = b.bn(y, &format!("{p}.bn2"));
            let y = b.relu(y, &format!("{p}.alpha2"));
            let y = b.conv(y, &format!("{p}.conv2"), width, 3, 1, 1, false);
            let shortcut = if equal {
                x
            } else {
                b.conv(a, &format!("{p}.convShortcut"), width, 1, stride, 0, false)
            };
            x = b.add(shortcut, y);
        }
    }
    let x = b.bn(x, "bn1");
    let x = global_pool(&mut b, x);
    b.linear(x, "fc", classes, true);
    b.finish()
}

fn lenet5(input: Shape, classes: usize) -> Result<Graph, ModelError> {
    let mut b = GraphBuilder::new(input);
    let x = b.conv(0, "conv1", 6, 5, 1, 2, true);
    let x = b.relu(x, "alpha1");
    let x = b.avg_pool(x, 2, 2);
    let x = b.conv(x, "conv2", 16, 5, 1, 0, true);
    let x = b.relu(x, "alpha2");
    let x = b.avg_pool(x, 2, 2);
    let x = b.linear(x, "fc1", 120, true);
    let x = b.relu(x, "alpha3");
    let x = b.linear(x, "fc2", 84, true);
    let x = b.relu(x, "alpha4");
    b.linear(x, "fc3", classes, true);
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(name: &str) -> usize {
        let a = info(name).unwrap();
        build(name, 10, a.default_input)
            .unwrap()
            .relu_count()
            .unwrap()
    }

    #[test]
    fn relu_counts_match_the_reference_networks() {
        assert_eq!(count("resnet18"), 491_520);
        assert_eq!(count("wrn22_8"), 1_359_872);
        assert_eq!(count("resnet20"), 188_416);
        assert_eq!(count("lenet5"), 6_508);
    }

    #[test]
    fn resnet18_names_follow_the_reference_state_dict() {
        let g = build("resnet18", 10, [3, 32, 32]).unwrap();
        let names: Vec<_> = g.params().into_iter().map(|p| p.name).collect();
        for n in [
            "conv1.weight",
            "bn1.running_var",
            "layer1.0.conv1.weight",
            "layer2.0.shortcut.0.weight",
            "layer2.0.shortcut.1.bias",
            "layer4.1.bn2.weight",
            "linear.weight",
            "linear.bias",
        ] {
            assert!(names.iter().any(|x| x == n), "missing {n}");
        }
        assert!(!names.iter().any(|x| x.starts_with("layer1.0.shortcut")));
        let sites = g.sites().unwrap();
        assert_eq!(sites.len(), 16);
        assert_eq!(sites[0].name, "layer1.0.alpha1");
        assert_eq!(sites[0].shape, [64, 32, 32]);
        assert_eq!(sites[15].shape, [512, 4, 4]);
        // Parameter count of the reference ResNet18 for 10 classes (conv, BN affine, linear).
        let params: usize = g
            .params()
            .iter()
            .filter(|p| !p.name.ends_with("running_mean") && !p.name.ends_with("running_var"))
            .map(|p| p.shape.iter().product::<usize>())
            .sum();
        assert_eq!(params, 11_173_962);
    }

    #[test]
    fn wrn_has_the_reference_sites() {
        let g = build("wrn22_8", 10, [3, 32, 32]).unwrap();
        let sites = g.sites().unwrap();
        assert_eq!(sites.len(), 18);
        assert_eq!(sites[0].name, "block1.layer.0.alpha1");
        assert_eq!(sites[0].shape, [16, 32, 32]);
        assert_eq!(sites[6].shape, [128, 32, 32]); // block2's first alpha1, before the stride
        let names: Vec<_> = g.params().into_iter().map(|p| p.name).collect();
        assert!(names.contains(&"block2.layer.0.convShortcut.weight".to_string()));
        assert!(names.contains(&"fc.bias".to_string()));
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(
            build("vgg", 10, [3, 32, 32])
                .unwrap_err()
                .to_string()
                .contains("known: resnet18")
        );
        assert!(build("resnet18", 0, [3, 32, 32]).is_err());
        assert!(build("resnet18", 10, [3, 32, 16]).is_err());
    }
}
