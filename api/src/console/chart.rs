//! Server-rendered charts: per-day numbers as inline SVG bars or a polyline, with axis labels
//! and a `<title>` per point, so a page needs no script to show them (the strict CSP allows
//! inline SVG, and presentation attributes are not inline styles). The page shows a table of
//! the same numbers next to each chart for screen readers.

use askama::Template;

/// The drawing area inside the SVG's view box; margins hold the axis labels.
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;
/// X-axis labels shown at most (the others stay in each point's title and the table).
const MAX_X_LABELS: usize = 8;

/// How the points are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Bars,
    Line,
}

/// One chart, ready to render: `{{ chart|safe }}` in a page (askama escapes its labels here).
#[derive(Debug, Template)]
#[template(path = "console/chart.svg", escape = "html")]
pub struct Chart {
    /// The accessible name (`aria-label`).
    pub label: String,
    pub width: f64,
    pub height: f64,
    pub baseline: f64,
    pub left: f64,
    pub right: f64,
    pub bars: Vec<Bar>,
    /// `points` of the polyline, empty for bars.
    pub polyline: String,
    pub dots: Vec<Dot>,
    pub y_ticks: Vec<Tick>,
    pub x_labels: Vec<Tick>,
}

#[derive(Debug)]
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub title: String,
}

#[derive(Debug)]
pub struct Dot {
    pub x: f64,
    pub y: f64,
    pub title: String,
}

/// An axis label at `at` (y for the value axis, x for the day axis).
#[derive(Debug)]
pub struct Tick {
    pub at: f64,
    pub text: String,
}

impl Chart {
    /// A chart of `points` (label, value) in order; negative values count as 0.
    pub fn new(label: &str, shape: Shape, points: &[(String, i64)]) -> Self {
        let top = nice_ceiling(points.iter().map(|(_, v)| *v).max().unwrap_or(0));
        let plot_width = WIDTH - LEFT - RIGHT;
        let plot_height = HEIGHT - TOP - BOTTOM;
        let baseline = TOP + plot_height;
        let slot = plot_width / points.len().max(1) as f64;
        let y_of = |value: i64| baseline - plot_height * value.max(0) as f64 / top as f64;
        let x_of = |i: usize| LEFT + slot * (i as f64 + 0.5);
        let title = |(name, value): &(String, i64)| format!("{name}: {value}");
        let (mut bars, mut dots, mut polyline) = (Vec::new(), Vec::new(), Vec::new());
        for (i, point) in points.iter().enumerate() {
            let y = y_of(point.1);
            match shape {
                Shape::Bars => bars.push(Bar {
                    x: round(LEFT + slot * i as f64 + slot * 0.1),
                    y: round(y),
                    width: round(slot * 0.8),
                    height: round(baseline - y),
                    title: title(point),
                }),
                Shape::Line => {
                    polyline.push(format!("{},{}", round(x_of(i)), round(y)));
                    dots.push(Dot {
                        x: round(x_of(i)),
                        y: round(y),
                        title: title(point),
                    });
                }
            }
        }
        let mut tick_values = vec![0, top / 2, top];
        tick_values.dedup();
        let y_ticks = tick_values
            .into_iter()
            .map(|value| Tick {
                at: round(y_of(value)),
                text: value.to_string(),
            })
            .collect();
        let every = points.len().div_ceil(MAX_X_LABELS).max(1);
        let x_labels = points
            .iter()
            .enumerate()
            .filter(|(i, _)| i % every == 0 || *i + 1 == points.len())
            .map(|(i, (name, _))| Tick {
                at: round(x_of(i)),
                text: name.clone(),
            })
            .collect();
        Self {
            label: label.to_owned(),
            width: WIDTH,
            height: HEIGHT,
            baseline,
            left: LEFT,
            right: WIDTH - RIGHT,
            bars,
            polyline: polyline.join(" "),
            dots,
            y_ticks,
            x_labels,
        }
    }
}

/// The smallest 1, 2 or 5 × 10ⁿ at or above `max` (at least 1), so the axis reads well.
fn nice_ceiling(max: i64) -> i64 {
    let mut step = 1i64;
    loop {
        for factor in [1, 2, 5] {
            let candidate = step.saturating_mul(factor);
            if candidate >= max || candidate == i64::MAX {
                return candidate;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// One decimal is plenty for a 600-unit view box and keeps the markup small.
fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn days(values: &[i64]) -> Vec<(String, i64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("11-{:02}", i + 1), *v))
            .collect()
    }

    #[test]
    fn the_axis_ends_at_a_round_number_at_or_above_the_maximum() {
        let cases = [
            (0, 1),
            (1, 1),
            (2, 2),
            (3, 5),
            (7, 10),
            (11, 20),
            (230, 500),
        ];
        for (max, ceiling) in cases {
            assert_eq!(nice_ceiling(max), ceiling, "{max}");
        }
        assert_eq!(nice_ceiling(i64::MAX), i64::MAX);
    }

    #[test]
    fn bars_stand_on_the_baseline_and_the_tallest_reaches_the_top_value() {
        let chart = Chart::new("logins", Shape::Bars, &days(&[0, 5, 10]));
        assert_eq!(chart.bars.len(), 3);
        assert_eq!(chart.bars[0].height, 0.0);
        assert_eq!(chart.bars[2].y, TOP);
        for bar in &chart.bars {
            assert_eq!(round(bar.y + bar.height), chart.baseline);
        }
        assert_eq!(chart.bars[1].title, "11-02: 5");
        let ticks: Vec<&str> = chart.y_ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ticks, ["0", "5", "10"]);
    }

    #[test]
    fn a_line_has_a_point_per_day_and_at_most_eight_day_labels() {
        let chart = Chart::new("active", Shape::Line, &days(&[3; 30]));
        assert_eq!(chart.dots.len(), 30);
        assert_eq!(chart.polyline.split(' ').count(), 30);
        assert!(chart.x_labels.len() <= MAX_X_LABELS + 1);
        assert_eq!(
            chart.x_labels.last().map(|t| t.text.as_str()),
            Some("11-30")
        );
    }

    #[test]
    fn the_svg_escapes_labels_and_has_no_script_or_style() {
        let points = vec![("<script>".to_owned(), 1)];
        let svg = Chart::new("a \"b\" & <c>", Shape::Bars, &points)
            .render()
            .expect("renders");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("style="), "{svg}");
        assert!(svg.contains("&#60;script&#62;: 1"), "{svg}");
        assert_eq!(
            svg.matches("class=\"tick\"").count(),
            3,
            "0 and 1, and one day"
        );
        let empty = Chart::new("nothing", Shape::Line, &[])
            .render()
            .expect("renders");
        assert!(empty.contains("</svg>"));
    }
}
