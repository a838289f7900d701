//! SNL training (Cho et al., ICML 2022) for the networks of the `models` crate.
//!
//! The trainer turns a dataset and a ReLU budget into a linearized model in the `models`
//! format: [`snl::pretrain`] (SGD, one-cycle or multi-step schedule, crop + flip), then
//! [`snl::linearize`]: the mask search with one trainable alpha per ReLU position (or per
//! channel), cross-entropy + distillation from the frozen pretrained network + lambda times
//! the alphas' L1 norm, lambda grown by 1.1 each epoch without a new low; the mask is
//! snapshotted each time the count crosses one of the requested budgets (one search yields
//! a whole accuracy-vs-ReLU front), binarized at the threshold, and each snapshot is
//! fine-tuned with distillation.
//!
//! It is the only crate that links libtorch (through `tch`). Networks are built from the
//! same [`models::graph::Graph`] descriptions the runtime executes ([`net::Net`]), with
//! parameters under exactly the model format's names, so export is a name-for-name copy.

pub mod bench;
pub mod data;
pub mod net;
pub mod optim;
pub mod schedule;
pub mod snl;

use std::collections::BTreeMap;

use models::{Model, PublicModel, Tensor as MTensor};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// Errors of the trainer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A model file or description problem.
    #[error(transparent)]
    Model(#[from] models::ModelError),
    /// A dataset problem.
    #[error(transparent)]
    Data(#[from] models::DataError),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// Reading or writing a run file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The run stopped on request after this many epochs (see `Common::stop_after`); run
    /// the same command again to resume.
    #[error("stopped after {0} epochs as requested; run again to resume")]
    Stopped(usize),
    /// The request cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// The Python PyTorch side of a benchmark ([`bench::compare`]) failed.
    #[error("{0}")]
    PyTorch(String),
}

impl TrainError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Resolves `cpu`, `cuda` or `cuda:N`. For CUDA, libtorch's CUDA library is loaded first:
/// the binary links only `libtorch_cpu`, so without this libtorch would not see the GPU.
pub fn device(name: &str) -> Result<Device, TrainError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let idx: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| {
                    TrainError::Invalid(format!("--device {s}: expected cuda or cuda:N"))
                })?,
                None => 0,
            };
            load_torch_cuda();
            if !tch::Cuda::is_available() {
                return Err(TrainError::Invalid(
                    "--device cuda: libtorch sees no CUDA device (is libtorch_cuda.so next to libtorch_cpu.so, with its CUDA libraries on LD_LIBRARY_PATH?)".into(),
                ));
            }
            // Fixed input shapes: let cuDNN pick the fastest convolution algorithms.
            tch::Cuda::cudnn_set_benchmark(true);
            Ok(Device::Cuda(idx))
        }
        other => Err(TrainError::Invalid(format!(
            "--device {other}: expected cpu, cuda or cuda:N"
        ))),
    }
}

/// Loads `libtorch_cuda.so` into the process so libtorch registers its CUDA backend.
#[allow(unsafe_code)]
fn load_torch_cuda() {
    let name = c"libtorch_cuda.so";
    // SAFETY: dlopen with a valid NUL-terminated name and standard flags; the handle is
    // intentionally never closed (the library must stay loaded for the process lifetime).
    unsafe {
        libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
    }
}

/// Keeps the memory a training step frees inside the process for the next step.
///
/// libtorch allocates CPU tensors with glibc's malloc. With glibc's defaults the freed
/// activations at the top of the heap exceed the (dynamic) trim threshold at the end of
/// every step, so the heap is shrunk with `brk` and regrown in the next step: in
/// snl-train's ResNet-20 step (batch 128) that was about 26 `brk` calls and 42,000 page
/// faults (165 MB of pages zeroed by the kernel) per step, several percent of the step.
/// A Python process running the same step keeps its heap at its peak (no `brk` calls
/// between steps, presumably because long-lived Python objects sit at its top), so this
/// was most of snl-train's gap to PyTorch (docs/training.md).
///
/// This raises the trim threshold to 1 GiB and fixes the mmap threshold at glibc's
/// largest, 32 MiB (setting either turns glibc's dynamic adjustment off, which would
/// otherwise leave the mmap threshold at 128 KiB and map every tensor afresh). Tensors of
/// 32 MiB and more are still mapped and unmapped each time, as in PyTorch. The cost is
/// that up to 1 GiB of freed memory stays in the process between steps, which a training
/// run reuses in its next step anyway. If `MALLOC_TRIM_THRESHOLD_` or
/// `MALLOC_MMAP_THRESHOLD_` is set, the environment's choice is kept. Call it once, at the
/// start of the process, before libtorch allocates. Does nothing on non-glibc targets.
#[allow(unsafe_code)]
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
        {
            return;
        }
        // SAFETY: mallopt only changes glibc malloc's tuning parameters; both values are
        // in the ranges glibc accepts (the mmap threshold at most 32 MiB on 64-bit).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
    }
}

/// Copies a model's weights into a var store by name. Every parameter of the graph must
/// exist in both; alphas (not model parameters) are left as they are.
pub fn load_weights(vs: &VarStore, model: &Model) -> Result<(), TrainError> {
    let vars = vs.variables();
    tch::no_grad(|| -> Result<(), TrainError> {
        for p in model.public.graph.params() {
            let t = model.weight(&p.name)?;
            let mut dst = vars
                .get(&p.name)
                .ok_or_else(|| {
                    TrainError::Invalid(format!("the network has no variable {}", p.name))
                })?
                .shallow_clone();
            let shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
            let src = Tensor::from_slice(&t.data)
                .reshape(shape)
                .to_device(dst.device());
            dst.f_copy_(&src)?;
        }
        Ok(())
    })
}

/// Builds a `models::Model` from a var store's parameters and the given masks.
pub fn export(
    vs: &VarStore,
    template: &PublicModel,
    masks: &BTreeMap<String, Vec<u8>>,
    provenance: serde_json::Value,
) -> Result<Model, TrainError> {
    let vars = vs.variables();
    let mut weights = BTreeMap::new();
    for p in template.graph.params() {
        let t = vars.get(&p.name).ok_or_else(|| {
            TrainError::Invalid(format!("the network has no variable {}", p.name))
        })?;
        let data = Vec::<f32>::try_from(
            t.detach()
                .to_device(Device::Cpu)
                .to_kind(Kind::Float)
                .flatten(0, -1),
        )?;
        weights.insert(
            p.name.clone(),
            MTensor {
                shape: p.shape,
                data,
            },
        );
    }
    let mut public = template.clone();
    for (name, m) in public.masks.iter_mut() {
        let src = masks
            .get(name)
            .ok_or_else(|| TrainError::Invalid(format!("no mask for site {name}")))?;
        m.kept = src.clone();
    }
    let model = Model {
        public,
        weights,
        provenance,
    };
    model.validate()?;
    Ok(model)
}
