//! `snl-bench model-cost`: a latency model fitted to measured rows,
//!
//! ```text
//! online_ms = a × kept ReLUs + b × linear MACs + rounds × (c + d × RTT_ms)
//!           + e × squared positions
//! ```
//!
//! `a` is the cost of one garbled ReLU online (labels, evaluation, colour bits,
//! decoding), `b` the server's linear layers on shares per multiply-accumulate, `c` the
//! fixed cost of a round (system calls, wake-ups, the layer's bookkeeping), `d` how much
//! of the added round-trip time each round pays (1 when every round waits one full RTT)
//! and `e` what a secure square (quadratic sites) costs beyond the exact truncation it
//! replaces. Rows of results schema 1 and 2 do not say how many positions their model
//! squares: [`fill_squares`] counts them from the model directory where it is still the
//! measured one.
//! The fit is least squares on relative error (each row weighted by 1 / its measured
//! latency), so small and large models count alike. Terms the measurements cannot
//! separate (e.g. `d` without any row at a non-zero RTT) are left out and said so.

use std::fmt::Write as _;
use std::path::Path;

use models::fixed::FixedProgram;
use pi_runtime::engine::Plan;

use crate::error::Error;
use crate::results::Row;

/// The latency model's terms.
pub const TERMS: [&str; 5] = [
    "per kept ReLU",
    "per linear MAC",
    "per round",
    "per round per ms of RTT",
    "per squared position",
];

/// What a prediction needs to know about a model and a network.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features {
    /// Kept ReLUs.
    pub kept: f64,
    /// Linear multiply-accumulates.
    pub macs: f64,
    /// Online rounds.
    pub rounds: f64,
    /// Added round-trip time, ms.
    pub rtt_ms: f64,
    /// Positions squared on shares.
    pub squares: f64,
}

impl Features {
    /// Of a measured row.
    pub fn of_row(r: &Row) -> Self {
        Features {
            kept: r.relus_kept as f64,
            macs: r.linear_macs as f64,
            rounds: r.rounds as f64,
            rtt_ms: r.rtt_ms,
            squares: r.squares.unwrap_or(0) as f64,
        }
    }

    /// Of a model directory (its public part) at a given added RTT.
    pub fn of_model(dir: &Path, rtt_ms: f64) -> Result<Self, Error> {
        let merr = |source| Error::Model {
            context: format!("model {}", dir.display()),
            source,
        };
        let (public, _) = models::format::load_public(dir).map_err(merr)?;
        let macs = public.graph.macs().map_err(merr)?;
        let squares = models::latency::OnlineWork::of(&public)
            .map_err(merr)?
            .squares;
        let prog = FixedProgram::structure(&public).map_err(merr)?;
        let plan = Plan::new(&prog).map_err(|source| Error::Runtime {
            context: format!("planning {}", dir.display()),
            source,
        })?;
        // One round for the input and logits, one per layer with kept or exactly
        // truncated positions; docs/runtime.md, "Costs".
        let rounds = plan.online_rounds();
        Ok(Features {
            kept: plan.kept_total() as f64,
            macs: macs as f64,
            rounds: rounds as f64,
            rtt_ms,
            squares: squares as f64,
        })
    }

    fn vector(&self) -> [f64; 5] {
        [
            self.kept,
            self.macs,
            self.rounds,
            self.rounds * self.rtt_ms,
            self.squares,
        ]
    }
}

/// A fitted latency model: milliseconds per unit of each of [`TERMS`]; `None` for terms
/// the measurements could not determine.
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    /// Coefficients in ms per unit.
    pub coef: [Option<f64>; 5],
    /// Rows it was fitted to.
    pub rows: usize,
}

impl CostModel {
    /// Fits the model to rows (their median online latency).
    pub fn fit(rows: &[Row]) -> Result<Self, Error> {
        let data: Vec<(Features, f64)> = rows
            .iter()
            .map(|r| (Features::of_row(r), r.online_ms_median))
            .collect();
        fit(&data)
    }

    /// The coefficients as a `models` latency model, which `snl-train linearize
    /// --latency-budget` reads: undetermined terms as 0, except the RTT term, which is 1
    /// (each online round waits one round trip: the protocol's structure; fits at non-zero
    /// RTT find 1.05-1.17 here) so that a model fitted on loopback still prices rounds on
    /// a link with delay.
    pub fn latency_model(&self) -> models::latency::LatencyModel {
        let c = |i: usize| self.coef[i].unwrap_or(0.0);
        models::latency::LatencyModel {
            schema: models::latency::LATENCY_SCHEMA.into(),
            per_kept_relu_ms: c(0),
            per_mac_ms: c(1),
            per_round_ms: c(2),
            per_round_rtt: self.coef[3].unwrap_or(1.0),
            per_square_ms: c(4),
            fitted_rows: self.rows,
        }
    }

    /// Predicted online latency, ms (unknown terms count as zero).
    pub fn predict(&self, f: &Features) -> f64 {
        f.vector()
            .iter()
            .zip(self.coef)
            .map(|(x, c)| x * c.unwrap_or(0.0))
            .sum()
    }

    /// The coefficients in readable units, one per line.
    pub fn describe(&self) -> String {
        let mut s = format!("latency model fitted to {} measured points:\n", self.rows);
        let units = [
            (1e3, "us per kept ReLU"),
            (1e9 / 1e3, "ms per GMAC of linear layers"),
            (1.0, "ms per round"),
            (
                1.0,
                "x RTT per round (1 = each round waits one full round trip)",
            ),
            (
                1e3,
                "us per squared position (beyond the truncation it replaces)",
            ),
        ];
        for (i, (scale, unit)) in units.iter().enumerate() {
            match self.coef[i] {
                Some(c) => {
                    let note = if c < 0.0 {
                        " (negative: poorly determined; measure models that differ in it)"
                    } else {
                        ""
                    };
                    let _ = writeln!(s, "  {:>10.3} {unit}{note}", c * scale);
                }
                None => {
                    let _ = writeln!(
                        s,
                        "  {:>10} {unit} (not determined by these measurements: {})",
                        "-",
                        why_missing(i)
                    );
                }
            }
        }
        s
    }
}

fn why_missing(term: usize) -> &'static str {
    match term {
        0 => "no row keeps any ReLU",
        1 => "no linear layers measured, or MACs not separable from rounds",
        2 => "rounds do not vary independently of the other terms",
        3 => "measure at a non-zero --rtt-ms too",
        _ => "no row squares any position (quadratic sites), or too few rows",
    }
}

/// Weighted least squares over the identifiable terms.
pub fn fit(data: &[(Features, f64)]) -> Result<CostModel, Error> {
    if data.is_empty() {
        return Err(Error::Config("no measurements to fit".into()));
    }
    for (f, t) in data {
        if !(t.is_finite() && *t > 0.0) || f.vector().iter().any(|x| !x.is_finite()) {
            return Err(Error::Config(format!(
                "a measurement is not usable for fitting (latency {t} ms, {f:?})"
            )));
        }
    }
    // Columns that vary at all.
    let present: Vec<usize> = (0..TERMS.len())
        .filter(|&j| data.iter().any(|(f, _)| f.vector()[j] != 0.0))
        .collect();
    // The largest subset of them the data determines; among subsets of one size, the one
    // that keeps the more important terms (kept ReLUs, then RTT, squares, rounds, MACs).
    let importance = |j: usize| [16u32, 1, 2, 8, 4][j];
    let mut subsets: Vec<Vec<usize>> = (1u32..(1 << present.len()))
        .map(|m| {
            present
                .iter()
                .enumerate()
                .filter(|(k, _)| m & (1 << k) != 0)
                .map(|(_, &j)| j)
                .collect()
        })
        .collect();
    subsets.sort_by_key(|s: &Vec<usize>| {
        std::cmp::Reverse((s.len(), s.iter().map(|&j| importance(j)).sum::<u32>()))
    });
    for active in subsets {
        if let Some(beta) = solve_weighted(data, &active) {
            let mut coef = [None; 5];
            for (k, &j) in active.iter().enumerate() {
                coef[j] = Some(beta[k]);
            }
            return Ok(CostModel {
                coef,
                rows: data.len(),
            });
        }
    }
    Err(Error::Config("the measurements determine no term".into()))
}

fn solve_weighted(data: &[(Features, f64)], active: &[usize]) -> Option<Vec<f64>> {
    let n = active.len();
    if data.len() < n {
        return None;
    }
    let scale: Vec<f64> = active
        .iter()
        .map(|&j| {
            data.iter()
                .map(|(f, _)| f.vector()[j].abs())
                .fold(0.0, f64::max)
        })
        .collect();
    // Normal equations of the weighted, scaled system.
    let mut a = vec![vec![0.0; n + 1]; n];
    for (f, t) in data {
        let w = 1.0 / t;
        let v = f.vector();
        let x: Vec<f64> = active
            .iter()
            .zip(&scale)
            .map(|(&j, s)| v[j] / s * w)
            .collect();
        let y = t * w;
        for r in 0..n {
            for c in 0..n {
                a[r][c] += x[r] * x[c];
            }
            a[r][n] += x[r] * y;
        }
    }
    // Gaussian elimination with partial pivoting.
    let diag_max = (0..n).map(|i| a[i][i]).fold(0.0, f64::max);
    for col in 0..n {
        let p = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[p][col].abs() <= 1e-10 * diag_max.max(f64::MIN_POSITIVE) {
            return None;
        }
        a.swap(col, p);
        let pivot = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let k = row[col] / pivot[col];
                for (x, p) in row.iter_mut().zip(&pivot).skip(col) {
                    *x -= k * p;
                }
            }
        }
    }
    Some((0..n).map(|i| a[i][n] / a[i][i] / scale[i]).collect())
}

/// Counts the squared positions of rows that do not record them (results schema 1 and 2)
/// from their model directory, where it still holds the measured model (the same
/// `public.json` SHA-256). Returns how many rows stay without a count: they are fitted and
/// predicted with none, which is right for models without quadratic sites.
pub fn fill_squares(rows: &mut [Row]) -> usize {
    let mut unknown = 0;
    for r in rows.iter_mut().filter(|r| r.squares.is_none()) {
        let found = models::format::load_public(Path::new(&r.model))
            .ok()
            .filter(|(_, hash)| *hash == r.model_sha256)
            .and_then(|(public, _)| models::latency::OnlineWork::of(&public).ok());
        match found {
            Some(w) => r.squares = Some(w.squares),
            None => unknown += 1,
        }
    }
    unknown
}

/// A model path in at most 36 characters: its last 33 after `...` when longer (on
/// character boundaries: paths need not be ASCII).
fn short_name(model: &str) -> String {
    let n = model.chars().count();
    if n <= 36 {
        return model.to_string();
    }
    format!("...{}", model.chars().skip(n - 33).collect::<String>())
}

/// Predicted vs measured, one line per row, with the leave-one-out prediction (the model
/// fitted without that row) beside the in-sample one.
pub fn comparison(model: &CostModel, rows: &[Row]) -> String {
    let mut s = format!(
        "{:<36} {:<10} {:>8} {:>8} {:>6} {:>8} {:>11} {:>11} {:>7} {:>11}\n",
        "model",
        "network",
        "kept",
        "GMAC",
        "rounds",
        "squares",
        "measured",
        "predicted",
        "error",
        "leave-1-out"
    );
    for (i, r) in rows.iter().enumerate() {
        let f = Features::of_row(r);
        let p = model.predict(&f);
        let others: Vec<Row> = rows
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != i)
            .map(|(_, r)| r.clone())
            .collect();
        let loo = CostModel::fit(&others)
            .ok()
            .filter(|m| {
                m.coef
                    .iter()
                    .zip(model.coef)
                    .all(|(a, b)| a.is_some() == b.is_some())
            })
            .map_or("-".to_string(), |m| format!("{:.1} ms", m.predict(&f)));
        let name = short_name(&r.model);
        let _ = writeln!(
            s,
            "{:<36} {:<10} {:>8} {:>8.3} {:>6} {:>8} {:>8.1} ms {:>8.1} ms {:>+6.1}% {:>11}",
            name,
            r.network,
            r.relus_kept,
            r.linear_macs as f64 / 1e9,
            r.rounds,
            r.squares.map_or("-".to_string(), |s| s.to_string()),
            r.online_ms_median,
            p,
            100.0 * (p - r.online_ms_median) / r.online_ms_median,
            loo
        );
    }
    s
}

/// Predicted vs measured for rows the model was not fitted to (e.g. the models a
/// latency-budgeted linearization made), one line each, and the largest relative error
/// (`None` without rows).
pub fn held_out(model: &CostModel, rows: &[Row]) -> (String, Option<f64>) {
    let mut s = format!(
        "{:<36} {:<10} {:>8} {:>6} {:>11} {:>11} {:>7}\n",
        "held-out model", "network", "kept", "rounds", "measured", "predicted", "error"
    );
    let mut worst: Option<f64> = None;
    for r in rows {
        let p = model.predict(&Features::of_row(r));
        let err = (p - r.online_ms_median) / r.online_ms_median;
        worst = Some(worst.map_or(err.abs(), |w| w.max(err.abs())));
        let name = short_name(&r.model);
        let _ = writeln!(
            s,
            "{:<36} {:<10} {:>8} {:>6} {:>8.2} ms {:>8.2} ms {:>+6.1}%",
            name,
            r.network,
            r.relus_kept,
            r.rounds,
            r.online_ms_median,
            p,
            100.0 * err
        );
    }
    (s, worst)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Synthetic measurements; `e` (per square) 0 leaves the squares out of the data.
    fn synth(a: f64, b: f64, c: f64, d: f64, e: f64) -> Vec<(Features, f64)> {
        let mut v = vec![];
        for (kept, macs, rounds, squares) in [
            (0.0, 4e7, 1.0, 0.0),
            (9_000.0, 4e7, 20.0, 0.0),
            (18_000.0, 4e7, 20.0, 0.0),
            (180_000.0, 4e7, 20.0, 0.0),
            (1_000.0, 5e5, 5.0, 0.0),
            (300.0, 5e5, 4.0, 0.0),
            (9_000.0, 4e7, 20.0, 170_000.0),
            (18_000.0, 4e7, 20.0, 40_000.0),
        ] {
            if e == 0.0 && squares > 0.0 {
                continue;
            }
            for rtt in [0.0, 1.0, 10.0] {
                let f = Features {
                    kept,
                    macs,
                    rounds,
                    rtt_ms: rtt,
                    squares,
                };
                let t = a * kept + b * macs + rounds * (c + d * rtt) + e * squares;
                v.push((f, t));
            }
        }
        v
    }

    #[test]
    fn recovers_known_coefficients() {
        let (a, b, c, d, e) = (2.7e-3, 8e-7, 0.4, 1.05, 1.6e-4);
        let m = fit(&synth(a, b, c, d, e)).unwrap();
        for (got, want) in m.coef.iter().zip([a, b, c, d, e]) {
            let got = got.unwrap();
            assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
        }
        let f = Features {
            kept: 50_000.0,
            macs: 1e8,
            rounds: 10.0,
            rtt_ms: 2.0,
            squares: 1e5,
        };
        let want = a * 5e4 + b * 1e8 + 10.0 * (c + 2.0 * d) + e * 1e5;
        assert!((m.predict(&f) - want).abs() < 1e-6 * want);
        assert_eq!(m.latency_model().per_square_ms, m.coef[4].unwrap());
        // Without squared positions in the data the term is left out, and saved as 0.
        let m = fit(&synth(a, b, c, d, 0.0)).unwrap();
        assert!(m.coef[4].is_none());
        assert!(m.describe().contains("no row squares any position"));
        assert_eq!(m.latency_model().per_square_ms, 0.0);
    }

    #[test]
    fn leaves_out_what_the_data_cannot_tell() {
        // Loopback only: the RTT term is undetermined, the others still fit.
        let data: Vec<_> = synth(2.7e-3, 8e-7, 0.4, 1.0, 0.0)
            .into_iter()
            .filter(|(f, _)| f.rtt_ms == 0.0)
            .collect();
        let m = fit(&data).unwrap();
        assert!(m.coef[3].is_none());
        assert!((m.coef[0].unwrap() - 2.7e-3).abs() < 1e-9);
        assert!(m.describe().contains("measure at a non-zero --rtt-ms"));
        assert!(fit(&[]).is_err());
        let bad = [(data[0].0, f64::NAN)];
        assert!(fit(&bad).unwrap_err().to_string().contains("not usable"));
    }

    #[test]
    fn comparison_prints_every_row() {
        let rows = vec![
            crate::results::tests::sample(9_338, "loopback", 44.0),
            crate::results::tests::sample(18_678, "loopback", 70.0),
            crate::results::tests::sample(100_000, "loopback", 300.0),
        ];
        let m = CostModel::fit(&rows).unwrap();
        let t = comparison(&m, &rows);
        assert_eq!(t.lines().count(), 1 + rows.len());
        assert!(t.contains("44.0 ms"));
        // Held out: a row on the fitted line is predicted exactly, one measured twice as
        // slow is off by -50%, which is the worst error reported.
        let fitted = m.predict(&Features::of_row(&rows[1]));
        let held = vec![
            crate::results::tests::sample(18_678, "loopback", fitted),
            crate::results::tests::sample(18_678, "loopback", 2.0 * fitted),
        ];
        let (t, worst) = held_out(&m, &held);
        assert_eq!(t.lines().count(), 3);
        assert!(t.contains("-50.0%"), "{t}");
        assert!((worst.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(held_out(&m, &[]).1, None);
        assert_eq!(short_name("runs/a"), "runs/a");
        let long = format!("{}/budget-9420", "é".repeat(40));
        assert_eq!(
            short_name(&long),
            format!("...{}/budget-9420", "é".repeat(21))
        );
        // A fit without an RTT term (loopback rows only) saves one round trip per round;
        // other undetermined terms save as 0.
        let loopback = CostModel {
            coef: [Some(0.003), None, Some(0.2), None, None],
            rows: 3,
        };
        let lm = loopback.latency_model();
        assert_eq!((lm.per_round_rtt, lm.per_mac_ms), (1.0, 0.0));
        assert_eq!(m.latency_model().per_round_rtt, m.coef[3].unwrap());
    }

    /// Old rows get their squares from the model directory only while it holds the
    /// measured model.
    #[test]
    fn squares_of_old_rows_come_from_their_model() {
        use models::testing::{make_quadratic, random_model};
        let dir = tempfile::tempdir().unwrap();
        let mut m = random_model("lenet5", 0.2, 1).unwrap();
        make_quadratic(&mut m, 1).unwrap();
        let at = dir.path().join("q");
        models::format::save(&m, &at, false).unwrap();
        let (_, hash) = models::format::load_public(&at).unwrap();
        let want = models::latency::OnlineWork::of(&m.public).unwrap().squares;
        assert!(want > 0);
        let row = |model: &Path, sha: &str| {
            let mut r = crate::results::tests::sample(10, "loopback", 5.0);
            (r.schema_version, r.squares) = (2, None);
            r.model = model.display().to_string();
            r.model_sha256 = sha.to_string();
            r
        };
        let mut rows = vec![
            row(&at, &hash),
            row(&at, "00"),
            row(&dir.path().join("gone"), &hash),
        ];
        assert_eq!(fill_squares(&mut rows), 2);
        assert_eq!(
            rows.iter().map(|r| r.squares).collect::<Vec<_>>(),
            [Some(want), None, None]
        );
        assert_eq!(Features::of_row(&rows[0]).squares, want as f64);
        assert_eq!(Features::of_row(&rows[1]).squares, 0.0);
    }
}
