//! `chart.svg`: each benchmark's result as a percentage of the model's peak, one bar each.

use crate::report::{fmt_value, Report};
use crate::Suite;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const WIDTH: u32 = 960;
const BAR_HEIGHT: u32 = 26;

/// The colour of a bar: hikube-gpu GEMM blue, cuBLAS grey, copies green.
fn colour(suite: Suite, implementation: &str) -> RGBColor {
    match (suite, implementation) {
        (_, "cuBLAS") => RGBColor(150, 150, 150),
        (Suite::Copy, _) => RGBColor(46, 139, 87),
        _ => RGBColor(31, 119, 180),
    }
}

/// The chart of `report`'s results that have a peak, as SVG text.
pub fn svg(report: &Report) -> Result<String, String> {
    let bars: Vec<(String, f64, RGBColor)> = report
        .results
        .iter()
        .filter_map(|r| {
            r.percent_of_peak.map(|p| {
                (
                    format!("{} · {}", r.name, r.implementation),
                    p,
                    colour(r.suite, &r.implementation),
                )
            })
        })
        .collect();
    let n = bars.len().max(1) as u32;
    let height = 120 + BAR_HEIGHT * n;
    let x_max = bars.iter().map(|b| b.1).fold(100.0f64, f64::max).ceil() + 10.0;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let title = format!(
            "{}: % of peak per benchmark ({})",
            report.device.model.name, report.created
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(300)
            // An integer range is inclusive in plotters: 0..n-1 gives n segments.
            .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())
            .map_err(|e| e.to_string())?;
        // The first result on top.
        let row = |i: usize| n - 1 - i as u32;
        let labels: Vec<&str> = bars.iter().rev().map(|b| b.0.as_str()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_labels(n as usize)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).copied().unwrap_or("").into(),
                _ => String::new(),
            })
            .x_desc("% of the model's peak")
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, pct, colour))| {
                let i = row(i);
                let mut bar = Rectangle::new(
                    [
                        (0.0, SegmentValue::Exact(i)),
                        (*pct, SegmentValue::Exact(i + 1)),
                    ],
                    colour.filled(),
                );
                bar.set_margin(3, 3, 0, 0);
                bar
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, pct, _))| {
                Text::new(
                    format!("{} %", fmt_value(*pct)),
                    (*pct + 0.5, SegmentValue::CenterOf(row(i))),
                    TextStyle::from(("sans-serif", 13).into_font())
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                )
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(100.0, SegmentValue::Exact(0)), (100.0, SegmentValue::Last)],
                RGBColor(200, 60, 60).stroke_width(1),
            )))
            .map_err(|e| e.to_string())?;
        if bars.is_empty() {
            root.draw(&Text::new(
                "no benchmark with a peak figure was run",
                (WIDTH as i32 / 3, height as i32 / 2),
                ("sans-serif", 16),
            ))
            .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample_report;

    #[test]
    fn svg_is_well_formed_with_a_bar_per_result_with_a_peak() {
        let report = sample_report();
        let text = svg(&report).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("well-formed XML");
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        let texts: Vec<String> = doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| n.text().unwrap_or("").trim().to_string())
            .collect();
        for label in [
            "f16 4096×4096×4096 · hikube-gpu",
            "f16 4096×4096×4096 · cuBLAS",
            "d2d 256 MiB · hikube-gpu",
            "61.9 %",
            "85.7 %",
        ] {
            assert!(texts.iter().any(|t| t == label), "{label} not in {texts:?}");
        }
        assert!(
            !texts.iter().any(|t| t.contains("axpy")),
            "a latency has no peak"
        );
        let colour_of = |rgb: &str| {
            doc.descendants()
                .filter(|n| n.has_tag_name("rect") && n.attribute("fill") == Some(rgb))
                .count()
        };
        assert_eq!(colour_of("#1F77B4"), 1, "one hikube-gpu GEMM bar");
        assert_eq!(colour_of("#969696"), 1, "one cuBLAS bar");
        assert_eq!(colour_of("#2E8B57"), 1, "one copy bar");
    }

    #[test]
    fn an_empty_report_still_draws() {
        let mut report = sample_report();
        report.results.clear();
        let text = svg(&report).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        assert!(doc
            .descendants()
            .any(|n| n.text().map(str::trim) == Some("no benchmark with a peak figure was run")));
    }
}
