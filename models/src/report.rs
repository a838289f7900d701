//! Typed reports about stored models: [`Inspect`], the document `snl-model inspect --json`
//! prints (schema `snl-model-inspect/1`, described in `docs/model-format.md`).

use std::path::Path;

use serde::Serialize;

use crate::data::Normalization;
use crate::error::ModelError;
use crate::format::{self, Hashes};
use crate::graph::Shape;
use crate::model::SiteCount;
use crate::ring::FixedPointParams;

/// The schema of [`Inspect`]. Fields may be added, never renamed or removed, within it.
pub const INSPECT_SCHEMA: &str = "snl-model-inspect/1";

/// What a model directory (full, or public part only) holds: architecture, ReLU counts,
/// parameters, format version, writer and hashes.
///
/// Fields are declared in the order of `docs/model-format.md`;
/// [`Inspect::to_json_pretty`] prints them, as `snl-model inspect --json` always has,
/// with the keys of every object sorted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inspect {
    /// [`INSPECT_SCHEMA`].
    pub schema: String,
    /// The directory, as given.
    pub path: String,
    /// The format version `public.json` was written in.
    pub format_version: u32,
    /// Who wrote `public.json`, e.g. `models 0.1.0`.
    pub writer: String,
    /// The public part's architecture label, e.g. `resnet20`.
    pub arch: String,
    /// Size of the network's output.
    pub classes: usize,
    /// The network's input (C, H, W).
    pub input: Shape,
    /// What the client applies to an image before encoding it.
    pub normalization: Normalization,
    /// The ring and scales the secure evaluation uses.
    pub fixed_point: FixedPointParams,
    /// Per-site ReLU windows `m`, by site name (format version 2; empty when none).
    pub relu_windows: std::collections::BTreeMap<String, u32>,
    /// Sites whose linearized positions compute a replacement other than the identity
    /// (format version 3; empty when none).
    pub replacements: std::collections::BTreeMap<String, crate::model::Replacement>,
    /// Channels of quadratic sites computing `b x + c` without a square (format version
    /// 4; empty when none).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub affine_channels: std::collections::BTreeMap<String, Vec<usize>>,
    /// Which parts the directory holds.
    pub parts: Parts,
    /// The public hash, and the weights' and content hashes of a full model.
    pub hashes: Hashes,
    /// ReLU counts.
    pub relus: Relus,
    /// Parameter count (`None` for a public part).
    pub parameters: Option<usize>,
    /// Multiply-accumulates of convolutions and dense layers per image.
    pub macs: u64,
    /// Linear layers after fixed-point lowering (the layers the protocol evaluates).
    pub linear_layers: usize,
    /// Training provenance (`None` for a public part).
    pub provenance: Option<serde_json::Value>,
    /// Nodes of the network description (for the text report; not in the document).
    #[serde(skip)]
    pub nodes: usize,
}

/// The parts a model directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Parts {
    /// `public.json` and the masks (always).
    pub public: bool,
    /// `model.json` and the weights.
    pub private: bool,
}

/// ReLU counts of an [`Inspect`] report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Relus {
    /// Positions over all sites.
    pub total: usize,
    /// Kept ReLUs.
    pub kept: usize,
    /// Linearized positions: `total - kept`.
    pub linearized: usize,
    /// Per site, in graph order.
    pub sites: Vec<SiteCount>,
}

impl Inspect {
    /// Reads the model directory `path`: the whole model when it holds the private part,
    /// else the public part alone.
    pub fn of(path: &Path) -> Result<Self, ModelError> {
        let (pdoc, mdoc) = format::read_manifests(path)?;
        let (public, hashes, parameters, provenance) = if mdoc.is_some() {
            let (m, h) = format::load(path)?;
            let n = m.parameter_count();
            (m.public, h, Some(n), Some(m.provenance))
        } else {
            let (p, h) = format::load_public(path)?;
            let hashes = Hashes {
                public: h,
                weights: None,
                content: None,
            };
            (p, hashes, None, None)
        };
        let sites = public.site_counts()?;
        let (total, kept) = (public.relu_total(), public.relu_kept());
        let layers = crate::fixed::layer_shapes(&public)?;
        let macs = public.graph.macs()?;
        Ok(Inspect {
            schema: INSPECT_SCHEMA.to_string(),
            path: path.display().to_string(),
            format_version: pdoc.format_version,
            writer: pdoc.writer,
            classes: public.classes()?,
            input: public.graph.input,
            normalization: public.normalization,
            fixed_point: public.fixed_point,
            relu_windows: public.relu_windows.clone(),
            replacements: public.replacements.clone(),
            affine_channels: public.affine_channels.clone(),
            parts: Parts {
                public: true,
                private: mdoc.is_some(),
            },
            hashes,
            relus: Relus {
                total,
                kept,
                linearized: total - kept,
                sites,
            },
            parameters,
            macs,
            linear_layers: layers.len(),
            provenance,
            nodes: public.graph.nodes.len(),
            arch: public.arch,
        })
    }

    /// The document as `snl-model inspect --json` prints it: pretty-printed, through
    /// [`serde_json::Value`], whose objects keep their keys sorted.
    pub fn to_json_pretty(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(&serde_json::to_value(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_reads_full_models_and_public_parts() {
        let t = tempfile::tempdir().unwrap();
        let m = crate::testing::random_model("lenet5", 0.5, 1).unwrap();
        let full = t.path().join("full");
        let public = t.path().join("public");
        let h = format::save(&m, &full, false).unwrap();
        format::save_public(&m.public, &public, false).unwrap();

        let r = Inspect::of(&full).unwrap();
        assert_eq!(r.hashes, h);
        assert_eq!(r.parameters, Some(m.parameter_count()));
        assert_eq!(r.relus.kept, m.public.relu_kept());
        assert_eq!(r.relus.linearized, r.relus.total - r.relus.kept);
        assert!(r.parts.private);
        let j: serde_json::Value = serde_json::from_str(&r.to_json_pretty().unwrap()).unwrap();
        assert_eq!(j["schema"], INSPECT_SCHEMA);
        assert!(j.get("nodes").is_none());

        let p = Inspect::of(&public).unwrap();
        assert!(!p.parts.private);
        assert_eq!((p.parameters, p.provenance), (None, None));
        assert_eq!(p.hashes.public, h.public);
        assert_eq!((p.hashes.weights, p.hashes.content), (None, None));
        assert_eq!(p.relus, r.relus);
    }
}
