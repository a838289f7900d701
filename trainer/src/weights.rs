//! Weights between a libtorch var store and a `models` model, name for name.

use std::collections::BTreeMap;

use models::model::{Model, PublicModel};
use models::tensor::Tensor as MTensor;
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::error::TrainError;

/// Copies a model's weights into a var store by name. Every parameter of the model must
/// exist in both: the graph's, and the `<site>.poly` coefficients of its quadratic sites
/// (create those with [`crate::net::Net::add_poly`] first); alphas (not model
/// parameters) are left as they are.
pub fn load_weights(vs: &VarStore, model: &Model) -> Result<(), TrainError> {
    let vars = vs.variables();
    tch::no_grad(|| -> Result<(), TrainError> {
        for p in model.public.params() {
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

/// Builds a `models::Model` from a var store's parameters and the given masks. The
/// template's replacements say which sites are quadratic; their `<site>.poly`
/// coefficients are exported with the graph's parameters.
pub fn export(
    vs: &VarStore,
    template: &PublicModel,
    masks: &BTreeMap<String, Vec<u8>>,
    provenance: serde_json::Value,
) -> Result<Model, TrainError> {
    let vars = vs.variables();
    let mut weights = BTreeMap::new();
    for p in template.params() {
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
    let public = with_masks(template, masks)?;
    let model = Model {
        public,
        weights,
        provenance,
    };
    model.validate()?;
    Ok(model)
}

/// `public` with `masks` (one byte per position, by site name) in place of its own;
/// errors on a site without a mask or a mask of the wrong length.
pub fn with_masks(
    public: &PublicModel,
    masks: &BTreeMap<String, Vec<u8>>,
) -> Result<PublicModel, TrainError> {
    let mut p = public.clone();
    for (site, m) in p.masks.iter_mut() {
        let kept = masks
            .get(site)
            .ok_or_else(|| TrainError::Invalid(format!("no mask for site {site}")))?;
        if kept.len() != m.kept.len() {
            return Err(TrainError::Invalid(format!(
                "mask of site {site} has {} positions, the site {}",
                kept.len(),
                m.kept.len()
            )));
        }
        m.kept.clone_from(kept);
    }
    Ok(p)
}
