//! A `models` network description built as a libtorch module.
//!
//! Every parameter lives in the [`VarStore`] under exactly the name the model format uses
//! (`layer2.0.conv1.weight`, `bn1.running_var`), so export and import are name-for-name
//! copies. ReLU sites compute, per [`SiteMode`], a plain ReLU, SNL's trainable mix
//! `alpha * relu(x) + (1 - alpha) * x` with one alpha per C x H x W position (or per
//! channel), or a fixed 0/1 mask. In mask mode a site with quadratic coefficients
//! ([`Net::add_poly`], the var `<site>.poly`, shape [3, C], rows a, b, c) computes
//! `a x^2 + b x + c` at its dropped positions instead of `x`, as `models`' executors do.

use std::collections::{BTreeMap, BTreeSet};

use models::graph::{Graph, Op, Shape};
use models::model::poly_param;
use tch::nn::{self, Init, Module, ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;
use crate::poly::{Moments, channel_moments, range_penalty};

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

/// A callback with each ReLU site's name and input.
type Observer<'a> = &'a mut dyn FnMut(&str, &Tensor);

/// Optional extras of one forward pass.
struct Hooks<'a> {
    /// Called with each ReLU site's name and input.
    observe: Option<Observer<'a>>,
    /// Accumulates (sum, count) of the squares' range penalty.
    penalty: Option<&'a mut Option<(Tensor, Tensor)>>,
}

/// Saved batch-norm running statistics ([`Net::bn_stats`]).
#[derive(Debug)]
pub struct BnStats(Vec<(Tensor, Tensor)>);

/// The network on libtorch.
pub struct Net {
    graph: Graph,
    shapes: Vec<Shape>,
    layers: Vec<Layer>,
    /// Trainable alphas by site name, shape [1, C, H, W] or [1, C, 1, 1].
    alphas: BTreeMap<String, Tensor>,
    /// Fixed masks by site name (float 0/1, shape [1, C, H, W]).
    masks: BTreeMap<String, Tensor>,
    /// The same masks as booleans (true = kept).
    kept: BTreeMap<String, Tensor>,
    /// Trainable quadratic coefficients by site name, shape [3, C] (rows a, b, c).
    poly: BTreeMap<String, Tensor>,
    /// Per quadratic site with affine channels, float 0/1 of shape [1, C, 1, 1] (0 = the
    /// channel computes no square): multiplies `a` in the forward pass, so those channels'
    /// `a` gets no gradient and stays 0 ([`Net::set_affine_channels`]).
    square_masks: BTreeMap<String, Tensor>,
    /// Per-site weights of the alphas' L1 penalty ([`Net::set_alpha_weights`]; a site
    /// absent here weighs 1).
    alpha_weights: BTreeMap<String, f64>,
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
            kept: BTreeMap::new(),
            poly: BTreeMap::new(),
            square_masks: BTreeMap::new(),
            alpha_weights: BTreeMap::new(),
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

    /// Weights the alphas' L1 penalty per site ([`Net::alpha_l1`]): a site's alphas count
    /// `weights[site]` times (1 for a site not listed). A latency-priced search gives each
    /// site its ReLUs' relative online cost. Errors on a weight that is negative or not
    /// finite, or on a site the network does not have.
    pub fn set_alpha_weights(&mut self, weights: BTreeMap<String, f64>) -> Result<(), TrainError> {
        for (site, &w) in &weights {
            if !self.alphas.contains_key(site) {
                return Err(TrainError::Invalid(format!(
                    "penalty weight for site {site}, which has no alphas"
                )));
            }
            if !(w.is_finite() && w >= 0.0) {
                return Err(TrainError::Invalid(format!(
                    "penalty weight {w} of site {site} must be finite and not negative"
                )));
            }
        }
        self.alpha_weights = weights;
        Ok(())
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
            self.kept.insert(s.name.clone(), t.gt(0.5));
            out.insert(s.name, t);
        }
        self.masks = out;
        self.mode = SiteMode::Mask;
        Ok(())
    }

    /// Creates trainable quadratic coefficients `<site>.poly` ([3, C], initialised to the
    /// identity a = 0, b = 1, c = 0) for each of `sites`, so that in mask mode their
    /// dropped positions compute `a x^2 + b x + c`. Create them before the optimizer, so
    /// that it trains them with the weights.
    pub fn add_poly(&mut self, vs: &VarStore, sites: &[String]) -> Result<(), TrainError> {
        let all = self.graph.sites()?;
        for site in sites {
            let s = all
                .iter()
                .find(|s| &s.name == site)
                .ok_or_else(|| TrainError::Invalid(format!("{site} is not a ReLU site")))?;
            let c = s.shape[0] as i64;
            let init = Tensor::stack(
                &[
                    Tensor::zeros([c], (Kind::Float, Device::Cpu)),
                    Tensor::ones([c], (Kind::Float, Device::Cpu)),
                    Tensor::zeros([c], (Kind::Float, Device::Cpu)),
                ],
                0,
            )
            .to_device(vs.device());
            let v = path(&vs.root(), site).var_copy("poly", &init);
            debug_assert!(vs.variables().contains_key(&poly_param(site)));
            self.poly.insert(site.clone(), v);
        }
        Ok(())
    }

    /// The quadratic coefficients by site name ([3, C]: rows a, b, c).
    pub fn poly(&self) -> &BTreeMap<String, Tensor> {
        &self.poly
    }

    /// Sets site `site`'s coefficients, one `[a, b, c]` per channel.
    pub fn set_poly(&self, site: &str, coeffs: &[[f64; 3]]) -> Result<(), TrainError> {
        let p = self
            .poly
            .get(site)
            .ok_or_else(|| TrainError::Invalid(format!("site {site} has no coefficients")))?;
        let c = p.size()[1] as usize;
        if coeffs.len() != c {
            return Err(TrainError::Invalid(format!(
                "{} coefficient triples for the {c} channels of {site}",
                coeffs.len()
            )));
        }
        let rows: Vec<f32> = (0..3)
            .flat_map(|k| coeffs.iter().map(move |t| t[k] as f32))
            .collect();
        let t = Tensor::from_slice(&rows)
            .reshape([3, c as i64])
            .to_device(p.device());
        tch::no_grad(|| p.shallow_clone().f_copy_(&t))?;
        Ok(())
    }

    /// Makes `channels` of quadratic site `site` affine: their `a` is set to 0 and masked
    /// out of the forward pass (no gradient reaches it); an empty list squares every
    /// channel again.
    pub fn set_affine_channels(
        &mut self,
        site: &str,
        channels: &[usize],
    ) -> Result<(), TrainError> {
        let p = self
            .poly
            .get(site)
            .ok_or_else(|| TrainError::Invalid(format!("site {site} has no coefficients")))?;
        let c = p.size()[1];
        if let Some(&bad) = channels.iter().find(|&&ch| ch as i64 >= c) {
            return Err(TrainError::Invalid(format!(
                "affine channel {bad} of {site}, which has {c} channels"
            )));
        }
        if channels.is_empty() {
            self.square_masks.remove(site);
            return Ok(());
        }
        let mut m = vec![1f32; c as usize];
        channels.iter().for_each(|&ch| m[ch] = 0.0);
        let mask = Tensor::from_slice(&m).to_device(p.device());
        tch::no_grad(|| -> Result<(), TrainError> {
            let a = p.get(0);
            let zeroed = &a * &mask;
            a.shallow_clone().f_copy_(&zeroed)?;
            Ok(())
        })?;
        self.square_masks
            .insert(site.to_string(), mask.reshape([1, c, 1, 1]));
        Ok(())
    }

    /// Per-site, per-channel moments of the pre-activations at the dropped positions
    /// (mask 0) over `batches`, of every site or only of `only`, with the sites that have
    /// coefficients computing their quadratics. Only in mask mode.
    ///
    /// Batch norm normalizes with each batch's statistics, as in training: what the
    /// coefficients meet in the first fine-tuning steps. (Right after binarizing a
    /// search snapshot the running statistics no longer fit the network: ResNet-20 at
    /// 10% of its ReLUs tests at about 12% with them.) The running statistics, which
    /// such a pass updates, are restored afterwards, so the network is left as it was.
    pub fn dropped_moments(
        &self,
        batches: impl IntoIterator<Item = Tensor>,
        only: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<Moments>>, TrainError> {
        if self.mode != SiteMode::Mask {
            return Err(TrainError::Invalid(
                "dropped-position statistics need a network with fixed masks".into(),
            ));
        }
        let saved = self.bn_stats();
        let mut out: BTreeMap<String, Vec<Moments>> = BTreeMap::new();
        tch::no_grad(|| {
            for x in batches {
                let mut observe = |site: &str, x: &Tensor| {
                    if only.is_some_and(|o| o != site) {
                        return;
                    }
                    let d = 1.0 - &self.masks[site];
                    let m = channel_moments(x, &d);
                    match out.get_mut(site) {
                        Some(acc) => acc.iter_mut().zip(&m).for_each(|(a, b)| a.add(b)),
                        None => {
                            out.insert(site.to_string(), m);
                        }
                    }
                };
                let _ = self.forward_inner(
                    &x,
                    true,
                    Hooks {
                        observe: Some(&mut observe),
                        penalty: None,
                    },
                );
            }
        });
        self.restore_bn_stats(&saved)?;
        Ok(out)
    }

    /// Copies of the batch norms' running statistics (mean, variance), in graph order.
    pub fn bn_stats(&self) -> BnStats {
        BnStats(
            self.layers
                .iter()
                .filter_map(|l| match l {
                    Layer::Bn(b) => Some((b.running_mean.copy(), b.running_var.copy())),
                    _ => None,
                })
                .collect(),
        )
    }

    /// Puts back running statistics taken by [`Net::bn_stats`].
    pub fn restore_bn_stats(&self, saved: &BnStats) -> Result<(), TrainError> {
        let bns = self.layers.iter().filter_map(|l| match l {
            Layer::Bn(b) => Some(b),
            _ => None,
        });
        tch::no_grad(|| {
            for (b, (m, v)) in bns.zip(&saved.0) {
                b.running_mean.shallow_clone().f_copy_(m)?;
                b.running_var.shallow_clone().f_copy_(v)?;
            }
            Ok(())
        })
    }

    /// Re-estimates the batch norms' running statistics: `batches` through the network
    /// in training mode, without gradients (each batch moves them by PyTorch's momentum
    /// 0.1, so after n batches 0.9^n of the old statistics remain).
    pub fn recalibrate_bn(&self, batches: impl IntoIterator<Item = Tensor>) {
        tch::no_grad(|| {
            for x in batches {
                let _ = self.forward_t(&x, true);
            }
        });
    }

    /// Logits and the range penalty of the squares: the mean over the dropped positions
    /// of the quadratic sites (all of them, over the batch) of `relu(|x| - R)^2`
    /// ([`crate::poly::range_penalty`]); `None` without quadratic sites or outside mask
    /// mode.
    pub fn forward_with_penalty(&self, xs: &Tensor, train: bool) -> (Tensor, Option<Tensor>) {
        let mut acc = None;
        let y = self.forward_inner(
            xs,
            train,
            Hooks {
                observe: None,
                penalty: Some(&mut acc),
            },
        );
        (
            y,
            acc.map(|(sum, count): (Tensor, Tensor)| sum / count.clamp_min(1.0)),
        )
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
        self.top_k_masks_except(k, &BTreeSet::new())
    }

    /// [`Net::top_k_masks`] with the sites in `empty` left out: they keep no ReLU.
    pub fn top_k_masks_except(
        &self,
        k: usize,
        empty: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, Vec<u8>>, TrainError> {
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
            out.insert(s.name.clone(), vec![0u8; c * h * w]);
            if empty.contains(&s.name) {
                continue;
            }
            let v: Vec<f32> =
                Vec::<f32>::try_from(a.to_kind(Kind::Float).to_device(Device::Cpu).flatten(0, -1))?;
            units.extend(v.into_iter().enumerate().map(|(i, x)| (x, si, i, per_unit)));
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
    /// lambda prices ReLUs the same way in both variants and budgets count ReLUs, and by
    /// its site's weight ([`Net::set_alpha_weights`], 1 unless set).
    pub fn alpha_l1(&self) -> Option<Tensor> {
        self.alphas
            .iter()
            .map(|(site, a)| {
                let l1 =
                    a.abs().sum(Kind::Float) * self.alpha_weights.get(site).copied().unwrap_or(1.0);
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

    fn forward_inner(&self, xs: &Tensor, train: bool, mut hooks: Hooks) -> Tensor {
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
                    if let Some(f) = hooks.observe.as_mut() {
                        f(site, &x);
                    }
                    match (self.mode, self.poly.get(site)) {
                        (SiteMode::Relu, _) => x.relu(),
                        (SiteMode::Alpha, _) => {
                            let a = &self.alphas[site];
                            &x + a * (x.relu() - &x)
                        }
                        (SiteMode::Mask, Some(p)) => {
                            let c = p.size()[1];
                            let coef = |k: i64| p.get(k).reshape([1, c, 1, 1]);
                            let a = match self.square_masks.get(site) {
                                Some(m) => coef(0) * m,
                                None => coef(0),
                            };
                            let q = (a * &x + coef(1)) * &x + coef(2);
                            if let Some(acc) = hooks.penalty.as_mut() {
                                let d = 1.0 - &self.masks[site];
                                let sum = (range_penalty(&x) * &d).sum(Kind::Float);
                                let count = d.sum(Kind::Float) * x.size()[0] as f64;
                                **acc = Some(match acc.take() {
                                    Some((s, n)) => (s + sum, n + count),
                                    None => (sum, count),
                                });
                            }
                            x.relu().where_self(&self.kept[site], &q)
                        }
                        (SiteMode::Mask, _) => {
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
            .field("poly", &self.poly.len())
            .field("mode", &self.mode)
            .finish()
    }
}

impl ModuleT for Net {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.forward_inner(
            xs,
            train,
            Hooks {
                observe: None,
                penalty: None,
            },
        )
    }
}
