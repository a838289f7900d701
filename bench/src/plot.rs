//! `snl-bench plot`: accuracy against online latency and against kept ReLUs, as one SVG
//! with two panels. One series per network/method (latency panel) or per method (ReLU
//! panel), each series' Pareto front drawn as a line through its filled, larger points;
//! dominated points are hollow. Optional reference series (e.g. the SNL paper's
//! published points) appear in the ReLU panel. Both x axes are logarithmic.
//!
//! The y axes show, by default, the fixed-point executor's accuracy on the full test set
//! (`fixed_accuracy_full`: the plaintext twin of the secure arithmetic, on thousands of
//! images rather than the few the secure run can afford); the caption says on how many
//! images, and each series' legend entry the size of its secure sample and how often the
//! secure prediction agreed with the fixed-point one there. [`Accuracy::Secure`] plots the
//! secure accuracy on the sample instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::Error;
use crate::results::Row;

/// A reference point: kept ReLUs and top-1 accuracy in percent.
#[derive(Clone, Debug, PartialEq)]
pub struct RefPoint {
    /// ReLUs.
    pub relus: f64,
    /// Top-1 accuracy, percent.
    pub accuracy_pct: f64,
}

/// A named reference series.
#[derive(Clone, Debug, PartialEq)]
pub struct RefSeries {
    /// Legend label.
    pub label: String,
    /// Points.
    pub points: Vec<RefPoint>,
}

/// The largest reference CSV read (published points: a few hundred bytes each).
pub const MAX_REFERENCE_BYTES: u64 = 16 << 20;

/// Reads a reference CSV with a header holding `relus` and `top1` (percent) columns, like
/// `bench/data/snl_resnet18_cifar10.csv`. The label is `label` if given, else
/// "NETWORK, published" from a `network` column, else the file's stem.
pub fn read_reference(path: &Path, label: Option<&str>) -> Result<RefSeries, Error> {
    let bad = |msg: String| Error::Format {
        path: path.to_path_buf(),
        msg,
    };
    let bytes = crate::results::read_bounded(path, MAX_REFERENCE_BYTES, "a reference CSV")?;
    let mut r = csv::ReaderBuilder::new().from_reader(bytes.as_slice());
    let header = r
        .headers()
        .map_err(|e| bad(format!("cannot read the CSV header: {e}")))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let (Some(ri), Some(ai)) = (col("relus"), col("top1")) else {
        return Err(bad(format!(
            "a reference CSV needs columns relus and top1 (percent); the header is {:?}",
            header.iter().collect::<Vec<_>>()
        )));
    };
    let ni = col("network");
    let mut points = Vec::new();
    let mut network = None;
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| bad(format!("line {line}: {e}")))?;
        let num = |j: usize, what: &str| -> Result<f64, Error> {
            let s = rec.get(j).unwrap_or("").trim();
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    bad(format!(
                        "line {line}: {what} {s:?} is not a non-negative number"
                    ))
                })
        };
        let relus = num(ri, "relus")?;
        let acc = num(ai, "top1")?;
        if acc > 100.0 {
            return Err(bad(format!(
                "line {line}: top1 {acc} is above 100 (percent)"
            )));
        }
        if network.is_none() {
            network = ni.and_then(|j| rec.get(j)).map(str::to_string);
        }
        points.push(RefPoint {
            relus,
            accuracy_pct: acc,
        });
    }
    if points.is_empty() {
        return Err(bad("the reference CSV has no points".into()));
    }
    let label = match (label, network) {
        (Some(l), _) => l.to_string(),
        (None, Some(n)) => format!("{n}, published"),
        (None, None) => path
            .file_stem()
            .map_or("reference".into(), |s| s.to_string_lossy().into_owned()),
    };
    Ok(RefSeries { label, points })
}

/// Indices of the Pareto-optimal points of `(cost, accuracy)` pairs: no other point is
/// at most as costly and at least as accurate, and strictly better in one. Sorted by cost.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len()).collect();
    // By cost ascending, ties by accuracy descending: the first of a cost is its best.
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in idx {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];
const REF_COLOUR: &str = "#555555";

/// A plotted point: x, accuracy (%), and an optional x whisker (low, high).
type Point = (f64, f64, Option<(f64, f64)>);

struct Series {
    label: String,
    /// A second legend line: the secure measurement behind the series.
    note: Option<String>,
    colour: String,
    reference: bool,
    points: Vec<Point>,
    /// The rows behind the points (for the note).
    rows: Vec<usize>,
}

/// Which accuracy the y axes show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accuracy {
    /// The fixed-point executor on the full test set (`fixed_accuracy_full`); rows of
    /// results schema version 1, which lack it, are refused.
    #[default]
    Full,
    /// Private inference on the sampled images (`secure_accuracy`).
    Secure,
}

/// Options of the figure.
#[derive(Clone, Debug, Default)]
pub struct PlotOptions {
    /// Title above the panels.
    pub title: Option<String>,
    /// Which accuracy.
    pub accuracy: Accuracy,
}

/// `a` or `a-b` for the smallest and largest of `v` (empty: `?`).
fn span<T: PartialOrd + Copy>(
    v: impl IntoIterator<Item = T>,
    show: impl Fn(T) -> String,
) -> String {
    let mut it = v.into_iter();
    let Some(first) = it.next() else {
        return "?".into();
    };
    let (lo, hi) = it.fold((first, first), |(lo, hi), x| {
        (if x < lo { x } else { lo }, if x > hi { x } else { hi })
    });
    let (a, b) = (show(lo), show(hi));
    if a == b { a } else { format!("{a}-{b}") }
}

/// A count with thousands separators: 10,000.
fn thousands(n: usize) -> String {
    let d = n.to_string();
    let mut out = String::new();
    for (i, c) in d.chars().enumerate() {
        if i > 0 && (d.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The secure measurement behind some rows: "secure: 200 images, agreement 100%".
fn secure_note(rows: &[&Row]) -> String {
    let images = span(rows.iter().map(|r| r.secure_images), thousands);
    let repeats = span(rows.iter().map(|r| r.repeats), |n| n.to_string());
    let agreed: Vec<f64> = rows.iter().filter_map(|r| r.secure_agreement).collect();
    let agreement = if agreed.is_empty() {
        "not recorded".to_string()
    } else {
        let mut a = span(agreed.iter().copied(), |a| {
            format!("{}%", trim_num(100.0 * a))
        });
        if agreed.len() < rows.len() {
            a.push_str(" (not recorded for some)");
        }
        a
    };
    let repeats = if repeats == "1" {
        String::new()
    } else {
        format!(" x {repeats} repeats")
    };
    format!("secure: {images} images{repeats}, agreement {agreement}")
}

/// Renders the two-panel SVG.
pub fn render_svg(rows: &[Row], refs: &[RefSeries], opts: &PlotOptions) -> Result<String, Error> {
    if rows.is_empty() && refs.is_empty() {
        return Err(Error::Config(
            "nothing to plot: no rows and no reference points".into(),
        ));
    }
    if opts.accuracy == Accuracy::Full {
        let old: Vec<String> = rows
            .iter()
            .filter(|r| r.fixed_accuracy_full.is_none())
            .map(|r| format!("{} ({})", r.model, r.network))
            .collect();
        if !old.is_empty() {
            return Err(Error::Config(format!(
                "{} rows have no full-test accuracy (results schema version 1, accuracy \
                 measured on the secure sample only): {}{}; re-measure them with `snl-bench \
                 sweep` into a new results file, or plot the sampled secure accuracy with \
                 --accuracy secure",
                old.len(),
                old.iter().take(4).cloned().collect::<Vec<_>>().join(", "),
                if old.len() > 4 { ", ..." } else { "" }
            )));
        }
    }
    let acc = |r: &Row| {
        100.0
            * match opts.accuracy {
                Accuracy::Full => r.fixed_accuracy_full.unwrap_or(f64::NAN),
                Accuracy::Secure => r.secure_accuracy,
            }
    };
    // Colours by series name, shared by both panels.
    let mut colours: BTreeMap<String, String> = BTreeMap::new();
    for r in rows {
        let n = colours.len();
        colours
            .entry(r.series.clone())
            .or_insert_with(|| PALETTE[n % PALETTE.len()].to_string());
    }
    // Latency panel: one series per (series, network, method).
    let mut lat: BTreeMap<(String, i64, String, String), Series> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let key = (
            r.series.clone(),
            (r.rtt_ms * 1000.0).round() as i64,
            r.network.clone(),
            r.method.clone(),
        );
        let s = lat.entry(key).or_insert_with(|| Series {
            label: format!("{} · {} · {}", r.series, r.network, r.method),
            note: None,
            colour: colours[&r.series].clone(),
            reference: false,
            points: vec![],
            rows: vec![],
        });
        s.points.push((
            r.online_ms_median,
            acc(r),
            Some((r.online_ms_p10, r.online_ms_p90)),
        ));
        s.rows.push(i);
    }
    // ReLU panel: one series per (series, method), one point per model.
    let mut relu: BTreeMap<(String, String), (Series, Vec<String>)> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        let (s, seen) = relu
            .entry((r.series.clone(), r.method.clone()))
            .or_insert_with(|| {
                (
                    Series {
                        label: format!("{} · {}", r.series, r.method),
                        note: None,
                        colour: colours[&r.series].clone(),
                        reference: false,
                        points: vec![],
                        rows: vec![],
                    },
                    vec![],
                )
            });
        if !seen.contains(&r.model_sha256) {
            seen.push(r.model_sha256.clone());
            s.points.push((r.relus_kept.max(1) as f64, acc(r), None));
            s.rows.push(i);
        }
    }
    let mut relu: Vec<Series> = relu.into_values().map(|v| v.0).collect();
    for (i, rf) in refs.iter().enumerate() {
        relu.push(Series {
            label: rf.label.clone(),
            note: None,
            rows: vec![],
            colour: if i == 0 {
                REF_COLOUR.into()
            } else {
                PALETTE[(7 - i) % 8].into()
            },
            reference: true,
            points: rf
                .points
                .iter()
                .map(|p| (p.relus.max(1.0), p.accuracy_pct, None))
                .collect(),
        });
    }
    // Within the latency panel each series gets its own colour (one architecture is
    // often measured at several networks).
    let mut lat: Vec<Series> = lat.into_values().collect();
    for (k, s) in lat.iter_mut().enumerate() {
        s.colour = PALETTE[k % PALETTE.len()].to_string();
    }
    // Each measured series says what its secure measurement was.
    for s in lat.iter_mut().chain(relu.iter_mut()) {
        if !s.reference {
            let rs: Vec<&Row> = s.rows.iter().map(|&i| &rows[i]).collect();
            s.note = Some(secure_note(&rs));
        }
    }
    // Latency series are distinguished by dash pattern per network within a colour.
    let entry_height = |s: &Series| if s.note.is_some() { 32.0 } else { 18.0 };
    let legend_height = |v: &[Series]| v.iter().map(entry_height).sum::<f64>();
    let (pw, ph) = (470.0, 330.0);
    let (ml, mt) = (70.0, 86.0);
    let gap = 110.0;
    let width = ml + pw + gap + pw + 30.0;
    let legend_top = mt + ph + 60.0;
    let height = legend_top + legend_height(&lat).max(legend_height(&relu)) + 20.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = opts
        .title
        .clone()
        .unwrap_or_else(|| "Accuracy vs private-inference cost".to_string());
    let caption = match opts.accuracy {
        Accuracy::Full => format!(
            "accuracy: fixed-point executor (plaintext twin of the secure arithmetic) on {} \
             test images; legend: each series' secure sample and per-image agreement",
            span(rows.iter().filter_map(|r| r.full_images), thousands)
        ),
        Accuracy::Secure => format!(
            "accuracy: private inference on the first {} test images (the sample; see the \
             legend)",
            span(rows.iter().map(|r| r.secure_images), thousands)
        ),
    };
    let _ = writeln!(
        svg,
        r#"<text x="{:.0}" y="28" text-anchor="middle" font-size="16" font-weight="bold">{}</text>"#,
        width / 2.0,
        esc(&title)
    );
    if !rows.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text class="caption" x="{:.0}" y="50" text-anchor="middle">{}</text>"#,
            width / 2.0,
            esc(&caption)
        );
    }
    let _ = writeln!(
        svg,
        r##"<text x="{:.0}" y="68" text-anchor="middle" fill="#555">Pareto front of each series: filled points joined by a line; dominated points hollow; whiskers p10-p90</text>"##,
        width / 2.0
    );
    let y_range = acc_range(lat.iter().chain(relu.iter()));
    let panels: [(&[Series], f64, &str); 2] = [
        (&lat, ml, "online latency per inference (ms, log scale)"),
        (&relu, ml + pw + gap, "kept ReLUs (log scale)"),
    ];
    for (series, x0, xlabel) in panels {
        let area = Area {
            x0,
            y0: mt,
            w: pw,
            h: ph,
            x: log_range(series),
            y: y_range,
        };
        area.axes(&mut svg, xlabel, "top-1 accuracy (%)");
        if series.is_empty() {
            let _ = writeln!(
                svg,
                r##"<text x="{:.0}" y="{:.0}" text-anchor="middle" fill="#777">no measurements</text>"##,
                x0 + pw / 2.0,
                mt + ph / 2.0
            );
        }
        for (k, s) in series.iter().enumerate() {
            area.series(&mut svg, s, k);
        }
        let mut y = legend_top;
        for (k, s) in series.iter().enumerate() {
            let dash = dash_of(s, k);
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="2"{dash}/>"#,
                x0,
                y - 4.0,
                x0 + 26.0,
                y - 4.0,
                s.colour
            );
            marker(&mut svg, x0 + 13.0, y - 4.0, &s.colour, true, s.reference);
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x0 + 34.0,
                y,
                esc(&s.label)
            );
            if let Some(note) = &s.note {
                let _ = writeln!(
                    svg,
                    r##"<text class="note" x="{:.1}" y="{:.1}" font-size="11" fill="#555">{}</text>"##,
                    x0 + 34.0,
                    y + 14.0,
                    esc(note)
                );
            }
            y += entry_height(s);
        }
    }
    svg.push_str("</svg>\n");
    Ok(svg)
}

fn dash_of(s: &Series, k: usize) -> &'static str {
    if s.reference {
        r#" stroke-dasharray="6 3""#
    } else {
        [
            "",
            r#" stroke-dasharray="2 3""#,
            r#" stroke-dasharray="8 3 2 3""#,
        ][k % 3]
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn acc_range<'a>(series: impl Iterator<Item = &'a Series>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for p in &s.points {
            lo = lo.min(p.1);
            hi = hi.max(p.1);
        }
    }
    if !lo.is_finite() {
        return (0.0, 100.0);
    }
    let pad = ((hi - lo) * 0.08).max(0.5);
    let step = nice_step(hi - lo + 2.0 * pad);
    (
        ((lo - pad) / step).floor().mul_add(step, 0.0).max(0.0),
        ((hi + pad) / step).ceil().mul_add(step, 0.0).min(100.0),
    )
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let m = raw / mag;
    mag * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// log10 of the x range, padded; from all points and whiskers.
fn log_range(series: &[Series]) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for s in series {
        for p in &s.points {
            for x in [Some(p.0), p.2.map(|w| w.0), p.2.map(|w| w.1)]
                .into_iter()
                .flatten()
            {
                if x > 0.0 {
                    lo = lo.min(x);
                    hi = hi.max(x);
                }
            }
        }
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let (l, h) = (lo.log10(), hi.log10());
    let pad = ((h - l) * 0.06).max(0.08);
    (l - pad, h + pad)
}

struct Area {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    /// log10 range
    x: (f64, f64),
    y: (f64, f64),
}

impl Area {
    fn px(&self, x: f64) -> f64 {
        self.x0 + (x.max(1e-12).log10() - self.x.0) / (self.x.1 - self.x.0) * self.w
    }
    fn py(&self, y: f64) -> f64 {
        self.y0 + self.h - (y - self.y.0) / (self.y.1 - self.y.0) * self.h
    }

    fn axes(&self, svg: &mut String, xlabel: &str, ylabel: &str) {
        let (x0, y0, w, h) = (self.x0, self.y0, self.w, self.h);
        let _ = writeln!(
            svg,
            r##"<rect x="{x0:.1}" y="{y0:.1}" width="{w:.1}" height="{h:.1}" fill="#fafafa" stroke="#333"/>"##
        );
        // y ticks
        let step = nice_step(self.y.1 - self.y.0);
        let mut t = (self.y.0 / step).ceil() * step;
        while t <= self.y.1 + 1e-9 {
            let y = self.py(t);
            let _ = writeln!(
                svg,
                r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + w,
                x0 - 6.0,
                y + 4.0,
                trim_num(t)
            );
            t += step;
        }
        // x ticks at 1, 2, 5 x 10^k
        let (lo, hi) = self.x;
        let mut k = lo.floor() as i32;
        while f64::from(k) <= hi {
            for m in [1.0, 2.0, 5.0] {
                let v = m * 10f64.powi(k);
                let lv = v.log10();
                if lv < lo || lv > hi {
                    continue;
                }
                let x = self.px(v);
                let _ = writeln!(
                    svg,
                    r##"<line x1="{x:.1}" y1="{y0:.1}" x2="{x:.1}" y2="{:.1}" stroke="#e3e3e3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                    y0 + h,
                    y0 + h + 16.0,
                    si(v)
                );
            }
            k += 1;
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="13">{}</text>"#,
            x0 + w / 2.0,
            y0 + h + 38.0,
            esc(xlabel)
        );
        let (lx, ly) = (x0 - 46.0, y0 + h / 2.0);
        let _ = writeln!(
            svg,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="middle" font-size="13" transform="rotate(-90 {lx:.1} {ly:.1})">{}</text>"#,
            esc(ylabel)
        );
    }

    fn series(&self, svg: &mut String, s: &Series, k: usize) {
        let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
        let front = pareto_front(&pts);
        let path: Vec<String> = front
            .iter()
            .map(|&i| format!("{:.1},{:.1}", self.px(pts[i].0), self.py(pts[i].1)))
            .collect();
        if path.len() > 1 {
            let _ = writeln!(
                svg,
                r#"<polyline class="front" points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
                path.join(" "),
                s.colour,
                dash_of(s, k)
            );
        }
        for (i, p) in s.points.iter().enumerate() {
            let (x, y) = (self.px(p.0), self.py(p.1));
            if let Some((a, b)) = p.2 {
                let _ = writeln!(
                    svg,
                    r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="1"/>"#,
                    self.px(a),
                    self.px(b),
                    s.colour
                );
            }
            marker(svg, x, y, &s.colour, front.contains(&i), s.reference);
        }
    }
}

fn marker(svg: &mut String, x: f64, y: f64, colour: &str, on_front: bool, reference: bool) {
    let (fill, r, class) = if on_front {
        (colour, 4.5, "front-point")
    } else {
        ("white", 3.5, "point")
    };
    if reference {
        let d = r + 0.5;
        let _ = writeln!(
            svg,
            r#"<path class="{class}" d="M{x:.1},{:.1} L{:.1},{y:.1} L{x:.1},{:.1} L{:.1},{y:.1} Z" fill="{fill}" stroke="{colour}" stroke-width="1.5"/>"#,
            y - d,
            x + d,
            y + d,
            x - d
        );
    } else {
        let _ = writeln!(
            svg,
            r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="{r}" fill="{fill}" stroke="{colour}" stroke-width="1.5"/>"#
        );
    }
}

fn trim_num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// 1, 2, 5, 10, ..., 1K, 2K, ..., 1M.
fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{}M", trim_num(v / 1e6))
    } else if v >= 1e3 {
        format!("{}K", trim_num(v / 1e3))
    } else {
        trim_num(v)
    }
}

#[cfg(test)]
mod tests;
