//! Defaults and semantic checks: from [`FileConfig`] (everything optional)
//! to [`Config`] (everything decided and sane).
//!
//! Each check explains what is wrong and what to write instead; values that
//! came from a default are reported as such, with the line of the setting
//! that made them a problem when there is one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::FileConfig;
use super::routing;
use super::units::{Cidr, covers_family, format_duration, format_size, parse_size};
use super::validate::{Flavor, Locator};
use super::{
    Config, ConfigError, Intake, LogFormat, LogSettings, LogTarget, QueueSettings, SyncMode,
};
use super::{delivery, relay, submit_view};
use crate::domain::DomainError;

const FILE_LISTEN: &str = "127.0.0.1:25";
const BUILTIN_LISTEN: &str = "127.0.0.1:2525";
const MYNETWORKS: [&str; 2] = ["127.0.0.0/8", "::1/128"];
const LOCAL_DOMAINS: [&str; 2] = ["localhost", "$hostname"];
const COMMAND_LENGTH_LIMIT: u64 = 2048;
const MAX_RECIPIENTS: usize = 1000;
const MAX_ERRORS: usize = 20;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
const DATA_TIMEOUT: Duration = Duration::from_secs(300);
const LINE_TIMEOUT: Duration = Duration::from_secs(60);
const SESSION_TIMEOUT: Duration = Duration::from_secs(3600);
const MAILDROP_RESCAN: Duration = Duration::from_secs(30);
const MIN_BACKOFF: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(4000);
const MAX_LIFETIME: Duration = Duration::from_secs(5 * 86_400);
const MIN_FREE_SPACE: &str = "100 MiB";
const LOG_LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// Longest duration accepted anywhere: longer is a typo, and adding it to
/// an `Instant` could overflow.
const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// `sizeof(sun_path)`: a socket path must fit with its terminating NUL.
const SUN_PATH: usize = if cfg!(target_os = "linux") { 108 } else { 104 };

pub(super) fn resolve(
    file: FileConfig,
    flavor: Flavor,
    loc: &Locator<'_>,
) -> Result<Config, ConfigError> {
    let hostname = submit_view::hostname(file.hostname, flavor, loc)?;
    let spool = submit_view::spool(file.spool, flavor, loc)?;
    let control_socket = match file.control_socket {
        Some(s) => non_empty_path(loc, "control_socket", s)?,
        None => spool.join("control.sock"),
    };
    let socket_len = control_socket.as_os_str().len();
    if socket_len >= SUN_PATH {
        let why = format!(
            "{:?} is {socket_len} bytes; a Unix socket path must be shorter than {SUN_PATH} bytes: set control_socket to a shorter path",
            control_socket.display()
        );
        let line = loc.first_line(&["control_socket", "spool"]);
        return Err(loc.invalid("control_socket", line, format!("control_socket: {why}")));
    }
    let daemon = super::daemon::daemon(file.daemon, loc)?;
    let intake = intake(file.intake, flavor, &hostname, loc)?;
    let queue = queue(file.queue, &intake, loc)?;
    let log = log(file.log, loc)?;
    let metrics = super::MetricsSettings {
        listen: file.metrics.listen.map(|a| a.0),
    };
    let (delivery, sasl_passwd) = delivery::delivery(file.delivery, loc)?;
    let bounce = delivery::bounce(file.bounce, &hostname, &queue, loc)?;
    let relays = relay::relays(file.relay, &delivery, sasl_passwd.as_ref(), &spool, loc)?;
    let routing = routing::routing(file.routing, &relays, loc)?;
    let next_hops =
        super::hops::next_hops(&routing, &relays, &delivery, sasl_passwd.as_ref(), loc)?;
    let local = super::local::local(file.local, loc)?;
    let cluster = super::cluster::cluster(file.cluster, loc)?;
    mailbox_aliases_stay_local(&routing, &intake, &hostname, &relays, loc)?;
    Ok(Config {
        hostname,
        spool,
        control_socket,
        daemon,
        intake,
        queue,
        log,
        metrics,
        relays,
        next_hops,
        delivery,
        bounce,
        routing,
        local,
        cluster,
    })
}

/// Checks a domain name and returns it lower-cased. Beyond the shape
/// [`crate::domain::check`] checks, patterns, a trailing dot and
/// underscores get their own explanation.
pub(super) fn check_domain(name: &str) -> Result<String, String> {
    if name.is_empty() {
        return Err(DomainError::Empty.to_string());
    }
    if !name.is_ascii() {
        return Err(DomainError::NotAscii.to_string());
    }
    if name.starts_with('*') || name.starts_with('.') {
        return Err("patterns are not supported; list each domain by its exact name".into());
    }
    if name.ends_with('.') {
        return Err("write the name without the trailing dot".into());
    }
    crate::domain::check(name).map_err(|e| match e {
        DomainError::NotLdh { label } if label.contains('_') => {
            "underscores are not allowed in host names (RFC 5321 §4.1.2)".into()
        }
        other => other.to_string(),
    })
}

pub(super) fn non_empty_path(
    loc: &Locator<'_>,
    key: &str,
    value: String,
) -> Result<PathBuf, ConfigError> {
    if value.is_empty() {
        return Err(loc.value_error(key, "a path cannot be empty"));
    }
    Ok(PathBuf::from(value))
}

fn intake(
    file: super::file::IntakeFile,
    flavor: Flavor,
    hostname: &str,
    loc: &Locator<'_>,
) -> Result<Intake, ConfigError> {
    let listen = match file.listen {
        Some(list) => list.into_iter().map(|a| a.0).collect(),
        None if flavor == Flavor::Builtin => vec![parse_const(BUILTIN_LISTEN)],
        None => vec![parse_const(FILE_LISTEN)],
    };
    check_listen(&listen, loc)?;
    let submission = super::submission::resolve(file.submission, &listen, loc)?;

    let mynetworks = file
        .mynetworks
        .unwrap_or_else(|| MYNETWORKS.iter().copied().map(parse_const).collect());
    check_mynetworks(&mynetworks, loc)?;

    let local_domains = match file.local_domains {
        Some(list) => domains(list, hostname, loc)?,
        None => default_local_domains(hostname),
    };

    let (message_size_limit, header_size_limit, line_length_limit) = submit_view::message_limits(
        file.message_size_limit,
        file.header_size_limit,
        file.line_length_limit,
        loc,
    )?;
    let command_length_limit = file.command_length_limit.unwrap_or(COMMAND_LENGTH_LIMIT);
    let why = "must be at least 512, the command line length every server must accept (RFC 5321 §4.5.3.1.4)";
    at_least(
        loc,
        "intake.command_length_limit",
        command_length_limit,
        512,
        why,
    )?;

    let max_recipients = file.max_recipients.unwrap_or(MAX_RECIPIENTS);
    let why = "must be at least 100: RFC 5321 §4.5.3.1.8 requires servers to accept 100 recipients per message";
    at_least(
        loc,
        "intake.max_recipients",
        max_recipients as u64,
        100,
        why,
    )?;
    let connections = super::limits::connection_limits(
        loc,
        "intake",
        file.max_connections,
        file.max_connections_per_client,
    )?;
    let max_errors = file.max_errors.unwrap_or(MAX_ERRORS);
    let why = "must be at least 1, or the first typo would end the session";
    at_least(loc, "intake.max_errors", max_errors as u64, 1, why)?;

    let timeouts = intake_timeouts(
        [
            file.command_timeout,
            file.data_timeout,
            file.session_timeout,
            file.line_timeout,
        ],
        loc,
    )?;
    let maildrop_rescan = duration(
        loc,
        "intake.maildrop_rescan",
        file.maildrop_rescan,
        MAILDROP_RESCAN,
    )?;

    Ok(Intake {
        listen,
        mynetworks,
        local_domains,
        message_size_limit,
        header_size_limit,
        line_length_limit,
        command_length_limit,
        max_recipients,
        max_connections: connections.total,
        max_connections_per_client: connections.per_client,
        max_errors,
        command_timeout: timeouts.command,
        data_timeout: timeouts.data,
        line_timeout: timeouts.line,
        session_timeout: timeouts.session,
        maildrop_rescan,
        submission,
    })
}

/// `intake.local_domains` when the file says nothing: [`LOCAL_DOMAINS`]
/// with `$hostname` expanded, each once.
fn default_local_domains(hostname: &str) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for d in LOCAL_DOMAINS.map(|d| d.replace("$hostname", hostname)) {
        if !list.contains(&d) {
            list.push(d);
        }
    }
    list
}

/// The SMTP server's timeouts.
struct IntakeTimeouts {
    command: Duration,
    data: Duration,
    session: Duration,
    line: Duration,
}

/// `intake.command_timeout`, `data_timeout` and `session_timeout`; the
/// session's must be the longest, or the others never apply.
fn intake_timeouts(
    [command, data, session, line]: [Option<super::units::HumanDuration>; 4],
    loc: &Locator<'_>,
) -> Result<IntakeTimeouts, ConfigError> {
    let command = duration(loc, "intake.command_timeout", command, COMMAND_TIMEOUT)?;
    let data = duration(loc, "intake.data_timeout", data, DATA_TIMEOUT)?;
    let session = duration(loc, "intake.session_timeout", session, SESSION_TIMEOUT)?;
    let line = duration(loc, "intake.line_timeout", line, LINE_TIMEOUT)?;
    for (other, value) in [
        ("intake.command_timeout", command),
        ("intake.data_timeout", data),
    ] {
        if session < value {
            let session_desc = loc.describe("intake.session_timeout", &format_duration(session));
            let other_desc = loc.describe(other, &format_duration(value));
            let line = loc.first_line(&["intake.session_timeout", other]);
            let message = format!(
                "{session_desc} is shorter than {other_desc}, which then never applies; make intake.session_timeout the longer one"
            );
            return Err(loc.invalid("intake.session_timeout", line, message));
        }
    }
    Ok(IntakeTimeouts {
        command,
        data,
        session,
        line,
    })
}

fn check_listen(listen: &[SocketAddr], loc: &Locator<'_>) -> Result<(), ConfigError> {
    let key = "intake.listen";
    if listen.is_empty() {
        return Err(loc.value_error(
            key,
            r#"at least one address is needed, or no mail could be submitted; write e.g. ["127.0.0.1:25"]"#,
        ));
    }
    for (i, addr) in listen.iter().enumerate() {
        if addr.port() == 0 {
            return Err(loc.element_error(
                key,
                i,
                "port 0 would bind a random port; choose a port, e.g. 25",
            ));
        }
        for earlier in &listen[..i] {
            if earlier == addr {
                return Err(loc.element_error(key, i, "listed twice"));
            }
            let same_family_port =
                earlier.is_ipv4() == addr.is_ipv4() && earlier.port() == addr.port();
            if same_family_port && (earlier.ip().is_unspecified() || addr.ip().is_unspecified()) {
                let why = format!(
                    "overlaps \"{earlier}\": an unspecified address already listens on every address of its family on that port; keep one of the two"
                );
                return Err(loc.element_error(key, i, &why));
            }
        }
    }
    Ok(())
}

fn check_mynetworks(nets: &[Cidr], loc: &Locator<'_>) -> Result<(), ConfigError> {
    let key = "intake.mynetworks";
    let open = "this would make postrelay an open relay; list only the networks of the clients that may send mail out";
    for (i, net) in nets.iter().enumerate() {
        if nets[..i].contains(net) {
            return Err(loc.element_error(key, i, "listed twice"));
        }
        if net.prefix_len() == 0 {
            let why = format!("a /0 network contains every address; {open}");
            return Err(loc.element_error(key, i, &why));
        }
    }
    for (ipv4, family) in [(true, "IPv4"), (false, "IPv6")] {
        if covers_family(nets, ipv4) {
            let why = format!("together these networks contain every {family} address; {open}");
            return Err(loc.value_error(key, &why));
        }
    }
    Ok(())
}

fn domains(
    list: Vec<String>,
    hostname: &str,
    loc: &Locator<'_>,
) -> Result<Vec<String>, ConfigError> {
    let key = "intake.local_domains";
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, written) in list.iter().enumerate() {
        let domain = if written == "$hostname" {
            hostname.to_owned()
        } else if written.starts_with('$') {
            return Err(loc.element_error(
                key,
                i,
                r#"unknown variable; only "$hostname" is expanded"#,
            ));
        } else {
            check_domain(written).map_err(|why| loc.element_error(key, i, &why))?
        };
        if out.contains(&domain) {
            let why = if written == "$hostname" {
                format!("\"$hostname\" is {domain:?}, which is already listed")
            } else {
                "listed twice".to_owned()
            };
            return Err(loc.element_error(key, i, &why));
        }
        out.push(domain);
    }
    Ok(out)
}

fn queue(
    file: super::file::QueueFile,
    intake: &Intake,
    loc: &Locator<'_>,
) -> Result<QueueSettings, ConfigError> {
    let min_backoff = duration(loc, "queue.min_backoff", file.min_backoff, MIN_BACKOFF)?;
    let max_backoff = duration(loc, "queue.max_backoff", file.max_backoff, MAX_BACKOFF)?;
    let max_lifetime = duration(loc, "queue.max_lifetime", file.max_lifetime, MAX_LIFETIME)?;
    if max_backoff < min_backoff {
        let line = loc.first_line(&["queue.max_backoff", "queue.min_backoff"]);
        let message = format!(
            "{} is shorter than {}; the longest wait cannot be shorter than the first one",
            loc.describe("queue.max_backoff", &format_duration(max_backoff)),
            loc.describe("queue.min_backoff", &format_duration(min_backoff)),
        );
        return Err(loc.invalid("queue.max_backoff", line, message));
    }
    let min_free_space = file
        .min_free_space
        .map_or_else(|| parse_const_size(MIN_FREE_SPACE), |s| s.0);
    if min_free_space != 0 && min_free_space < intake.message_size_limit {
        let key = "queue.min_free_space";
        let line = loc.first_line(&[key, "intake.message_size_limit"]);
        let message = format!(
            "{} is smaller than {}, so one accepted message could fill the disk; raise {key} (0 disables the check)",
            loc.describe(key, &unquote(&format_size(min_free_space))),
            loc.describe(
                "intake.message_size_limit",
                &unquote(&format_size(intake.message_size_limit))
            ),
        );
        return Err(loc.invalid(key, line, message));
    }
    Ok(QueueSettings {
        min_backoff,
        max_backoff,
        max_lifetime,
        min_free_space,
        sync: file.sync.unwrap_or(SyncMode::Filesystem),
    })
}

fn log(file: super::file::LogFile, loc: &Locator<'_>) -> Result<LogSettings, ConfigError> {
    let level = match file.level {
        None => "info".to_owned(),
        Some(l) => {
            let lower = l.to_ascii_lowercase();
            if !LOG_LEVELS.contains(&lower.as_str()) {
                let why = format!("not a log level; write one of {}", LOG_LEVELS.join(", "));
                return Err(loc.value_error("log.level", &why));
            }
            lower
        }
    };
    let file_path = match file.file {
        Some(f) => Some(non_empty_path(loc, "log.file", f)?),
        None => None,
    };
    let to = file.to.unwrap_or(LogTarget::Auto);
    if to == LogTarget::File && file_path.is_none() {
        return Err(loc.value_error("log.to", "\"file\" needs log.file (the path to write to)"));
    }
    let syslog_name = file.syslog_name.unwrap_or_else(|| "postrelay".to_owned());
    if syslog_name.is_empty()
        || syslog_name.len() > 32
        || !syslog_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        let why = "1 to 32 letters, digits, '-', '_' or '.' (e.g. \"postfix\")";
        return Err(loc.value_error("log.syslog_name", why));
    }
    let syslog_socket = match file.syslog_socket {
        Some(s) => non_empty_path(loc, "log.syslog_socket", s)?,
        None => PathBuf::from("/dev/log"),
    };
    Ok(LogSettings {
        level,
        format: file.format.unwrap_or(LogFormat::Postfix),
        file: file_path,
        to,
        syslog_name,
        syslog_socket,
    })
}

pub(super) fn at_least(
    loc: &Locator<'_>,
    key: &str,
    value: u64,
    min: u64,
    why: &str,
) -> Result<(), ConfigError> {
    if value < min {
        return Err(loc.value_error(key, why));
    }
    Ok(())
}

fn duration(
    loc: &Locator<'_>,
    key: &str,
    written: Option<super::units::HumanDuration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let d = written.map_or(default, |d| d.0);
    if d < Duration::from_secs(1) {
        return Err(loc.value_error(key, r#"must be at least 1 second; write e.g. "5m""#));
    }
    if d > MAX_DURATION {
        return Err(loc.value_error(key, "must be at most 365 days"));
    }
    Ok(d)
}

fn parse_const<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().expect("built-in default parses")
}

pub(super) fn parse_const_size(text: &str) -> u64 {
    parse_size(text).expect("built-in default size parses")
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_owned()
}

/// A `\name` alias target means "the local mailbox name". It is queued as
/// `name@hostname` and routed again at delivery, so that address must be
/// local: otherwise the mail meant to stay on this host would go to the
/// provider. Refused at load, naming the alias and the fix.
fn mailbox_aliases_stay_local(
    routing: &super::RoutingSettings,
    intake: &super::Intake,
    hostname: &str,
    relays: &[super::RelayConfig],
    loc: &Locator<'_>,
) -> Result<(), ConfigError> {
    use crate::route::{AliasTarget, Route, Router};
    let Some(aliases) = &routing.aliases else {
        return Ok(());
    };
    let names: Vec<String> = relays.iter().map(|r| r.name.clone()).collect();
    let router = Router::new(routing, &intake.local_domains, hostname, &names);
    for (name, alias) in aliases.iter() {
        for target in &alias.targets {
            let AliasTarget::Mailbox(user) = target else {
                continue;
            };
            let address = format!("{user}@{hostname}");
            if !matches!(router.transport(&address), Route::Local { user: u } if u == *user) {
                let origin = aliases.path().display().to_string();
                let message = format!(
                    "routing.aliases: {name}: \\{user} delivers to the local mailbox {user}, but \
                     {address} is not delivered locally (the host name is not in \
                     intake.local_domains, or the transport map sends it elsewhere); add \
                     \"$hostname\" to intake.local_domains, or write {user}@<a local domain>"
                );
                return Err(loc.invalid_in(&origin, "routing.aliases", Some(alias.line), message));
            }
        }
    }
    Ok(())
}
