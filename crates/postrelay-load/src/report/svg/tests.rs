use super::*;

fn chart(log_x: bool) -> Chart {
    Chart {
        title: "t <&>".into(),
        x_label: "sessions".into(),
        y_label: "msg/s".into(),
        log_x,
        series: vec![
            Series {
                name: "a".into(),
                points: vec![(20.0, 900.0), (1.0, 100.0), (5.0, 450.0)],
            },
            Series {
                name: "b".into(),
                points: vec![(1.0, 50.0), (20.0, f64::NAN)],
            },
        ],
    }
}

#[test]
fn round_maxima_are_1_2_2_5_or_5_times_a_power_of_ten() {
    let cases = [
        (0.0, 1.0),
        (0.7, 1.0),
        (1.0, 1.0),
        (1.1, 2.0),
        (2.2, 2.5),
        (3.0, 5.0),
        (900.0, 1000.0),
        (1001.0, 2000.0),
    ];
    for (v, want) in cases {
        assert_eq!(round_max(v), want, "{v}");
    }
    assert_eq!(round_max(f64::NAN), 1.0);
}

#[test]
fn labels_drop_needless_decimals() {
    assert_eq!(label(200.0), "200");
    assert_eq!(label(0.5), "0.5");
    assert_eq!(label(0.25), "0.25");
    assert_eq!(label(12.7), "13");
}

#[test]
fn a_chart_is_one_svg_with_every_point_and_escaped_text() {
    let svg = chart(false).render();
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"));
    assert_eq!(
        svg.matches("<circle").count(),
        4,
        "the NaN point is left out"
    );
    assert!(svg.contains("t &lt;&amp;&gt;"));
    assert!(!svg.contains("NaN"));
    // The y axis goes to 1000; the first series is drawn left to right.
    assert!(svg.contains(">1000</text>"));
    let a = svg
        .lines()
        .find(|l| l.contains(r##"stroke="#1f77b4" stroke-width"##))
        .unwrap();
    assert!(a.contains(r#"d="M70.0 319.0 L"#), "{a}");
    assert!(a.contains("L620.0 "), "{a}");
}

#[test]
fn a_log_axis_spaces_decades_evenly() {
    let c = Chart {
        series: vec![Series {
            name: "q".into(),
            points: vec![(1000.0, 1.0), (10_000.0, 2.0), (100_000.0, 3.0)],
        }],
        ..chart(true)
    };
    let xs = c.xs();
    let (a, b, d) = (c.px(1000.0, &xs), c.px(10_000.0, &xs), c.px(100_000.0, &xs));
    assert!(((b - a) - (d - b)).abs() < 1e-9);
    assert_eq!((a, d), (LEFT, W - RIGHT));
}

#[test]
fn an_empty_chart_still_renders() {
    let c = Chart {
        series: vec![],
        ..chart(false)
    };
    assert!(c.render().contains("</svg>"));
}
