//! The plaintext f32 executor: the network exactly as trained, one image at a time.
//!
//! It is the reference the fixed-point executor and the secure runtime are compared with,
//! and the evaluator of `snl-model eval --executor f32`. At a ReLU site a kept position
//! computes `max(x, 0)` and a linearized one passes `x` through, as SNL's binarized alphas do,
//! or, at a site with a quadratic replacement, computes `a x^2 + b x + c` with its channel's
//! coefficients.

use crate::error::ModelError;
use crate::graph::{Op, Shape, check_input_len};
use crate::kernels::{avg_pool, matmul};
use crate::model::{Model, Replacement, poly_param};

pub use crate::kernels::conv2d;

/// Runs a model in f32.
#[derive(Debug)]
pub struct F32Executor<'m> {
    model: &'m Model,
    shapes: Vec<Shape>,
    last_use: Vec<usize>,
}

impl<'m> F32Executor<'m> {
    /// Prepares an executor; validates the model.
    pub fn new(model: &'m Model) -> Result<Self, ModelError> {
        model.validate()?;
        let shapes = model.public.graph.shapes()?;
        let mut last_use: Vec<usize> = (0..shapes.len()).collect();
        for (i, op) in model.public.graph.nodes.iter().enumerate() {
            for j in op.inputs() {
                last_use[j] = i;
            }
        }
        if let Some(l) = last_use.last_mut() {
            *l = usize::MAX;
        }
        Ok(F32Executor {
            model,
            shapes,
            last_use,
        })
    }

    /// Output shapes of every node.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    fn w(&self, name: &str) -> &[f32] {
        // Presence and shapes were checked by Model::validate in new().
        self.model
            .weights
            .get(name)
            .map_or(&[], |t| t.data.as_slice())
    }

    /// Evaluates node `i` given the values of its inputs.
    fn node(&self, i: usize, vals: &[Option<Vec<f32>>]) -> Vec<f32> {
        let get = |j: usize| vals[j].as_deref().unwrap_or(&[]);
        match &self.model.public.graph.nodes[i] {
            Op::Input => unreachable!("node 0 is set by the caller"),
            Op::Conv2d {
                name,
                input,
                out_channels,
                kernel,
                stride,
                padding,
                bias,
                ..
            } => {
                let b = bias.then(|| self.w(&format!("{name}.bias")));
                conv2d(
                    get(*input),
                    self.shapes[*input],
                    self.w(&format!("{name}.weight")),
                    b,
                    *out_channels,
                    *kernel,
                    *stride,
                    *padding,
                )
            }
            Op::BatchNorm2d {
                name, input, eps, ..
            } => {
                let (g, b) = (
                    self.w(&format!("{name}.weight")),
                    self.w(&format!("{name}.bias")),
                );
                let (m, v) = (
                    self.w(&format!("{name}.running_mean")),
                    self.w(&format!("{name}.running_var")),
                );
                let [_, h, w] = self.shapes[*input];
                get(*input)
                    .iter()
                    .enumerate()
                    .map(|(j, &x)| {
                        let c = j / (h * w);
                        (x - m[c]) / (v[c] + eps).sqrt() * g[c] + b[c]
                    })
                    .collect()
            }
            Op::Relu { site, input } => {
                let mask = &self.model.public.masks[site].kept;
                let x = get(*input);
                match self.model.public.replacement(site) {
                    Replacement::Identity => x
                        .iter()
                        .zip(mask)
                        .map(|(&x, &k)| if k != 0 { x.max(0.0) } else { x })
                        .collect(),
                    Replacement::Quadratic => {
                        let poly = self.w(&poly_param(site));
                        let [c, h, w] = self.shapes[*input];
                        let plane = h * w;
                        x.iter()
                            .zip(mask)
                            .enumerate()
                            .map(|(j, (&x, &k))| {
                                let ch = j / plane;
                                if k != 0 {
                                    x.max(0.0)
                                } else {
                                    (poly[ch] * x + poly[c + ch]) * x + poly[2 * c + ch]
                                }
                            })
                            .collect()
                    }
                }
            }
            Op::Add { inputs } => get(inputs[0])
                .iter()
                .zip(get(inputs[1]))
                .map(|(a, b)| a + b)
                .collect(),
            Op::AvgPool2d {
                input,
                kernel,
                stride,
            } => {
                let inv = 1.0 / (kernel * kernel) as f32;
                avg_pool(
                    get(*input),
                    self.shapes[*input],
                    *kernel,
                    *stride,
                    |_, it| it.sum::<f32>() * inv,
                )
            }
            Op::Linear {
                name,
                input,
                in_features,
                out_features,
                bias,
            } => {
                let mut y = matmul(
                    self.w(&format!("{name}.weight")),
                    get(*input),
                    *out_features,
                    *in_features,
                    1,
                );
                if *bias {
                    y.iter_mut()
                        .zip(self.w(&format!("{name}.bias")))
                        .for_each(|(y, b)| *y += b);
                }
                y
            }
        }
    }

    /// The logits for one normalized input (C x H x W, row-major).
    pub fn forward(&self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        Ok(self.run(input, false)?.pop().flatten().unwrap_or_default())
    }

    /// The value of every node for one input (for comparisons and debugging).
    pub fn trace(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self
            .run(input, true)?
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect())
    }

    fn run(&self, input: &[f32], keep: bool) -> Result<Vec<Option<Vec<f32>>>, ModelError> {
        check_input_len(self.shapes[0], input.len())?;
        let n = self.shapes.len();
        let mut vals: Vec<Option<Vec<f32>>> = vec![None; n];
        vals[0] = Some(input.to_vec());
        for i in 1..n {
            vals[i] = Some(self.node(i, &vals));
            if !keep {
                for j in self.model.public.graph.nodes[i].inputs() {
                    if self.last_use[j] == i {
                        vals[j] = None;
                    }
                }
            }
        }
        Ok(vals)
    }
}

/// Sets every batch norm's running statistics to the batch statistics of `inputs`, layer
/// by layer (later layers see the already calibrated earlier ones).
///
/// A freshly initialised network then has well-scaled activations, like a trained one,
/// which makes it a realistic subject for fixed-point and protocol tests.
pub fn calibrate_batchnorm(model: &mut Model, inputs: &[Vec<f32>]) -> Result<(), ModelError> {
    let nodes = model.public.graph.nodes.clone();
    let shapes = model.public.graph.shapes()?;
    if inputs.is_empty() {
        return Err(ModelError::InvalidArgument(
            "calibration needs at least one input".into(),
        ));
    }
    let mut per_image: Vec<Vec<Option<Vec<f32>>>> = inputs
        .iter()
        .map(|x| {
            let mut v = vec![None; nodes.len()];
            v[0] = Some(x.clone());
            v
        })
        .collect();
    for (i, op) in nodes.iter().enumerate().skip(1) {
        if let Op::BatchNorm2d { name, input, .. } = op {
            let [c, h, w] = shapes[*input];
            let mut sum = vec![0f64; c];
            let mut sq = vec![0f64; c];
            for vals in &per_image {
                for (j, &x) in vals[*input].as_deref().unwrap_or(&[]).iter().enumerate() {
                    sum[j / (h * w)] += f64::from(x);
                    sq[j / (h * w)] += f64::from(x) * f64::from(x);
                }
            }
            let n = (inputs.len() * h * w) as f64;
            let mean: Vec<f32> = sum.iter().map(|s| (s / n) as f32).collect();
            let var: Vec<f32> = sq
                .iter()
                .zip(&sum)
                .map(|(q, s)| ((q / n) - (s / n).powi(2)).max(0.0) as f32)
                .collect();
            if let Some(t) = model.weights.get_mut(&format!("{name}.running_mean")) {
                t.data = mean;
            }
            if let Some(t) = model.weights.get_mut(&format!("{name}.running_var")) {
                t.data = var;
            }
        }
        let exec = F32Executor::new(model)?;
        for vals in per_image.iter_mut() {
            vals[i] = Some(exec.node(i, vals));
        }
    }
    per_image.clear();
    Ok(())
}
