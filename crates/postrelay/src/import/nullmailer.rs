//! `postrelay import-nullmailer [DIR]`: nullmailer's configuration
//! (default `/etc/nullmailer`) to a postrelay configuration. Each line of
//! `remotes` becomes a `[[relay]]`, in order (nullmailer also tries them
//! in order); `me` and `helohost` give the host name; the other files are
//! reported.

use std::path::Path;

use super::{
    Draft, ImportError, Imported, NoteKind, Report, SecretSink, SimpleRelay, finish, read,
    toml_string,
};

/// Reads `DIR/remotes` (and the small files beside it) and builds the
/// configuration.
pub fn import(dir: &Path, secrets: &SecretSink) -> Result<Imported, ImportError> {
    let path = dir.join("remotes");
    let text = read(&path)?;
    let header = vec![format!(
        "postrelay configuration imported from {} by postrelay import-nullmailer.",
        dir.display()
    )];
    let mut draft = Draft::new(&header);
    let mut report = Report::default();
    let mut n = 0;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let origin = format!("remotes:{}", i + 1);
        let at = (path.as_path(), i + 1);
        if let Some((r, setting)) = remote(l, n + 1, at, secrets, &mut report)? {
            r.add(&mut draft, &mut report, &origin, &setting);
            n += 1;
        }
    }
    if n == 0 {
        return Err(ImportError::Nothing {
            path,
            message: "no remote: there is no relay to import".to_owned(),
        });
    }
    if n > 1 {
        report.note("remotes", "several remotes", NoteKind::Changed, "tried in order, as nullmailer does: the next one when one cannot be reached or refuses the session (not when it refuses a recipient)");
    }
    small_files(dir, &mut draft, &mut report);
    Ok(finish(draft, report))
}

/// One line `host protocol [--option[=value]]…`; `None` if it cannot be
/// carried over (reported). The setting shown never has the password.
fn remote(
    line: &str,
    n: usize,
    (path, no): (&Path, usize),
    secrets: &SecretSink,
    report: &mut Report,
) -> Result<Option<(SimpleRelay, String)>, ImportError> {
    let origin = &format!("remotes:{no}");
    let mut words = line.split_whitespace();
    let host = words.next().unwrap_or_default();
    let protocol = words.next().unwrap_or("smtp");
    let shown: Vec<&str> = line
        .split_whitespace()
        .map(|w| {
            if w.starts_with("--pass=") {
                "--pass=<redacted>"
            } else {
                w
            }
        })
        .collect();
    let setting = shown.join(" ");
    if protocol != "smtp" {
        report.note(
            origin,
            &setting,
            NoteKind::NotCarried,
            format!("postrelay speaks SMTP only, not {protocol}"),
        );
        return Ok(None);
    }
    let mut r = SimpleRelay {
        name: format!("remote-{n}"),
        host: host.to_owned(),
        security: "may",
        ..SimpleRelay::default()
    };
    let mut password = None;
    let (mut ssl, mut starttls, mut insecure) = (false, false, false);
    for w in words {
        let (opt, value) = w.split_once('=').unwrap_or((w, ""));
        match opt {
            "--port" => {
                let port = value.parse().ok().filter(|&p: &u16| p != 0);
                r.port = Some(port.ok_or_else(|| ImportError::Syntax {
                    path: path.to_owned(),
                    line: no,
                    message: format!("--port={value}: not a port number"),
                })?);
            }
            "--user" => r.username = Some(value.to_owned()),
            "--pass" => password = Some(value.to_owned()),
            "--ssl" => ssl = true,
            "--starttls" => starttls = true,
            "--insecure" => insecure = true,
            "--x509cafile" => r.ca_file = Some(value.to_owned()),
            "--auth-login" => {}
            other => report.note(
                origin,
                &setting,
                NoteKind::NotCarried,
                format!("{other}: postrelay has no such relay setting"),
            ),
        }
    }
    r.port = r.port.or(Some(if ssl { 465 } else { 25 }));
    r.tls = Some(if ssl { "implicit" } else { "starttls" });
    if ssl || starttls {
        r.security = if insecure { "encrypt" } else { "verify" };
    }
    if let Some(p) = password {
        let (path, todo) = secrets.store(&r.name, &p, origin)?;
        report.note(origin, &setting, NoteKind::Action, todo);
        r.password_file = Some(path);
    }
    Ok(Some((r, setting)))
}

/// `me`, `helohost`, and the files that have no counterpart.
fn small_files(dir: &Path, draft: &mut Draft, report: &mut Report) {
    for name in ["me", "helohost"] {
        if let Some(v) = first_line(dir, name) {
            let setting = format!("{name}: {v}");
            draft.set("", "hostname", toml_string(&v), name, &setting);
        }
    }
    for (name, why) in [
        (
            "defaultdomain",
            "postrelay completes bare names (root) with hostname",
        ),
        (
            "defaulthost",
            "postrelay completes bare names (root) with hostname",
        ),
        (
            "adminaddr",
            "postrelay delivers local recipients to local mailboxes; to send them elsewhere, write aliases (root: admin@example.com) and set [routing] aliases",
        ),
        ("idhost", "postrelay's queue IDs do not name the host"),
        (
            "pausetime",
            "postrelay retries each message on its own back-off ([queue] min_backoff, max_backoff)",
        ),
        (
            "maxpause",
            "postrelay retries each message on its own back-off ([queue] min_backoff, max_backoff)",
        ),
        (
            "sendtimeout",
            "postrelay's relay timeouts are in [relay.timeouts]",
        ),
    ] {
        if let Some(v) = first_line(dir, name) {
            report.note(name, &format!("{name}: {v}"), NoteKind::NotCarried, why);
        }
    }
}

/// The first line of `dir/name`, if the file exists and has one.
fn first_line(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    Some(line.to_owned())
}
