//! Quadratic replacements of dropped ReLUs (AutoReP-style): the per-channel least-squares
//! fit of `relu(x)` by `a x^2 + b x + c` that initialises the coefficients, and the range
//! penalty on the squares' inputs.
//!
//! The fit accumulates, per channel, the moments `sum x^k` (k = 0..4) and
//! `sum relu(x) x^k` (k = 0..2) of the pre-activations at the channel's dropped positions
//! ([`Moments`]) and solves the 3 x 3 normal equations ([`fit_relu`]). A channel without
//! dropped positions, or whose system is singular (fewer than three distinct values),
//! keeps the identity `(0, 1, 0)`.

use tch::{Device, Kind, Tensor};

/// The identity as a quadratic: `a = 0, b = 1, c = 0`.
pub const IDENTITY: [f64; 3] = [0.0, 1.0, 0.0];

/// Where a quadratic fine-tune's coefficients start (`snl-train linearize --poly-init`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PolyInit {
    /// AutoReP's: per channel the least-squares fit of `relu` ([`fit_relu`]; the affine
    /// fit [`fit_relu_affine`] in channels left without their square).
    #[default]
    Fit,
    /// The identity `(0, 1, 0)` in every channel: the fine-tune starts from the network
    /// SNL's identity fine-tune starts from and learns the squares from there. The
    /// squared channels are still chosen by the fit's gain.
    Identity,
}

impl PolyInit {
    /// The flag's value for this start.
    pub fn name(self) -> &'static str {
        match self {
            PolyInit::Fit => "fit",
            PolyInit::Identity => "identity",
        }
    }

    /// Parses [`PolyInit::name`].
    pub fn parse(s: &str) -> Option<Self> {
        [PolyInit::Fit, PolyInit::Identity]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// Inputs to a square with `|x|` above this radius are penalised by
/// `--poly-penalty` (see [`range_penalty`]).
pub const PENALTY_RADIUS: f64 = 8.0;

/// Pre-activation moments of one channel's dropped positions.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moments {
    /// `sum x^k` for k = 0..4 (`s[0]` is the number of samples).
    pub s: [f64; 5],
    /// `sum relu(x) x^k` for k = 0..2 (`r[1]` is `sum relu(x)^2`).
    pub r: [f64; 3],
    /// Largest `|x|` seen.
    pub max_abs: f64,
    /// Samples with `|x|` above [`PENALTY_RADIUS`].
    pub beyond_radius: f64,
}

impl Moments {
    /// The moments of a list of samples.
    pub fn of(xs: &[f64]) -> Self {
        let mut m = Moments::default();
        for &x in xs {
            let r = x.max(0.0);
            let mut p = 1.0;
            for k in 0..5 {
                m.s[k] += p;
                if k < 3 {
                    m.r[k] += r * p;
                }
                p *= x;
            }
            m.max_abs = m.max_abs.max(x.abs());
            if x.abs() > PENALTY_RADIUS {
                m.beyond_radius += 1.0;
            }
        }
        m
    }

    /// Adds another set of moments.
    pub fn add(&mut self, o: &Moments) {
        for k in 0..5 {
            self.s[k] += o.s[k];
        }
        for k in 0..3 {
            self.r[k] += o.r[k];
        }
        self.max_abs = self.max_abs.max(o.max_abs);
        self.beyond_radius += o.beyond_radius;
    }

    /// Sum of squared errors of `a x^2 + b x + c` against `relu(x)` over the samples.
    pub fn sse(&self, [a, b, c]: [f64; 3]) -> f64 {
        let (s, r) = (&self.s, &self.r);
        let q2 = a * a * s[4]
            + b * b * s[2]
            + c * c * s[0]
            + 2.0 * (a * b * s[3] + a * c * s[2] + b * c * s[1]);
        let qr = a * r[2] + b * r[1] + c * r[0];
        (q2 - 2.0 * qr + r[1]).max(0.0)
    }
}

/// Per-channel moments of the pre-activations `x` ([N, C, H, W]) at the positions where
/// `dropped` ([1, C, H, W], 1 = dropped) is 1, accumulated in double precision.
pub fn channel_moments(x: &Tensor, dropped: &Tensor) -> Vec<Moments> {
    tch::no_grad(|| {
        let x = x.detach().to_kind(Kind::Double).to_device(Device::Cpu);
        let d = dropped
            .to_kind(Kind::Double)
            .to_device(Device::Cpu)
            .expand_as(&x);
        let c = x.size()[1];
        let dims: &[i64] = &[0, 2, 3];
        let sum = |t: &Tensor| -> Vec<f64> {
            Vec::<f64>::try_from(t.sum_dim_intlist(dims, false, Kind::Double)).unwrap_or_default()
        };
        let relu = x.relu();
        let mut s: Vec<Vec<f64>> = Vec::with_capacity(5);
        let mut p = d.shallow_clone();
        for _ in 0..5 {
            s.push(sum(&p));
            p = &p * &x;
        }
        let mut r: Vec<Vec<f64>> = Vec::with_capacity(3);
        let mut p = &d * &relu;
        for _ in 0..3 {
            r.push(sum(&p));
            p = &p * &x;
        }
        let absd = x.abs() * &d;
        let max_abs: Vec<f64> =
            Vec::<f64>::try_from(absd.amax([0, 2, 3].as_slice(), false)).unwrap_or_default();
        let beyond = sum(&absd.gt(PENALTY_RADIUS).to_kind(Kind::Double));
        (0..c as usize)
            .map(|ch| Moments {
                s: std::array::from_fn(|k| s[k].get(ch).copied().unwrap_or(0.0)),
                r: std::array::from_fn(|k| r[k].get(ch).copied().unwrap_or(0.0)),
                max_abs: max_abs.get(ch).copied().unwrap_or(0.0),
                beyond_radius: beyond.get(ch).copied().unwrap_or(0.0),
            })
            .collect()
    })
}

/// The least-squares fit `(a, b, c)` of `relu(x)` by `a x^2 + b x + c` from the moments,
/// or `None` when there are no samples or the normal equations are singular.
///
/// The normal equations `M (a, b, c)^T = (r2, r1, r0)^T` with
/// `M = [[s4, s3, s2], [s3, s2, s1], [s2, s1, s0]]` are solved after scaling `M` to a
/// unit diagonal (Jacobi), by Gaussian elimination with partial pivoting; a pivot below
/// 1e-10 of the scaled system counts as singular.
pub fn fit_relu(m: &Moments) -> Option<[f64; 3]> {
    let s = &m.s;
    if s[0].partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let mat = [[s[4], s[3], s[2]], [s[3], s[2], s[1]], [s[2], s[1], s[0]]];
    let rhs = [m.r[2], m.r[1], m.r[0]];
    let mut scale = [0.0; 3];
    for i in 0..3 {
        if !(mat[i][i] > 0.0 && mat[i][i].is_finite()) {
            return None;
        }
        scale[i] = 1.0 / mat[i][i].sqrt();
    }
    // Augmented, scaled system: D M D y = D r, (a, b, c) = D y.
    let mut a = [[0.0f64; 4]; 3];
    for i in 0..3 {
        for j in 0..3 {
            a[i][j] = mat[i][j] * scale[i] * scale[j];
        }
        a[i][3] = rhs[i] * scale[i];
    }
    for col in 0..3 {
        let piv = (col..3).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[piv][col].abs() < 1e-10 {
            return None;
        }
        a.swap(col, piv);
        let pivot_row = a[col];
        for row in a.iter_mut().skip(col + 1) {
            let f = row[col] / pivot_row[col];
            for (x, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *x -= f * p;
            }
        }
    }
    let mut y = [0.0; 3];
    for i in (0..3).rev() {
        let mut v = a[i][3];
        for j in i + 1..3 {
            v -= a[i][j] * y[j];
        }
        y[i] = v / a[i][i];
    }
    let out = [y[0] * scale[0], y[1] * scale[1], y[2] * scale[2]];
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// The least-squares fit `(0, b, c)` of `relu(x)` by the affine `b x + c` from the
/// moments (a channel without its square), or `None` when there are no samples or the
/// 2 x 2 normal equations `[[s2, s1], [s1, s0]] (b, c)^T = (r1, r0)^T` are singular
/// (determinant below 1e-12 of `s2 s0`: fewer than two distinct values).
pub fn fit_relu_affine(m: &Moments) -> Option<[f64; 3]> {
    let s = &m.s;
    if !(s[0] > 0.0 && s[2] > 0.0) {
        return None;
    }
    let det = s[2] * s[0] - s[1] * s[1];
    if det.partial_cmp(&(1e-12 * s[2] * s[0])) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let b = (m.r[1] * s[0] - m.r[0] * s[1]) / det;
    let c = (s[2] * m.r[0] - s[1] * m.r[1]) / det;
    (b.is_finite() && c.is_finite()).then_some([0.0, b, c])
}

/// Which channels of one site keep their square when only a `fraction` of the site's
/// dropped positions may be squared (`--square-channels`): per channel the dropped
/// positions `count[c]` and the fit's gain `gain[c]`, the mean squared error against relu
/// of the best affine fit minus that of the best quadratic one over its samples. Channels
/// are taken by gain, largest first, while the squared positions stay within
/// `round(fraction · Σ count)`; a channel that does not fit is skipped for smaller ones
/// after it. Channels without dropped positions cost nothing and are always taken.
/// Returns the channels left without a square (affine), ascending.
pub fn affine_channels(count: &[usize], gain: &[f64], fraction: f64) -> Vec<usize> {
    let total: usize = count.iter().sum();
    let allowed = (fraction.clamp(0.0, 1.0) * total as f64).round() as usize;
    let mut order: Vec<usize> = (0..count.len()).collect();
    order.sort_by(|&x, &y| gain[y].total_cmp(&gain[x]).then(x.cmp(&y)));
    let mut used = 0;
    let mut affine = Vec::new();
    for c in order {
        if used + count[c] <= allowed {
            used += count[c];
        } else {
            affine.push(c);
        }
    }
    affine.sort_unstable();
    affine
}

/// The range penalty's per-element term: `relu(|x| - R)^2` with `R` = [`PENALTY_RADIUS`].
pub fn range_penalty(x: &Tensor) -> Tensor {
    (x.abs() - PENALTY_RADIUS).relu().square()
}
