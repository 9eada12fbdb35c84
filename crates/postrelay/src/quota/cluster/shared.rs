//! The counts in Redis: key names, the three Lua scripts and their
//! replies. Each operation is one `EVALSHA` (one round trip; a second
//! and third, `SCRIPT LOAD` and the retry, only after Redis lost its
//! script cache, e.g. after its restart).
//!
//! Keys are `postrelay:{<namespace>}:<account>:<what>`: the namespace in
//! braces is a Redis Cluster hash tag, so every key a script touches is in
//! one slot. Every key expires once it no longer counts (the rate when its
//! bucket is full again, a window one span after its last charge, a
//! cool-down at its end), so the keys of idle accounts vanish.
//!
//! Windows are bucketed: each span is cut into 120 buckets (`BUCKETS` in
//! the scripts), and a
//! charge counts for the whole of the bucket it falls in plus one span, so
//! between one span and one span plus a bucket (1/120 of the span: 30 s of
//! an hour, 12 min of a day). The count in any exact rolling span is
//! therefore never above the maximum; a unit frees up to one bucket later
//! than an exact window would free it.
//!
//! Not for: deciding when Redis is given up for the local share (that is
//! [`super::ClusterStore`]).

use std::time::{Duration, SystemTime};

use redis::aio::ConnectionManager;
use redis::{Script, Value};

use super::super::{Counted, Limit, LimitUse, Limits, QuotaError, Take, Usage, Verdict, Window};

/// Where the server's clock or the caller's comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Redis's `TIME`: one clock for every node, whatever their skew. The
    /// caller's `now` only turns the script's "in so many microseconds"
    /// into a time of the caller's clock.
    Server,
    /// The `now` passed by the caller, for tests with a clock of their
    /// own; only sound when every node's clock is the same one.
    Caller,
}

/// The scripts, hashed once.
pub(super) struct Scripts {
    take: Script,
    usage: Script,
    cool_down: Script,
}

impl Scripts {
    pub fn new() -> Scripts {
        Scripts {
            take: Script::new(concat!(include_str!("clock.lua"), include_str!("take.lua"))),
            usage: Script::new(concat!(
                include_str!("clock.lua"),
                include_str!("usage.lua")
            )),
            cool_down: Script::new(concat!(
                include_str!("clock.lua"),
                include_str!("cool_down.lua")
            )),
        }
    }
}

/// The names of one account's keys.
struct Keys {
    rate: String,
    cool: String,
    windows: Vec<String>,
}

impl Keys {
    fn new(namespace: &str, account: &str, windows: &[Window]) -> Keys {
        let base = format!("postrelay:{{{}}}:{}", escape(namespace), escape(account));
        Keys {
            rate: format!("{base}:rate"),
            cool: format!("{base}:cool"),
            windows: windows
                .iter()
                .map(|w| format!("{base}:{}", w.label()))
                .collect(),
        }
    }
}

/// `account` with every byte outside `[A-Za-z0-9._@+-]` as `%XX`: no
/// `:` to confuse the key's parts, no brace to move the hash tag.
pub(super) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn now_arg(clock: Clock, now: SystemTime) -> String {
    match clock {
        Clock::Server => String::new(),
        Clock::Caller => micros(
            now.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        )
        .to_string(),
    }
}

/// What went wrong with Redis: the connection, a timeout, or a reply
/// that is not what the script returns (all mean "count locally now").
pub(super) type RedisResult<T> = Result<T, redis::RedisError>;

/// The store's view of Redis: one connection (multiplexed, reconnecting).
pub(super) struct Shared<'a> {
    pub conn: &'a ConnectionManager,
    pub scripts: &'a Scripts,
    pub namespace: &'a str,
    pub clock: Clock,
}

impl Shared<'_> {
    /// One all-or-nothing take. The outer `Result` is Redis's; the inner
    /// one the store's answer.
    pub async fn take(&self, take: &Take<'_>) -> RedisResult<Result<Verdict, QuotaError>> {
        let limits = take.limits;
        let keys = Keys::new(self.namespace, take.account, &limits.windows);
        let mut call = self.scripts.take.prepare_invoke();
        call.key(&keys.rate).key(&keys.cool);
        for k in &keys.windows {
            call.key(k);
        }
        let (interval, burst) = match &limits.rate {
            Some(r) => (
                r.per.as_secs_f64() * 1e6 / f64::from(r.count.max(1)),
                r.burst.max(1),
            ),
            None => (0.0, 0),
        };
        call.arg(now_arg(self.clock, take.now))
            .arg(take.messages)
            .arg(take.recipients)
            .arg(interval)
            .arg(burst);
        for w in &limits.windows {
            call.arg(micros(w.span.duration()))
                .arg(counted_arg(w.counts))
                .arg(w.max);
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        decode_take(&reply, take)
    }

    /// The account's use of each limit.
    pub async fn usage(
        &self,
        account: &str,
        limits: &Limits,
        now: SystemTime,
    ) -> RedisResult<Usage> {
        let keys = Keys::new(self.namespace, account, &limits.windows);
        let mut call = self.scripts.usage.prepare_invoke();
        call.key(&keys.rate).key(&keys.cool);
        for k in &keys.windows {
            call.key(k);
        }
        call.arg(now_arg(self.clock, now));
        for w in &limits.windows {
            call.arg(micros(w.span.duration()));
        }
        let reply: Vec<Value> = call.invoke_async(&mut self.conn.clone()).await?;
        decode_usage(&reply, limits, now)
    }

    /// A cool-down until `until` (of the caller's clock).
    pub async fn cool_down(
        &self,
        account: &str,
        until: SystemTime,
        reason: &str,
        now: SystemTime,
    ) -> RedisResult<()> {
        let keys = Keys::new(self.namespace, account, &[]);
        let left = until.duration_since(now).unwrap_or_default();
        let _: i64 = self
            .scripts
            .cool_down
            .key(&keys.cool)
            .arg(now_arg(self.clock, now))
            .arg(micros(left))
            .arg(reason)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

fn counted_arg(c: Counted) -> &'static str {
    match c {
        Counted::Messages => "m",
        Counted::Recipients => "r",
    }
}

fn protocol_error(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "postrelay quota script",
        what.to_owned(),
    ))
}

fn int(v: Option<&Value>) -> RedisResult<i64> {
    match v {
        Some(Value::Int(i)) => Ok(*i),
        _ => Err(protocol_error("expected an integer")),
    }
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn after(now: SystemTime, us: i64) -> SystemTime {
    now + Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// The limit a script's index names: -1 the cool-down, 0 the rate, k the
/// k-th window.
fn limit_of(limits: &Limits, which: i64, reason: String) -> RedisResult<Limit> {
    let bad = || protocol_error("the script named a limit that was not asked about");
    match which {
        -1 => Ok(Limit::CoolDown { reason }),
        0 => limits.rate.map(Limit::Rate).ok_or_else(bad),
        k => usize::try_from(k - 1)
            .ok()
            .and_then(|i| limits.windows.get(i))
            .map(|w| Limit::Window(*w))
            .ok_or_else(bad),
    }
}

fn decode_take(reply: &[Value], take: &Take<'_>) -> RedisResult<Result<Verdict, QuotaError>> {
    match int(reply.first())? {
        0 => Ok(Ok(Verdict::Granted)),
        1 => {
            let limit = limit_of(take.limits, int(reply.get(2))?, text(reply.get(3)))?;
            let until = after(take.now, int(reply.get(1))?);
            Ok(Ok(Verdict::Wait { until, limit }))
        }
        2 => {
            let limit = limit_of(take.limits, int(reply.get(2))?, String::new())?;
            let asked = match &limit {
                Limit::Window(w) => take.need(w),
                _ => u64::from(take.messages),
            };
            Ok(Err(QuotaError::NeverFits { limit, asked }))
        }
        _ => Err(protocol_error("unknown answer")),
    }
}

fn decode_usage(reply: &[Value], limits: &Limits, now: SystemTime) -> RedisResult<Usage> {
    let mut out = Vec::new();
    let cool = int(reply.first())?;
    if cool > 0 {
        out.push(LimitUse {
            limit: Limit::CoolDown {
                reason: text(reply.get(1)),
            },
            used: 1,
            max: 1,
            frees_at: Some(after(now, cool)),
        });
    }
    if let Some(rate) = &limits.rate {
        let ahead = u64::try_from(int(reply.get(2))?).unwrap_or(0);
        let interval = micros(rate.per)
            .div_euclid(u64::from(rate.count.max(1)))
            .max(1);
        let used = ahead.div_ceil(interval);
        let next = ahead.saturating_sub(used.saturating_sub(1) * interval);
        out.push(LimitUse {
            limit: Limit::Rate(*rate),
            used,
            max: u64::from(rate.burst.max(1)),
            frees_at: (used > 0).then(|| now + Duration::from_micros(next)),
        });
    }
    for (k, w) in limits.windows.iter().enumerate() {
        let used = u64::try_from(int(reply.get(3 + 2 * k))?).unwrap_or(0);
        let frees = int(reply.get(4 + 2 * k))?;
        out.push(LimitUse {
            limit: Limit::Window(*w),
            used,
            max: u64::from(w.max),
            frees_at: (frees >= 0).then(|| after(now, frees)),
        });
    }
    Ok(Usage { limits: out })
}
