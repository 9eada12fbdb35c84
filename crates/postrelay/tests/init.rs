//! `postrelay init`: the configuration and password file it writes for a
//! preset must pass `check-config` as written, the password file must be
//! the daemon user's with mode 0600, nothing existing is replaced without
//! `--force`, and the password is never printed. On a terminal (a real
//! pseudo-terminal, driven by tests/py/pty_answers.py) it asks for what the
//! flags left out, the password without echo, and runs `doctor` against
//! the private provider.

mod support;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::daemon::bin;
use support::doctor::provider;
use support::peers::{require, require_root};
use support::secrets::assert_absent;
use support::user::SystemUser;

const PASSWORD: &str = "init-marker-Pw-7c1e";

const PTY_ANSWERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/pty_answers.py");

/// `postrelay init ARGS` with `password` on standard input.
fn init(args: &[&str], password: &str) -> Output {
    let mut child = Command::new(bin())
        .arg("init")
        .args(args)
        .env_remove("POSTRELAY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // init may refuse before reading it: a broken pipe is no error here.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes());
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `check-config` on `config`, which must accept it; its whole output.
fn check_config(config: &Path) -> String {
    let out = Command::new(bin())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env_remove("POSTRELAY_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check-config refused it:\n{}",
        text(&out)
    );
    text(&out)
}

fn uid_of(name: &str) -> u32 {
    nix::unistd::User::from_name(name)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// Runs init for `provider` (with `extra` flags) as the daemon user `user`;
/// checks the password file and check-config; returns check-config's output.
fn init_and_check(dir: &Path, user: &str, provider: &str, extra: &[&str]) -> String {
    let config = dir.join("etc/postrelay.toml");
    let mut args = vec![
        "--provider",
        provider,
        "--user",
        "me@example.com",
        "--password-stdin",
        "--sender",
        "alerts@example.com",
        "--daemon-user",
        user,
        "--output",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = init(&args, PASSWORD);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert_absent("init's output", &said, "me@example.com", PASSWORD);
    let written = std::fs::read_to_string(&config).unwrap();
    assert_absent("the configuration", &written, "me@example.com", PASSWORD);

    let pw = dir
        .join("etc/secrets")
        .join(provider.split(':').next().unwrap());
    let meta = std::fs::metadata(&pw).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600, "mode of {}", pw.display());
    assert_eq!(meta.uid(), uid_of(user), "owner of {}", pw.display());
    assert_eq!(
        std::fs::read_to_string(&pw).unwrap(),
        format!("{PASSWORD}\n")
    );
    let secrets = std::fs::metadata(pw.parent().unwrap()).unwrap();
    assert_eq!(secrets.mode() & 0o777, 0o700);
    assert_eq!(
        secrets.uid(),
        uid_of(user),
        "the daemon user must enter secrets/"
    );

    let effective = check_config(&config);
    assert_absent(
        "check-config's output",
        &effective,
        "me@example.com",
        PASSWORD,
    );
    assert!(
        effective.contains("rewrite_senders = \"alerts@example.com\""),
        "{effective}"
    );
    assert!(
        effective.contains("username = \"me@example.com\""),
        "{effective}"
    );
    effective
}

#[test]
fn a_starttls_preset_is_written_for_the_daemon_user_and_passes_check_config() {
    if !require_root("chown to the daemon user") {
        return;
    }
    let user = SystemUser::create("pri");
    let dir = tempfile::tempdir().unwrap();
    let effective = init_and_check(dir.path(), &user.name, "brevo", &[]);
    for line in [
        "host = \"smtp-relay.brevo.com\"",
        "port = 587",
        "tls = \"starttls\"",
        &format!("user = \"{}\"", user.name),
    ] {
        assert!(effective.contains(line), "{line} missing in:\n{effective}");
    }
}

#[test]
fn an_implicit_tls_override_on_465_passes_check_config() {
    if !require_root("chown to the daemon user") {
        return;
    }
    let user = SystemUser::create("pri");
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--port", "465", "--tls", "implicit"];
    let effective = init_and_check(dir.path(), &user.name, "ses:eu-west-1", &extra);
    for line in [
        "host = \"email-smtp.eu-west-1.amazonaws.com\"",
        "port = 465",
        "tls = \"implicit\"",
    ] {
        assert!(effective.contains(line), "{line} missing in:\n{effective}");
    }
}

#[test]
fn nothing_is_replaced_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("postrelay.toml");
    let c = config.to_str().unwrap();
    let args = |provider| {
        [
            "--provider",
            provider,
            "--user",
            "u",
            "--password-stdin",
            "--daemon-user",
            "root",
            "--output",
            c,
        ]
    };
    assert!(init(&args("brevo"), PASSWORD).status.success());
    let before = std::fs::read_to_string(&config).unwrap();
    let pw = dir.path().join("secrets/brevo");

    let again = init(&args("brevo"), "another-password");
    assert_eq!(again.status.code(), Some(73), "{}", text(&again));
    assert!(text(&again).contains("pass --force"), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), before);
    assert_eq!(
        std::fs::read_to_string(&pw).unwrap(),
        format!("{PASSWORD}\n")
    );

    // Only the password file exists: still refused, and no config appears.
    std::fs::remove_file(&config).unwrap();
    let refused = init(&args("brevo"), "another-password");
    assert_eq!(refused.status.code(), Some(73), "{}", text(&refused));
    assert!(!config.exists());

    let mut forced: Vec<&str> = args("brevo").to_vec();
    forced.push("--force");
    let out = init(&forced, "another-password");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "another-password\n");
    check_config(&config);
}

#[test]
fn without_a_terminal_a_missing_answer_is_named_and_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("postrelay.toml");
    let c = config.to_str().unwrap();
    for (args, named) in [
        (vec!["--user", "u", "--password-stdin"], "--provider"),
        (vec!["--provider", "brevo", "--password-stdin"], "--user"),
        (
            vec!["--provider", "brevo", "--user", "u"],
            "--password-stdin",
        ),
        (
            vec!["--provider", "nosuch", "--user", "u", "--password-stdin"],
            "the known providers are",
        ),
    ] {
        let mut all = args.clone();
        all.extend(["--daemon-user", "root", "--output", c]);
        let out = init(&all, PASSWORD);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(named), "{args:?}: {}", text(&out));
        assert_absent("init's output", &text(&out), "u", PASSWORD);
        assert!(!config.exists() && !dir.path().join("secrets").exists());
    }
    // Answers the configuration refuses: exit 78, the key named, nothing left.
    let all = [
        "--provider",
        "brevo",
        "--user",
        "u",
        "--password-stdin",
        "--sender",
        "not an address",
        "--daemon-user",
        "root",
        "--output",
        c,
    ];
    let out = init(&all, PASSWORD);
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        text(&out).contains("routing.rewrite_senders"),
        "{}",
        text(&out)
    );
    assert_absent("init's output", &text(&out), "u", PASSWORD);
    assert!(!config.exists() && !dir.path().join("secrets").exists());
}

#[test]
fn on_a_terminal_it_asks_without_echoing_the_password_then_runs_doctor() {
    if !require_root("the private provider") || !require("postfix") || !require("python3") {
        return;
    }
    let p = provider();
    let dir = tempfile::tempdir().unwrap();
    let config: PathBuf = dir.path().join("postrelay.toml");
    let port = p.starttls_port.to_string();
    let ca = p.ca_file();
    let out = Command::new("python3")
        .arg(PTY_ANSWERS)
        .args(["User name", &p.user, "Password", &p.password])
        .args(["Sender address", "alerts@example.test", "--"])
        .arg(bin())
        .args(["init", "--provider", "brevo", "--daemon-user", "root"])
        .args(["--host", "127.0.0.1", "--port", &port, "--tls", "starttls"])
        .args(["--ca-file", ca.to_str().unwrap(), "--output"])
        .arg(&config)
        .env_remove("POSTRELAY_CONFIG")
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{screen}");
    assert_ne!(
        out.status.code(),
        Some(124),
        "init did not finish:\n{screen}"
    );
    assert!(screen.contains("Password (not shown): "), "{screen}");
    assert_absent("the terminal", &screen, &p.user, &p.password);
    // doctor ran on the result and authenticated at the provider.
    assert!(screen.contains("relay brevo"), "{screen}");
    assert!(screen.contains("relay.auth"), "{screen}");
    assert!(screen.contains("accepted (no mail sent)"), "{screen}");
    let effective = check_config(&config);
    assert!(
        effective.contains("rewrite_senders = \"alerts@example.test\""),
        "{effective}"
    );
    let pw = std::fs::read_to_string(dir.path().join("secrets/brevo")).unwrap();
    assert_eq!(pw, format!("{}\n", p.password));
    let mode = std::fs::metadata(dir.path().join("secrets/brevo")).unwrap();
    assert_eq!(mode.permissions().mode() & 0o777, 0o600);
}
