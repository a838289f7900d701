//! SNL training (Cho et al., ICML 2022) for the networks of the `models` crate.
//!
//! The trainer turns a dataset and a ReLU budget into a linearized model file in the
//! `models` format: pretraining, the per-position mask search with trainable alphas,
//! binarization and fine-tuning with distillation. It is the only crate that links
//! libtorch (through `tch`); the networks it trains are built from the same
//! [`models::graph::Graph`] descriptions the runtime executes, with identical parameter
//! names. The tch-based implementation is tracked by the project's trainer issue; until it
//! lands this crate only re-exports the descriptions it will train.

pub use models::arch;
