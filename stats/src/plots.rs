//! The report's PNG plots, drawn with [`wit_plot`].

use wit_plot::plotters::prelude::*;

type Drawn = wit_plot::Drawn;

/// Query count against rank, log-log, before and after balancing.
pub(crate) fn rank_count(before: &[u64], after: &[u64]) -> Drawn {
    wit_plot::draw(|root| {
        let max_rank = before.len().max(after.len()).max(2) as f64;
        let max_count = before
            .iter()
            .chain(after)
            .copied()
            .max()
            .unwrap_or(1)
            .max(2) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption("Pairs per query, by rank (log-log)", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((1f64..max_rank).log_scale(), (1f64..max_count).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("rank")
            .y_desc("pairs")
            .x_label_formatter(&wit_plot::log_tick)
            .y_label_formatter(&wit_plot::log_tick)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        for (series, name, color) in [
            (before, "before balancing", RED),
            (after, "after balancing", BLUE),
        ] {
            if series.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(
                    series
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| ((i + 1) as f64, c.max(1) as f64)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        // Counts fall with rank: the lower left corner stays empty.
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .label_font(("sans-serif", 14))
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// What a funnel bar counts, in words where its key is terse: every
/// balanced pair is attempted, and only some are stored.
fn funnel_label(key: &str) -> &str {
    match key {
        "downloaded" => "download attempted",
        "stored" => "stored in shards",
        other => other,
    }
}

/// Rows per stage of the funnel, as bars, one slot per stage.
pub(crate) fn funnel(stages: &[(String, u64)]) -> Drawn {
    wit_plot::draw(|root| {
        let max = stages.iter().map(|s| s.1).max().unwrap_or(1).max(1) as f64;
        let n = stages.len().max(1) as u32;
        let mut chart = ChartBuilder::on(root)
            .caption("Funnel: rows at each stage", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(70)
            // A segmented 0..k has k + 1 slots (its ends included).
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0f64..max * 1.1)
            .map_err(|e| e.to_string())?;
        let labels: Vec<String> = stages
            .iter()
            .map(|s| funnel_label(&s.0).to_string())
            .collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&wit_plot::tick)
            .y_desc("rows")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(stages.iter().enumerate().map(|(i, s)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i as u32), 0.0),
                        (SegmentValue::Exact(i as u32 + 1), s.1 as f64),
                    ],
                    RGBColor(70, 110, 180).filled(),
                );
                bar.set_margin(0, 0, 10, 10);
                bar
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Caption lengths in buckets of 10 characters.
pub(crate) fn histogram(buckets: &[(u64, u64)]) -> Drawn {
    wit_plot::draw(|root| {
        let max_x = buckets.iter().map(|b| b.0 + 10).max().unwrap_or(10) as f64;
        let max_y = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
        let mut chart = ChartBuilder::on(root)
            .caption("Caption length (characters)", ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..max_x, 0f64..max_y * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("characters")
            .y_desc("candidates")
            .x_label_formatter(&wit_plot::tick)
            .y_label_formatter(&wit_plot::tick)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(buckets.iter().map(|&(b, n)| {
                Rectangle::new(
                    [(b as f64, 0.0), (b as f64 + 9.0, n as f64)],
                    RGBColor(90, 160, 90).filled(),
                )
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })
}

/// Standard base64, for images inlined in the HTML report.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_answers() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn plots_draw_text_and_lines() {
        let png = rank_count(&[1000, 500, 100, 10, 1], &[200, 200, 100, 10, 1]).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (wit_plot::W, wit_plot::H));
        // Some red, some blue, and dark text pixels.
        let has = |f: &dyn Fn(&image::Rgb<u8>) -> bool| img.pixels().any(f);
        assert!(has(&|p| p[0] > 200 && p[1] < 60 && p[2] < 60));
        assert!(has(&|p| p[2] > 200 && p[0] < 60 && p[1] < 60));
        assert!(has(&|p| p[0] < 60 && p[1] < 60 && p[2] < 60));
        assert!(funnel(&[("a".into(), 10), ("b".into(), 5)]).is_ok());
        assert!(histogram(&[(0, 3), (10, 7)]).is_ok());
        assert!(rank_count(&[], &[]).is_ok());
    }
}
