//! `postrelay import-postfix`, `import-msmtp` and `import-nullmailer` on
//! the files an administrator has, pointed at the real Postfix provider
//! (STARTTLS + AUTH on one port, implicit TLS + AUTH on the other, its own
//! CA): the imported configuration is started as it was written (only the
//! test's spool, port and log added) and must deliver authenticated over
//! verified TLS, the CA coming from the imported file.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use support::daemon::{Daemon, bin};
use support::peers::require;
use support::provider::Provider;
use support::smtp::send_one;

/// The guide's Postfix files in a fresh directory: main.cf (with the
/// provider's CA as `smtp_tls_CAfile`), sasl_passwd (0600) and the
/// transport map, for the provider's `port`.
fn guide_files(p: &Provider, port: u16, wrapper: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrappermode = if wrapper {
        "smtp_tls_wrappermode = yes\n"
    } else {
        ""
    };
    let main_cf = format!(
        "# the guide's null client\n\
         myhostname = relay.test\n\
         mydestination = $myhostname,\n    localhost\n\
         inet_interfaces = loopback-only\n\
         relayhost = [127.0.0.1]:{port}\n\
         smtp_sasl_auth_enable = yes\n\
         smtp_sasl_password_maps = hash:$config_directory/sasl_passwd\n\
         smtp_sasl_security_options = noanonymous\n\
         smtp_tls_security_level = encrypt\n\
         smtp_tls_CAfile = {ca}\n\
         {wrappermode}\
         header_size_limit = 4096000\n\
         transport_maps = hash:${{config_directory}}/transport\n\
         smtp_tls_loglevel = 1\n",
        ca = p.ca_file().display(),
    );
    std::fs::write(d.join("main.cf"), main_cf).unwrap();
    let sasl = d.join("sasl_passwd");
    std::fs::write(
        &sasl,
        format!("[127.0.0.1]:{port} {}:{}\n", p.user, p.password),
    )
    .unwrap();
    std::fs::set_permissions(&sasl, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        d.join("transport"),
        format!("mydomain.com    local:\n*               smtp:[127.0.0.1]:{port}\n"),
    )
    .unwrap();
    dir
}

fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("POSTRELAY_CONFIG")
        .output()
        .unwrap()
}

/// `check-config` on `config`, which must accept it; its output.
fn check_config(config: &Path) -> String {
    let check = run(&["check-config", "--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{stderr}");
    String::from_utf8_lossy(&check.stdout).into_owned()
}

/// Starts the daemon on the imported file, with the test's spool, control
/// socket, listening port and log added (and a host name and listener
/// when the import wrote none).
fn start_imported(config: &Path) -> Daemon {
    let mut imported = std::fs::read_to_string(config).unwrap();
    if !imported.contains("\n[intake]\n") {
        imported.push_str("\n[intake]\nlisten = [\"127.0.0.1:25\"]\n");
    }
    let hostname = if imported.contains("\nhostname = ") {
        ""
    } else {
        "hostname = \"relay.test\"\n"
    };
    assert!(
        imported.contains("listen = [\"127.0.0.1:25\"]"),
        "{imported}"
    );
    Daemon::start_with_text(
        |dir, port| {
            format!(
                "{hostname}spool = \"{spool}\"\ncontrol_socket = \"{sock}\"\n{text}\n[daemon]\nuser = \"root\"\n[log]\nfile = \"{log}\"\nlevel = \"debug\"\n",
                spool = dir.join("spool").display(),
                sock = dir.join("control.sock").display(),
                log = dir.join("mail.log").display(),
                text = imported.replace("\"127.0.0.1:25\"]", &format!("\"127.0.0.1:{port}\"]")),
            )
        },
        Vec::new(),
        None,
    )
}

fn imports_the_guide_and_delivers(wrapper: bool) {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let port = if wrapper {
        p.implicit_port
    } else {
        p.starttls_port
    };
    let files = guide_files(&p, port, wrapper);
    let out_file = files.path().join("postrelay.toml");
    let dir = files.path().to_str().unwrap();
    let out = run(&[
        "import-postfix",
        dir,
        "--output",
        out_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    for shown in [&text, &stderr.to_string()] {
        assert!(
            !shown.contains(&p.password),
            "a password was shown:\n{shown}"
        );
    }
    // The report: the level raised, what was dropped, what to do.
    assert!(
        stderr
            .contains("main.cf:10: smtp_tls_security_level = encrypt: carried over with a change"),
        "{stderr}"
    );
    assert!(
        stderr.contains("smtp_tls_loglevel = 1: not carried over"),
        "{stderr}"
    );
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(text.contains("header_size_limit = 4096000"), "{text}");

    let d = start_imported(&out_file);
    let check = d.cli(&["check-config"]);
    let routes = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{check:?}");
    let tls = if wrapper { "implicit" } else { "auto" };
    let line = format!(
        " *: smtp:[127.0.0.1]:{port} = relay \"relayhost\" (tls {tls}, TLS required, certificate verified (security verify, ca_file {ca}), AUTH as \"{user}\" (from {sasl}))",
        ca = p.ca_file().display(),
        user = p.user,
        sasl = files.path().join("sasl_passwd").display(),
    );
    assert!(
        routes.lines().any(|l| l.ends_with(&line)),
        "no route {line}:\n{routes}"
    );
    assert!(
        routes.contains(" mydomain.com: delivered on this host"),
        "{routes}"
    );

    send_one(d.port, "rcpt@dest.example", "imported from postfix");
    let got = p.wait_delivered(1, Duration::from_secs(60));
    let m = String::from_utf8_lossy(&got[0].1);
    assert!(m.contains("Subject: imported from postfix"), "{m}");
    assert!(m.contains("using TLS"), "not over TLS: {m}");
    p.assert_auth_plain();
}

#[test]
fn the_guides_postfix_setup_imports_and_delivers_over_starttls() {
    imports_the_guide_and_delivers(false);
}

#[test]
fn the_wrapper_mode_variant_imports_and_delivers_over_implicit_tls() {
    imports_the_guide_and_delivers(true);
}

/// An msmtprc with the password inline: the password goes to a new 0600
/// file next to the output, never to the configuration or the terminal,
/// and the result passes check-config.
#[test]
fn msmtprc_imports_with_its_password_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("msmtprc");
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    std::fs::write(
        &rc,
        format!(
            "defaults\nauth on\ntls on\ntls_trust_file {ca}\nlogfile ~/.msmtp.log\n\n\
             account provider\nhost smtp.provider.example\nport 465\ntls_starttls off\n\
             from alerts@example.com\nuser \"relay user\"\npassword \"s3cret pass\"\n\n\
             account other\nhost smtp.other.example\n\naccount default : provider\n",
            ca = ca.display()
        ),
    )
    .unwrap();
    let out_file = dir.path().join("etc/postrelay.toml");
    std::fs::create_dir(dir.path().join("etc")).unwrap();
    let out = run(&[
        "import-msmtp",
        rc.to_str().unwrap(),
        "-o",
        out_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(
        !text.contains("s3cret") && !stderr.contains("s3cret"),
        "{text}\n{stderr}"
    );
    let pw = dir.path().join("etc/secrets/msmtp");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "s3cret pass\n");
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        stderr.contains("account other: not carried over"),
        "{stderr}"
    );
    assert!(
        stderr.contains("logfile ~/.msmtp.log: not carried over"),
        "{stderr}"
    );

    let shown = check_config(&out_file);
    for want in [
        "host = \"smtp.provider.example\"",
        "port = 465",
        "tls = \"implicit\"",
        "security = \"verify\"",
        "username = \"relay user\"",
        "rewrite_senders = \"alerts@example.com\"",
    ] {
        assert!(shown.contains(want), "{want}:\n{shown}");
    }
    assert!(
        shown.contains(&format!("ca_file = \"{}\"", ca.display())),
        "{shown}"
    );
}

/// nullmailer's remotes: each line a relay, in order; the password in a
/// file; `me` gives the host name; check-config accepts the result.
#[test]
fn nullmailer_remotes_import_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("remotes"),
        "# primary, then a backup\nsmtp.provider.example smtp --port=587 --starttls --user=u1 --pass=pw-one\n\
         backup.example smtp --ssl --insecure\nold.example qmqp\n",
    )
    .unwrap();
    std::fs::write(d.join("me"), "host.example.org\n").unwrap();
    std::fs::write(d.join("adminaddr"), "ops@example.org\n").unwrap();
    let out_file = d.join("out.toml");
    let out = run(&[
        "import-nullmailer",
        d.to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("pw-one"), "{stderr}");
    assert!(
        stderr
            .contains("remotes:4: old.example qmqp: not carried over: postrelay speaks SMTP only"),
        "{stderr}"
    );
    assert!(
        stderr.contains("adminaddr: ops@example.org: not carried over"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("secrets/remote-1")).unwrap(),
        "pw-one\n"
    );

    let shown = check_config(&out_file);
    assert!(shown.contains("hostname = \"host.example.org\""), "{shown}");
    let first = shown.find("name = \"remote-1\"").expect(&shown);
    let second = shown.find("name = \"remote-2\"").expect(&shown);
    assert!(first < second, "{shown}");
    let backup = &shown[second..];
    assert!(
        backup.contains("port = 465")
            && backup.contains("tls = \"implicit\"")
            && backup.contains("security = \"encrypt\""),
        "{backup}"
    );
    assert!(
        shown[first..second].contains("security = \"verify\""),
        "{shown}"
    );
}

/// An msmtprc for the provider's implicit-TLS port, password inline: once
/// imported (the password into its own file), the daemon delivers with it,
/// authenticated over TLS verified against the msmtprc's trust file.
#[test]
fn an_imported_msmtprc_delivers_with_its_password_file() {
    if !(require("postfix") && require("saslpasswd2")) {
        return;
    }
    let p = Provider::start();
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("msmtprc");
    std::fs::write(
        &rc,
        format!(
            "defaults\ntls on\ntls_trust_file {ca}\n\naccount provider\nhost 127.0.0.1\nport {port}\n\
             tls_starttls off\nauth on\nuser {user}\npassword {pw}\n\naccount default : provider\n",
            ca = p.ca_file().display(),
            port = p.implicit_port,
            user = p.user,
            pw = p.password,
        ),
    )
    .unwrap();
    let out_file = dir.path().join("postrelay.toml");
    let out = run(&[
        "import-msmtp",
        rc.to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(&p.password), "{stderr}");

    let d = start_imported(&out_file);
    send_one(d.port, "rcpt@dest.example", "imported from msmtp");
    let got = p.wait_delivered(1, Duration::from_secs(60));
    let m = String::from_utf8_lossy(&got[0].1);
    assert!(m.contains("Subject: imported from msmtp"), "{m}");
    assert!(m.contains("using TLS"), "not over TLS: {m}");
    p.assert_auth_plain();
}
