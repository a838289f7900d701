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
mod error;
mod libtorch;
pub mod net;
pub mod optim;
pub mod poly;
pub mod schedule;
pub mod snl;
mod weights;

pub use error::TrainError;
pub use libtorch::device;
pub use models::malloc::keep_freed_memory;
pub use weights::{export, load_weights};
