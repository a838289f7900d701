//! Evaluation with libtorch: top-1 accuracy, and stored models as frozen networks
//! (the teacher of a linearization, `snl-train eval`, logits for comparisons).

use models::Model;
use models::data::{Dataset, Split};
use models::model::{PublicModel, Replacement};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

use crate::data::TensorSet;
use crate::error::TrainError;
use crate::net::{Net, SiteMode};
use crate::weights::load_weights;

use super::settings::Common;

/// Top-1 accuracy of `net` (in eval mode) on `set`.
pub fn accuracy(net: &Net, set: &TensorSet, batch: usize, device: Device) -> f64 {
    tch::no_grad(|| {
        let mut correct = 0i64;
        for (x, y) in set.ordered(batch, device) {
            let pred = net.forward_t(&x, false).argmax(-1, false);
            correct += pred.eq_tensor(&y).sum(Kind::Int64).int64_value(&[]);
        }
        correct as f64 / set.len().max(1) as f64
    })
}

/// The sites of `public` whose dropped positions compute a quadratic.
pub(super) fn quadratic_sites(public: &PublicModel) -> Vec<String> {
    public
        .replacements
        .iter()
        .filter(|&(_, &r)| r == Replacement::Quadratic)
        .map(|(s, _)| s.clone())
        .collect()
}

/// A stored model as a frozen network with its masks applied and, at quadratic sites,
/// its coefficients (the distillation teacher, and the evaluator of stored models).
pub(super) fn teacher_net(model: &Model, device: Device) -> Result<(VarStore, Net), TrainError> {
    let mut vs = VarStore::new(device);
    let mut net = Net::new(&vs, &model.public.graph, None)?;
    net.add_poly(&vs, &quadratic_sites(&model.public))?;
    load_weights(&vs, model)?;
    let masks = model
        .public
        .masks
        .iter()
        .map(|(k, m)| (k.clone(), m.kept.clone()))
        .collect();
    net.set_masks(&masks, device)?;
    vs.freeze();
    Ok((vs, net))
}

/// Test accuracy of a stored model evaluated with libtorch (masks applied).
pub fn evaluate(model: &Model, c: &Common) -> Result<f64, TrainError> {
    let (_vs, net) = teacher_net(model, c.device)?;
    let test = Dataset::load(c.dataset, &c.data_dir, Split::Test, c.test_limit)?;
    let set = TensorSet::new(&test, &model.public.normalization);
    debug_assert_eq!(net.mode, SiteMode::Mask);
    Ok(accuracy(&net, &set, c.batch, c.device))
}

/// Logits of a stored model for normalized inputs [N, C, H, W] (libtorch, eval mode).
pub fn logits(model: &Model, inputs: &Tensor) -> Result<Tensor, TrainError> {
    let (_vs, net) = teacher_net(model, inputs.device())?;
    Ok(tch::no_grad(|| net.forward_t(inputs, false)))
}
