//! `postrelay import-postfix [DIR]`: Postfix's `main.cf` (and the text
//! sources of the tables it names) to a postrelay configuration.
//!
//! Every parameter the file sets ends up in the output or in the report:
//! the identity (`myhostname`, `mydestination`, `myorigin`), the intake
//! (`inet_interfaces`, `mynetworks`, size limits), the queue's times, the
//! relays and their TLS and SASL settings (`import::postfix_relay`), the
//! tables, local delivery and bounces; anything else is reported with the
//! reason from `import::postfix_params`.
//!
//! **Not for:** `master.cf` (its services have no counterpart; the intake
//! port is postrelay's 25), or the compiled `.db` tables (the text
//! sources are read instead).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::maincf::{self, MainCf, Param, TableRef};
use super::{
    Draft, ImportError, Imported, NoteKind, Report, finish, read, toml_array, toml_string,
};

/// The state of one import.
pub(super) struct Cx {
    pub cf: MainCf,
    pub defaults: HashMap<&'static str, String>,
    pub draft: Draft,
    pub report: Report,
    /// Parameters dealt with (carried over or reported).
    handled: HashSet<String>,
}

/// Reads `DIR/main.cf` and builds the configuration.
pub fn import(dir: &Path) -> Result<Imported, ImportError> {
    let path = dir.join("main.cf");
    let text = read(&path)?;
    let cf = maincf::parse(&text).map_err(|e| ImportError::Syntax {
        path: path.clone(),
        line: e.line,
        message: e.message,
    })?;
    let header = vec![
        format!(
            "postrelay configuration imported from {} by postrelay import-postfix.",
            path.display()
        ),
        "Each setting is preceded by the main.cf line it comes from; what could".to_owned(),
        "not be carried over was reported when it was imported.".to_owned(),
    ];
    let mut cx = Cx {
        defaults: defaults(&cf, dir),
        cf,
        draft: Draft::new(&header),
        report: Report::default(),
        handled: HashSet::new(),
    };
    cx.identity();
    cx.intake();
    cx.queue();
    let auth = cx.sasl();
    let relays = cx.relays(auth);
    if relays.is_empty() {
        let (origin, setting) = match cx.cf.get("relayhost") {
            Some(p) => (
                format!("main.cf:{}", p.line),
                format!("relayhost = {}", p.value),
            ),
            None => ("main.cf".to_owned(), "relayhost not set".to_owned()),
        };
        cx.report.note(&origin, &setting, NoteKind::Changed, "Postfix delivers mail without a relayhost to the recipients' MX hosts; postrelay never does: mail that no transport entry routes waits in the queue until a [[relay]] is written");
    }
    cx.tables(&relays);
    cx.local();
    cx.bounce();
    cx.rest();
    Ok(finish(cx.draft, cx.report))
}

/// Postfix's defaults of the parameters other values commonly refer to.
fn defaults(cf: &MainCf, dir: &Path) -> HashMap<&'static str, String> {
    let system = nix::unistd::gethostname()
        .ok()
        .and_then(|s| s.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let mut d = HashMap::new();
    d.insert("myhostname", system);
    let host = cf.expand("$myhostname", &d).text;
    let domain = match host.split_once('.') {
        Some((_, rest)) if !rest.is_empty() => rest.to_owned(),
        _ => "localdomain".to_owned(),
    };
    d.insert("mydomain", domain);
    d.insert("myorigin", "$myhostname".to_owned());
    d.insert(
        "mydestination",
        "$myhostname, localhost.$mydomain, localhost".to_owned(),
    );
    d.insert("config_directory", dir.display().to_string());
    d.insert("queue_directory", "/var/spool/postfix".to_owned());
    d.insert("mail_name", "Postfix".to_owned());
    d.insert("mail_spool_directory", "/var/mail".to_owned());
    d.insert("relayhost", String::new());
    d
}

/// A parameter that is set, with its expanded value.
pub(super) struct Value {
    pub param: Param,
    pub text: String,
}

impl Value {
    /// `main.cf:LINE`.
    pub fn origin(&self) -> String {
        format!("main.cf:{}", self.param.line)
    }

    /// `name = value`, as written.
    pub fn setting(&self) -> String {
        format!("{} = {}", self.param.name, self.param.value)
    }
}

impl Cx {
    /// The parameter `name` if the file sets it, expanded; marks it dealt
    /// with, and reports references to parameters nobody sets.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        let param = self.cf.get(name)?.clone();
        self.handled.insert(name.to_owned());
        let e = self.cf.expand(&param.value, &self.defaults);
        let v = Value {
            param,
            text: e.text.trim().to_owned(),
        };
        for u in e.unknown {
            let why = format!(
                "${u} is not set in main.cf and has no default postrelay knows; it was read as empty"
            );
            self.report
                .note(&v.origin(), &v.setting(), NoteKind::Changed, why);
        }
        Some(v)
    }

    /// Reports `v` as not carried over.
    pub fn drop(&mut self, v: &Value, why: impl Into<String>) {
        self.report
            .note(&v.origin(), &v.setting(), NoteKind::NotCarried, why);
    }

    /// Reports a deliberate difference.
    pub fn changed(&mut self, v: &Value, why: impl Into<String>) {
        self.report
            .note(&v.origin(), &v.setting(), NoteKind::Changed, why);
    }

    /// Sets `table.key` from `v`.
    pub fn set(&mut self, table: &str, key: &str, value: String, v: &Value) {
        self.draft.set(table, key, value, &v.origin(), &v.setting());
    }

    /// The expanded value of `name` whether or not the file sets it.
    pub fn effective(&self, name: &str) -> String {
        let raw = match self.cf.get(name) {
            Some(p) => p.value.clone(),
            None => format!("${name}"),
        };
        self.cf.expand(&raw, &self.defaults).text.trim().to_owned()
    }

    fn identity(&mut self) {
        if let Some(v) = self.take("myhostname") {
            self.set("", "hostname", toml_string(&v.text), &v);
        }
        self.take("mydomain"); // only used to expand other parameters
        if let Some(v) = self.take("myorigin") {
            let host = self.effective("myhostname");
            // Debian's "myorigin = /etc/mailname": the file's first line.
            let origin = if v.text.starts_with('/') {
                std::fs::read_to_string(&v.text)
                    .ok()
                    .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()))
                    .unwrap_or_default()
            } else {
                v.text.clone()
            };
            if !origin.eq_ignore_ascii_case(&host) {
                self.drop(&v, format!(
                    "postrelay completes bare addresses (root) with hostname ({host}), not with myorigin (\"{origin}\"); to show another domain to the relay, set [routing] rewrite_senders or a generic table"
                ));
            }
        }
        if let Some(v) = self.take("mydestination") {
            let mut domains = Vec::new();
            for item in maincf::list(&v.text) {
                if item.contains(':') || item.starts_with('/') {
                    self.drop(&v, format!("{item}: local domains are listed by name in intake.local_domains; write the table's domains there"));
                } else {
                    domains.push(item.to_ascii_lowercase());
                }
            }
            self.set("intake", "local_domains", toml_array(&domains), &v);
        }
    }

    fn intake(&mut self) {
        if let Some(v) = self.take("inet_interfaces") {
            self.listen(&v);
        }
        if let Some(v) = self.take("mynetworks") {
            let mut nets = Vec::new();
            for item in maincf::list(&v.text) {
                let bare = item.replacen('[', "", 1).replacen(']', "", 1);
                match bare.parse::<crate::config::Cidr>() {
                    // [::ffff:127.0.0.0]/104 is 127.0.0.0/8 again.
                    Ok(c) if nets.contains(&c.to_string()) => {}
                    Ok(c) => nets.push(c.to_string()),
                    Err(e) => self.drop(&v, format!(
                        "{item}: {e}; intake.mynetworks takes networks (CIDR) and addresses only, not tables, files, host names or exclusions"
                    )),
                }
            }
            self.set("intake", "mynetworks", toml_array(&nets), &v);
        }
        if let Some(v) = self.take("mynetworks_style") {
            self.drop(
                &v,
                "postrelay trusts loopback only unless intake.mynetworks lists more networks",
            );
        }
        if let Some(v) = self.take("header_size_limit") {
            self.size(&v, "header_size_limit");
        }
        if let Some(v) = self.take("message_size_limit") {
            if v.text == "0" {
                self.drop(&v, "postrelay always bounds a message's size (default 25 MiB), so that the spool's disk use is bounded");
            } else {
                self.size(&v, "message_size_limit");
            }
        }
    }

    /// `inet_interfaces` → `intake.listen`, on port 25 (the port is in
    /// master.cf, which is not read).
    fn listen(&mut self, v: &Value) {
        let mut addrs = Vec::new();
        for item in maincf::list(&v.text) {
            let item = item.to_ascii_lowercase();
            match item.as_str() {
                "all" => {
                    self.drop(v, "postrelay listens on the addresses it is given; a null client serves local programs on loopback (127.0.0.1:25, the default). To serve a network, list its address in intake.listen and its clients in intake.mynetworks");
                    return;
                }
                "loopback-only" | "localhost" | "127.0.0.1" => addrs.push("127.0.0.1:25".to_owned()),
                "::1" | "[::1]" => addrs.push("[::1]:25".to_owned()),
                other => match other.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
                    Ok(std::net::IpAddr::V4(ip)) => addrs.push(format!("{ip}:25")),
                    Ok(std::net::IpAddr::V6(ip)) => addrs.push(format!("[{ip}]:25")),
                    Err(_) => self.drop(v, format!("{other}: intake.listen takes IP addresses, so that what is bound does not depend on DNS")),
                },
            }
        }
        addrs.dedup();
        if addrs.is_empty() {
            return;
        }
        if v.text.contains("loopback-only") {
            self.changed(v, "loopback-only is 127.0.0.1:25 here; add \"[::1]:25\" to intake.listen for IPv6 loopback clients");
        }
        self.set("intake", "listen", toml_array(&addrs), v);
    }

    /// A byte count → `intake.<key>`.
    fn size(&mut self, v: &Value, key: &str) {
        match v.text.parse::<u64>() {
            Ok(n) => self.set("intake", key, n.to_string(), v),
            Err(_) => self.drop(v, "not a whole number of bytes"),
        }
    }

    fn queue(&mut self) {
        for (name, key, unit) in [
            ("maximal_queue_lifetime", "max_lifetime", 'd'),
            ("minimal_backoff_time", "min_backoff", 's'),
            ("maximal_backoff_time", "max_backoff", 's'),
        ] {
            if let Some(v) = self.take(name) {
                match postfix_time(&v.text, unit) {
                    Some(d) => self.set("queue", key, toml_string(&d), &v),
                    None => self.drop(&v, "not a Postfix time (a number with s, m, h, d or w)"),
                }
            }
        }
    }

    /// The tables: transport, generic, aliases; sender-dependent relays
    /// are reported.
    fn tables(&mut self, relays: &[(String, u16)]) {
        if let Some(v) = self.take("transport_maps")
            && let Some(path) = self.first_text_table(&v)
        {
            self.set("routing", "transport", toml_string(&path), &v);
            self.check_hops(&v, &path, relays);
        }
        if let Some(v) = self.take("smtp_generic_maps")
            && let Some(path) = self.first_text_table(&v)
        {
            self.set("routing", "generic", toml_string(&path), &v);
        }
        if let Some(v) = self.take("alias_maps")
            && let Some(path) = self.first_text_table(&v)
        {
            self.set("routing", "aliases", toml_string(&path), &v);
        }
        if let Some(v) = self.take("sender_dependent_relayhost_maps") {
            self.drop(&v, "postrelay's [routing] sender_relay names relays (relay:NAME), not hosts: write a [[relay]] for each host of the table (with its own credentials) and a sender_relay table with \"sender relay:NAME\" lines");
        }
    }

    /// The text source of the first table of a list; the others, and
    /// tables without a text source, are reported.
    pub fn first_text_table(&mut self, v: &Value) -> Option<String> {
        let mut chosen = None;
        for item in maincf::list(&v.text) {
            let Some(t) = TableRef::parse(item) else {
                self.drop(v, format!("{item}: not a type:name table"));
                continue;
            };
            match (t.text_source(), &chosen) {
                (Ok(path), None) => chosen = Some(path),
                (Ok(_), Some(first)) => self.drop(
                    v,
                    format!(
                        "{item}: postrelay reads one file per table; merge its entries into {first}"
                    ),
                ),
                (Err(why), _) => self.drop(v, format!("{item}: {why}")),
            }
        }
        chosen
    }

    /// Next hops of the transport map that are not a relayhost get the
    /// defaults of an `smtp:` next hop, not main.cf's TLS settings.
    fn check_hops(&mut self, v: &Value, path: &str, relays: &[(String, u16)]) {
        let Ok(text) = std::fs::read_to_string(path) else {
            return; // the loader reports it
        };
        let Ok(map) = crate::route::TransportMap::parse(&text, Path::new(path), &[]) else {
            return;
        };
        for e in map.entries() {
            if let crate::route::Target::Smtp { host, port } = &e.target
                && !relays
                    .iter()
                    .any(|(h, p)| h.eq_ignore_ascii_case(host) && p == port)
            {
                self.changed(v, format!(
                    "{}: smtp:[{host}]:{port} is not the relayhost, so it is sent to with tls = \"auto\" and security = \"verify\" against the system's CAs, with its delivery.sasl_passwd entry; main.cf's smtp_tls_* settings do not apply to it. Write a [[relay]] with that host and port to change that (it then also carries mail without a transport entry, after the relays above it)",
                    e.key
                ));
            }
        }
    }

    fn local(&mut self) {
        if let Some(v) = self.take("recipient_delimiter") {
            self.set("local", "recipient_delimiter", toml_string(&v.text), &v);
        }
        match self.take("home_mailbox") {
            Some(v) if v.text.ends_with('/') && !v.text.starts_with('/') => {
                self.set("local", "mailbox", toml_string("maildir"), &v);
                self.set("local", "maildir", toml_string(&v.text), &v);
            }
            Some(v) => self.drop(&v, "postrelay stores local mail in a Maildir in the home (a value ending in /) or in an mbox file in [local] mbox_dir"),
            None => {
                // Postfix's default: mbox files in mail_spool_directory.
                let dir = self.effective("mail_spool_directory");
                let setting = "home_mailbox not set: Postfix delivers to mbox files";
                let origin = self.cf.get("mail_spool_directory").map_or("main.cf".to_owned(), |p| format!("main.cf:{}", p.line));
                self.handled.insert("mail_spool_directory".to_owned());
                self.draft.set("local", "mailbox", toml_string("mbox"), &origin, setting);
                self.draft.set("local", "mbox_dir", toml_string(&dir), &origin, setting);
            }
        }
        if let Some(v) = self.take("luser_relay") {
            if v.text.is_empty() || v.text.contains(['@', '$', ' ', ',']) {
                self.drop(
                    &v,
                    "[local] catch_all names one local user; write that user",
                );
            } else {
                self.set("local", "catch_all", toml_string(&v.text), &v);
            }
        }
    }

    fn bounce(&mut self) {
        if let Some(v) = self.take("delay_warning_time") {
            match postfix_time(&v.text, 'h') {
                Some(d) if d.starts_with('0') => {
                    self.set("bounce", "delay_warning", toml_string("off"), &v)
                }
                Some(d) => self.set("bounce", "delay_warning", toml_string(&d), &v),
                None => self.drop(&v, "not a Postfix time (a number with s, m, h, d or w)"),
            }
        }
        if let Some(v) = self.take("2bounce_notice_recipient") {
            match maincf::list(&v.text).as_slice() {
                [one] => {
                    let one = one.to_string();
                    self.set("bounce", "postmaster", toml_string(&one), &v);
                }
                _ => self.drop(
                    &v,
                    "[bounce] postmaster is one address; write one (an alias can fan it out)",
                ),
            }
        }
    }

    /// Every parameter nothing above dealt with, reported with its reason.
    fn rest(&mut self) {
        let rest: Vec<Param> = self
            .cf
            .params()
            .iter()
            .filter(|p| !self.handled.contains(&p.name))
            .cloned()
            .collect();
        for p in rest {
            if let Some(why) = super::postfix_params::reason(&p.name, &p.value) {
                let setting = format!("{} = {}", p.name, p.value);
                self.report.note(
                    &format!("main.cf:{}", p.line),
                    &setting,
                    NoteKind::NotCarried,
                    why,
                );
            }
        }
    }
}

/// A Postfix time value (`5d`, `300s`, `300` with `unit` as the default
/// unit) in postrelay's spelling; `None` if it is not one.
pub(super) fn postfix_time(text: &str, unit: char) -> Option<String> {
    let (digits, u) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&text[..i], text[i..].to_ascii_lowercase()),
        None => (text, unit.to_string()),
    };
    let n: u64 = digits.parse().ok()?;
    matches!(u.as_str(), "s" | "m" | "h" | "d" | "w").then(|| format!("{n}{u}"))
}
