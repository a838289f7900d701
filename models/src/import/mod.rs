//! Importing PyTorch checkpoints (`snl-model import`).
//!
//! Reads a `state_dict` from a safetensors file or a `torch.save` zip archive (bare, inside
//! a checkpoint dict, with DataParallel's `module.` prefix), maps its names onto a built-in
//! architecture with that architecture's table ([`names`]), checks every name and shape
//! before reading a byte of tensor data, converts float32/float64/float16/bfloat16 to f32,
//! and turns SNL's `LearnableAlpha` tensors into ReLU masks by SNL's own rule: a position
//! keeps its ReLU where `alpha > threshold` (default 1e-2). Batch-norm parameters and
//! running statistics are stored as they are, exactly as the trainer's export stores them;
//! the executors fold them (eps 1e-5, PyTorch's default). Without any alpha tensor every
//! ReLU is kept. The model's provenance records the source file, its SHA-256, the format,
//! the threshold and the names used. No PyTorch or libtorch is involved: the pickle is read
//! by [`pickle`], a small unpickler that executes nothing.

pub mod checkpoint;
pub mod dtype;
pub mod error;
pub mod names;
pub mod pickle;
#[cfg(test)]
mod tests;
pub mod torchzip;
pub mod value;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use crate::arch;
use crate::data::{DatasetKind, Normalization};
use crate::format::VERSION;
use crate::graph::{Op, Shape};
use crate::model::{Mask, Model, PublicModel};
use crate::ring::FixedPointParams;
use crate::tensor::Tensor;
pub use checkpoint::{Checkpoint, Format};
pub use error::ImportError;

/// SNL's default alpha threshold.
pub const DEFAULT_THRESHOLD: f32 = 1e-2;

/// What to import and how.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Built-in architecture name.
    pub arch: String,
    /// Number of classes.
    pub classes: usize,
    /// Input shape (default: the architecture's).
    pub input: Option<Shape>,
    /// A position keeps its ReLU where `alpha > threshold`.
    pub threshold: f32,
    /// Checkpoint-dict key holding the state dict (default: found automatically).
    pub key: Option<String>,
    /// Dataset the network was trained on: sets the input normalization.
    pub dataset: Option<DatasetKind>,
    /// Input normalization (overrides `dataset`; default: by dataset, else by channels).
    pub normalization: Option<Normalization>,
    /// Fixed-point parameters recorded in the model.
    pub fixed_point: FixedPointParams,
}

impl ImportOptions {
    /// Defaults for `arch` with `classes` classes.
    pub fn new(arch: &str, classes: usize) -> Self {
        ImportOptions {
            arch: arch.into(),
            classes,
            input: None,
            threshold: DEFAULT_THRESHOLD,
            key: None,
            dataset: None,
            normalization: None,
            fixed_point: FixedPointParams::default(),
        }
    }
}

/// An imported model and what the import found.
#[derive(Debug)]
pub struct Imported {
    /// The model (provenance filled in).
    pub model: Model,
    /// The file's format.
    pub format: Format,
    /// The checkpoint-dict key used.
    pub key: Option<String>,
    /// The prefix stripped from every name.
    pub stripped_prefix: Option<String>,
    /// Whether the checkpoint had alpha tensors (else every ReLU is kept).
    pub alphas: bool,
    /// Alpha values that were neither 0 nor 1 (a checkpoint from before SNL's thresholding).
    pub alphas_not_binary: usize,
    /// Integer `num_batches_tracked` tensors skipped.
    pub ignored: Vec<String>,
}

/// Our name of the last linear layer and of the first convolution, for hints.
fn hint_for(ours: &str, model: &PublicModel) -> String {
    let last_linear = model.graph.nodes.iter().rev().find_map(|op| match op {
        Op::Linear { name, .. } => Some(name.as_str()),
        _ => None,
    });
    let first_conv = model.graph.nodes.iter().find_map(|op| match op {
        Op::Conv2d { name, .. } => Some(name.as_str()),
        _ => None,
    });
    let module = ours.rsplit_once('.').map_or(ours, |(m, _)| m);
    if Some(module) == last_linear {
        "; check --classes".into()
    } else if Some(module) == first_conv {
        "; check --arch and --input".into()
    } else {
        "; check --arch".into()
    }
}

/// Imports the checkpoint at `path` as architecture `opts.arch`.
pub fn import(path: &Path, opts: &ImportOptions) -> Result<Imported, ImportError> {
    if !(opts.threshold.is_finite()) {
        return Err(ImportError::InvalidArgument(format!(
            "threshold {} must be a finite number",
            opts.threshold
        )));
    }
    let info = arch::info(&opts.arch)?;
    let table = names::table(info.name).ok_or_else(|| {
        ImportError::InvalidArgument(format!("no PyTorch naming table for {}", info.name))
    })?;
    let input = opts.input.unwrap_or(info.default_input);
    let graph = arch::build(info.name, opts.classes, input)?;
    let normalization = match (&opts.normalization, opts.dataset) {
        (Some(n), _) => n.clone(),
        (None, Some(d)) => Normalization::for_dataset(d),
        (None, None) if input[0] == 1 => Normalization::fashion_mnist(),
        (None, None) if input[0] == 3 => Normalization::cifar10(),
        (None, None) => Normalization::identity(input[0]),
    };
    let mut public = PublicModel::all_kept(info.name, graph, normalization, opts.fixed_point)?;
    let mapping = names::map(table, &public.graph).map_err(ImportError::InvalidArgument)?;
    let mut ck = Checkpoint::open(path, opts.key.as_deref())?;

    // Names and shapes first: nothing is read until everything fits.
    let alphas = mapping.iter().any(|m| {
        m.site
            && m.theirs
                .iter()
                .any(|t| ck.tensors.contains_key(t) || ck.others.contains_key(t))
    });
    let mut chosen: Vec<(usize, String)> = Vec::new();
    for (i, m) in mapping.iter().enumerate() {
        if m.site && !alphas {
            continue;
        }
        let present: Vec<&String> = m
            .theirs
            .iter()
            .filter(|t| ck.tensors.contains_key(*t) || ck.others.contains_key(*t))
            .collect();
        let key = match present.as_slice() {
            [one] => (*one).clone(),
            [] => {
                let mut hint = String::new();
                let canonical = if m.site {
                    format!("{}.alphas", m.ours)
                } else {
                    m.ours.clone()
                };
                if m.theirs[0] != canonical {
                    hint = format!(" (our {:?})", m.ours);
                }
                if m.theirs.len() > 1 {
                    hint.push_str(&format!("; also accepted: {}", m.theirs[1..].join(", ")));
                }
                let suffix = format!(".{}", m.theirs[0]);
                if let Some(k) = ck.tensors.keys().find(|k| k.ends_with(&suffix)) {
                    hint.push_str(&format!(
                        "; it has {k:?}, under a prefix the importer does not strip"
                    ));
                }
                let expected = if m.site {
                    names::canonical_alpha_shape([m.shape[0], m.shape[1], m.shape[2]])
                } else {
                    m.shape.clone()
                };
                return Err(ImportError::MissingKey {
                    key: m.theirs[0].clone(),
                    ours: m.ours.clone(),
                    expected,
                    hint,
                });
            }
            [first, second, ..] => {
                return Err(ImportError::UnexpectedKey {
                    key: (*second).clone(),
                    arch: info.name.into(),
                    hint: format!(" ({first:?} is read for the same tensor, {})", m.ours),
                });
            }
        };
        let Some(e) = ck.tensors.get(&key) else {
            return Err(ImportError::BadValue {
                reason: format!(
                    "is a {}, not a tensor",
                    ck.others.get(&key).copied().unwrap_or("value")
                ),
                key,
            });
        };
        let fits = if m.site {
            names::alpha_shape_fits(&e.shape, [m.shape[0], m.shape[1], m.shape[2]])
        } else {
            e.shape == m.shape
        };
        if !fits {
            let expected = if m.site {
                names::canonical_alpha_shape([m.shape[0], m.shape[1], m.shape[2]])
            } else {
                m.shape.clone()
            };
            return Err(ImportError::ShapeMismatch {
                found: e.shape.clone(),
                expected,
                hint: hint_for(&m.ours, &public),
                key,
            });
        }
        if !e.dtype.is_float() {
            return Err(ImportError::UnsupportedDtype {
                key,
                dtype: e.dtype.name(),
            });
        }
        chosen.push((i, key));
    }
    let used: std::collections::BTreeSet<&str> = chosen.iter().map(|(_, k)| k.as_str()).collect();
    let mut ignored = Vec::new();
    let leftovers = ck
        .tensors
        .iter()
        .map(|(k, e)| (k, Some(e)))
        .chain(ck.others.keys().map(|k| (k, None)));
    for (k, e) in leftovers {
        if used.contains(k.as_str()) {
            continue;
        }
        let int = e.is_some_and(|e| !e.dtype.is_float());
        if k.ends_with("num_batches_tracked") && int {
            ignored.push(k.clone());
            continue;
        }
        let hint = if k.contains("alpha") {
            " (an alpha tensor for a ReLU site the architecture does not have)".to_string()
        } else {
            String::new()
        };
        return Err(ImportError::UnexpectedKey {
            key: k.clone(),
            arch: info.name.into(),
            hint,
        });
    }

    // Read, convert and check values.
    let mut weights = BTreeMap::new();
    let mut renamed = serde_json::Map::new();
    let mut dtypes: BTreeMap<String, usize> = BTreeMap::new();
    let mut not_binary = 0usize;
    for (i, key) in &chosen {
        let m = &mapping[*i];
        let dtype = ck
            .tensors
            .get(key)
            .map(|e| e.dtype.name())
            .unwrap_or_default();
        *dtypes.entry(dtype).or_default() += 1;
        let data = ck.read_f32(key)?;
        if let Some(j) = data.iter().position(|x| !x.is_finite()) {
            return Err(ImportError::BadValue {
                key: key.clone(),
                reason: format!("element {j} is not finite ({})", data[j]),
            });
        }
        let same = if m.site {
            *key == format!("{}.alphas", m.ours)
        } else {
            *key == m.ours
        };
        if !same {
            renamed.insert(m.ours.clone(), json!(key));
        }
        if m.site {
            not_binary += data.iter().filter(|&&a| a != 0.0 && a != 1.0).count();
            let shape = [m.shape[0], m.shape[1], m.shape[2]];
            let mask = Mask {
                shape,
                kept: data.iter().map(|&a| u8::from(a > opts.threshold)).collect(),
            };
            public.masks.insert(m.ours.clone(), mask);
        } else {
            if m.ours.ends_with(".running_var") && data.iter().any(|&v| v < 0.0) {
                return Err(ImportError::BadValue {
                    key: key.clone(),
                    reason: "negative running variance".into(),
                });
            }
            let t = Tensor::from_vec(&m.shape, data).ok_or_else(|| ImportError::Storage {
                path: path.into(),
                name: key.clone(),
                reason: "element count does not match its shape".into(),
            })?;
            weights.insert(m.ours.clone(), t);
        }
    }
    let (kept, total) = (public.relu_kept(), public.relu_total());
    let provenance = json!({
        "import": {
            "importer": format!("models {VERSION}"),
            "source": path.display().to_string(),
            "file": path.file_name().map(|f| f.to_string_lossy().to_string()),
            "sha256": ck.sha256,
            "bytes": ck.bytes,
            "format": ck.format.name(),
            "archive": ck.archive,
            "key": ck.key,
            "stripped_prefix": ck.stripped_prefix,
            "checkpoint_fields": ck.fields,
            "arch": info.name,
            "classes": opts.classes,
            "input": input,
            "dataset": opts.dataset.map(DatasetKind::name),
            "names": {
                "convention": table.convention,
                "tensors": chosen.len(),
                "renamed": renamed,
            },
            "dtypes": dtypes,
            "ignored": ignored,
            "masks": {
                "from": if alphas { "alpha tensors" } else { "none in the checkpoint: every ReLU kept" },
                "rule": "kept where alpha > threshold (SNL)",
                // Shortest decimal form of the f32 threshold (0.01, not 0.009999999776).
                "threshold": opts.threshold.to_string().parse::<f64>().ok(),
                "alphas_not_binary": not_binary,
                "kept": kept,
                "total": total,
            },
        }
    });
    let model = Model {
        public,
        weights,
        provenance,
    };
    model.validate()?;
    Ok(Imported {
        model,
        format: ck.format,
        key: ck.key.clone(),
        stripped_prefix: ck.stripped_prefix.clone(),
        alphas,
        alphas_not_binary: not_binary,
        ignored,
    })
}
