use super::tables::{charts, median, num, section};
use super::*;
use crate::stats::Percentiles;

fn pct(p50: f64) -> Option<Percentiles> {
    Some(Percentiles {
        n: 10,
        p50,
        p90: p50 * 2.0,
        p99: p50 * 3.0,
        max: p50 * 4.0,
        mean: p50,
    })
}

fn row(relay: &str, scenario: &str, client: &str, sessions: usize, e2e: f64) -> Row {
    Row {
        relay: relay.into(),
        upstream: "plain".into(),
        scenario: scenario.into(),
        client: client.into(),
        cpu_s: Some(0.5),
        client_cpu_s: None,
        sink_cpu_s: None,
        cpus: None,
        mem: Some(WatchReport {
            samples: 3,
            peak_rss_kb: 9000,
            peak_pss_kb: 2048,
            max_hwm_kb: 4096,
        }),
        run: SendReport {
            messages: 1000,
            accepted: 1000,
            errors: 0,
            first_error: None,
            sessions,
            size: 1024,
            recipients: 1,
            reuse: false,
            connections: 1000,
            intake_s: 2.0,
            intake_per_s: 500.0,
            latency_ms: pct(1.0),
            e2e_s: Some(1000.0 / e2e),
            e2e_per_s: Some(e2e),
            delay_ms: pct(0.5),
            missing: 0,
        },
    }
}

#[test]
fn medians_of_odd_even_and_empty_samples() {
    assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    assert_eq!(median(vec![f64::NAN]), None);
    assert_eq!(num(Some(1234.56)), "1235");
    assert_eq!(num(Some(12.34)), "12.3");
    assert_eq!(num(Some(0.123)), "0.12");
    assert_eq!(num(None), "–");
}

#[test]
fn the_matrix_shows_both_relays_and_the_ratios() {
    let rows = vec![
        row("postfix", "1k-new", "postrelay-load", 20, 400.0),
        row("postrelay", "1k-new", "postrelay-load", 20, 1000.0),
        row("postrelay", "1k-new", "postrelay-load", 20, 3000.0),
        row("postrelay", "1k-new", "postrelay-load", 20, 2000.0),
    ];
    let s = section(&rows, "Machine: test", &[]);
    assert!(s.starts_with("Machine: test\n"));
    let head = s
        .lines()
        .find(|l| l.starts_with("| upstream | scenario |"))
        .unwrap();
    let pr = head.find("postrelay intake/s").unwrap();
    assert!(
        pr < head.find("postfix intake/s").unwrap(),
        "postrelay first: {head}"
    );
    let line = s
        .lines()
        .find(|l| l.contains("1 KB, new connection per message"))
        .unwrap();
    // Median e2e 2000; CPU 0.5 ms/msg; peak max(PSS, HWM) = 4 MB; 2000/400 = 5.
    assert_eq!(
        line,
        "| plain | 1 KB, new connection per message | 500 | 2000 | 0.50 | 4.00 | 500 | 400 | 0.50 | 4.00 | 5.00 | 1.00 |"
    );
    let sep = s
        .lines()
        .skip_while(|l| !l.starts_with("| upstream | scenario"))
        .nth(1)
        .unwrap();
    assert_eq!(sep.matches("---|").count(), head.matches(" |").count());
    assert!(
        s.contains("| plain | 1 KB, connections reused | – |"),
        "missing runs are dashes"
    );
}

#[test]
fn latency_delay_and_client_tables_read_their_scenarios() {
    let rows = vec![
        row("postrelay", "seq", "postrelay-load", 1, 10.0),
        row("postrelay", "probe", "postrelay-load", 1, 10.0),
        row("postrelay", "1k-new", "smtp-source", 20, 10.0),
        row("none", "1k-new", "smtp-source", 20, 10.0),
    ];
    let s = section(&rows, "", &[]);
    assert!(
        !s.contains("none intake/s"),
        "the direct runs are no relay: {s}"
    );
    assert!(
        s.contains("| none | 1 KB, new connection per message | smtp-source | 500 |"),
        "{s}"
    );
    assert!(s.contains("| plain | 2.00 | 1.00 / 2.00 / 3.00 |"), "{s}");
    assert!(
        s.contains("| plain | idle, one message at a time | 0.50 / 1.00 / 1.50 |"),
        "{s}"
    );
    assert!(
        s.contains(
            "| postrelay | 1 KB, new connection per message | smtp-source | 500 | 10.0 | 0.50 |"
        ),
        "{s}"
    );
}

#[test]
fn charts_plot_concurrency_and_queue_size() {
    let rows = vec![
        row("postrelay", "conc", "postrelay-load", 1, 100.0),
        row("postrelay", "conc", "postrelay-load", 20, 900.0),
        row("postrelay", "1k-new", "postrelay-load", 5, 7.0),
    ];
    let scale: Vec<ScalePoint> = parse_lines(
        "{\"relay\":\"postrelay\",\"queued\":1000,\"queue_list_s\":0.1,\"rss_mb\":20}\n\n{\"relay\":\"postrelay\",\"queued\":100000,\"queue_list_s\":2}\n",
        Path::new("scale.jsonl"),
    )
    .unwrap();
    let c = charts(&rows, &scale);
    let names: Vec<&str> = c.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "throughput-concurrency",
            "scale-queue_list_s",
            "scale-rss_mb"
        ]
    );
    let conc = &c[0].1;
    assert_eq!(conc.series[1].name, "postrelay end to end");
    assert_eq!(conc.series[1].points, vec![(1.0, 100.0), (20.0, 900.0)]);
    assert_eq!(
        c[1].1.series[0].points,
        vec![(1000.0, 0.1), (100_000.0, 2.0)]
    );
}

#[test]
fn a_bad_line_is_named_by_file_and_number() {
    let err = parse_lines::<ScalePoint>(
        "{\"relay\":\"x\",\"queued\":1}\nnot json\n",
        Path::new("s.jsonl"),
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::Parse { line: 2, .. }), "{err}");
    assert!(err.to_string().starts_with("s.jsonl:2: "));
}

#[test]
fn the_results_replace_only_the_marked_section() {
    let page = format!("# B\nprose\n{BEGIN}\nold\n{END}\nmore prose\n");
    let new = splice(&page, "new table\n").unwrap();
    assert_eq!(
        new,
        format!("# B\nprose\n{BEGIN}\nnew table\n{END}\nmore prose\n")
    );
    assert_eq!(splice(&new, "new table").unwrap(), new, "idempotent");
    assert!(splice("no markers", "x").is_err());
}

#[test]
fn write_puts_the_charts_and_the_section_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results.jsonl");
    let rows = [row("postrelay", "conc", "postrelay-load", 4, 50.0)];
    let text: String = rows
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(&results, text).unwrap();
    let page = dir.path().join("benchmarks.md");
    std::fs::write(&page, format!("x\n{BEGIN}\n{END}\n")).unwrap();
    let args = ReportArgs {
        results,
        scale: Some(dir.path().join("absent.jsonl")),
        page: page.clone(),
        charts: dir.path().join("bench"),
        machine: None,
    };
    let written = write(&args).unwrap();
    assert_eq!(written.len(), 2);
    assert!(
        std::fs::read_to_string(dir.path().join("bench/throughput-concurrency.svg"))
            .unwrap()
            .contains("<svg")
    );
    let md = std::fs::read_to_string(&page).unwrap();
    assert!(md.contains("![Throughput against concurrency"), "{md}");
}

#[test]
fn interleaved_relays_make_one_series_each() {
    let scale: Vec<ScalePoint> = parse_lines(
        "{\"relay\":\"postrelay\",\"queued\":1000,\"rss_mb\":10}\n{\"relay\":\"postfix\",\"queued\":1000,\"rss_mb\":30}\n{\"relay\":\"postrelay\",\"queued\":10000,\"rss_mb\":12}\n{\"relay\":\"postfix\",\"queued\":10000,\"rss_mb\":35}\n",
        Path::new("scale.jsonl"),
    )
    .unwrap();
    let c = charts(&[], &scale);
    let rss = &c[0].1;
    let names: Vec<&str> = rss.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["postrelay", "postfix"]);
    assert_eq!(rss.series[1].points, vec![(1000.0, 30.0), (10_000.0, 35.0)]);
}

#[test]
fn the_budget_table_shows_the_ceiling_and_what_five_times_postfix_leaves() {
    let costed = |relay: &str, e2e: f64| Row {
        client_cpu_s: Some(0.2),
        sink_cpu_s: Some(0.1),
        cpus: Some(2),
        ..row(relay, "1k-new", "postrelay-load", 20, e2e)
    };
    // 1000 messages: relay 0.5 ms, client 0.2, sink 0.1 per message.
    let rows = vec![costed("postrelay", 2400.0), costed("postfix", 400.0)];
    let s = section(&rows, "", &[]);
    let line = s
        .lines()
        .skip_while(|l| !l.starts_with("### What bounds end to end"))
        .find(|l| l.starts_with("| plain | 1 KB, new connection per message |"))
        .expect("a budget line");
    // all three 0.80 ms; 2 CPUs allow 2500/s; 5x postfix is 2000/s, which
    // leaves 2000/2000 - 0.3 = 0.70 ms for the relay.
    assert_eq!(
        line,
        "| plain | 1 KB, new connection per message | 0.50 | 0.20 | 0.10 | 0.80 | 2500 | 2400 | 2000 | 0.70 |"
    );
    // Runs without the client's and the sink's CPU: no table.
    let old = vec![row("postrelay", "1k-new", "postrelay-load", 20, 2400.0)];
    assert!(!section(&old, "", &[]).contains("What bounds end to end"));
}
