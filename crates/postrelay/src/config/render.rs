//! [`Config`] back to TOML, for `postrelay check-config`.
//!
//! Every setting is written out with its effective value (defaults included,
//! `$hostname` expanded), in the order of the example file, using the same
//! units an administrator would write. `parse(render(c))` equals `c`.

use std::fmt::Write;
use std::path::Path;

use super::units::{format_duration, format_size};
use super::{Config, RelayConfig, Submission};

pub(super) fn render(c: &Config) -> String {
    let mut out = String::new();
    let o = &mut out;
    kv(o, "hostname", string(&c.hostname));
    kv(o, "spool", path(&c.spool));
    kv(o, "control_socket", path(&c.control_socket));

    o.push_str("\n[daemon]\n");
    kv(o, "user", string(&c.daemon.user));
    intake(o, &c.intake);

    let q = &c.queue;
    o.push_str("\n[queue]\n");
    kv(o, "min_backoff", duration(q.min_backoff));
    kv(o, "max_backoff", duration(q.max_backoff));
    kv(o, "max_lifetime", duration(q.max_lifetime));
    kv(o, "min_free_space", format_size(q.min_free_space));
    kv(o, "sync", string(q.sync.as_str()));

    let d = &c.delivery;
    o.push_str("\n[delivery]\n");
    kv(o, "enabled", d.enabled.to_string());
    match &d.sasl_passwd {
        Some(p) => kv(o, "sasl_passwd", path(p)),
        None => o.push_str("# sasl_passwd: not set\n"),
    }
    kv(o, "max_workers", d.max_workers.to_string());

    let b = &c.bounce;
    o.push_str("\n[bounce]\n");
    kv(o, "sender", string(&b.sender));
    kv(o, "postmaster", string(&b.postmaster));
    let delay = b.delay_warning.map_or_else(|| string("off"), duration);
    kv(o, "delay_warning", delay);

    routing(o, &c.routing);

    let lc = &c.local;
    o.push_str("\n[local]\n");
    kv(o, "mailbox", string(lc.mailbox.as_str()));
    kv(o, "maildir", string(&lc.maildir));
    kv(o, "mbox_dir", path(&lc.mbox_dir));
    kv(o, "recipient_delimiter", string(&lc.recipient_delimiter));
    match &lc.catch_all {
        Some(u) => kv(o, "catch_all", string(u)),
        None => o.push_str("# catch_all: not set, so unknown local recipients are refused\n"),
    }
    kv(o, "delivery_timeout", duration(lc.delivery_timeout));

    log(o, &c.log);

    o.push_str("\n[metrics]\n");
    match &c.metrics.listen {
        Some(a) => kv(o, "listen", string(&a.to_string())),
        None => o.push_str("# listen: not set, so there is no metrics endpoint\n"),
    }

    if let Some(cl) = &c.cluster {
        cluster(o, cl);
    }

    for r in &c.relays {
        relay(o, r, c.delivery.sasl_passwd.as_deref());
    }
    out
}

/// `[cluster]`, when written (the password file's name, never the password).
fn cluster(o: &mut String, c: &super::ClusterSettings) {
    o.push_str("\n[cluster]\n");
    kv(o, "url", string(&c.url));
    if let Some(u) = &c.username {
        kv(o, "username", string(u));
    }
    if let Some(p) = &c.password_file {
        kv(o, "password_file", path(p));
    }
    kv(o, "namespace", string(&c.namespace));
    kv(o, "local_share", c.local_share.get().to_string());
    kv(o, "timeout", duration(c.timeout));
    kv(o, "retry", duration(c.retry));
}

/// `[intake]`, with `[intake.submission]`.
fn intake(o: &mut String, i: &super::Intake) {
    o.push_str("\n[intake]\n");
    kv(o, "listen", array(i.listen.iter().map(|a| a.to_string())));
    kv(
        o,
        "mynetworks",
        array(i.mynetworks.iter().map(|n| n.to_string())),
    );
    kv(o, "local_domains", array(i.local_domains.iter().cloned()));
    kv(o, "message_size_limit", format_size(i.message_size_limit));
    kv(o, "header_size_limit", format_size(i.header_size_limit));
    kv(o, "line_length_limit", i.line_length_limit.to_string());
    kv(
        o,
        "command_length_limit",
        i.command_length_limit.to_string(),
    );
    kv(o, "max_recipients", i.max_recipients.to_string());
    kv(o, "max_connections", i.max_connections.to_string());
    kv(
        o,
        "max_connections_per_client",
        i.max_connections_per_client.to_string(),
    );
    kv(o, "max_errors", i.max_errors.to_string());
    kv(o, "command_timeout", duration(i.command_timeout));
    kv(o, "data_timeout", duration(i.data_timeout));
    kv(o, "line_timeout", duration(i.line_timeout));
    kv(o, "session_timeout", duration(i.session_timeout));
    kv(o, "maildrop_rescan", duration(i.maildrop_rescan));
    submission(o, i.submission.as_ref());
}

/// `[routing]`: the tables' paths and sender rewriting.
fn routing(o: &mut String, r: &super::RoutingSettings) {
    o.push_str("\n[routing]\n");
    let paths = r.table_paths();
    for key in ["transport", "aliases", "sender_relay", "generic"] {
        match paths.iter().find(|(k, _)| *k == key) {
            Some((_, p)) => kv(o, key, path(p)),
            None => {
                let _ = writeln!(o, "# {key}: not set");
            }
        }
    }
    match &r.rewrite_senders {
        Some(a) => kv(o, "rewrite_senders", string(a)),
        None => o.push_str("# rewrite_senders: not set, so local senders are kept\n"),
    }
}

/// `[log]`.
fn log(o: &mut String, l: &super::LogSettings) {
    o.push_str("\n[log]\n");
    kv(o, "level", string(&l.level));
    kv(o, "format", string(l.format.as_str()));
    match &l.file {
        Some(f) => kv(o, "file", path(f)),
        None => o.push_str("# file: not set\n"),
    }
    kv(o, "to", string(l.to.as_str()));
    kv(o, "syslog_name", string(&l.syslog_name));
    kv(o, "syslog_socket", path(&l.syslog_socket));
}

/// The `[intake.submission]` table, or a comment when there is none. The
/// key and users files are named, never shown.
fn submission(o: &mut String, s: Option<&Submission>) {
    let Some(s) = s else {
        o.push_str("# [intake.submission]: not set, so no submission listener\n");
        return;
    };
    o.push_str("\n[intake.submission]\n");
    kv(o, "listen", array(s.listen.iter().map(|a| a.to_string())));
    kv(
        o,
        "implicit",
        array(s.implicit.iter().map(|a| a.to_string())),
    );
    kv(o, "cert", path(&s.cert));
    kv(o, "key", path(&s.key));
    kv(o, "users", path(&s.users_file));
    kv(o, "max_auth_failures", s.max_auth_failures.to_string());
    kv(o, "auth_lockout", duration(s.auth_lockout));
    kv(o, "auth_delay", duration(s.auth_delay));
    kv(o, "max_connections", s.max_connections.to_string());
    kv(
        o,
        "max_connections_per_client",
        s.max_connections_per_client.to_string(),
    );
}

/// One `[[relay]]` table. Passwords are never written: credentials from a
/// `password_file` are rendered as that file's name (which `parse` reads
/// again), those from `sasl_passwd` as a comment.
fn relay(o: &mut String, r: &RelayConfig, sasl_passwd: Option<&Path>) {
    o.push_str("\n[[relay]]\n");
    kv(o, "name", string(&r.name));
    match &r.provider {
        Some(p) => {
            kv(o, "provider", string(&p.id));
            o.push_str(&p.describe());
        }
        None => o.push_str("# provider: not set\n"),
    }
    kv(o, "host", string(&r.host));
    kv(o, "port", r.port.to_string());
    kv(o, "tls", string(r.tls.as_str()));
    kv(o, "security", string(r.security.as_str()));
    match &r.ca_file {
        Some(f) => kv(o, "ca_file", path(f)),
        None => o.push_str("# ca_file: not set, so the system's trusted CAs are used\n"),
    }
    match &r.tls_name {
        Some(n) => kv(o, "tls_name", string(n)),
        None => o.push_str("# tls_name: not set, so the certificate must be valid for host\n"),
    }
    match (&r.credentials, &r.oauth) {
        (_, Some(oa)) => kv(o, "username", string(&oa.username)),
        (None, None) => o.push_str("# credentials: none, so no AUTH\n"),
        (Some(cr), None) if Some(cr.source.as_path()) == sasl_passwd => {
            let _ = writeln!(
                o,
                "# credentials: user {} from delivery.sasl_passwd",
                string(&cr.username)
            );
        }
        (Some(cr), None) => {
            kv(o, "username", string(&cr.username));
            kv(o, "password_file", path(&cr.source));
        }
    }
    kv(
        o,
        "allow_plaintext_auth",
        r.allow_plaintext_auth.to_string(),
    );
    kv(o, "verbose", r.verbose.to_string());
    kv(o, "fallbacks", array(r.fallbacks.iter().cloned()));
    kv(o, "max_connections", r.max_connections.to_string());
    kv(
        o,
        "max_messages_per_connection",
        r.max_messages_per_connection.to_string(),
    );
    kv(o, "idle_timeout", duration(r.idle_timeout));

    let t = &r.timeouts;
    o.push_str("\n[relay.timeouts]\n");
    for (key, value) in [
        ("connect", t.connect),
        ("greeting", t.greeting),
        ("ehlo", t.ehlo),
        ("tls", t.tls),
        ("auth", t.auth),
        ("mail", t.mail),
        ("rcpt", t.rcpt),
        ("data", t.data),
        ("data_end", t.data_end),
        ("rset", t.rset),
        ("quit", t.quit),
    ] {
        kv(o, key, duration(value));
    }
    if let Some(oa) = &r.oauth {
        oauth(o, oa);
    }
    limits(o, &r.limits);
}

/// A relay's `[relay.limits]`, every key written (0 and "off": none).
fn limits(o: &mut String, l: &super::RelayLimits) {
    use crate::quota::{Counted, Span};
    let q = &l.quota;
    o.push_str("\n[relay.limits]\n");
    kv(o, "account", string(&q.account));
    match &q.rate {
        Some(r) => {
            let unit = match r.per.as_secs() {
                60 => "min",
                3600 => "h",
                _ => "s",
            };
            kv(o, "rate", string(&format!("{}/{unit}", r.count)));
            kv(o, "burst", r.burst.to_string());
        }
        None => kv(o, "rate", string("off")),
    }
    for (key, span, counts) in [
        ("messages_per_hour", Span::Hour, Counted::Messages),
        ("messages_per_day", Span::Day, Counted::Messages),
        ("recipients_per_hour", Span::Hour, Counted::Recipients),
        ("recipients_per_day", Span::Day, Counted::Recipients),
    ] {
        let w = q
            .windows
            .iter()
            .find(|w| w.span == span && w.counts == counts);
        kv(o, key, w.map_or(0, |w| w.max).to_string());
    }
    let per_tx = q.recipients_per_transaction.unwrap_or(0);
    kv(o, "recipients_per_transaction", per_tx.to_string());
    match &l.spill_to {
        Some(s) => kv(o, "spill_to", string(s)),
        None => o.push_str("# spill_to: not set, so mail waits for this relay's limits\n"),
    }
    kv(
        o,
        "throttle_replies",
        array(l.throttle_replies.iter().cloned()),
    );
    kv(o, "cool_down", duration(l.cool_down));
}

fn kv(out: &mut String, key: &str, value: String) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{key} = {value}");
}

/// A TOML basic string, escaped by the toml crate itself.
fn string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// Paths in a config are always UTF-8 (they came from TOML strings or from
/// UTF-8 constants), so the lossy conversion never loses anything here.
fn path(p: &Path) -> String {
    string(&p.to_string_lossy())
}

fn duration(d: std::time::Duration) -> String {
    string(&format_duration(d))
}

fn array(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|s| string(&s)).collect();
    format!("[{}]", items.join(", "))
}

/// `[relay.oauth]`, every key written out; the client secret as the name
/// of its file.
fn oauth(o: &mut String, a: &super::OAuthConfig) {
    o.push_str("\n[relay.oauth]\n");
    kv(o, "provider", string(a.provider.as_str()));
    match &a.tenant {
        Some(t) => kv(o, "tenant", string(t)),
        None => o.push_str("# tenant: Microsoft only\n"),
    }
    kv(o, "flow", string(a.flow.as_str()));
    kv(o, "client_id", string(&a.client_id));
    match &a.client_secret_file {
        Some(f) => kv(o, "client_secret_file", path(f)),
        None => o.push_str("# client_secret_file: not set (a public client)\n"),
    }
    kv(o, "token_url", string(&a.token_url));
    match &a.device_url {
        Some(u) => kv(o, "device_url", string(u)),
        None => o.push_str("# device_url: not set\n"),
    }
    match &a.auth_url {
        Some(u) => kv(o, "auth_url", string(u)),
        None => o.push_str("# auth_url: not set\n"),
    }
    kv(o, "scopes", array(a.scopes.iter().cloned()));
    kv(o, "token_file", path(&a.token_file));
    match a.refresh_token_lifetime {
        Some(d) => kv(o, "refresh_token_lifetime", duration(d)),
        None => o.push_str("# refresh_token_lifetime: not known for this provider\n"),
    }
}
