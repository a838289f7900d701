//! Online latency of private inference predicted from a model's public part: the work the
//! two-party protocol does online ([`OnlineWork`]: kept ReLUs, linear multiply-accumulates,
//! rounds, squared positions, bytes each way) priced by a fitted [`LatencyModel`] on a
//! given [`Link`].
//!
//! ```text
//! online_ms = a × kept ReLUs + b × linear MACs + rounds × (c + d × RTT_ms)
//!           + e × squared positions + 8 × (bytes up + bytes down) / link rate
//! ```
//!
//! `a`..`e` are what `snl-bench model-cost` fits to measured rows (it writes them with
//! `--save`, schema [`LATENCY_SCHEMA`]); the byte term is the transfer time at the link's
//! rate, which loopback measurements cannot see. `e` is the work of a secure square
//! beyond the exact truncation it replaces (docs/protocols.md §5.2): without it, models
//! that square every linearized position are predicted about 17% fast on loopback. Models
//! saved in schema [`LATENCY_SCHEMA_V1`] (no `e`) are still read, with `e` = 0. The work comes from the lowering alone
//! ([`FixedProgram::structure`]), with the byte formulas of `docs/runtime.md` ("Costs");
//! `pi-runtime`'s tests check them against its plan. [`site_prices`] gives what one kept
//! ReLU of each site costs and what emptying a site saves, for a training penalty that
//! prices ReLUs by latency.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;
use crate::fixed::{Activation, FixedProgram};
use crate::model::{Mask, PublicModel};

/// Schema of a saved [`LatencyModel`], as written now (with the square term).
pub const LATENCY_SCHEMA: &str = "snl-latency-model/2";

/// The schema before the square term: still read, as a model whose squares cost nothing
/// beyond the truncation they replace (`per_square_ms` 0, which it must not set).
pub const LATENCY_SCHEMA_V1: &str = "snl-latency-model/1";

/// The largest latency model file read (a saved model is a few hundred bytes).
pub const MAX_JSON_BYTES: u64 = 64 << 10;

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

/// Coefficients of the latency model, ms per unit (see the module documentation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyModel {
    /// [`LATENCY_SCHEMA`], or [`LATENCY_SCHEMA_V1`] for a model read from an old file
    /// (kept as read, so that the latency pricing recorded in a mask search's checkpoint
    /// stays the same and the search resumes).
    pub schema: String,
    /// `a`: ms per kept ReLU (labels, evaluation, colour bits, decoding).
    pub per_kept_relu_ms: f64,
    /// `b`: ms per multiply-accumulate of the linear layers.
    pub per_mac_ms: f64,
    /// `c`: ms per online round, besides the round-trip time.
    pub per_round_ms: f64,
    /// `d`: the fraction of the added round-trip time each round pays.
    pub per_round_rtt: f64,
    /// `e`: ms per squared position (a quadratic site's secure square) beyond the exact
    /// truncation it replaces. Absent in schema 1 files and when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub per_square_ms: f64,
    /// Measured rows the coefficients were fitted to.
    pub fitted_rows: usize,
}

/// The network a prediction is for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Link {
    /// Added round-trip time, ms.
    pub rtt_ms: f64,
    /// Rate in Mbit/s (`None`: loopback, where the transfer is part of the fitted terms).
    pub mbit: Option<f64>,
}

/// What the protocol does online for one inference of a public model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OnlineWork {
    /// Kept ReLUs (garbled circuits evaluated).
    pub kept: usize,
    /// Multiply-accumulates of the convolutions and dense layers.
    pub macs: u64,
    /// Online rounds (input and logits, plus one per layer with kept, truncated or
    /// squared positions).
    pub rounds: usize,
    /// Positions squared on shares (quadratic sites' linearized positions outside their
    /// affine channels).
    pub squares: u64,
    /// Bytes client to server.
    pub bytes_up: u64,
    /// Bytes server to client.
    pub bytes_down: u64,
}

/// Bytes of a `bits`-bit field.
fn width(bits: u32) -> u64 {
    u64::from(bits.div_ceil(8))
}

impl OnlineWork {
    /// The online work of `public` (its lowering's structure; no weights needed).
    pub fn of(public: &PublicModel) -> Result<Self, ModelError> {
        Self::with_square_share(public, 1.0)
    }

    /// [`Self::of`] for a model whose quadratic sites may not have chosen their affine
    /// channels yet (the masks of a search, before the fine-tune chooses them): a quadratic
    /// site without an affine-channel list is priced with `round(share × its linearized
    /// positions)` squared, the most that `snl-train linearize --square-channels share`
    /// squares there (whole channels, the rest affine); a site with a list has its exact
    /// count. `share` 1 is [`Self::of`]; it must lie in `[0, 1]`.
    pub fn with_square_share(public: &PublicModel, share: f64) -> Result<Self, ModelError> {
        if !(0.0..=1.0).contains(&share) {
            return Err(ModelError::InvalidArgument(format!(
                "square share {share} must lie in [0, 1]"
            )));
        }
        let prog = FixedProgram::structure(public)?;
        let p = prog.params;
        let l = p.ring_bits;
        let n_in: u64 = prog.values[0].iter().product::<usize>() as u64;
        let mut w = OnlineWork {
            kept: 0,
            macs: public.graph.macs()?,
            rounds: 1,
            squares: 0,
            bytes_up: 8 * n_in,
            bytes_down: 0,
        };
        for (i, layer) in prog.layers.iter().enumerate() {
            let len: usize = layer.out_shape.iter().product();
            let extra = prog.layer_extra_bits(i);
            let shift = p.frac_bits + extra;
            let (site, quadratic) = match &layer.activation {
                Activation::Logits => {
                    w.bytes_down += 8 * len as u64;
                    continue;
                }
                Activation::Keep { .. } => continue,
                Activation::Rescale {
                    site, quadratic, ..
                } => (site, quadratic.is_some()),
            };
            let kept = site
                .as_ref()
                .and_then(|s| prog.masks.get(s))
                .map_or(0, |m| m.iter().filter(|&&k| k != 0).count());
            let rest = (len - kept) as u64;
            let lp = prog.layer_params(i);
            let (m, k) = (
                lp.relu_bits + extra,
                if lp.relu_dropped_bits > 0 {
                    lp.relu_dropped_bits + extra
                } else {
                    0
                },
            );
            // Kept ReLUs: labels of the server's m - k bits down, packed colour bits up.
            w.bytes_down += kept as u64 * 16 * u64::from(m - k);
            w.bytes_up += (kept as u64 * u64::from(l)).div_ceil(8);
            // Squared positions (a quadratic site's linearized ones outside its affine
            // channels): truncation with a square, a bit and an l-bit value down, one
            // 2·t2-bit message and an l-bit value up (docs/protocols.md §5.2).
            let listed = site
                .as_ref()
                .is_some_and(|s| prog.affine_channels.contains_key(s));
            let squared = if !quadratic {
                0
            } else if listed || share == 1.0 {
                prog.squared(i)
                    .map_or(0, |s| s.iter().filter(|&&s| s).count()) as u64
            } else {
                (share * rest as f64).round() as u64
            };
            w.squares += squared;
            if squared > 0 {
                let t2 = shift + p.frac_bits - p.square_frac_bits;
                w.bytes_down += squared.div_ceil(8) + squared * width(l);
                w.bytes_up += squared * (width(2 * t2) + width(l));
            }
            // The other positions: exact truncation, a bit down, one shift-bit message up
            // (§5.1).
            let plain = rest - squared;
            if plain > 0 {
                w.bytes_down += plain.div_ceil(8);
                w.bytes_up += plain * width(shift);
            }
            w.kept += kept;
            if len > 0 {
                w.rounds += 1;
            }
        }
        Ok(w)
    }
}

/// A predicted online latency and its parts, ms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Prediction {
    /// The total.
    pub online_ms: f64,
    /// Kept ReLUs' share.
    pub relus_ms: f64,
    /// Linear layers' share.
    pub linear_ms: f64,
    /// Rounds' share (fixed cost and round-trip time).
    pub rounds_ms: f64,
    /// Squared positions' share.
    pub squares_ms: f64,
    /// Transfer time at the link's rate (0 without one).
    pub transfer_ms: f64,
}

impl LatencyModel {
    /// Checks the schema and that every coefficient is finite and not negative.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.schema == LATENCY_SCHEMA_V1 {
            if self.per_square_ms != 0.0 {
                return Err(ModelError::InvalidArgument(format!(
                    "latency model schema {LATENCY_SCHEMA_V1:?} has no per_square_ms \
                     (that is {LATENCY_SCHEMA:?})"
                )));
            }
        } else if self.schema != LATENCY_SCHEMA {
            return Err(ModelError::InvalidArgument(format!(
                "latency model schema {:?}, expected {LATENCY_SCHEMA:?} (or the older \
                 {LATENCY_SCHEMA_V1:?})",
                self.schema
            )));
        }
        for (name, v) in [
            ("per_kept_relu_ms", self.per_kept_relu_ms),
            ("per_mac_ms", self.per_mac_ms),
            ("per_round_ms", self.per_round_ms),
            ("per_round_rtt", self.per_round_rtt),
            ("per_square_ms", self.per_square_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(ModelError::InvalidArgument(format!(
                    "latency model coefficient {name} = {v} must be finite and not negative"
                )));
            }
        }
        Ok(())
    }

    /// Reads and checks a saved model (JSON, at most 64 KiB).
    pub fn load(path: &std::path::Path) -> Result<Self, ModelError> {
        // One byte more than the limit, so that from_json names an oversized file without
        // the whole of it (or of a device such as /dev/zero) being read.
        let bytes =
            crate::format::read_capped(path, MAX_JSON_BYTES).map_err(|e| ModelError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
        Self::from_json(&bytes).map_err(|e| ModelError::malformed(path, e))
    }

    /// Parses and checks a saved model's bytes (at most 64 KiB); the error says what is
    /// wrong.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() as u64 > MAX_JSON_BYTES {
            return Err("larger than 64 KiB".into());
        }
        let m: LatencyModel =
            serde_json::from_slice(bytes).map_err(|e| format!("not a latency model: {e}"))?;
        m.validate().map_err(|e| e.to_string())?;
        Ok(m)
    }

    /// The predicted online latency of `work` on `link`.
    pub fn predict(&self, work: &OnlineWork, link: Link) -> Prediction {
        let relus_ms = self.per_kept_relu_ms * work.kept as f64;
        let linear_ms = self.per_mac_ms * work.macs as f64;
        let rounds_ms = work.rounds as f64 * (self.per_round_ms + self.per_round_rtt * link.rtt_ms);
        let squares_ms = self.per_square_ms * work.squares as f64;
        let transfer_ms = link.mbit.map_or(0.0, |r| {
            8.0 * (work.bytes_up + work.bytes_down) as f64 / (r * 1e3)
        });
        Prediction {
            online_ms: relus_ms + linear_ms + rounds_ms + squares_ms + transfer_ms,
            relus_ms,
            linear_ms,
            rounds_ms,
            squares_ms,
            transfer_ms,
        }
    }
}

/// What one site's ReLUs cost online, for a latency-priced penalty.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SitePrice {
    /// ms one kept ReLU of the site adds over the same position linearized: its
    /// evaluation and the bytes of its labels and colour bits, less the truncation (or
    /// square) messages it replaces, at the link's rate.
    pub per_relu_ms: f64,
    /// ms the inference saves when the site keeps no ReLU and its layer thereby needs no
    /// round (0 where emptying the site does not remove a round).
    pub empty_saves_ms: f64,
}

/// Per site, what a kept ReLU costs and what emptying the site saves, measured as
/// differences of predicted latencies: the site with every ReLU kept against one kept,
/// per ReLU (the price is linear in the count within a layer; over the whole site, the
/// rounding of a square share averages out), and the site emptied against one ReLU kept
/// (the round). Quadratic sites without an affine-channel list are priced with
/// `square_share` of their linearized positions squared
/// ([`OnlineWork::with_square_share`]).
pub fn site_prices(
    public: &PublicModel,
    model: &LatencyModel,
    link: Link,
    square_share: f64,
) -> Result<BTreeMap<String, SitePrice>, ModelError> {
    let mut out = BTreeMap::new();
    for s in public.graph.sites()? {
        let with = |mask: Mask| {
            let mut p = public.clone();
            p.masks.insert(s.name.clone(), mask);
            p
        };
        let mut one = Mask::none_kept(s.shape);
        one.kept[0] = 1;
        let len = one.kept.len();
        let ms = |p: &PublicModel| -> Result<f64, ModelError> {
            Ok(model
                .predict(&OnlineWork::with_square_share(p, square_share)?, link)
                .online_ms)
        };
        let m0 = ms(&with(Mask::none_kept(s.shape)))?;
        let m1 = ms(&with(one))?;
        let per_relu_ms = if len > 1 {
            (ms(&with(Mask::all_kept(s.shape)))? - m1) / (len - 1) as f64
        } else {
            0.0
        };
        // Emptying saves the round, minus the one ReLU's own price.
        out.insert(
            s.name,
            SitePrice {
                per_relu_ms,
                empty_saves_ms: (m1 - m0 - per_relu_ms).max(0.0),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::random_model;

    fn model() -> LatencyModel {
        LatencyModel {
            schema: LATENCY_SCHEMA.into(),
            per_kept_relu_ms: 0.003,
            per_mac_ms: 1e-8,
            per_round_ms: 0.2,
            per_round_rtt: 1.0,
            per_square_ms: 0.0,
            fitted_rows: 4,
        }
    }

    #[test]
    fn prediction_adds_its_parts() {
        let m = random_model("lenet5", 0.2, 1).unwrap();
        let w = OnlineWork::of(&m.public).unwrap();
        assert_eq!(w.kept, m.public.relu_kept());
        let p = model().predict(
            &w,
            Link {
                rtt_ms: 10.0,
                mbit: Some(100.0),
            },
        );
        let bytes = (w.bytes_up + w.bytes_down) as f64;
        assert!((p.transfer_ms - bytes * 8.0 / 1e5).abs() < 1e-9);
        assert!((p.rounds_ms - w.rounds as f64 * 10.2).abs() < 1e-9);
        let sum = p.relus_ms + p.linear_ms + p.rounds_ms + p.transfer_ms;
        assert!((p.online_ms - sum).abs() < 1e-9);
        assert_eq!((w.squares, p.squares_ms), (0, 0.0), "no quadratic site");
    }

    /// The square term prices each squared position, and only those.
    #[test]
    fn squares_are_counted_and_priced() {
        use crate::testing::make_quadratic;
        let mut m = random_model("resnet20", 0.1, 3).unwrap();
        let plain = OnlineWork::of(&m.public).unwrap();
        make_quadratic(&mut m, 1).unwrap();
        let w = OnlineWork::of(&m.public).unwrap();
        let prog = FixedProgram::structure(&m.public).unwrap();
        let want: usize = (0..prog.layers.len())
            .filter_map(|i| prog.squared(i))
            .map(|s| s.iter().filter(|&&s| s).count())
            .sum();
        assert!(want > 0);
        assert_eq!(w.squares, want as u64);
        assert_eq!((w.kept, w.rounds), (plain.kept, plain.rounds));
        let link = Link {
            rtt_ms: 0.0,
            mbit: None,
        };
        let priced = LatencyModel {
            per_square_ms: 2e-4,
            ..model()
        };
        let (a, b) = (model().predict(&w, link), priced.predict(&w, link));
        assert!((b.squares_ms - 2e-4 * want as f64).abs() < 1e-9);
        assert!((b.online_ms - a.online_ms - b.squares_ms).abs() < 1e-9);
        assert_eq!(
            priced.predict(&plain, link).online_ms,
            model().predict(&plain, link).online_ms
        );
        // Per site, a kept ReLU now also saves a square's work: exactly one square at
        // a quadratic site (every linearized position squared, share 1), none elsewhere.
        let p = |lm: &LatencyModel| site_prices(&m.public, lm, link, 1.0).unwrap();
        let (pa, pb) = (p(&model()), p(&priced));
        let saves: Vec<f64> = pb
            .iter()
            .map(|(site, q)| pa[site].per_relu_ms - q.per_relu_ms)
            .collect();
        assert!(
            saves
                .iter()
                .all(|d| d.abs() < 1e-12 || (d - 2e-4).abs() < 1e-12),
            "{saves:?}"
        );
        assert!(saves.iter().any(|d| (d - 2e-4).abs() < 1e-12), "{saves:?}");
    }

    /// A kept ReLU's price includes its labels at the link's rate; emptying ResNet-20's
    /// stem site removes its round (the stem reads only the input), while emptying
    /// LeNet-5's first site only moves its round to the pooled value after it (which then
    /// has to truncate what the site kept at 2^(2f)).
    #[test]
    fn site_prices_see_rounds_and_bytes() {
        let link = Link {
            rtt_ms: 10.0,
            mbit: Some(1000.0),
        };
        let r = random_model("resnet20", 0.2, 1).unwrap();
        let stem = r.public.graph.sites().unwrap()[0].name.clone();
        let prices = site_prices(&r.public, &model(), link, 1.0).unwrap();
        assert_eq!(prices.len(), r.public.masks.len());
        // The round (10.2 ms), less the wider truncation answers of the layers that now
        // read a value at 2^(2f) (4 bytes instead of 2 per position).
        let saves = prices[&stem].empty_saves_ms;
        assert!((9.0..10.2).contains(&saves), "{:?}", prices[&stem]);
        let m = random_model("lenet5", 0.2, 1).unwrap();
        let prices = site_prices(&m.public, &model(), link, 1.0).unwrap();
        let first = &prices[m.public.graph.sites().unwrap()[0].name.as_str()];
        assert!(first.empty_saves_ms < 1.0, "{first:?}");
        // 22 labels of 16 bytes and 61 colour bits, less a 2-byte truncation answer and
        // its bit.
        let bytes = 16.0 * 22.0 + 61.0 / 8.0 - 2.0 - 1.0 / 8.0;
        let want = 0.003 + bytes * 8.0 / 1e6;
        assert!(
            (first.per_relu_ms - want).abs() < 2e-5,
            "{first:?} vs {want}"
        );
        let bad = LatencyModel {
            per_round_ms: f64::NAN,
            ..model()
        };
        assert!(bad.validate().is_err());
    }

    /// A square share prices round(share × linearized) squares at each quadratic site
    /// without an affine-channel list (a square answer and value instead of a truncation
    /// answer; the bytes are linear in the share up to that rounding), and leaves sites
    /// with a list, and share 1, exact.
    #[test]
    fn square_share_prices_the_squares_a_search_will_keep() {
        use crate::testing::{make_affine_channels, make_quadratic};
        let mut m = random_model("resnet20", 0.1, 3).unwrap();
        make_quadratic(&mut m, 1).unwrap();
        let full = OnlineWork::of(&m.public).unwrap();
        assert_eq!(OnlineWork::with_square_share(&m.public, 1.0).unwrap(), full);
        let prog = FixedProgram::structure(&m.public).unwrap();
        let sq_bytes = |share: f64| -> u64 {
            let w = OnlineWork::with_square_share(&m.public, share).unwrap();
            assert_eq!(
                (w.kept, w.macs, w.rounds),
                (full.kept, full.macs, full.rounds)
            );
            w.bytes_up + w.bytes_down
        };
        // Quadratic layers (one rounding each).
        let sites = (0..prog.layers.len())
            .filter(|&i| prog.squared(i).is_some())
            .count();
        assert!(sites > 0);
        let (b0, b25, b1) = (sq_bytes(0.0), sq_bytes(0.25), sq_bytes(1.0));
        assert_eq!(b1, full.bytes_up + full.bytes_down);
        assert!(b0 < b25 && b25 < b1, "{b0} {b25} {b1}");
        // Linear in the share up to rounding: a quarter of the squares' excess, within one
        // square's bytes per site.
        let quarter = b0 as f64 + 0.25 * (b1 - b0) as f64;
        assert!(
            (b25 as f64 - quarter).abs() <= 40.0 * sites as f64,
            "{b25} vs {quarter}"
        );
        // Per site, a kept ReLU replaces a linearized position: the fewer squares there,
        // the dearer the ReLU, and linearly in the share (averaged over the site).
        let link = Link {
            rtt_ms: 1.0,
            mbit: Some(1000.0),
        };
        let price = |share| site_prices(&m.public, &model(), link, share).unwrap();
        let (p0, p25, p1) = (price(0.0), price(0.25), price(1.0));
        for (site, q) in &p25 {
            let (a, b) = (p0[site].per_relu_ms, p1[site].per_relu_ms);
            assert!(
                a > q.per_relu_ms && q.per_relu_ms > b,
                "{site}: {a} {q:?} {b}"
            );
            let mix = 0.75 * a + 0.25 * b;
            // Up to the rounding of one square over the site's positions.
            assert!(
                (q.per_relu_ms - mix).abs() < 1e-3 * (a - b),
                "{site}: {q:?} vs {mix}"
            );
        }
        // With listed affine channels the share changes nothing.
        make_affine_channels(&mut m, 0).unwrap();
        let listed = OnlineWork::of(&m.public).unwrap();
        assert_eq!(
            OnlineWork::with_square_share(&m.public, 0.25).unwrap(),
            listed
        );
        assert!(OnlineWork::with_square_share(&m.public, 1.5).is_err());
        assert!(OnlineWork::with_square_share(&m.public, f64::NAN).is_err());
    }

    #[test]
    fn saved_models_are_checked_when_read() {
        let json = serde_json::to_vec(&model()).unwrap();
        assert_eq!(LatencyModel::from_json(&json).unwrap(), model());
        let e = LatencyModel::from_json(&vec![b' '; (64 << 10) + 1]).unwrap_err();
        assert!(e.contains("64 KiB"), "{e}");
        // An endless file is cut at the limit (one byte over it), not read to the end.
        let e = LatencyModel::load(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/dev/zero") && e.contains("64 KiB"), "{e}");
        let other = String::from_utf8(json.clone())
            .unwrap()
            .replace(LATENCY_SCHEMA, "snl-latency-model/9");
        assert!(
            LatencyModel::from_json(other.as_bytes())
                .unwrap_err()
                .contains("schema")
        );
        let extra = String::from_utf8(json)
            .unwrap()
            .replacen('{', "{\"x\":1,", 1);
        assert!(LatencyModel::from_json(extra.as_bytes()).is_err());
        let negative = serde_json::to_vec(&LatencyModel {
            per_kept_relu_ms: -1.0,
            ..model()
        })
        .unwrap();
        assert!(LatencyModel::from_json(&negative).is_err());
        // Written now: schema 2, the square term present only when not 0.
        let sq = LatencyModel {
            per_square_ms: 1.5e-4,
            ..model()
        };
        let text = String::from_utf8(serde_json::to_vec(&sq).unwrap()).unwrap();
        assert!(text.contains("\"per_square_ms\":0.00015"), "{text}");
        assert_eq!(LatencyModel::from_json(text.as_bytes()).unwrap(), sq);
        assert!(
            !std::str::from_utf8(&serde_json::to_vec(&model()).unwrap())
                .unwrap()
                .contains("per_square_ms")
        );
    }

    /// A model saved before the square term (schema 1, as `snl-bench model-cost --save`
    /// wrote it) reads with the term 0 and keeps its schema, so it serializes as it was
    /// read (a priced search's checkpoint records it); schema 1 with a square term is
    /// malformed.
    #[test]
    fn schema_1_models_are_still_read() {
        let v1 = r#"{
  "schema": "snl-latency-model/1",
  "per_kept_relu_ms": 0.0027,
  "per_mac_ms": 1.2e-9,
  "per_round_ms": 0.31,
  "per_round_rtt": 1.0,
  "fitted_rows": 6
}"#;
        let m = LatencyModel::from_json(v1.as_bytes()).unwrap();
        assert_eq!(
            (m.schema.as_str(), m.per_square_ms),
            (LATENCY_SCHEMA_V1, 0.0)
        );
        let back: serde_json::Value = serde_json::to_value(&m).unwrap();
        let orig: serde_json::Value = serde_json::from_str(v1).unwrap();
        assert_eq!(back, orig);
        let bad = v1.replacen(
            "\"fitted_rows\"",
            "\"per_square_ms\": 0.001, \"fitted_rows\"",
            1,
        );
        let e = LatencyModel::from_json(bad.as_bytes()).unwrap_err();
        assert!(e.contains("has no per_square_ms"), "{e}");
    }
}
