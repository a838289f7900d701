//! Which PyTorch `state_dict` names each architecture's parameters and ReLU sites are read
//! from: one table per architecture.
//!
//! A rule maps one of our module names (a pattern where `*` stands for a decimal index) to
//! the PyTorch module names accepted for it, the first being the canonical one; a
//! parameter `<module>.<weight|bias|running_mean|running_var>` is read from
//! `<their module>.<same suffix>`. Site rules map a ReLU site to the full name of its alpha
//! tensor (SNL's `LearnableAlpha` keeps it in `<site>.alphas`, shape [1, C, H, W]).
//! `tests::tables_cover_every_parameter_and_site` checks that every parameter and site of
//! every architecture matches exactly one rule and that no rule is unused.

use crate::graph::Graph;

/// One rule: our name pattern and the accepted PyTorch spellings (canonical first).
#[derive(Debug)]
pub struct Rule {
    /// Our module or site name, `*` for an index.
    pub ours: &'static str,
    /// Accepted PyTorch names with the same `*` in the same order.
    pub theirs: &'static [&'static str],
}

/// The naming convention of one architecture.
#[derive(Debug)]
pub struct Table {
    /// Architecture name.
    pub arch: &'static str,
    /// Whose convention this is.
    pub convention: &'static str,
    /// Module rules (parameters).
    pub modules: &'static [Rule],
    /// Site rules (alpha tensors).
    pub sites: &'static [Rule],
}

const fn r(ours: &'static str, theirs: &'static [&'static str]) -> Rule {
    Rule { ours, theirs }
}

const BASIC_BLOCK_SITES: &[Rule] = &[
    r("layer*.*.alpha1", &["layer*.*.alpha1.alphas"]),
    r("layer*.*.alpha2", &["layer*.*.alpha2.alphas"]),
];

/// All tables.
pub const TABLES: &[Table] = &[
    Table {
        arch: "resnet18",
        convention: "SNL reference resnet18_in (archs_unstructured/cifar_resnet.py: ResNet_IN, BasicBlock_IN, LearnableAlpha)",
        modules: &[
            r("conv1", &["conv1"]),
            r("bn1", &["bn1"]),
            r("layer*.*.conv1", &["layer*.*.conv1"]),
            r("layer*.*.bn1", &["layer*.*.bn1"]),
            r("layer*.*.conv2", &["layer*.*.conv2"]),
            r("layer*.*.bn2", &["layer*.*.bn2"]),
            r("layer*.*.shortcut.0", &["layer*.*.shortcut.0"]),
            r("layer*.*.shortcut.1", &["layer*.*.shortcut.1"]),
            r("linear", &["linear"]),
        ],
        sites: BASIC_BLOCK_SITES,
    },
    Table {
        arch: "wrn22_8",
        convention: "SNL reference wide_resnet_22_8 (archs_unstructured/cifar_resnet.py: WideResNet, NetworkBlock, WideBasicBlock, LearnableAlpha)",
        modules: &[
            r("conv1", &["conv1"]),
            r("block*.layer.*.bn1", &["block*.layer.*.bn1"]),
            r("block*.layer.*.conv1", &["block*.layer.*.conv1"]),
            r("block*.layer.*.bn2", &["block*.layer.*.bn2"]),
            r("block*.layer.*.conv2", &["block*.layer.*.conv2"]),
            r(
                "block*.layer.*.convShortcut",
                &["block*.layer.*.convShortcut"],
            ),
            r("bn1", &["bn1"]),
            r("fc", &["fc"]),
        ],
        sites: &[
            r("block*.layer.*.alpha1", &["block*.layer.*.alpha1.alphas"]),
            r("block*.layer.*.alpha2", &["block*.layer.*.alpha2.alphas"]),
        ],
    },
    Table {
        arch: "resnet20",
        convention: "CIFAR ResNet-20 in SNL's BasicBlock spelling (conv1, bn1, layerL.I.{conv1,bn1,conv2,bn2}, option-B shortcut.0/.1, linear), stem site alpha1; also accepted: fc for linear, downsample.0/.1 (torchvision) for shortcut.0/.1",
        modules: &[
            r("conv1", &["conv1"]),
            r("bn1", &["bn1"]),
            r("layer*.*.conv1", &["layer*.*.conv1"]),
            r("layer*.*.bn1", &["layer*.*.bn1"]),
            r("layer*.*.conv2", &["layer*.*.conv2"]),
            r("layer*.*.bn2", &["layer*.*.bn2"]),
            r(
                "layer*.*.shortcut.0",
                &["layer*.*.shortcut.0", "layer*.*.downsample.0"],
            ),
            r(
                "layer*.*.shortcut.1",
                &["layer*.*.shortcut.1", "layer*.*.downsample.1"],
            ),
            r("linear", &["linear", "fc"]),
        ],
        sites: &[
            r("alpha1", &["alpha1.alphas"]),
            r("layer*.*.alpha1", &["layer*.*.alpha1.alphas"]),
            r("layer*.*.alpha2", &["layer*.*.alpha2.alphas"]),
        ],
    },
    Table {
        arch: "lenet5",
        convention: "LeNet-5 as conv1, conv2, fc1, fc2, fc3 with LearnableAlpha sites alpha1..alpha4",
        modules: &[
            r("conv1", &["conv1"]),
            r("conv2", &["conv2"]),
            r("fc*", &["fc*"]),
        ],
        sites: &[r("alpha*", &["alpha*.alphas"])],
    },
];

/// The table of architecture `arch`.
pub fn table(arch: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.arch == arch)
}

/// Matches `name` against `pattern` (`*` = one or more decimal digits); the captures.
pub fn matches<'n>(pattern: &str, name: &'n str) -> Option<Vec<&'n str>> {
    let mut caps = Vec::new();
    let mut rest = name;
    let mut parts = pattern.split('*');
    let first = parts.next()?;
    rest = rest.strip_prefix(first)?;
    for lit in parts {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        caps.push(&rest[..digits]);
        rest = rest[digits..].strip_prefix(lit)?;
    }
    rest.is_empty().then_some(caps)
}

/// `pattern` with its `*`s replaced by `caps` in order.
pub fn fill(pattern: &str, caps: &[&str]) -> String {
    let mut out = String::new();
    for (i, lit) in pattern.split('*').enumerate() {
        if i > 0 {
            out.push_str(caps.get(i - 1).copied().unwrap_or("*"));
        }
        out.push_str(lit);
    }
    out
}

/// What one of our tensors is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Our parameter or site name.
    pub ours: String,
    /// Accepted PyTorch names, canonical first.
    pub theirs: Vec<String>,
    /// Our shape ([C, H, W] for a site).
    pub shape: Vec<usize>,
    /// True for a ReLU site (an alpha tensor), false for a parameter.
    pub site: bool,
}

fn apply(rules: &[Rule], name: &str) -> Result<Vec<String>, String> {
    let mut hits = rules
        .iter()
        .filter_map(|r| matches(r.ours, name).map(|c| (r, c)));
    match (hits.next(), hits.next()) {
        (Some((rule, caps)), None) => Ok(rule.theirs.iter().map(|t| fill(t, &caps)).collect()),
        (None, _) => Err(format!("no naming rule covers {name:?}")),
        (Some(_), Some(_)) => Err(format!("several naming rules cover {name:?}")),
    }
}

/// The mapping of every parameter and site of `graph` under `table`, in graph order.
pub fn map(table: &Table, graph: &Graph) -> Result<Vec<Mapping>, String> {
    let mut out = Vec::new();
    for p in graph.params() {
        let (module, suffix) = p
            .name
            .rsplit_once('.')
            .ok_or_else(|| format!("parameter {:?} has no module", p.name))?;
        let theirs = apply(table.modules, module)?
            .into_iter()
            .map(|m| format!("{m}.{suffix}"))
            .collect();
        out.push(Mapping {
            ours: p.name,
            theirs,
            shape: p.shape,
            site: false,
        });
    }
    for s in graph.sites().map_err(|e| e.to_string())? {
        out.push(Mapping {
            theirs: apply(table.sites, &s.name)?,
            ours: s.name,
            shape: s.shape.to_vec(),
            site: true,
        });
    }
    Ok(out)
}

/// Whether an alpha tensor of shape `found` fits site shape `[C, H, W]`: `[1, C, H, W]` (SNL's
/// `LearnableAlpha`) or `[C, H, W]`; for a 1x1 site (after a linear layer) also `[1, C]` or
/// `[C]`.
pub fn alpha_shape_fits(found: &[usize], [c, h, w]: [usize; 3]) -> bool {
    found == [1, c, h, w]
        || found == [c, h, w]
        || (h == 1 && w == 1 && (found == [1, c] || found == [c]))
}

/// The alpha shape reported as expected for a site: [1, C, H, W], or [1, C] for a 1x1 site.
pub fn canonical_alpha_shape([c, h, w]: [usize; 3]) -> Vec<usize> {
    if h == 1 && w == 1 {
        vec![1, c]
    } else {
        vec![1, c, h, w]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn patterns_match_indices_only() {
        assert_eq!(
            matches("layer*.*.conv1", "layer12.3.conv1"),
            Some(vec!["12", "3"])
        );
        assert_eq!(matches("layer*.*.conv1", "layerx.3.conv1"), None);
        assert_eq!(matches("layer*.*.conv1", "layer1.3.conv1.x"), None);
        assert_eq!(matches("fc*", "fc"), None);
        assert_eq!(matches("alpha1", "alpha1"), Some(vec![]));
        assert_eq!(
            fill("layer*.*.downsample.0", &["2", "0"]),
            "layer2.0.downsample.0"
        );
    }

    #[test]
    fn tables_cover_every_parameter_and_site() {
        for a in arch::ARCHS {
            let t = table(a.name).unwrap_or_else(|| panic!("no table for {}", a.name));
            let g = arch::build(a.name, 10, a.default_input).unwrap();
            let m = map(t, &g).unwrap();
            assert_eq!(m.len(), g.params().len() + g.sites().unwrap().len());
            // Every rule is used, and the canonical names are distinct.
            for rule in t.modules {
                assert!(
                    g.params().iter().any(|p| {
                        p.name
                            .rsplit_once('.')
                            .is_some_and(|(m, _)| matches(rule.ours, m).is_some())
                    }),
                    "{}: unused rule {}",
                    a.name,
                    rule.ours
                );
            }
            for rule in t.sites {
                assert!(
                    g.sites()
                        .unwrap()
                        .iter()
                        .any(|s| matches(rule.ours, &s.name).is_some()),
                    "{}: unused site rule {}",
                    a.name,
                    rule.ours
                );
            }
            let mut names: Vec<&str> = m
                .iter()
                .flat_map(|x| x.theirs.iter().map(String::as_str))
                .collect();
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(
                names.len(),
                n,
                "{}: two tensors share a PyTorch name",
                a.name
            );
        }
    }

    #[test]
    fn snl_reference_names() {
        let g = arch::build("wrn22_8", 10, [3, 32, 32]).unwrap();
        let m = map(table("wrn22_8").unwrap(), &g).unwrap();
        let find = |ours: &str| m.iter().find(|x| x.ours == ours).unwrap().theirs[0].clone();
        assert_eq!(
            find("block2.layer.0.convShortcut.weight"),
            "block2.layer.0.convShortcut.weight"
        );
        assert_eq!(
            find("block3.layer.2.alpha2"),
            "block3.layer.2.alpha2.alphas"
        );
        let g = arch::build("resnet20", 10, [3, 32, 32]).unwrap();
        let m = map(table("resnet20").unwrap(), &g).unwrap();
        let fc = m.iter().find(|x| x.ours == "linear.weight").unwrap();
        assert_eq!(fc.theirs, ["linear.weight", "fc.weight"]);
        assert!(alpha_shape_fits(&[1, 16, 32, 32], [16, 32, 32]));
        assert!(alpha_shape_fits(&[120], [120, 1, 1]));
        assert!(!alpha_shape_fits(&[1, 16, 32], [16, 32, 32]));
    }
}
