//! What bounds the relay's end-to-end rate on a shared machine: the CPU
//! time the relay, the client and the sink each spent per message, the
//! rate the machine's CPUs allow at that cost, and how much CPU per
//! message the relay could spend at most to reach five times Postfix's
//! end-to-end rate while the client and the sink keep costing what they
//! did. A negative budget means no relay could reach it on this machine:
//! the client and the sink alone use up the CPUs.
//!
//! Not for: the relay's own ratios (`tables`).

use std::fmt::Write;

use super::Row;
use super::tables::{LOAD, MATRIX, Metric, Pick, cpu_ms, e2e, header, num, upstreams};

/// The target of issue 14: end to end at least this many times Postfix's.
const TARGET: f64 = 5.0;

fn client_ms(r: &Row) -> Option<f64> {
    Some(r.client_cpu_s? * 1e3 / r.run.accepted as f64)
}
fn sink_ms(r: &Row) -> Option<f64> {
    Some(r.sink_cpu_s? * 1e3 / r.run.accepted as f64)
}
fn cpus(r: &Row) -> Option<f64> {
    r.cpus.map(f64::from)
}

/// One line's numbers: (relay, client, sink) ms per message, the CPUs.
struct Costs {
    relay: f64,
    client: f64,
    sink: f64,
    cpus: f64,
}

impl Costs {
    fn of(p: &Pick<'_>, relay: &str) -> Option<Costs> {
        let get = |m: Metric| p.of(relay, m);
        Some(Costs {
            relay: get(cpu_ms)?,
            client: get(client_ms)?,
            sink: get(sink_ms)?,
            cpus: get(cpus)?,
        })
    }

    fn total(&self) -> f64 {
        self.relay + self.client + self.sink
    }

    /// Messages per second the CPUs allow at this cost.
    fn ceiling(&self) -> f64 {
        self.cpus * 1e3 / self.total()
    }

    /// The relay's CPU per message that would leave room for `rate`.
    fn budget_at(&self, rate: f64) -> f64 {
        self.cpus * 1e3 / rate - self.client - self.sink
    }
}

/// The table, for postrelay (nothing when the runs carry no client or
/// sink CPU: results from before they were measured).
pub fn table(out: &mut String, rows: &[Row]) {
    let mut lines = Vec::new();
    for u in upstreams(rows) {
        for (scenario, text) in MATRIX {
            let p = Pick::new(rows, u, scenario, LOAD);
            let Some(c) = Costs::of(&p, "postrelay") else {
                continue;
            };
            let target = p.of("postfix", e2e).map(|pf| pf * TARGET);
            lines.push(format!(
                "| {u} | {text} | {} | {} | {} | {} | {} | {} | {} | {} |",
                num(Some(c.relay)),
                num(Some(c.client)),
                num(Some(c.sink)),
                num(Some(c.total())),
                num(Some(c.ceiling())),
                num(p.of("postrelay", e2e)),
                num(target),
                num(target.map(|t| c.budget_at(t))),
            ));
        }
    }
    if lines.is_empty() {
        return;
    }
    out.push_str("\n### What bounds end to end: the CPUs the relay shares\n\n");
    header(
        out,
        "| upstream | scenario | postrelay CPU ms/msg | client | sink | all three | ceiling of the CPUs, msg/s | postrelay e2e/s | 5× postfix e2e/s | postrelay CPU budget for 5×, ms/msg |",
    );
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}
