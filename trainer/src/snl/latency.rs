//! Latency-priced linearization: the per-site weights of the search's penalty, the
//! predicted online latency of a set of masks, and the snapshot of a latency budget (the
//! most ReLUs whose predicted latency stays within it).
//!
//! The predictions are `models::latency`'s: the online work of the masked model's public
//! part (kept ReLUs, MACs, rounds, bytes) priced by the fitted cost model on the link.
//! They are for the model as the trainer exports it (the base model's fixed-point
//! parameters); windows calibrated afterwards (`snl-model windows`) only shorten the
//! labels, and so the transfer time. The search's masks come before the fine-tune chooses
//! a quadratic site's affine channels (`--square-channels`), so they are priced with
//! that share of each site's linearized positions squared, the most the choice squares
//! ([`OnlineWork::with_square_share`]); the exported model's own prediction is exact.

use std::collections::{BTreeMap, BTreeSet};

use models::latency::{OnlineWork, Prediction, site_prices};
use models::model::{Mask, PublicModel};
use serde_json::{Value, json};

use crate::error::TrainError;
use crate::net::Net;
use crate::weights::with_masks;

use super::settings::Pricing;

/// Masks by site name, one byte (0 or 1) per position.
type Masks = BTreeMap<String, Vec<u8>>;

/// The predicted online latency of `public` itself, with `square_share` of the
/// linearized positions squared at quadratic sites that list no affine channels (1 for a
/// finished model: exact).
pub(super) fn predict_public(
    public: &PublicModel,
    pricing: &Pricing,
    square_share: f64,
) -> Result<Prediction, TrainError> {
    Ok(pricing.model.predict(
        &OnlineWork::with_square_share(public, square_share)?,
        pricing.link,
    ))
}

/// The predicted online latency of `public` with `masks` (squares as in
/// [`predict_public`]).
pub(super) fn predict(
    public: &PublicModel,
    masks: &Masks,
    pricing: &Pricing,
    square_share: f64,
) -> Result<Prediction, TrainError> {
    predict_public(&with_masks(public, masks)?, pricing, square_share)
}

/// The predicted latency with every ReLU kept and with none kept: the range a latency
/// budget must fall in.
pub(super) fn range(
    public: &PublicModel,
    pricing: &Pricing,
    square_share: f64,
) -> Result<(f64, f64), TrainError> {
    let mut none = public.clone();
    for m in none.masks.values_mut() {
        *m = Mask::none_kept(m.shape);
    }
    let mut all = public.clone();
    for m in all.masks.values_mut() {
        *m = Mask::all_kept(m.shape);
    }
    Ok((
        predict_public(&none, pricing, square_share)?.online_ms,
        predict_public(&all, pricing, square_share)?.online_ms,
    ))
}

/// The search penalty's weight of each site: what one of its ReLUs costs online plus the
/// round emptying the site saves spread over its ReLUs, normalised so that the mean over
/// all ReLUs is 1 (lambda keeps its meaning). All 1 when the model prices nothing.
pub(super) fn site_weights(
    public: &PublicModel,
    pricing: &Pricing,
    square_share: f64,
) -> Result<BTreeMap<String, f64>, TrainError> {
    let prices = site_prices(public, &pricing.model, pricing.link, square_share)?;
    let mut raw = BTreeMap::new();
    let (mut sum, mut n) = (0.0, 0.0);
    for (site, price) in prices {
        let len = public.masks.get(&site).map_or(0, |m| m.kept.len()).max(1) as f64;
        let w = price.per_relu_ms.max(0.0) + price.empty_saves_ms / len;
        sum += w * len;
        n += len;
        raw.insert(site, w);
    }
    let mean = sum / n.max(1.0);
    Ok(raw
        .into_iter()
        .map(|(s, w)| (s, if mean > 0.0 { w / mean } else { 1.0 }))
        .collect())
}

/// Kept positions of a set of masks.
pub(super) fn kept_of(masks: &Masks) -> usize {
    masks
        .values()
        .map(|m| m.iter().filter(|&&k| k != 0).count())
        .sum()
}

/// The snapshot of a latency budget of `budget_ms`, once the mask at the threshold
/// (`at_threshold`) fits it: the top-k masks, sites empty at the threshold left empty
/// (refilling one would cost its round back), with the largest k whose predicted
/// latency fits (binary search: the prediction grows with k); the mask at the threshold
/// itself if no top-k mask fits (ties). Squares as in [`predict_public`].
pub(super) fn fill(
    net: &Net,
    public: &PublicModel,
    (pricing, square_share): (&Pricing, f64),
    budget_ms: f64,
    at_threshold: &Masks,
) -> Result<(Masks, Prediction), TrainError> {
    let empty: BTreeSet<String> = at_threshold
        .iter()
        .filter(|(_, m)| m.iter().all(|&k| k == 0))
        .map(|(s, _)| s.clone())
        .collect();
    let fits = |k: usize| -> Result<Option<(Masks, Prediction)>, TrainError> {
        let masks = net.top_k_masks_except(k, &empty)?;
        let p = predict(public, &masks, pricing, square_share)?;
        Ok((p.online_ms <= budget_ms).then_some((masks, p)))
    };
    let lo = kept_of(at_threshold);
    let mut best = match fits(lo)? {
        Some(b) => b,
        None => (
            at_threshold.clone(),
            predict(public, at_threshold, pricing, square_share)?,
        ),
    };
    let available: usize = at_threshold
        .iter()
        .filter(|(s, _)| !empty.contains(*s))
        .map(|(_, m)| m.len())
        .sum();
    let (mut ok, mut bad) = (lo, available + 1);
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        match fits(mid)? {
            Some(b) => {
                ok = mid;
                best = b;
            }
            None => bad = mid,
        }
    }
    Ok(best)
}

/// A prediction and the pricing behind it, for provenance and logs.
pub(super) fn describe(p: &Prediction, pricing: &Pricing) -> Value {
    json!({
        "predicted_online_ms": p.online_ms,
        "predicted_parts_ms": {"relus": p.relus_ms, "linear": p.linear_ms, "rounds": p.rounds_ms, "squares": p.squares_ms, "transfer": p.transfer_ms},
        "link": {"rtt_ms": pricing.link.rtt_ms, "mbit": pricing.link.mbit},
        "latency_model": pricing.model,
    })
}
