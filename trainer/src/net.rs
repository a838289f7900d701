//! A `models` network description built as a libtorch module.
//!
//! Every parameter lives in the [`VarStore`] under exactly the name the model format uses
//! (`layer2.0.conv1.weight`, `bn1.running_var`), so export and import are name-for-name
//! copies. ReLU sites compute, per [`SiteMode`], a plain ReLU, SNL's trainable mix
//! `alpha * relu(x) + (1 - alpha) * x` with one alpha per C x H x W position (or per
//! channel), or a fixed 0/1 mask.

use std::collections::BTreeMap;

use models::graph::{Graph, Op, Shape};
use tch::nn::{self, Init, Module, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;

/// How ReLU sites compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteMode {
    /// `relu(x)` everywhere (pretraining).
    Relu,
    /// `x + alpha (relu(x) - x)` with trainable alphas (mask search).
    Alpha,
    /// `x + mask (relu(x) - x)` with the fixed binary masks (fine-tuning, evaluation).
    Mask,
}

/// Granularity of the trainable alphas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One alpha per C x H x W position (SNL's unstructured variant).
    Position,
    /// One alpha per channel (SNL's channel-wise variant).
    Channel,
}

enum Layer {
    None,
    Conv(nn::Conv2D),
    Bn(nn::BatchNorm),
    Linear(nn::Linear),
}

/// The network on libtorch.
pub struct Net {
    graph: Graph,
    shapes: Vec<Shape>,
    layers: Vec<Layer>,
    /// Trainable alphas by site name, shape [1, C, H, W] or [1, C, 1, 1].
    alphas: BTreeMap<String, Tensor>,
    /// Fixed masks by site name (float 0/1, shape [1, C, H, W]).
    masks: BTreeMap<String, Tensor>,
    /// How sites compute.
    pub mode: SiteMode,
}

/// Splits `a.b.c` into a nested [`nn::Path`].
fn path<'a>(root: &nn::Path<'a>, name: &str) -> nn::Path<'a> {
    let mut parts = name.split('.');
    let first = root.sub(parts.next().unwrap_or_default());
    parts.fold(first, |p, part| p.sub(part))
}

impl Net {
    /// Builds the network's parameters in `vs` (initialised as SNL's reference does:
    /// Kaiming-normal convolutions, batch-norm weight 1 and bias 0, PyTorch's default
    /// linear layers). With `alphas`, also creates one trainable alpha tensor per site,
    /// initialised to 1, under `<site>.alphas`.
    pub fn new(
        vs: &VarStore,
        graph: &Graph,
        alphas: Option<Granularity>,
    ) -> Result<Self, TrainError> {
        let shapes = graph.shapes()?;
        let root = vs.root();
        let mut layers = Vec::with_capacity(graph.nodes.len());
        let mut alpha_map = BTreeMap::new();
        for op in &graph.nodes {
            let layer = match op {
                Op::Conv2d {
                    name,
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    bias,
                    ..
                } => Layer::Conv(nn::conv2d(
                    path(&root, name),
                    *in_channels as i64,
                    *out_channels as i64,
                    *kernel as i64,
                    nn::ConvConfig {
                        stride: *stride as i64,
                        padding: *padding as i64,
                        bias: *bias,
                        ws_init: nn::init::DEFAULT_KAIMING_NORMAL,
                        ..Default::default()
                    },
                )),
                Op::BatchNorm2d {
                    name,
                    channels,
                    eps,
                    ..
                } => Layer::Bn(nn::batch_norm2d(
                    path(&root, name),
                    *channels as i64,
                    nn::BatchNormConfig {
                        eps: f64::from(*eps),
                        ws_init: Init::Const(1.0),
                        bs_init: Init::Const(0.0),
                        ..Default::default()
                    },
                )),
                Op::Linear {
                    name,
                    in_features,
                    out_features,
                    bias,
                    ..
                } => {
                    // PyTorch's default: uniform(+-1/sqrt(in)) for weight and bias.
                    let b = 1.0 / (*in_features as f64).sqrt();
                    Layer::Linear(nn::linear(
                        path(&root, name),
                        *in_features as i64,
                        *out_features as i64,
                        nn::LinearConfig {
                            ws_init: Init::Uniform { lo: -b, up: b },
                            bs_init: bias.then_some(Init::Uniform { lo: -b, up: b }),
                            bias: *bias,
                        },
                    ))
                }
                Op::Relu { site, input } => {
                    if let Some(g) = alphas {
                        let [c, h, w] = shapes[*input];
                        let dims: Vec<i64> = match g {
                            Granularity::Position => vec![1, c as i64, h as i64, w as i64],
                            Granularity::Channel => vec![1, c as i64, 1, 1],
                        };
                        let a = path(&root, site).var("alphas", &dims, Init::Const(1.0));
                        alpha_map.insert(site.clone(), a);
                    }
                    Layer::None
                }
                _ => Layer::None,
            };
            layers.push(layer);
        }
        Ok(Net {
            graph: graph.clone(),
            shapes,
            layers,
            alphas: alpha_map,
            masks: BTreeMap::new(),
            mode: if alphas.is_some() {
                SiteMode::Alpha
            } else {
                SiteMode::Relu
            },
        })
    }

    /// The description this network was built from.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The trainable alphas by site name.
    pub fn alphas(&self) -> &BTreeMap<String, Tensor> {
        &self.alphas
    }

    /// Sets fixed masks (one 0/1 byte per position per site) and switches to [`SiteMode::Mask`].
    pub fn set_masks(
        &mut self,
        masks: &BTreeMap<String, Vec<u8>>,
        device: Device,
    ) -> Result<(), TrainError> {
        let sites = self.graph.sites()?;
        let mut out = BTreeMap::new();
        for s in sites {
            let m = masks
                .get(&s.name)
                .ok_or_else(|| TrainError::Invalid(format!("no mask for site {}", s.name)))?;
            if m.len() != s.len() {
                return Err(TrainError::Invalid(format!(
                    "mask of {} has {} entries, the site has {}",
                    s.name,
                    m.len(),
                    s.len()
                )));
            }
            let [c, h, w] = s.shape;
            let t = Tensor::from_slice(m)
                .to_kind(Kind::Float)
                .reshape([1, c as i64, h as i64, w as i64])
                .to_device(device);
            out.insert(s.name, t);
        }
        self.masks = out;
        self.mode = SiteMode::Mask;
        Ok(())
    }

    /// Current binary masks: alphas above `threshold` are kept (expanded to every
    /// position for channel alphas); in mask mode the fixed masks; in ReLU mode all kept.
    pub fn binary_masks(&self, threshold: f64) -> Result<BTreeMap<String, Vec<u8>>, TrainError> {
        let mut out = BTreeMap::new();
        for s in self.graph.sites()? {
            let [c, h, w] = s.shape;
            let full = [1, c as i64, h as i64, w as i64];
            let t = match self.mode {
                SiteMode::Alpha => self.alphas[&s.name].gt(threshold).expand(full, false),
                SiteMode::Mask => self.masks[&s.name].gt(0.5),
                SiteMode::Relu => Tensor::ones(full, (Kind::Bool, Device::Cpu)),
            };
            let v: Vec<u8> =
                Vec::<u8>::try_from(t.to_kind(Kind::Uint8).to_device(Device::Cpu).flatten(0, -1))?;
            out.insert(s.name, v);
        }
        Ok(out)
    }

    /// Masks keeping at most `k` ReLUs: the units (positions, or channels with all their
    /// positions) with the largest alphas, taken in decreasing order while they fit, so a
    /// snapshot taken after the threshold count fell below a budget still keeps the
    /// budget's count (exactly `k` for position alphas). Ties go to the earlier site and
    /// position. Only in alpha mode.
    pub fn top_k_masks(&self, k: usize) -> Result<BTreeMap<String, Vec<u8>>, TrainError> {
        if self.mode != SiteMode::Alpha {
            return Err(TrainError::Invalid(
                "top-k masks need a network with alphas".into(),
            ));
        }
        let sites = self.graph.sites()?;
        // (value, site index, unit index, positions per unit)
        let mut units: Vec<(f32, usize, usize, usize)> = Vec::new();
        let mut out = BTreeMap::new();
        for (si, s) in sites.iter().enumerate() {
            let [c, h, w] = s.shape;
            let a = &self.alphas[&s.name];
            let per_unit = if a.size()[2] == 1 && a.size()[3] == 1 && h * w > 1 {
                h * w
            } else {
                1
            };
            let v: Vec<f32> =
                Vec::<f32>::try_from(a.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1))?;
            units.extend(v.into_iter().enumerate().map(|(i, x)| (x, si, i, per_unit)));
            out.insert(s.name.clone(), vec![0u8; c * h * w]);
        }
        units.sort_by(|x, y| y.0.total_cmp(&x.0).then((x.1, x.2).cmp(&(y.1, y.2))));
        let mut taken = 0usize;
        for (_, si, i, per_unit) in units {
            if taken + per_unit > k {
                if per_unit == 1 {
                    break;
                }
                continue;
            }
            taken += per_unit;
            let m = out.get_mut(&sites[si].name).ok_or_else(|| {
                TrainError::Invalid(format!("site {} has no mask", sites[si].name))
            })?;
            m[i * per_unit..(i + 1) * per_unit].fill(1);
        }
        Ok(out)
    }

    /// Number of alphas above `threshold` (SNL's ReLU count), counting every position a
    /// channel alpha stands for.
    pub fn relu_count(&self, threshold: f64) -> Result<usize, TrainError> {
        Ok(self
            .binary_masks(threshold)?
            .values()
            .map(|m| m.iter().filter(|&&k| k != 0).count())
            .sum())
    }

    /// L1 norm of all alphas (the sparsity penalty), each alpha weighted by the number of
    /// ReLU positions it stands for (1 per position; H x W for a channel alpha), so that
    /// lambda prices ReLUs the same way in both variants and budgets count ReLUs.
    pub fn alpha_l1(&self) -> Option<Tensor> {
        self.alphas
            .iter()
            .map(|(site, a)| {
                let l1 = a.abs().sum(Kind::Float);
                let size = a.size();
                let node = self
                    .graph
                    .nodes
                    .iter()
                    .position(|op| matches!(op, Op::Relu { site: s, .. } if s == site));
                match node {
                    Some(i) if size[2] == 1 && size[3] == 1 => {
                        let [_, h, w] = self.shapes[i];
                        l1 * (h * w) as f64
                    }
                    _ => l1,
                }
            })
            .reduce(|a, b| a + b)
    }

    fn forward_inner(&self, xs: &Tensor, train: bool) -> Tensor {
        let n = self.graph.nodes.len();
        let consumers = self.graph.consumers();
        let mut left = consumers.clone();
        let mut vals: Vec<Option<Tensor>> = (0..n).map(|_| None).collect();
        vals[0] = Some(xs.shallow_clone());
        for i in 1..n {
            let get = |j: usize| {
                vals[j]
                    .as_ref()
                    .map(Tensor::shallow_clone)
                    .unwrap_or_else(|| Tensor::zeros([1], (Kind::Float, Device::Cpu)))
            };
            let op = &self.graph.nodes[i];
            let y = match (op, &self.layers[i]) {
                (Op::Conv2d { input, .. }, Layer::Conv(c)) => c.forward(&get(*input)),
                (Op::BatchNorm2d { input, .. }, Layer::Bn(b)) => b.forward_t(&get(*input), train),
                // Kept 4-D ([N, out, 1, 1]) like every other value, so masks broadcast.
                (
                    Op::Linear {
                        input,
                        out_features,
                        ..
                    },
                    Layer::Linear(l),
                ) => get(*input)
                    .flatten(1, -1)
                    .apply(l)
                    .reshape([-1, *out_features as i64, 1, 1]),
                (Op::Relu { site, input }, _) => {
                    let x = get(*input);
                    match self.mode {
                        SiteMode::Relu => x.relu(),
                        SiteMode::Alpha => {
                            let a = &self.alphas[site];
                            &x + a * (x.relu() - &x)
                        }
                        SiteMode::Mask => {
                            let m = &self.masks[site];
                            &x + m * (x.relu() - &x)
                        }
                    }
                }
                (Op::Add { inputs }, _) => get(inputs[0]) + get(inputs[1]),
                (
                    Op::AvgPool2d {
                        input,
                        kernel,
                        stride,
                    },
                    _,
                ) => {
                    let k = *kernel as i64;
                    let s = *stride as i64;
                    get(*input).avg_pool2d([k, k], [s, s], [0, 0], false, true, None::<i64>)
                }
                _ => unreachable!("layers are built from the same graph"),
            };
            for j in op.inputs() {
                left[j] -= 1;
                if left[j] == 0 {
                    vals[j] = None;
                }
            }
            vals[i] = Some(y);
        }
        vals[n - 1]
            .take()
            .map(|t| t.flatten(1, -1))
            .unwrap_or_else(|| Tensor::zeros([1], (Kind::Float, Device::Cpu)))
    }

    /// Output shapes of every node (C, H, W).
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("nodes", &self.graph.nodes.len())
            .field("alphas", &self.alphas.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_inner(xs, train)
    }
}
