//! PNG charts for wit's reports (the `stats` report, the trainer's curves):
//! plotters draws into an RGB buffer, text is rendered with ab_glyph in the
//! DejaVu Sans font shipped in `plot/assets/` with its licence (no system
//! fonts needed), and `image` encodes the PNG.
#![deny(missing_docs)]

use std::sync::Once;

pub use plotters;
use plotters::coord::Shift;
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
/// Width of every chart in pixels.
pub const W: u32 = 800;
/// Height of every chart in pixels.
pub const H: u32 = 500;

/// A drawing error, as text.
pub type Drawn = Result<Vec<u8>, String>;

/// The canvas handed to [`draw`]'s closure.
pub type Canvas<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Draws a chart with `f` on a white [`W`] x [`H`] canvas; returns the PNG.
///
/// # Errors
/// The drawing's or the encoder's error, as text.
pub fn draw(f: impl FnOnce(&Canvas) -> Result<(), String>) -> Drawn {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let mut buf = vec![0u8; (W * H * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        f(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_raw(W, H, buf)
        .ok_or("buffer size")?
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(out.into_inner())
}

/// One named line of (x, y) points.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// Its legend.
    pub name: &'a str,
    /// Its points, in x order.
    pub points: &'a [(f64, f64)],
}

/// A tick label as people write numbers: integers without a decimal point
/// (`1000`, not `1000.0`), others with at most three significant decimals
/// and no trailing zeros (`0.25`).
pub fn tick(v: &f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        return format!("{}", v.round() as i64);
    }
    let t = format!("{v:.3}");
    t.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A tick label on a log axis: only 1, 2 and 5 times a power of ten are
/// labelled (plotters puts a tick at every integer too, whose labels would
/// overlap, as `9` and `10` did); the others are left blank.
pub fn log_tick(v: &f64) -> String {
    if !v.is_finite() || *v <= 0.0 {
        return String::new();
    }
    let p = 10f64.powf(v.log10().floor());
    let lead = v / p;
    if [1.0, 2.0, 5.0].iter().any(|l| (lead - l).abs() < 1e-6) {
        tick(v)
    } else {
        String::new()
    }
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(70, 110, 180),
    RGBColor(200, 90, 60),
    RGBColor(90, 160, 90),
    RGBColor(140, 90, 170),
];

/// A line chart of `series` with a legend in the upper right corner (where
/// falling curves such as a loss leave room); `log_y` puts y on a log scale
/// (points at or below zero are left out there).
///
/// # Errors
/// The drawing's error, as text.
pub fn lines(title: &str, x_desc: &str, y_desc: &str, series: &[Series], log_y: bool) -> Drawn {
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.1.is_finite() && (!log_y || p.1 > 0.0))
    };
    let (mut x0, mut x1) = pts().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (mut y0, mut y1) = pts().fold((f64::MAX, f64::MIN), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 1.0, 2.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + y0.abs().max(1.0) * 0.1;
    }
    draw(|root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70);
        macro_rules! body {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_desc)
                    .y_desc(y_desc)
                    .x_label_formatter(&tick)
                    .y_label_formatter(if log_y { &log_tick } else { &tick })
                    .label_style(("sans-serif", 14))
                    .draw()
                    .map_err(|x| e(&x))?;
                for (s, colour) in series.iter().zip(COLOURS.iter().cycle()) {
                    let points = s
                        .points
                        .iter()
                        .copied()
                        .filter(|p| p.1.is_finite() && (!log_y || p.1 > 0.0));
                    chart
                        .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                        .map_err(|x| e(&x))?
                        .label(s.name)
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                        });
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 14))
                    .draw()
                    .map_err(|x| e(&x))?;
            }};
        }
        if log_y {
            body!(
                builder
                    .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
                    .map_err(|x| e(&x))?
            );
        } else {
            body!(
                builder
                    .build_cartesian_2d(x0..x1, y0..y1)
                    .map_err(|x| e(&x))?
            );
        }
        Ok(())
    })
}

/// A matrix of counts as a grid of shaded cells (a confusion matrix: rows
/// the truth, columns the prediction), each row shaded relative to its own
/// total; labels on the axes when there are at most 30 of them.
///
/// # Errors
/// The drawing's error, as text.
pub fn heatmap(title: &str, labels: &[String], counts: &[Vec<u32>]) -> Drawn {
    let n = counts.len().max(1);
    draw(|root| {
        let e = |e: &dyn std::fmt::Display| e.to_string();
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(if n <= 30 { 90 } else { 30 })
            .y_label_area_size(if n <= 30 { 110 } else { 40 })
            .build_cartesian_2d(0..n, 0..n)
            .map_err(|x| e(&x))?;
        let name = |v: &usize| {
            if n <= 30 {
                labels.get(*v).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("predicted")
            .y_desc("true")
            .x_labels(n.min(30))
            .y_labels(n.min(30))
            .x_label_formatter(&name)
            .y_label_formatter(&|v| {
                if n > *v {
                    name(&(n - 1 - v))
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|x| e(&x))?;
        let cells = counts.iter().enumerate().flat_map(|(i, row)| {
            let total = row.iter().sum::<u32>().max(1) as f64;
            row.iter().enumerate().map(move |(j, &c)| {
                let shade = (255.0 * (1.0 - c as f64 / total)) as u8;
                // The first row at the top.
                let y = n - 1 - i;
                Rectangle::new(
                    [(j, y), (j + 1, y + 1)],
                    RGBColor(shade, shade, 255).filled(),
                )
            })
        });
        chart.draw_series(cells).map_err(|x| e(&x))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_read_as_people_write_numbers() {
        assert_eq!(tick(&1000.0), "1000");
        assert_eq!(tick(&50.0), "50");
        assert_eq!(tick(&0.25), "0.25");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&-3.0), "-3");
        assert_eq!(log_tick(&10.0), "10");
        assert_eq!(log_tick(&20.0), "20");
        assert_eq!(log_tick(&9.0), "");
        assert_eq!(log_tick(&5.0), "5");
        assert_eq!(log_tick(&0.5), "0.5");
        assert_eq!(log_tick(&3000.0), "");
    }

    #[test]
    fn a_line_chart_has_ink_in_each_colour() {
        let a: Vec<(f64, f64)> = (0..50)
            .map(|i| (i as f64, 5.0 / (1.0 + i as f64)))
            .collect();
        let b: Vec<(f64, f64)> = (0..50).map(|i| (i as f64, 0.01 * i as f64 + 0.1)).collect();
        for log_y in [false, true] {
            let png = lines(
                "loss",
                "step",
                "value",
                &[
                    Series {
                        name: "loss",
                        points: &a,
                    },
                    Series {
                        name: "lr",
                        points: &b,
                    },
                ],
                log_y,
            )
            .unwrap();
            let img = image::load_from_memory(&png).unwrap().to_rgb8();
            assert_eq!(img.dimensions(), (W, H));
            for c in &COLOURS[..2] {
                let n = img.pixels().filter(|p| p.0 == [c.0, c.1, c.2]).count();
                assert!(n > 100, "{c:?}: {n} pixels");
            }
        }
        // No points at all still draws axes.
        lines("empty", "x", "y", &[], false).unwrap();
    }

    #[test]
    fn a_heatmap_shades_the_diagonal_darkest() {
        let labels: Vec<String> = ["cat", "dog", "bird"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let counts = vec![vec![9, 1, 0], vec![2, 8, 0], vec![0, 0, 10]];
        let png = heatmap("confusion", &labels, &counts).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        // The darkest blue cells (a full row in one cell: 0, 0, 255) exist.
        let full = img.pixels().filter(|p| p.0 == [0, 0, 255]).count();
        assert!(full > 1000, "{full}");
    }
}
