//! The queue-size side of `scripts/bench-scale` (issue 14, item 5).
//!
//! - `scale_probe fill CONFIG N [SHAPE]`: queues N deferred messages into
//!   the spool of CONFIG through the queue's one door (`Queue::accept`,
//!   group commit and all, exactly as intake does), each with the envelope
//!   a failed attempt leaves (SHAPE: an envelope file to copy the delivery
//!   state from, e.g. one the daemon wrote after its relay refused; without
//!   it, one like that is built here), due a day later. The daemon must be
//!   stopped (the spool's lock is taken).
//! - `scale_probe sched CONFIG [M]`: loads the queue of CONFIG as the
//!   daemon does (recovery, then the index) and measures the scheduler's
//!   own work per message: make everything due (`flush`), then M times take
//!   the earliest due message and put it back a day later (M: 10,000), as
//!   the scheduler and the end of a failed attempt do; the CPU time of that
//!   loop per message is `sched_us_per_msg`. Prints one JSON line; `load_s`
//!   is the start-up's recovery and index. With `SCALE_PROBE_REREAD=1` the
//!   index is built as it was before recovery's findings were used (every
//!   envelope read again), for comparison.
//!
//! Not a test and not part of the daemon: a measuring tool. Timings depend
//! on the machine; compare runs made side by side.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use postrelay::config::{self, LogFormat};
use postrelay::maillog::MailLog;
use postrelay::queue::Queue;
use postrelay::spool::{Envelope, Origin, Recipient, Spool, SpoolOptions, SyncMode, now_ms};

const DAY_MS: u64 = 86_400_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("fill") if args.len() >= 3 => fill(&args[1], &args[2], args.get(3)),
        Some("sched") if args.len() >= 2 => sched(&args[1], args.get(2)),
        _ => Err("usage: scale_probe fill CONFIG N [SHAPE] | sched CONFIG [M]".into()),
    };
    if let Err(e) = result {
        eprintln!("scale_probe: {e}");
        std::process::exit(1);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;
type Res = Result<(), Error>;

/// The spool of `config`, opened as the daemon opens it, and its queue.
fn open_queue(config: &config::Config) -> Result<Queue, Error> {
    let options = SpoolOptions {
        sync: SyncMode::Filesystem,
        ..SpoolOptions::default()
    };
    let spool = Spool::open_with(&config.spool, options)?;
    let found = spool.recover()?.found;
    let log = Arc::new(MailLog::with_writer(
        Box::new(std::io::sink()),
        "probe",
        LogFormat::Postfix,
    ));
    let router = Arc::new(config.router());
    if std::env::var_os("SCALE_PROBE_REREAD").is_some() {
        // The start-up before it used recovery's findings: every envelope
        // read a second time to build the index.
        return Ok(Queue::load(spool, log, router)?);
    }
    Ok(Queue::load_recovered(spool, found, log, router))
}

/// The delivery state a refused attempt leaves: from `shape` if given.
fn deferred_state(shape: Option<&String>) -> Result<Envelope, Error> {
    if let Some(path) = shape {
        return Ok(Envelope::from_json(&std::fs::read(path)?)?);
    }
    let id = postrelay::spool::QueueId::generate();
    let why = "connect to 127.0.0.1:9: Connection refused";
    let mut rcpt = Recipient::new("rcpt@example.net");
    rcpt.last_reply = Some(why.into());
    let mut env = Envelope::new(
        id,
        Origin::Smtp {
            peer: "127.0.0.1:40000".into(),
            helo: "client.example".into(),
        },
        "sender@example.org".into(),
        vec![rcpt],
    );
    env.attempts = 1;
    env.reason = Some(format!("relay sink: {why}"));
    Ok(env)
}

fn fill(config: &str, n: &str, shape: Option<&String>) -> Res {
    let config = config::load(Path::new(config))?;
    let n: usize = n.parse()?;
    let template = deferred_state(shape)?;
    let queue = open_queue(&config)?;
    let rt = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    rt.block_on(async {
        // Many at once, as many SMTP sessions would: the committer batches.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            if tasks.len() >= 256 {
                tasks.join_next().await.ok_or("no task")???;
            }
            let (q, t) = (queue.clone(), template.clone());
            tasks.spawn(async move { queue_one(&q, &t, i).await });
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        Ok::<(), Error>(())
    })?;
    queue.shutdown();
    eprintln!(
        "queued {n} deferred messages in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Queues one message with the template's state, due a day from now.
async fn queue_one(queue: &Queue, template: &Envelope, i: usize) -> Res {
    let mut body = queue.new_body()?;
    let mut text = format!(
        "Received: from client.example (localhost [127.0.0.1])\r\n\tby bench.test (postrelay) with ESMTP id {}\r\n\
         From: sender@example.org\r\nTo: rcpt@example.net\r\nSubject: scale {i}\r\n\
         Message-ID: <scale-{i}@example.org>\r\n\r\n",
        body.id()
    );
    while text.len() < 1024 {
        text.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    body.write_all(text.as_bytes())?;
    let mut env = template.clone();
    env.id = *body.id();
    env.created_ms = env.id.created_ms();
    env.next_attempt_ms = now_ms() + DAY_MS;
    queue.accept(body, env).await?;
    Ok(())
}

fn sched(config: &str, samples: Option<&String>) -> Res {
    let config = config::load(Path::new(config))?;
    let m: usize = samples.map_or(Ok(10_000), |s| s.parse())?;
    let started = Instant::now();
    let queue = open_queue(&config)?;
    let load = started.elapsed();
    let n = queue.len();
    let t = Instant::now();
    queue.flush();
    let flush = t.elapsed();
    let now = now_ms();
    let mut taken = 0usize;
    // CPU time of this thread, not wall time: on a shared machine a
    // preemption in the middle of the loop would be counted otherwise.
    let t = thread_cpu();
    for _ in 0..m.min(n) {
        let Some((id, _)) = queue.take_due(now) else {
            break;
        };
        queue.abandon_attempt(&id, now + DAY_MS);
        taken += 1;
    }
    let per = thread_cpu().saturating_sub(t);
    queue.shutdown();
    let us = |d: Duration, k: usize| d.as_secs_f64() * 1e6 / k.max(1) as f64;
    println!(
        "{{\"queued\":{n},\"load_s\":{:.3},\"flush_us_per_msg\":{:.3},\"sched_us_per_msg\":{:.3},\"samples\":{taken}}}",
        load.as_secs_f64(),
        us(flush, n),
        us(per, taken)
    );
    Ok(())
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(Duration::ZERO, Duration::from)
}
