//! `--plot`: throughput against batch size and against payload size, one
//! panel per durability mode, as an SVG (plotters' SVG backend: text is
//! left to the viewer, so no font files are needed).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use super::row::Row;
use crate::bench::measure::BenchError;

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Draws the plot into `path` (SVG).
pub fn draw(rows: &[Row], path: &Path, title: &str) -> Result<(), BenchError> {
    let fail = |e: String| BenchError::msg(format!("drawing {}: {e}", path.display()));
    let root = SVGBackend::new(path, (1400, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let root = root
        .titled(title, ("sans-serif", 22))
        .map_err(|e| fail(e.to_string()))?;
    let panels = root.split_evenly((2, 2));
    for (col, mode) in ["power-loss", "process-crash"].into_iter().enumerate() {
        // Producer items/s against the batch size, one line per payload.
        let mut by_batch: Series = BTreeMap::new();
        for r in rows.iter().filter(|r| {
            r.durability == mode
                && r.device == "bench device"
                && r.scenario.starts_with("push")
                && r.items_per_s.is_finite()
        }) {
            by_batch
                .entry(format!("{:>7} B", r.payload_bytes))
                .or_default()
                .push((r.batch as f64, r.items_per_s));
        }
        chart(
            &panels[col],
            &format!("{mode}: producer items/s against batch size"),
            "items per advance",
            "items/s",
            by_batch,
        )
        .map_err(fail)?;
        // MB/s against the payload, one line per scenario.
        let mut by_payload: Series = BTreeMap::new();
        for r in rows.iter().filter(|r| {
            r.durability == mode
                && r.device == "bench device"
                && r.mb_per_s.is_finite()
                && r.mb_per_s > 0.0
                && !r.scenario.starts_with("latency")
        }) {
            by_payload
                .entry(r.scenario.clone())
                .or_default()
                .push((r.payload_bytes as f64, r.mb_per_s));
        }
        // A batch of 256 is capped for large items: those points stay on
        // the line of 256 (the batch used is in the table).
        chart(
            &panels[2 + col],
            &format!("{mode}: MB/s against payload size"),
            "payload bytes",
            "MB/s",
            by_payload,
        )
        .map_err(fail)?;
    }
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

fn range(series: &Series, pick: impl Fn(&(f64, f64)) -> f64) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for p in series.values().flatten() {
        let v = pick(p);
        if v > 0.0 {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    if !lo.is_finite() {
        return (1.0, 10.0);
    }
    (lo / 1.5, hi * 1.5)
}

fn chart(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    mut series: Series,
) -> Result<(), String> {
    for points in series.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let (x0, x1) = range(&series, |p| p.0);
    let (y0, y1) = range(&series, |p| p.1);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// 1500 -> "1.5k", 2000000 -> "2M", 0.05 -> "0.05".
fn short(v: f64) -> String {
    if v < 1.0 {
        let s = format!("{v:.3}");
        return s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    let (d, s) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    let x = v / d;
    if (x - x.round()).abs() < 0.05 {
        format!("{x:.0}{s}")
    } else {
        format!("{x:.1}{s}")
    }
}
