//! The network description every part of the system builds from.
//!
//! A [`Graph`] is a list of operations in topological order; each operation names the
//! earlier nodes it reads. Node 0 is the input, the last node is the output (the logits).
//! The same description is executed in f32 ([`crate::exec`]), lowered to fixed point
//! ([`crate::fixed`]), built into a libtorch module by the trainer, and split into linear
//! layers and ReLU layers by the two-party runtime. It is stored in the public part of the
//! model format, so a client can check what it is about to run.
//!
//! Parameter names are hierarchical and stable (`layer2.0.conv1.weight`, as PyTorch's
//! `state_dict` and tch's `vs.sub(..)` spell them) and follow SNL's reference code, so the
//! trainer and a PyTorch checkpoint map onto them one to one. A ReLU *site* is a place where
//! SNL puts a trainable alpha (named after the alpha module, e.g. `layer1.0.alpha1`); its
//! mask covers every C x H x W position.

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// Index of a node in [`Graph::nodes`].
pub type NodeId = usize;

/// Shape of an activation tensor of one image: channels, height, width.
pub type Shape = [usize; 3];

/// Upper bounds applied when validating a description (from a file or from code), so that
/// a hostile or corrupt description cannot ask for absurd allocations.
pub mod limits {
    /// Most nodes a graph may have.
    pub const MAX_NODES: usize = 10_000;
    /// Largest channel count, height or width.
    pub const MAX_DIM: usize = 65_536;
    /// Largest number of elements of one activation tensor.
    pub const MAX_ACTIVATION: usize = 1 << 26;
    /// Largest number of elements of one parameter tensor.
    pub const MAX_PARAM: usize = 1 << 28;
    /// Largest kernel side.
    pub const MAX_KERNEL: usize = 64;
    /// Longest parameter or site name.
    pub const MAX_NAME: usize = 256;
}

/// One operation of the network.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// The network input (always node 0).
    Input,
    /// 2-D convolution with square kernel, stride and zero padding.
    Conv2d {
        /// Parameter prefix (`<name>.weight`, `<name>.bias`).
        name: String,
        /// Input node.
        input: NodeId,
        /// Input channels.
        in_channels: usize,
        /// Output channels.
        out_channels: usize,
        /// Kernel side.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding on each side.
        padding: usize,
        /// Whether the convolution has a bias.
        bias: bool,
    },
    /// Batch normalization over channels with running statistics (inference form).
    BatchNorm2d {
        /// Parameter prefix (`.weight`, `.bias`, `.running_mean`, `.running_var`).
        name: String,
        /// Input node.
        input: NodeId,
        /// Channels.
        channels: usize,
        /// Epsilon added to the variance.
        eps: f32,
    },
    /// A ReLU site: `relu(x)` where the mask keeps the position, `x` where it is linearized.
    Relu {
        /// Site name (the SNL alpha module's name), also the mask's tensor name.
        site: String,
        /// Input node.
        input: NodeId,
    },
    /// Element-wise sum of two nodes of equal shape (residual connection).
    Add {
        /// The two summands.
        inputs: [NodeId; 2],
    },
    /// Average pooling with square window, no padding.
    AvgPool2d {
        /// Input node.
        input: NodeId,
        /// Window side.
        kernel: usize,
        /// Stride.
        stride: usize,
    },
    /// Fully connected layer on the flattened (C, H, W) input; output shape (out, 1, 1).
    Linear {
        /// Parameter prefix (`.weight` of shape [out, in], `.bias`).
        name: String,
        /// Input node.
        input: NodeId,
        /// Flattened input features.
        in_features: usize,
        /// Output features.
        out_features: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
}

impl Op {
    /// The nodes this operation reads.
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            Op::Input => vec![],
            Op::Conv2d { input, .. }
            | Op::BatchNorm2d { input, .. }
            | Op::Relu { input, .. }
            | Op::AvgPool2d { input, .. }
            | Op::Linear { input, .. } => vec![*input],
            Op::Add { inputs } => inputs.to_vec(),
        }
    }

    /// A short name of the operation kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Conv2d { .. } => "conv2d",
            Op::BatchNorm2d { .. } => "batch_norm2d",
            Op::Relu { .. } => "relu",
            Op::Add { .. } => "add",
            Op::AvgPool2d { .. } => "avg_pool2d",
            Op::Linear { .. } => "linear",
        }
    }
}

/// A named parameter tensor the architecture requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Hierarchical name, e.g. `layer1.0.conv1.weight`.
    pub name: String,
    /// Expected shape.
    pub shape: Vec<usize>,
}

/// A ReLU site: where a mask applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteSpec {
    /// Site name, e.g. `layer1.0.alpha1`.
    pub name: String,
    /// The node of the site.
    pub node: NodeId,
    /// The positions the mask covers.
    pub shape: Shape,
}

impl SiteSpec {
    /// Number of positions (ReLUs when fully kept).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True if the site has no positions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A validated network description.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// Shape of one input image (C, H, W).
    pub input: Shape,
    /// Operations in topological order; node 0 is [`Op::Input`], the last is the output.
    pub nodes: Vec<Op>,
}

fn invalid(msg: String) -> ModelError {
    ModelError::InvalidGraph(msg)
}

fn out_side(side: usize, kernel: usize, stride: usize, padding: usize) -> Option<usize> {
    let padded = side.checked_add(padding.checked_mul(2)?)?;
    if stride == 0 || kernel == 0 || padded < kernel {
        return None;
    }
    Some((padded - kernel) / stride + 1)
}

fn check_name(name: &str, node: usize) -> Result<(), ModelError> {
    let ok = !name.is_empty()
        && name.len() <= limits::MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "node {node}: name {name:?} must be 1..={} characters of [A-Za-z0-9._]",
            limits::MAX_NAME
        )))
    }
}

/// Checks that an input of `len` values fits a network whose input has shape `shape`.
pub(crate) fn check_input_len(shape: Shape, len: usize) -> Result<(), ModelError> {
    let n: usize = shape.iter().product();
    if len != n {
        return Err(ModelError::InvalidArgument(format!(
            "input has {len} values, the model expects {shape:?} = {n}"
        )));
    }
    Ok(())
}

impl Graph {
    /// Checks the description and returns the output shape of every node.
    ///
    /// Fails with [`ModelError::InvalidGraph`] naming the node when a reference points
    /// forward, a shape does not fit, a name repeats, or a size exceeds [`limits`].
    pub fn shapes(&self) -> Result<Vec<Shape>, ModelError> {
        use std::collections::HashSet;
        if self.nodes.is_empty() || self.nodes[0] != Op::Input {
            return Err(invalid("node 0 must be the input".into()));
        }
        if self.nodes.len() > limits::MAX_NODES {
            return Err(invalid(format!(
                "{} nodes exceed the limit of {}",
                self.nodes.len(),
                limits::MAX_NODES
            )));
        }
        let check_shape = |i: usize, s: Shape| -> Result<Shape, ModelError> {
            if s.iter().any(|&d| d == 0 || d > limits::MAX_DIM)
                || s.iter().product::<usize>() > limits::MAX_ACTIVATION
            {
                return Err(invalid(format!(
                    "node {i}: activation shape {s:?} out of bounds"
                )));
            }
            Ok(s)
        };
        let mut shapes: Vec<Shape> = Vec::with_capacity(self.nodes.len());
        shapes.push(check_shape(0, self.input)?);
        let mut names = HashSet::new();
        for (i, op) in self.nodes.iter().enumerate().skip(1) {
            for inp in op.inputs() {
                if inp >= i {
                    return Err(invalid(format!(
                        "node {i} ({}) reads node {inp}, which does not precede it",
                        op.kind()
                    )));
                }
            }
            let shape = match op {
                Op::Input => {
                    return Err(invalid(format!("node {i}: only node 0 may be the input")));
                }
                Op::Conv2d {
                    name,
                    input,
                    in_channels,
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    let [c, h, w] = shapes[*input];
                    if c != *in_channels {
                        return Err(invalid(format!(
                            "node {i} ({name}): in_channels {in_channels} but its input has {c} channels"
                        )));
                    }
                    if *kernel > limits::MAX_KERNEL || *out_channels > limits::MAX_DIM {
                        return Err(invalid(format!(
                            "node {i} ({name}): kernel or channels too large"
                        )));
                    }
                    if in_channels * out_channels * kernel * kernel > limits::MAX_PARAM {
                        return Err(invalid(format!(
                            "node {i} ({name}): weight tensor too large"
                        )));
                    }
                    let ho = out_side(h, *kernel, *stride, *padding);
                    let wo = out_side(w, *kernel, *stride, *padding);
                    match (ho, wo) {
                        (Some(ho), Some(wo)) => [*out_channels, ho, wo],
                        _ => {
                            return Err(invalid(format!(
                                "node {i} ({name}): kernel {kernel}, stride {stride}, padding {padding} do not fit input {h}x{w}"
                            )));
                        }
                    }
                }
                Op::BatchNorm2d {
                    name,
                    input,
                    channels,
                    eps,
                } => {
                    let s = shapes[*input];
                    if s[0] != *channels {
                        return Err(invalid(format!(
                            "node {i} ({name}): {channels} channels but its input has {}",
                            s[0]
                        )));
                    }
                    if !(eps.is_finite() && *eps > 0.0) {
                        return Err(invalid(format!("node {i} ({name}): eps must be positive")));
                    }
                    s
                }
                Op::Relu { input, .. } => shapes[*input],
                Op::Add { inputs } => {
                    let (a, b) = (shapes[inputs[0]], shapes[inputs[1]]);
                    if a != b {
                        return Err(invalid(format!(
                            "node {i} (add): summands have shapes {a:?} and {b:?}"
                        )));
                    }
                    a
                }
                Op::AvgPool2d {
                    input,
                    kernel,
                    stride,
                } => {
                    let [c, h, w] = shapes[*input];
                    match (
                        out_side(h, *kernel, *stride, 0),
                        out_side(w, *kernel, *stride, 0),
                    ) {
                        (Some(ho), Some(wo)) if *kernel <= limits::MAX_KERNEL => [c, ho, wo],
                        _ => {
                            return Err(invalid(format!(
                                "node {i} (avg_pool2d): kernel {kernel}, stride {stride} do not fit input {h}x{w}"
                            )));
                        }
                    }
                }
                Op::Linear {
                    name,
                    input,
                    in_features,
                    out_features,
                    ..
                } => {
                    let n: usize = shapes[*input].iter().product();
                    if n != *in_features {
                        return Err(invalid(format!(
                            "node {i} ({name}): in_features {in_features} but its input has {n} elements"
                        )));
                    }
                    if in_features.saturating_mul(*out_features) > limits::MAX_PARAM {
                        return Err(invalid(format!(
                            "node {i} ({name}): weight tensor too large"
                        )));
                    }
                    [*out_features, 1, 1]
                }
            };
            let name = match op {
                Op::Conv2d { name, .. }
                | Op::BatchNorm2d { name, .. }
                | Op::Linear { name, .. } => Some(name),
                Op::Relu { site, .. } => Some(site),
                _ => None,
            };
            if let Some(name) = name {
                check_name(name, i)?;
                if !names.insert(name.clone()) {
                    return Err(invalid(format!("node {i}: name {name:?} is used twice")));
                }
            }
            shapes.push(check_shape(i, shape)?);
        }
        Ok(shapes)
    }

    /// Index of the output node (the last one).
    pub fn output(&self) -> NodeId {
        self.nodes.len().saturating_sub(1)
    }

    /// The parameter tensors the architecture requires, in graph order.
    pub fn params(&self) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        let mut push = |name: &str, suffix: &str, shape: Vec<usize>| {
            out.push(ParamSpec {
                name: format!("{name}.{suffix}"),
                shape,
            })
        };
        for op in &self.nodes {
            match op {
                Op::Conv2d {
                    name,
                    in_channels,
                    out_channels,
                    kernel,
                    bias,
                    ..
                } => {
                    push(
                        name,
                        "weight",
                        vec![*out_channels, *in_channels, *kernel, *kernel],
                    );
                    if *bias {
                        push(name, "bias", vec![*out_channels]);
                    }
                }
                Op::BatchNorm2d { name, channels, .. } => {
                    for s in ["weight", "bias", "running_mean", "running_var"] {
                        push(name, s, vec![*channels]);
                    }
                }
                Op::Linear {
                    name,
                    in_features,
                    out_features,
                    bias,
                    ..
                } => {
                    push(name, "weight", vec![*out_features, *in_features]);
                    if *bias {
                        push(name, "bias", vec![*out_features]);
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The ReLU sites in graph order. Requires a valid graph (see [`Graph::shapes`]).
    pub fn sites(&self) -> Result<Vec<SiteSpec>, ModelError> {
        let shapes = self.shapes()?;
        Ok(self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, op)| match op {
                Op::Relu { site, input } => Some(SiteSpec {
                    name: site.clone(),
                    node: i,
                    shape: shapes[*input],
                }),
                _ => None,
            })
            .collect())
    }

    /// Total ReLU positions over all sites (the count when every ReLU is kept).
    pub fn relu_count(&self) -> Result<usize, ModelError> {
        Ok(self.sites()?.iter().map(SiteSpec::len).sum())
    }

    /// Number of readers of every node (the output counts as read once).
    pub fn consumers(&self) -> Vec<usize> {
        let mut n = vec![0usize; self.nodes.len()];
        for op in &self.nodes {
            for i in op.inputs() {
                if let Some(c) = n.get_mut(i) {
                    *c += 1;
                }
            }
        }
        if let Some(last) = n.last_mut() {
            *last += 1;
        }
        n
    }

    /// Multiply-accumulate operations of one forward pass (convolutions and linear layers).
    pub fn macs(&self) -> Result<u64, ModelError> {
        let shapes = self.shapes()?;
        let mut total = 0u64;
        for (i, op) in self.nodes.iter().enumerate() {
            match op {
                Op::Conv2d {
                    in_channels,
                    kernel,
                    ..
                } => {
                    let [c, h, w] = shapes[i];
                    total += (c * h * w * in_channels * kernel * kernel) as u64;
                }
                Op::Linear {
                    in_features,
                    out_features,
                    ..
                } => total += (in_features * out_features) as u64,
                _ => {}
            }
        }
        Ok(total)
    }
}

/// Builds a [`Graph`] while tracking shapes, so layer sizes need not be spelled twice.
#[derive(Debug)]
pub struct GraphBuilder {
    graph: Graph,
    shapes: Vec<Shape>,
}

impl GraphBuilder {
    /// Starts a graph with the given input shape; the input is node 0.
    pub fn new(input: Shape) -> Self {
        GraphBuilder {
            graph: Graph {
                input,
                nodes: vec![Op::Input],
            },
            shapes: vec![input],
        }
    }

    /// The input node.
    pub fn input(&self) -> NodeId {
        0
    }

    /// The shape of node `x`.
    pub fn shape(&self, x: NodeId) -> Shape {
        self.shapes[x]
    }

    fn push(&mut self, op: Op, shape: Shape) -> NodeId {
        self.graph.nodes.push(op);
        self.shapes.push(shape);
        self.graph.nodes.len() - 1
    }

    /// Adds a convolution (input channels taken from `x`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        &mut self,
        x: NodeId,
        name: &str,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> NodeId {
        let [c, h, w] = self.shapes[x];
        let side = |s: usize| out_side(s, kernel, stride, padding).unwrap_or(0);
        self.push(
            Op::Conv2d {
                name: name.into(),
                input: x,
                in_channels: c,
                out_channels,
                kernel,
                stride,
                padding,
                bias,
            },
            [out_channels, side(h), side(w)],
        )
    }

    /// Adds batch normalization (eps 1e-5, PyTorch's default).
    pub fn bn(&mut self, x: NodeId, name: &str) -> NodeId {
        let s = self.shapes[x];
        self.push(
            Op::BatchNorm2d {
                name: name.into(),
                input: x,
                channels: s[0],
                eps: 1e-5,
            },
            s,
        )
    }

    /// Adds a ReLU site.
    pub fn relu(&mut self, x: NodeId, site: &str) -> NodeId {
        let s = self.shapes[x];
        self.push(
            Op::Relu {
                site: site.into(),
                input: x,
            },
            s,
        )
    }

    /// Adds a residual sum.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        let s = self.shapes[a];
        self.push(Op::Add { inputs: [a, b] }, s)
    }

    /// Adds average pooling.
    pub fn avg_pool(&mut self, x: NodeId, kernel: usize, stride: usize) -> NodeId {
        let [c, h, w] = self.shapes[x];
        let side = |s: usize| out_side(s, kernel, stride, 0).unwrap_or(0);
        self.push(
            Op::AvgPool2d {
                input: x,
                kernel,
                stride,
            },
            [c, side(h), side(w)],
        )
    }

    /// Adds a fully connected layer on the flattened input.
    pub fn linear(&mut self, x: NodeId, name: &str, out_features: usize, bias: bool) -> NodeId {
        let n = self.shapes[x].iter().product();
        self.push(
            Op::Linear {
                name: name.into(),
                input: x,
                in_features: n,
                out_features,
                bias,
            },
            [out_features, 1, 1],
        )
    }

    /// Finishes and validates the graph.
    pub fn finish(self) -> Result<Graph, ModelError> {
        self.graph.shapes()?;
        Ok(self.graph)
    }
}

#[cfg(test)]
mod tests;
