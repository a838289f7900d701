//! Models in memory: a network description with its masks (the public part) and its
//! weights (the private part).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::ModelError;
use crate::graph::{Graph, Op, Shape, SiteSpec};
use crate::ring::FixedPointParams;
use crate::tensor::Tensor;

/// Which positions of one ReLU site keep their ReLU (1) and which are linearized to the
/// identity (0), over the site's C x H x W positions in row-major order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// The site's shape (C, H, W).
    pub shape: Shape,
    /// One byte per position, 0 or 1.
    pub kept: Vec<u8>,
}

impl Mask {
    /// Every ReLU kept.
    pub fn all_kept(shape: Shape) -> Self {
        Mask {
            shape,
            kept: vec![1; shape.iter().product()],
        }
    }

    /// Every position linearized.
    pub fn none_kept(shape: Shape) -> Self {
        Mask {
            shape,
            kept: vec![0; shape.iter().product()],
        }
    }

    /// Keeps each position independently with probability `fraction`.
    pub fn random(shape: Shape, fraction: f64, rng: &mut impl Rng) -> Self {
        let n = shape.iter().product();
        Mask {
            shape,
            kept: (0..n)
                .map(|_| u8::from(rng.gen_bool(fraction.clamp(0.0, 1.0))))
                .collect(),
        }
    }

    /// A channel-wise mask: every position of channel `c` follows `channels[c]`.
    pub fn from_channels(shape: Shape, channels: &[bool]) -> Result<Self, ModelError> {
        if channels.len() != shape[0] {
            return Err(ModelError::InvalidArgument(format!(
                "channel mask has {} entries, the site has {} channels",
                channels.len(),
                shape[0]
            )));
        }
        let plane = shape[1] * shape[2];
        Ok(Mask {
            shape,
            kept: channels
                .iter()
                .flat_map(|&k| std::iter::repeat_n(u8::from(k), plane))
                .collect(),
        })
    }

    /// Number of positions.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// True if the site has no positions.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// Number of kept ReLUs.
    pub fn kept_count(&self) -> usize {
        self.kept.iter().filter(|&&k| k != 0).count()
    }

    /// Linearized (mask 0) positions per channel.
    pub fn dropped_per_channel(&self) -> Vec<usize> {
        let plane = (self.kept.len() / self.shape[0].max(1)).max(1);
        self.kept
            .chunks(plane)
            .map(|k| k.iter().filter(|&&v| v == 0).count())
            .collect()
    }
}

/// What a linearized (mask 0) position of a ReLU site computes instead of the ReLU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Replacement {
    /// `x` (SNL): the position is linear.
    #[default]
    Identity,
    /// `a x^2 + b x + c` with learned per-channel coefficients (AutoReP-style polynomial
    /// replacement), stored in the private weights as `<site>.poly`, shape `[3, C]`
    /// (rows a, b, c). Kept positions still compute the ReLU.
    Quadratic,
}

impl Replacement {
    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Replacement::Identity => "identity",
            Replacement::Quadratic => "quadratic",
        }
    }

    /// Parses [`Replacement::name`].
    pub fn parse(s: &str) -> Result<Self, ModelError> {
        match s {
            "identity" => Ok(Replacement::Identity),
            "quadratic" => Ok(Replacement::Quadratic),
            _ => Err(ModelError::InvalidArgument(format!(
                "unknown replacement {s:?}; expected identity or quadratic"
            ))),
        }
    }
}

/// The name of a quadratic site's coefficient tensor.
pub fn poly_param(site: &str) -> String {
    format!("{site}.poly")
}

/// Fixed-point and ring parameters plus everything the client may know about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct PublicModel {
    /// Architecture label (a built-in name, or a custom one).
    pub arch: String,
    /// The network description.
    pub graph: Graph,
    /// Input normalization the client applies before encoding.
    pub normalization: Normalization,
    /// Fixed-point parameters of the secure arithmetic.
    pub fixed_point: FixedPointParams,
    /// One mask per ReLU site, by site name.
    pub masks: BTreeMap<String, Mask>,
    /// Per-site ReLU windows `m` (bits of each share the circuit reads), by site name,
    /// chosen from a calibration set's largest pre-activations with a margin
    /// ([`FixedPointParams::window_for`]); sites without one use
    /// [`FixedPointParams::relu_bits`]. Empty in models of format version 1.
    pub relu_windows: BTreeMap<String, u32>,
    /// Sites whose linearized positions compute something other than the identity, by
    /// site name (absent sites: [`Replacement::Identity`]; never stores `Identity`).
    /// Empty in models of format version below 3.
    pub replacements: BTreeMap<String, Replacement>,
    /// Channels of quadratic sites whose linearized positions compute only `b x + c`
    /// (their `a` is 0 in `<site>.poly`), by site name, ascending: no square is computed
    /// there, so the secure runtime truncates those positions without the square protocol.
    /// Absent sites square every channel. Empty in models of format version below 4.
    pub affine_channels: BTreeMap<String, Vec<usize>>,
}

/// Per-site ReLU counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteCount {
    /// Site name.
    pub name: String,
    /// Site shape (C, H, W).
    pub shape: Shape,
    /// Positions.
    pub total: usize,
    /// Kept ReLUs.
    pub kept: usize,
}

impl PublicModel {
    /// A public model with every ReLU kept.
    pub fn all_kept(
        arch: &str,
        graph: Graph,
        normalization: Normalization,
        fixed_point: FixedPointParams,
    ) -> Result<Self, ModelError> {
        let masks = graph
            .sites()?
            .into_iter()
            .map(|s| (s.name, Mask::all_kept(s.shape)))
            .collect();
        let m = PublicModel {
            arch: arch.to_string(),
            graph,
            normalization,
            fixed_point,
            masks,
            relu_windows: BTreeMap::new(),
            replacements: BTreeMap::new(),
            affine_channels: BTreeMap::new(),
        };
        m.validate()?;
        Ok(m)
    }

    /// What site `site`'s linearized positions compute.
    pub fn replacement(&self, site: &str) -> Replacement {
        self.replacements.get(site).copied().unwrap_or_default()
    }

    /// True if some site has a quadratic replacement.
    pub fn has_quadratic(&self) -> bool {
        self.replacements
            .values()
            .any(|&r| r == Replacement::Quadratic)
    }

    /// Sets site `site`'s replacement (an unknown site is an error).
    pub fn set_replacement(&mut self, site: &str, r: Replacement) -> Result<(), ModelError> {
        if !self.masks.contains_key(site) {
            return Err(ModelError::InvalidArgument(format!(
                "replacement given for {site:?}, which is not a ReLU site of the graph"
            )));
        }
        match r {
            Replacement::Identity => self.replacements.remove(site),
            _ => self.replacements.insert(site.to_string(), r),
        };
        Ok(())
    }

    /// Positions of site `site` whose linearized value is squared: at a quadratic site,
    /// the linearized (mask 0) positions of the channels not in
    /// [`PublicModel::affine_channels`]; 0 elsewhere.
    pub fn squared_positions(&self, site: &str) -> usize {
        let Some(m) = self.masks.get(site) else {
            return 0;
        };
        if self.replacement(site) != Replacement::Quadratic {
            return 0;
        }
        let affine = self.affine_channels.get(site);
        m.dropped_per_channel()
            .iter()
            .enumerate()
            .filter(|(c, _)| affine.is_none_or(|a| a.binary_search(c).is_err()))
            .map(|(_, &n)| n)
            .sum()
    }

    /// The private parameter tensors the model needs: the graph's, then `<site>.poly`
    /// (`[3, C]`) for every quadratic site.
    pub fn params(&self) -> Vec<crate::graph::ParamSpec> {
        let mut out = self.graph.params();
        for (site, r) in &self.replacements {
            if *r == Replacement::Quadratic
                && let Some(m) = self.masks.get(site)
            {
                out.push(crate::graph::ParamSpec {
                    name: poly_param(site),
                    shape: vec![3, m.shape[0]],
                });
            }
        }
        out
    }

    /// The fixed-point parameters at ReLU site `site`: the model's, with the site's
    /// window if it has one.
    pub fn site_params(&self, site: &str) -> FixedPointParams {
        match self.relu_windows.get(site) {
            Some(&m) => self.fixed_point.with_relu_bits(m),
            None => self.fixed_point,
        }
    }

    /// Number of output classes (the size of the last node).
    pub fn classes(&self) -> Result<usize, ModelError> {
        let shapes = self.graph.shapes()?;
        Ok(shapes[self.graph.output()].iter().product())
    }

    /// Checks the graph, the normalization, the fixed-point parameters and that there is
    /// exactly one 0/1 mask of the right shape per site.
    pub fn validate(&self) -> Result<Vec<SiteSpec>, ModelError> {
        let sites = self.graph.sites()?;
        self.fixed_point.validate()?;
        self.normalization.validate(self.graph.input[0])?;
        for s in &sites {
            let m = self
                .masks
                .get(&s.name)
                .ok_or_else(|| ModelError::MissingTensor {
                    name: s.name.clone(),
                    expected: s.shape.to_vec(),
                })?;
            if m.shape != s.shape || m.kept.len() != s.len() {
                return Err(ModelError::ShapeMismatch {
                    name: s.name.clone(),
                    found: m.shape.to_vec(),
                    expected: s.shape.to_vec(),
                });
            }
            if let Some(v) = m.kept.iter().find(|&&v| v > 1) {
                return Err(ModelError::BadValue {
                    name: s.name.clone(),
                    reason: format!("mask value {v}; masks hold 0 (linearized) or 1 (kept)"),
                });
            }
        }
        if let Some(extra) = self
            .masks
            .keys()
            .find(|k| !sites.iter().any(|s| &s.name == *k))
        {
            return Err(ModelError::UnexpectedTensor {
                name: extra.clone(),
            });
        }
        for (name, &r) in &self.replacements {
            if !sites.iter().any(|s| &s.name == name) {
                return Err(ModelError::InvalidArgument(format!(
                    "replacement given for {name:?}, which is not a ReLU site of the graph"
                )));
            }
            if r == Replacement::Identity {
                return Err(ModelError::BadValue {
                    name: name.clone(),
                    reason: "an identity replacement is recorded by leaving the site out".into(),
                });
            }
        }
        for (name, chans) in &self.affine_channels {
            let Some(s) = sites.iter().find(|s| &s.name == name) else {
                return Err(ModelError::InvalidArgument(format!(
                    "affine channels given for {name:?}, which is not a ReLU site of the graph"
                )));
            };
            if self.replacement(name) != Replacement::Quadratic {
                return Err(ModelError::BadValue {
                    name: name.clone(),
                    reason: "affine channels are given, but the site is not quadratic".into(),
                });
            }
            if chans.is_empty() {
                return Err(ModelError::BadValue {
                    name: name.clone(),
                    reason: "an empty list of affine channels is recorded by leaving the site out"
                        .into(),
                });
            }
            if let Some(&c) = chans.iter().find(|&&c| c >= s.shape[0]) {
                return Err(ModelError::BadValue {
                    name: name.clone(),
                    reason: format!("affine channel {c}; the site has {} channels", s.shape[0]),
                });
            }
            if chans.windows(2).any(|w| w[0] >= w[1]) {
                return Err(ModelError::BadValue {
                    name: name.clone(),
                    reason: "affine channels must be listed once each, ascending".into(),
                });
            }
        }
        for (name, &m) in &self.relu_windows {
            if !sites.iter().any(|s| &s.name == name) {
                return Err(ModelError::InvalidArgument(format!(
                    "ReLU window given for {name:?}, which is not a ReLU site of the graph"
                )));
            }
            self.fixed_point
                .with_relu_bits(m)
                .validate()
                .map_err(|e| ModelError::InvalidArgument(format!("window of site {name}: {e}")))?;
        }
        Ok(sites)
    }

    /// Per-site counts in graph order.
    pub fn site_counts(&self) -> Result<Vec<SiteCount>, ModelError> {
        Ok(self
            .graph
            .sites()?
            .into_iter()
            .map(|s| {
                let kept = self.masks.get(&s.name).map_or(0, Mask::kept_count);
                SiteCount {
                    total: s.len(),
                    kept,
                    name: s.name,
                    shape: s.shape,
                }
            })
            .collect())
    }

    /// Total ReLU positions.
    pub fn relu_total(&self) -> usize {
        self.masks.values().map(Mask::len).sum()
    }

    /// Kept ReLUs over all sites.
    pub fn relu_kept(&self) -> usize {
        self.masks.values().map(Mask::kept_count).sum()
    }
}

/// A complete model: public part, private weights, and free-form training provenance.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// What the client may know.
    pub public: PublicModel,
    /// Parameter tensors by hierarchical name (server only).
    pub weights: BTreeMap<String, Tensor>,
    /// Training provenance (dataset, budget, accuracies, hyperparameters); JSON object.
    pub provenance: serde_json::Value,
}

/// Standard normal sample by Box-Muller.
fn normal(rng: &mut impl Rng) -> f32 {
    let u1: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
    let u2: f64 = rng.r#gen();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

impl Model {
    /// A freshly initialised model with every ReLU kept, deterministic in `seed`.
    ///
    /// Convolutions use Kaiming-normal (fan-in) initialisation as SNL's reference does,
    /// linear layers PyTorch's default uniform(-1/sqrt(in), 1/sqrt(in)), batch norms the
    /// identity (weight 1, bias 0, mean 0, variance 1).
    pub fn random(public: PublicModel, seed: u64) -> Result<Self, ModelError> {
        public.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut weights = BTreeMap::new();
        for op in &public.graph.nodes {
            match op {
                Op::Conv2d {
                    name,
                    in_channels,
                    out_channels,
                    kernel,
                    bias,
                    ..
                } => {
                    let fan_in = in_channels * kernel * kernel;
                    let std = (2.0 / fan_in as f32).sqrt();
                    let shape = [*out_channels, *in_channels, *kernel, *kernel];
                    let mut w = Tensor::zeros(&shape);
                    w.data.iter_mut().for_each(|x| *x = normal(&mut rng) * std);
                    weights.insert(format!("{name}.weight"), w);
                    if *bias {
                        let b = 1.0 / (fan_in as f32).sqrt();
                        let mut t = Tensor::zeros(&[*out_channels]);
                        t.data.iter_mut().for_each(|x| *x = rng.gen_range(-b..b));
                        weights.insert(format!("{name}.bias"), t);
                    }
                }
                Op::BatchNorm2d { name, channels, .. } => {
                    let c = [*channels];
                    weights.insert(format!("{name}.weight"), Tensor::full(&c, 1.0));
                    weights.insert(format!("{name}.bias"), Tensor::zeros(&c));
                    weights.insert(format!("{name}.running_mean"), Tensor::zeros(&c));
                    weights.insert(format!("{name}.running_var"), Tensor::full(&c, 1.0));
                }
                Op::Linear {
                    name,
                    in_features,
                    out_features,
                    bias,
                    ..
                } => {
                    let b = 1.0 / (*in_features as f32).sqrt();
                    let mut w = Tensor::zeros(&[*out_features, *in_features]);
                    w.data.iter_mut().for_each(|x| *x = rng.gen_range(-b..b));
                    weights.insert(format!("{name}.weight"), w);
                    if *bias {
                        let mut t = Tensor::zeros(&[*out_features]);
                        t.data.iter_mut().for_each(|x| *x = rng.gen_range(-b..b));
                        weights.insert(format!("{name}.bias"), t);
                    }
                }
                _ => {}
            }
        }
        for p in public.params() {
            if let Some(site) = p.name.strip_suffix(".poly")
                && public.replacement(site) == Replacement::Quadratic
            {
                // a = 0, b = 1, c = 0: the identity, until trained.
                let ch = p.shape[1];
                let mut t = Tensor::zeros(&p.shape);
                t.data[ch..2 * ch].iter_mut().for_each(|x| *x = 1.0);
                weights.insert(p.name, t);
            }
        }
        let m = Model {
            public,
            weights,
            provenance: serde_json::json!({ "init": { "kind": "random", "seed": seed } }),
        };
        m.validate()?;
        Ok(m)
    }

    /// Checks the public part and that the weights are exactly the architecture's
    /// parameters, with the right shapes and finite values.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.public.validate()?;
        let params = self.public.params();
        for p in &params {
            let t = self
                .weights
                .get(&p.name)
                .ok_or_else(|| ModelError::MissingTensor {
                    name: p.name.clone(),
                    expected: p.shape.clone(),
                })?;
            if t.shape != p.shape || t.data.len() != p.shape.iter().product::<usize>() {
                return Err(ModelError::ShapeMismatch {
                    name: p.name.clone(),
                    found: t.shape.clone(),
                    expected: p.shape.clone(),
                });
            }
            if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                return Err(ModelError::BadValue {
                    name: p.name.clone(),
                    reason: format!("element {i} is not finite ({})", t.data[i]),
                });
            }
            if p.name.ends_with(".running_var") && t.data.iter().any(|&v| v < 0.0) {
                return Err(ModelError::BadValue {
                    name: p.name.clone(),
                    reason: "negative running variance".into(),
                });
            }
        }
        if let Some(extra) = self
            .weights
            .keys()
            .find(|k| !params.iter().any(|p| &p.name == *k))
        {
            return Err(ModelError::UnexpectedTensor {
                name: extra.clone(),
            });
        }
        // An affine channel computes no square, so its `a` must be 0: otherwise the
        // executors and the secure runtime (which skips the square) would disagree.
        for (site, chans) in &self.public.affine_channels {
            let name = poly_param(site);
            let t = self.weight(&name)?;
            if let Some(&c) = chans.iter().find(|&&c| t.data[c] != 0.0) {
                return Err(ModelError::BadValue {
                    name,
                    reason: format!(
                        "channel {c} is affine in the public part, but its a is {}",
                        t.data[c]
                    ),
                });
            }
        }
        Ok(())
    }

    /// The weight tensor `name`; errors if absent.
    pub fn weight(&self, name: &str) -> Result<&Tensor, ModelError> {
        self.weights
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                name: name.into(),
                expected: vec![],
            })
    }

    /// Number of trainable parameters (everything except batch-norm running statistics).
    pub fn parameter_count(&self) -> usize {
        self.weights
            .iter()
            .filter(|(k, _)| !k.ends_with(".running_mean") && !k.ends_with(".running_var"))
            .map(|(_, t)| t.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch;

    #[test]
    fn a_mask_with_k_kept_positions_reports_k() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let g = arch::build("resnet20", 10, [3, 32, 32]).unwrap();
        let mut p = PublicModel::all_kept(
            "resnet20",
            g,
            Normalization::cifar10(),
            FixedPointParams::default(),
        )
        .unwrap();
        assert_eq!(p.relu_kept(), 188_416);
        let mut expected = 0;
        for (i, m) in p.masks.values_mut().enumerate() {
            let k = (i * 37) % m.len();
            m.kept.iter_mut().for_each(|v| *v = 0);
            for _ in 0..k {
                let j = rng.gen_range(0..m.len());
                if m.kept[j] == 0 {
                    m.kept[j] = 1;
                    expected += 1;
                }
            }
        }
        assert_eq!(p.relu_kept(), expected);
        let sum: usize = p.site_counts().unwrap().iter().map(|s| s.kept).sum();
        assert_eq!(sum, expected);
        assert_eq!(p.relu_total(), 188_416);
    }

    #[test]
    fn channel_masks_are_position_masks() {
        let m = Mask::from_channels([3, 2, 2], &[true, false, true]).unwrap();
        assert_eq!(m.kept, [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(m.kept_count(), 8);
        assert!(Mask::from_channels([3, 2, 2], &[true]).is_err());
    }

    #[test]
    fn validation_names_the_problem() {
        let g = arch::build("lenet5", 10, [1, 28, 28]).unwrap();
        let p = PublicModel::all_kept(
            "lenet5",
            g,
            Normalization::fashion_mnist(),
            FixedPointParams::default(),
        )
        .unwrap();
        let m = Model::random(p, 1).unwrap();
        let mut bad = m.clone();
        bad.public.masks.get_mut("alpha2").unwrap().kept[3] = 2;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("mask value 2")
        );
        let mut bad = m.clone();
        bad.public.masks.remove("alpha3");
        assert!(
            matches!(bad.validate(), Err(ModelError::MissingTensor { name, .. }) if name == "alpha3")
        );
        let mut bad = m.clone();
        bad.weights.get_mut("fc1.weight").unwrap().shape = vec![400, 120];
        assert!(matches!(
            bad.validate(),
            Err(ModelError::ShapeMismatch { .. })
        ));
        let mut bad = m.clone();
        bad.weights.insert("fc9.weight".into(), Tensor::zeros(&[1]));
        assert!(matches!(
            bad.validate(),
            Err(ModelError::UnexpectedTensor { .. })
        ));
        let mut bad = m;
        bad.weights.get_mut("conv1.bias").unwrap().data[0] = f32::NAN;
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("not finite")
        );
    }
}
