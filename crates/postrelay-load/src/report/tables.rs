//! The results section's tables and the charts' data, from the rows of a
//! benchmark run. Scenario names are those `scripts/bench` gives: `1k-new`,
//! `1k-reuse`, `100k-new`, `100k-reuse`, `rcpt-new`, `rcpt-reuse` (the
//! matrix), `seq` (one session), `probe` (an idle relay, one message at a
//! time) and `conc` (1 KB at several concurrencies).

use std::fmt::Write;

use super::svg::{Chart, Series};
use super::{Row, ScalePoint};

pub(super) const LOAD: &str = "postrelay-load";
pub(super) const MATRIX: [(&str, &str); 6] = [
    ("1k-new", "1 KB, new connection per message"),
    ("1k-reuse", "1 KB, connections reused"),
    ("100k-new", "100 KB, new connection per message"),
    ("100k-reuse", "100 KB, connections reused"),
    ("rcpt-new", "1 KB to 10 recipients, new connection"),
    ("rcpt-reuse", "1 KB to 10 recipients, reused"),
];

/// The median of the values present.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => v.get(n / 2).copied(),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub(super) type Metric = fn(&Row) -> Option<f64>;

fn intake(r: &Row) -> Option<f64> {
    Some(r.run.intake_per_s)
}
pub(super) fn e2e(r: &Row) -> Option<f64> {
    r.run.e2e_per_s
}
pub(super) fn cpu_ms(r: &Row) -> Option<f64> {
    Some(r.cpu_s? * 1e3 / (r.run.accepted as f64))
}
/// A single process's exact peak, or the sampled sum of PSS of many.
fn mem_mb(r: &Row) -> Option<f64> {
    let m = r.mem.as_ref()?;
    Some(m.peak_pss_kb.max(m.max_hwm_kb) as f64 / 1024.0)
}
fn wall_ms(r: &Row) -> Option<f64> {
    Some(r.run.intake_s * 1e3 / r.run.accepted as f64)
}

pub(super) struct Pick<'a> {
    rows: &'a [Row],
    upstream: &'a str,
    scenario: &'a str,
    client: &'a str,
}

impl<'a> Pick<'a> {
    pub(super) fn new(
        rows: &'a [Row],
        upstream: &'a str,
        scenario: &'a str,
        client: &'a str,
    ) -> Pick<'a> {
        Pick {
            rows,
            upstream,
            scenario,
            client,
        }
    }

    pub(super) fn of(&self, relay: &str, m: Metric) -> Option<f64> {
        median(
            self.rows
                .iter()
                .filter(|r| {
                    r.relay == relay
                        && r.upstream == self.upstream
                        && r.scenario == self.scenario
                        && r.client == self.client
                })
                .filter_map(m)
                .collect(),
        )
    }
}

/// The relay name of runs straight from the client to the sink.
pub const DIRECT: &str = "none";

/// The relays in the rows, postrelay first (not the direct runs).
fn relays(rows: &[Row]) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for r in rows {
        if r.relay != DIRECT && !v.contains(&r.relay) {
            v.push(r.relay.clone());
        }
    }
    v.sort_by_key(|r| r != "postrelay");
    v
}

/// A number for a table cell; a dash for none.
pub fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? / b?).filter(|r| r.is_finite())
}

pub(super) fn upstreams(rows: &[Row]) -> Vec<&str> {
    ["plain", "tls"]
        .into_iter()
        .filter(|u| rows.iter().any(|r| r.upstream == *u))
        .collect()
}

/// A table's head line and its separator.
pub(super) fn header(out: &mut String, head: &str) {
    let _ = writeln!(
        out,
        "{head}\n|{}",
        "---|".repeat(head.matches(" |").count())
    );
}

fn matrix(out: &mut String, rows: &[Row], relays: &[String]) {
    let others = relays.get(1..).unwrap_or_default();
    let mut head = "| upstream | scenario |".to_owned();
    for r in relays {
        let _ = write!(
            head,
            " {r} intake/s | {r} e2e/s | {r} CPU ms/msg | {r} peak MB |"
        );
    }
    for o in others {
        let _ = write!(head, " e2e ÷ {o} | CPU ÷ {o} |");
    }
    header(out, &head);
    for u in upstreams(rows) {
        for (scenario, text) in MATRIX {
            let p = Pick::new(rows, u, scenario, LOAD);
            let mut line = format!("| {u} | {text} |");
            for r in relays {
                let _ = write!(
                    line,
                    " {} | {} | {} | {} |",
                    num(p.of(r, intake)),
                    num(p.of(r, e2e)),
                    num(p.of(r, cpu_ms)),
                    num(p.of(r, mem_mb))
                );
            }
            for o in others {
                let _ = write!(
                    line,
                    " {} | {} |",
                    num(ratio(p.of("postrelay", e2e), p.of(o, e2e))),
                    num(ratio(p.of("postrelay", cpu_ms), p.of(o, cpu_ms)))
                );
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

fn lat50(r: &Row) -> Option<f64> {
    Some(r.run.latency_ms?.p50)
}
fn lat90(r: &Row) -> Option<f64> {
    Some(r.run.latency_ms?.p90)
}
fn lat99(r: &Row) -> Option<f64> {
    Some(r.run.latency_ms?.p99)
}
fn delay50(r: &Row) -> Option<f64> {
    Some(r.run.delay_ms?.p50)
}
fn delay90(r: &Row) -> Option<f64> {
    Some(r.run.delay_ms?.p90)
}
fn delay99(r: &Row) -> Option<f64> {
    Some(r.run.delay_ms?.p99)
}

/// "p50 / p90 / p99" of one relay.
fn three(p: &Pick<'_>, relay: &str, ms: [Metric; 3]) -> String {
    let [a, b, c] = ms.map(|m| num(p.of(relay, m)));
    format!("{a} / {b} / {c}")
}

fn latency(out: &mut String, rows: &[Row], relays: &[String]) {
    let others = relays.get(1..).unwrap_or_default();
    let mut head = "| upstream |".to_owned();
    for r in relays {
        let _ = write!(head, " {r} ms/msg | {r} p50 / p90 / p99 ms |");
    }
    for o in others {
        let _ = write!(head, " ms/msg ÷ {o} |");
    }
    header(out, &head);
    for u in upstreams(rows) {
        let p = Pick::new(rows, u, "seq", LOAD);
        let mut line = format!("| {u} |");
        for r in relays {
            let _ = write!(
                line,
                " {} | {} |",
                num(p.of(r, wall_ms)),
                three(&p, r, [lat50, lat90, lat99])
            );
        }
        for o in others {
            let _ = write!(
                line,
                " {} |",
                num(ratio(p.of("postrelay", wall_ms), p.of(o, wall_ms)))
            );
        }
        let _ = writeln!(out, "{line}");
    }
}

fn delay(out: &mut String, rows: &[Row], relays: &[String]) {
    let mut head = "| upstream | load |".to_owned();
    for r in relays {
        let _ = write!(head, " {r} p50 / p90 / p99 ms |");
    }
    header(out, &head);
    for u in upstreams(rows) {
        for (scenario, text) in [
            ("probe", "idle, one message at a time"),
            ("1k-new", "under load (1 KB, new connections)"),
            ("1k-reuse", "under load (1 KB, reused)"),
        ] {
            let p = Pick::new(rows, u, scenario, LOAD);
            let mut line = format!("| {u} | {text} |");
            for r in relays {
                let _ = write!(line, " {} |", three(&p, r, [delay50, delay90, delay99]));
            }
            let _ = writeln!(out, "{line}");
        }
    }
}

fn clients(out: &mut String, rows: &[Row], relays: &[String]) {
    header(
        out,
        "| relay (none: the client straight into the sink) | scenario | client | intake/s | e2e/s | CPU ms/msg |",
    );
    let direct = [DIRECT.to_owned()];
    for r in relays.iter().chain(&direct) {
        for (scenario, text) in MATRIX.iter().take(2) {
            for client in [LOAD, "smtp-source"] {
                let p = Pick::new(rows, "plain", scenario, client);
                if p.of(r, intake).is_none() {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "| {r} | {text} | {client} | {} | {} | {} |",
                    num(p.of(r, intake)),
                    num(p.of(r, e2e)),
                    num(p.of(r, cpu_ms))
                );
            }
        }
    }
}

/// The results section: machine notes, tables, chart images.
pub fn section(rows: &[Row], machine: &str, images: &[(String, String)]) -> String {
    let relays = relays(rows);
    let mut out = String::new();
    if !machine.trim().is_empty() {
        let _ = writeln!(out, "{}\n", machine.trim());
    }
    out.push_str("### Throughput and cost\n\n");
    matrix(&mut out, rows, &relays);
    out.push_str(
        "\n### Single-session latency (one session, 1 KB, new connection per message)\n\n",
    );
    latency(&mut out, rows, &relays);
    out.push_str("\n### Accept-to-hand-off delay (relay's 250 → the sink's 250)\n\n");
    delay(&mut out, rows, &relays);
    out.push_str("\n### The client: postrelay-load beside smtp-source (plain sink)\n\n");
    clients(&mut out, rows, &relays);
    super::budget::table(&mut out, rows);
    if !images.is_empty() {
        out.push_str("\n### Charts\n\n");
        for (title, name) in images {
            let _ = writeln!(out, "![{title}](bench/{name}.svg)\n");
        }
    }
    out
}

/// Points of `m` against x for one relay's rows.
fn points(rows: &[&Row], x: fn(&Row) -> f64, m: Metric) -> Vec<(f64, f64)> {
    let mut xs: Vec<f64> = rows.iter().map(|r| x(r)).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    xs.into_iter()
        .filter_map(|xv| {
            let y = median(
                rows.iter()
                    .filter(|r| x(r) == xv)
                    .filter_map(|r| m(r))
                    .collect(),
            )?;
            Some((xv, y))
        })
        .collect()
}

type ScaleMetric = (&'static str, &'static str, fn(&ScalePoint) -> Option<f64>);

const SCALE: [ScaleMetric; 4] = [
    ("queue_list_s", "queue listing, s", |p| p.queue_list_s),
    ("startup_s", "start-up, s", |p| p.startup_s),
    ("rss_mb", "resident memory, MB", |p| p.rss_mb),
    ("sched_us_per_msg", "scheduling, µs per message", |p| {
        p.sched_us_per_msg
    }),
];

/// The charts to draw, by file name.
pub fn charts(rows: &[Row], scale: &[ScalePoint]) -> Vec<(String, Chart)> {
    let mut out = Vec::new();
    let mut series = Vec::new();
    for relay in relays(rows) {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| {
                r.relay == relay
                    && r.scenario == "conc"
                    && r.upstream == "plain"
                    && r.client == LOAD
            })
            .collect();
        for (what, m) in [("intake", intake as Metric), ("end to end", e2e)] {
            let pts = points(&mine, |r| r.run.sessions as f64, m);
            if !pts.is_empty() {
                series.push(Series {
                    name: format!("{relay} {what}"),
                    points: pts,
                });
            }
        }
    }
    if !series.is_empty() {
        out.push((
            "throughput-concurrency".to_owned(),
            Chart {
                title: "Throughput against concurrency (1 KB, new connection per message)".into(),
                x_label: "concurrent client sessions".into(),
                y_label: "messages per second".into(),
                log_x: false,
                series,
            },
        ));
    }
    // One series per relay, in the order the file first names them (the
    // rows of different relays are interleaved by queue size).
    let mut names: Vec<&str> = Vec::new();
    for p in scale {
        if !names.contains(&p.relay.as_str()) {
            names.push(&p.relay);
        }
    }
    for (key, label, get) in SCALE {
        let series: Vec<Series> = names
            .iter()
            .map(|relay| Series {
                name: (*relay).to_owned(),
                points: scale
                    .iter()
                    .filter(|p| p.relay == *relay)
                    .filter_map(|p| Some((p.queued, get(p)?)))
                    .collect(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            out.push((
                format!("scale-{key}"),
                Chart {
                    title: format!("Cost against queue size: {label}"),
                    x_label: "messages in the queue".into(),
                    y_label: label.into(),
                    log_x: true,
                    series,
                },
            ));
        }
    }
    out
}
