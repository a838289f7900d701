//! The common language of the SNL private-inference system.
//!
//! Everything else (trainer, two-party runtime, benchmarks) speaks through this crate:
//!
//! - [`graph`]: the network description (a list of operations with named parameters and
//!   named ReLU sites), [`arch`]: the built-in networks (`resnet18`, `wrn22_8`, `resnet20`,
//!   `lenet5`) laid out as SNL's reference code lays them out.
//! - [`model`]: a model in memory, split into the public part (architecture, normalization,
//!   fixed-point parameters, masks) and the private part (weights).
//! - [`format`](mod@format): the versioned on-disk model directory (JSON manifests with magic, format
//!   version, writer version and hashes; tensors as safetensors).
//! - [`import`]: PyTorch checkpoints (safetensors or `torch.save` zip, SNL's reference
//!   names and alphas) into the model format, with a pure-Rust unpickler; no libtorch.
//! - [`report`]: typed reports about stored models ([`report::Inspect`], the document
//!   `snl-model inspect --json` prints).
//! - [`data`]: readers for CIFAR-10/100 (binary) and Fashion-MNIST (IDX) with their
//!   normalization.
//! - [`ring`]: the fixed-point parameters ([`ring::FixedPointParams`]: ring Z_2^61,
//!   scale 2^14, the ReLU circuit's window) and the encoding and rescaling rules.
//! - [`exec`]: the plaintext f32 executor; [`fixed`]: the fixed-point executor that
//!   reproduces the secure protocol's arithmetic (batch norm folded, round-half-up
//!   truncation), with its lowering into linear layers and ReLU layers. Both run on the
//!   shared kernels of a private `kernels` module (im2col, convolution, pooling).
//! - [`malloc`]: glibc malloc tuning for the long-running binaries.
//!
//! `docs/fixed-point.md` and `docs/model-format.md` in the repository describe the choices.

pub mod arch;
pub mod data;
pub mod error;
pub mod exec;
pub mod fixed;
pub mod format;
pub mod graph;
pub mod import;
mod kernels;
pub mod latency;
pub mod malloc;
pub mod model;
pub mod report;
pub mod ring;
pub mod tensor;
pub mod testing;

pub use error::{DataError, ModelError};
pub use format::VERSION;
pub use model::{Mask, Model, PublicModel};
pub use tensor::Tensor;
