//! Line charts as hand-written SVG: axes from zero to a round maximum, a
//! linear or logarithmic x axis ticked at the data's x values, one colour
//! and marker per series, a legend. Enough for the benchmark page; not a
//! plotting library.

use std::fmt::Write;

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// (x, y) points, drawn in x order.
    pub points: Vec<(f64, f64)>,
}

/// A chart to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Logarithmic x axis (x values must be positive).
    pub log_x: bool,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 640.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// The smallest of 1, 2, 2.5, 5 or 10 times a power of ten that is at
/// least `v` (1 for nothing to show).
pub fn round_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|&c| c >= v * (1.0 - 1e-12))
        .unwrap_or(10.0 * p)
}

/// Escapes text for SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as a tick label: no needless decimals.
pub fn label(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

impl Chart {
    fn xs(&self) -> Vec<f64> {
        let mut xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .filter(|x| x.is_finite() && (!self.log_x || *x > 0.0))
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        xs
    }

    /// The x position of `x` in pixels.
    fn px(&self, x: f64, xs: &[f64]) -> f64 {
        let f = |v: f64| if self.log_x { v.log10() } else { v };
        let (lo, hi) = match (xs.first(), xs.last()) {
            (Some(&a), Some(&b)) if f(b) > f(a) => (f(a), f(b)),
            _ => return LEFT + (W - LEFT - RIGHT) / 2.0,
        };
        LEFT + (f(x) - lo) / (hi - lo) * (W - LEFT - RIGHT)
    }

    /// The SVG document.
    pub fn render(&self) -> String {
        let xs = self.xs();
        let ymax = round_max(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1))
                .filter(|y| y.is_finite())
                .fold(0.0, f64::max),
        );
        let py = |y: f64| H - BOTTOM - y / ymax * (H - TOP - BOTTOM);
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        self.axes(&mut out, &xs, ymax, &py);
        for (i, s) in self.series.iter().enumerate() {
            self.line(&mut out, s, COLOURS[i % COLOURS.len()], &xs, &py);
            let ly = TOP + 8.0 + 16.0 * i as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{}" y="{}" width="12" height="4" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                LEFT + 10.0,
                ly - 4.0,
                COLOURS[i % COLOURS.len()],
                LEFT + 28.0,
                ly,
                escape(&s.name)
            );
        }
        out.push_str("</svg>\n");
        out
    }

    fn axes(&self, out: &mut String, xs: &[f64], ymax: f64, py: &dyn Fn(f64) -> f64) {
        let (x0, y0) = (LEFT, H - BOTTOM);
        let _ = writeln!(
            out,
            r##"<path d="M{x0} {TOP} V{y0} H{}" stroke="#333" fill="none"/>"##,
            W - RIGHT
        );
        for i in 0..=5 {
            let y = ymax * f64::from(i) / 5.0;
            let _ = writeln!(
                out,
                r##"<path d="M{x0} {0} H{1}" stroke="#ddd"/><text x="{2}" y="{3}" text-anchor="end">{4}</text>"##,
                py(y),
                W - RIGHT,
                x0 - 6.0,
                py(y) + 4.0,
                label(y)
            );
        }
        for &x in xs {
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                self.px(x, xs),
                y0 + 16.0,
                label(x)
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            H - 12.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            out,
            r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (TOP + H - BOTTOM) / 2.0,
            escape(&self.y_label)
        );
    }

    fn line(
        &self,
        out: &mut String,
        s: &Series,
        colour: &str,
        xs: &[f64],
        py: &dyn Fn(f64) -> f64,
    ) {
        let mut pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let path: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, &(x, y))| {
                let cmd = if i == 0 { 'M' } else { 'L' };
                format!("{cmd}{:.1} {:.1}", self.px(x, xs), py(y))
            })
            .collect();
        if !path.is_empty() {
            let _ = writeln!(
                out,
                r#"<path d="{}" stroke="{colour}" stroke-width="2" fill="none"/>"#,
                path.join(" ")
            );
        }
        for (x, y) in pts {
            let _ = writeln!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"><title>{}: {}</title></circle>"#,
                self.px(x, xs),
                py(y),
                label(x),
                label(y)
            );
        }
    }
}

#[cfg(test)]
mod tests;
