//! The man pages and shell completions that the Debian package installs,
//! generated from their sources: the clap definition of the command line
//! (`postrelay(8)` and one page per subcommand, completions for bash, zsh
//! and fish), the commented example configuration (`postrelay.toml(5)`),
//! and the sendmail options the hand-written parser accepts (`sendmail(1)`).
//!
//! The generated files are committed under `crates/postrelay/debian/generated/`
//! so that `cargo deb` needs no extra step. This test regenerates them and
//! fails when a committed file differs; to update them:
//!
//! ```sh
//! POSTRELAY_REGENERATE=1 cargo test -p postrelay --test generated_files
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, italic, roman};
use postrelay::cli::Cli;

fn out_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/generated")
}

fn repo_file(path: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const MANUAL: &str = "postrelay manual";

/// Every generated file: path under `debian/generated/` → content.
fn generate() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let cli = Cli::command();
    pages_for(&cli, "postrelay", &mut files);
    files.insert("man/postrelay.toml.5".into(), config_page().into_bytes());
    let sendmail = sendmail_command();
    files.insert(
        "man/sendmail.1".into(),
        sendmail_page(&sendmail).into_bytes(),
    );
    files.insert("man/mailq.1".into(), b".so man1/sendmail.1\n".to_vec());
    files.insert(
        "man/postrelay-postdrop.8".into(),
        postdrop_page().into_bytes(),
    );
    for (shell, name) in [
        (Shell::Bash, "completions/postrelay.bash"),
        (Shell::Zsh, "completions/_postrelay"),
        (Shell::Fish, "completions/postrelay.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "postrelay", &mut buf);
        files.insert(name.into(), buf);
    }
    files
}

/// `name(8)` for `cmd`, then one page per subcommand (`postrelay-queue-list(8)`).
fn pages_for(cmd: &clap::Command, name: &str, files: &mut BTreeMap<String, Vec<u8>>) {
    // clap names are &'static without its "string" feature; a test may leak.
    let cmd = cmd
        .clone()
        .name(&*Box::leak(name.to_string().into_boxed_str()));
    let man = Man::new(cmd.clone()).section("8").manual(MANUAL);
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut buf).unwrap();
    }
    if name == "postrelay" {
        buf.extend(main_page_extra().as_bytes());
    } else {
        buf.extend(see_also(&["postrelay(8)", "postrelay.toml(5)"]).as_bytes());
    }
    files.insert(format!("man/{name}.8"), buf);
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        pages_for(sub, &format!("{name}-{}", sub.get_name()), files);
    }
}

fn see_also(pages: &[&str]) -> String {
    let mut r = Roff::new();
    r.control("SH", ["SEE ALSO"]);
    r.text([roman(pages.join(", "))]);
    r.to_roff()
}

/// What `postrelay(8)` says beyond the options: files, signals, logs.
fn main_page_extra() -> String {
    let mut r = Roff::new();
    let para = |r: &mut Roff, text: &str| {
        r.control("PP", [] as [&str; 0]);
        r.text([roman(text)]);
    };
    let item = |r: &mut Roff, term: &str, text: &str| {
        r.control("TP", [] as [&str; 0]);
        r.text([bold(term)]);
        r.text([roman(text)]);
    };
    r.control("SH", ["SIGNALS"]);
    item(
        &mut r,
        "SIGHUP",
        "Re-read the configuration file. A file with an error keeps the running configuration, and the log says why. Under systemd: systemctl reload postrelay.",
    );
    item(
        &mut r,
        "SIGTERM, SIGINT",
        "Stop accepting connections, finish the commands in progress (a message being received is completed or refused), give deliveries in progress 30 seconds, then exit. A second signal exits at once; nothing acknowledged is lost either way.",
    );
    r.control("SH", ["SYSTEMD"]);
    para(
        &mut r,
        "postrelay run is a Type=notify service: it reports READY=1 once its listeners are bound and its queue is recovered, RELOADING=1 during a reload, and feeds the watchdog (WatchdogSec=) from its runtime.",
    );
    r.control("SH", ["LOGGING"]);
    para(
        &mut r,
        "The mail log (one line per accepted message and per delivery attempt, in the form of Postfix's, so that pflogsumm and grep habits work) goes to the journal under systemd, to syslog with facility mail otherwise, or to a file; see the [log] table in postrelay.toml(5). Debugging output goes to standard error.",
    );
    r.control("SH", ["FILES"]);
    item(
        &mut r,
        "/etc/postrelay/postrelay.toml",
        "The configuration file; see postrelay.toml(5).",
    );
    item(
        &mut r,
        "/etc/postrelay/secrets/",
        "Relay passwords and TLS keys (mode 600, owned by the daemon's user).",
    );
    item(
        &mut r,
        "/var/spool/postrelay/",
        "The queue: maildrop/, queue/, hold/, corrupt/, the control socket and sendmail's submit socket.",
    );
    item(
        &mut r,
        "/usr/sbin/sendmail, /usr/bin/mailq",
        "The sendmail(1) interface (a link to postrelay-sendmail, which runs postrelay for all but submitting to the running daemon) and the queue listing (a link to postrelay).",
    );
    r.control("SH", ["EXIT STATUS"]);
    para(
        &mut r,
        "0 on success, 1 on a runtime error, 78 (EX_CONFIG) when the configuration is invalid.",
    );
    r.to_roff()
        + &see_also(&[
            "postrelay.toml(5)",
            "sendmail(1)",
            "mailq(1)",
            "postrelay-postdrop(8)",
            "pflogsumm(1)",
        ])
}

/// A section, a key or free text of the example configuration.
enum Entry {
    Table(String, Vec<String>),
    Key(String, Vec<String>),
}

/// Reads `postrelay.example.toml`: its header comment, then each table and
/// each key with the comment paragraph just above it.
fn parse_example(text: &str) -> (Vec<String>, Vec<Entry>) {
    let mut lines = text.lines().peekable();
    let mut header = Vec::new();
    while let Some(l) = lines.next_if(|l| !l.trim().is_empty()) {
        header.push(l.trim_start_matches('#').trim().to_string());
    }
    let mut entries = Vec::new();
    let mut para: Vec<String> = Vec::new();
    let mut keyed = false; // the paragraph already has its key
    for line in lines {
        let bare = line.trim_start_matches('#').trim();
        let is_table = bare.starts_with('[')
            && bare.ends_with(']')
            && bare
                .trim_matches(['[', ']'])
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_');
        let key = bare
            .split_once(" = ")
            .map(|(k, _)| k)
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        if line.trim().is_empty() {
            if !keyed && !para.is_empty() {
                // A paragraph that introduces what follows (a table's notes).
                entries.push(Entry::Key(String::new(), std::mem::take(&mut para)));
            }
            para.clear();
            keyed = false;
        } else if is_table {
            entries.push(Entry::Table(bare.to_string(), std::mem::take(&mut para)));
            keyed = false;
        } else if let Some(k) = key {
            if !keyed {
                entries.push(Entry::Key(k.to_string(), std::mem::take(&mut para)));
                keyed = true;
            }
        } else {
            para.push(bare.to_string());
        }
    }
    (header, entries)
}

/// `postrelay.toml(5)`, from the example configuration.
fn config_page() -> String {
    let (header, entries) = parse_example(&repo_file("postrelay.example.toml"));
    let mut r = Roff::new();
    r.control("TH", ["POSTRELAY.TOML", "5", "", "", MANUAL]);
    r.control("SH", ["NAME"]);
    r.text([roman("postrelay.toml - postrelay's configuration file")]);
    r.control("SH", ["DESCRIPTION"]);
    r.text([roman(header.join(" "))]);
    r.control("PP", [] as [&str; 0]);
    r.text([roman("Each setting below is given with what it does, its default and the reason for it, in the order of the example file installed as /usr/share/doc/postrelay/examples/postrelay.toml.")]);
    r.control("SH", ["SETTINGS"]);
    r.control("SS", ["Top level (before any table)"]);
    for e in entries {
        match e {
            Entry::Table(name, notes) => {
                r.control("SS", [name.as_str()]);
                if !notes.is_empty() {
                    r.text([roman(notes.join(" "))]);
                }
            }
            Entry::Key(name, text) if name.is_empty() => {
                r.control("PP", [] as [&str; 0]);
                r.text([roman(text.join(" "))]);
            }
            Entry::Key(name, text) => {
                r.control("TP", [] as [&str; 0]);
                r.text([bold(name)]);
                r.text([roman(text.join(" "))]);
            }
        }
    }
    r.control("SH", ["FILES"]);
    r.text([italic("/etc/postrelay/postrelay.toml")]);
    r.to_roff() + &see_also(&["postrelay(8)", "sendmail(1)"])
}

/// The sendmail options, as documentation only: the real parser is
/// `postrelay::cli::sendmail::args` (getopt-style, which clap is not);
/// `every_documented_sendmail_option_is_accepted` keeps the two together.
fn sendmail_command() -> clap::Command {
    let flag = |id: &'static str, short: char, help: &'static str| {
        Arg::new(id)
            .short(short)
            .action(ArgAction::SetTrue)
            .help(help)
    };
    let value = |id: &'static str, short: char, name: &'static str, help: &'static str| {
        Arg::new(id).short(short).value_name(name).help(help)
    };
    clap::Command::new("sendmail")
        .about("submit mail through postrelay (Sendmail/Postfix compatible)")
        .long_about(
            "sendmail reads a message on standard input and submits it to postrelay. It runs with \
             the caller's rights. For root, the daemon's user and members of the group postdrop \
             the message goes straight to the running daemon over its socket (the spool's \
             submit.sock); otherwise, and whenever the daemon is stopped or busy, it is handed to \
             the setgid postrelay-postdrop, which writes it into the spool's maildrop/, so \
             submission works while the daemon is stopped. Exit status 0 means the message is on \
             disk. Date:, Message-ID: and From: \
             are added when missing. Options may be grouped (-ti) and an option's argument may be \
             attached (-fuser) or the next word; options end at -- or at the first recipient.",
        )
        .arg(flag("t", 't', "Take recipients from the To:, Cc: and Bcc: header fields (Bcc: is removed). Recipients on the command line are added to them, as Postfix does."))
        .arg(flag("i", 'i', "A line with a single dot does not end the message (also -oi)."))
        .arg(value("f", 'f', "SENDER", "Envelope sender address (also -r)."))
        .arg(value("F", 'F', "NAME", "Full name for the From: field added when the message has none."))
        .arg(value("b", 'b', "MODE", "m: submit (the default); s: SMTP on standard input and output, relayed to the daemon's first listener; p: list the queue, as mailq."))
        .arg(value("B", 'B', "TYPE", "Body type: 7BIT or 8BITMIME."))
        .arg(value("N", 'N', "DSN", "Delivery status notifications: never, or a comma-separated list of success, failure, delay."))
        .arg(flag("q", 'q', "Attempt delivery of the queue now (-qR and -qS too); -q with an interval (-q30m) is accepted and does nothing."))
        .arg(flag("v", 'v', "Verbose."))
        .arg(value("o", 'o', "OPTION", "Sendmail options: -oi as -i; -oem, -oee, -odi, -odb and others are accepted and ignored."))
        .arg(Arg::new("recipient").num_args(0..).value_name("RECIPIENT").help("Recipient addresses; a local name is completed with the host name."))
        .after_help(
            "Also accepted and ignored, as cron, mailx, PHP and monitoring tools pass them: -C, -L, \
             -O, -R, -V, -X, -d, -e, -h, -p (with an argument) and -G, -I, -U, -c, -m, -n, -s, -x.",
        )
}

/// Example arguments for each documented option of [`sendmail_command`].
fn sendmail_examples(id: &str) -> &'static [&'static str] {
    match id {
        "t" => &["-t"],
        "i" => &["-i"],
        "f" => &["-f", "alice@example.org"],
        "F" => &["-F", "Alice"],
        "b" => &["-bs"],
        "B" => &["-B", "8BITMIME"],
        "N" => &["-N", "success,failure"],
        "q" => &["-q"],
        "v" => &["-v"],
        "o" => &["-oem"],
        "recipient" => &["root"],
        _ => &[],
    }
}

fn sendmail_page(cmd: &clap::Command) -> String {
    let man = Man::new(cmd.clone()).section("1").manual(MANUAL);
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_synopsis_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    man.render_options_section(&mut buf).unwrap();
    let mut r = Roff::new();
    r.control("SH", ["COMPATIBILITY"]);
    r.text([roman("With -t, Resent-* fields are not read. A line longer than intake.line_length_limit is refused (exit 65) rather than folded. Mail given with -bs arrives over SMTP from 127.0.0.1, not as a local submission. -bd (daemon mode) and -I (newaliases) are not provided: postrelay run is the daemon, and the aliases file is read directly.")]);
    r.control("SH", ["ENVIRONMENT"]);
    r.control("TP", [] as [&str; 0]);
    r.text([bold("POSTRELAY_CONFIG")]);
    r.text([roman(
        "The configuration file to read instead of /etc/postrelay/postrelay.toml.",
    )]);
    r.control("SH", ["EXIT STATUS"]);
    r.text([roman("0: the message is queued. 64: usage error. 65: the message is malformed. 75: temporary failure, try again. 77: permission denied. 78: configuration error (sysexits(3)).")]);
    let s = String::from_utf8(buf).unwrap();
    s + &r.to_roff()
        + &see_also(&[
            "mailq(1)",
            "postrelay(8)",
            "postrelay-postdrop(8)",
            "postrelay.toml(5)",
        ])
}

fn postdrop_page() -> String {
    let cmd = clap::Command::new("postrelay-postdrop")
        .about("write a message into postrelay's maildrop (setgid helper)")
        .long_about(
            "postrelay-postdrop is run by sendmail(1), never by hand. It is the only setgid \
             program of postrelay: it uses the postdrop group to open the spool's maildrop/ and \
             to create one file there, then drops the group for good before it reads the \
             message on standard input. The Debian package sets its mode through \
             dpkg-statoverride (root:postdrop 2755).",
        );
    let man = Man::new(cmd).section("8").manual(MANUAL);
    let mut buf = Vec::new();
    man.render_title(&mut buf).unwrap();
    man.render_name_section(&mut buf).unwrap();
    man.render_description_section(&mut buf).unwrap();
    String::from_utf8(buf).unwrap() + &see_also(&["sendmail(1)", "postrelay(8)"])
}

#[test]
fn generated_files_are_current() {
    let files = generate();
    let dir = out_dir();
    if std::env::var_os("POSTRELAY_REGENERATE").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        for (name, content) in &files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (name, content) in &files {
        if std::fs::read(dir.join(name)).ok().as_ref() != Some(content) {
            stale.push(name.clone());
        }
    }
    let on_disk: Vec<String> = walk(&dir)
        .into_iter()
        .filter(|n| !files.contains_key(n))
        .collect();
    assert!(
        stale.is_empty() && on_disk.is_empty(),
        "generated files out of date: {stale:?}, left over: {on_disk:?}; run \
         POSTRELAY_REGENERATE=1 cargo test -p postrelay --test generated_files"
    );
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn every_documented_sendmail_option_is_accepted() {
    let cmd = sendmail_command();
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        let example = sendmail_examples(id);
        assert!(!example.is_empty(), "no example for documented option {id}");
        let argv = example.iter().map(std::ffi::OsString::from).collect();
        let parsed = postrelay::cli::sendmail::args::parse(argv);
        assert!(parsed.is_ok(), "{example:?}: {parsed:?}");
    }
}

#[test]
fn every_example_setting_is_in_the_config_page() {
    let page = config_page();
    let mut seen = 0;
    for line in repo_file("postrelay.example.toml").lines() {
        let bare = line.trim_start_matches('#').trim_start();
        let Some((key, _)) = bare.split_once(" = ") else {
            continue;
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        seen += 1;
        assert!(
            page.contains(&format!("\\fB{key}\\fR")),
            "{key} (example line {line:?}) is not in postrelay.toml(5)"
        );
    }
    assert!(seen > 60, "only {seen} settings found in the example");
}
