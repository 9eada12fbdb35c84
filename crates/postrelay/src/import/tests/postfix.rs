//! main.cf to a configuration: each setting carried over or reported, the
//! security rule, tables, and the loader's refusals turned into comments.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::import::{Imported, NoteKind, postfix};

/// Writes `main_cf` (with `{dir}` standing for the directory) and the
/// given files into a fresh directory, and imports it.
fn import(main_cf: &str, files: &[(&str, &str)]) -> (tempfile::TempDir, Imported) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("main.cf"), main_cf.replace("{dir}", &d)).unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let imported = postfix::import(dir.path()).unwrap();
    (dir, imported)
}

fn notes(i: &Imported, kind: NoteKind) -> String {
    let list: Vec<String> = i
        .report
        .notes
        .iter()
        .filter(|n| n.kind == kind)
        .map(|n| n.to_string())
        .collect();
    list.join("\n")
}

/// Debian's stock main.cf for a satellite, plus the guide's relay lines.
const DEBIAN: &str = "\
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_security_level=may
smtp_tls_CApath=/etc/ssl/certs
smtp_tls_security_level=may
smtp_tls_session_cache_database = btree:${data_directory}/smtp_scache
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = host.example.org
alias_maps = hash:{dir}/aliases
alias_database = hash:/etc/aliases
mydestination = $myhostname, localhost.$mydomain, localhost
relayhost = [smtp.provider.example]:587
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = loopback-only
inet_protocols = all
smtp_sasl_auth_enable = yes
smtp_sasl_password_maps = hash:{dir}/sasl_passwd
smtp_sasl_security_options = noanonymous
maximal_queue_lifetime = 2d
minimal_backoff_time = 600
maximal_backoff_time = 2h
message_size_limit = 0
some_future_parameter = 1
";

#[test]
fn every_setting_is_carried_over_or_reported() {
    let files = [
        ("aliases", "postmaster: root\n"),
        ("sasl_passwd", "[smtp.provider.example]:587 u:SECRET-PW\n"),
    ];
    let (_dir, i) = import(DEBIAN, &files);
    assert_eq!(i.problem, None, "{}", i.text);
    for (n, line) in DEBIAN.lines().enumerate() {
        let origin = format!("main.cf:{}", n + 1);
        let in_text = i.text.contains(&format!("# {origin}: "));
        let noted = i.report.notes.iter().any(|note| note.origin == origin);
        let quiet = line.starts_with("smtp_sasl_security_options = noanonymous")
            || line.starts_with("smtp_sasl_auth_enable");
        assert!(
            in_text || noted || quiet,
            "{line:?} neither carried over nor reported:\n{}",
            i.text
        );
    }
    assert!(!i.text.contains("SECRET-PW"));
    let text = &i.text;
    for want in [
        "hostname = \"host.example.org\"",
        "local_domains = [\"host.example.org\", \"localhost.example.org\", \"localhost\"]",
        "mynetworks = [\"127.0.0.0/8\", \"::1/128\"]",
        "listen = [\"127.0.0.1:25\"]",
        "max_lifetime = \"2d\"",
        "min_backoff = \"600s\"",
        "max_backoff = \"2h\"",
        "aliases = \"",
        "mailbox = \"mbox\"",
        "host = \"smtp.provider.example\"",
        "port = 587",
        "security = \"verify\"",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    let dropped = notes(&i, NoteKind::NotCarried);
    assert!(
        dropped.contains(
            "main.cf:29: some_future_parameter = 1: not carried over: postrelay has no such setting"
        ),
        "{dropped}"
    );
    assert!(
        dropped.contains("message_size_limit = 0: not carried over: postrelay always bounds"),
        "{dropped}"
    );
    let changed = notes(&i, NoteKind::Changed);
    assert!(
        changed.contains(
            "smtp_tls_security_level = may: carried over with a change: the relay authenticates"
        ),
        "{changed}"
    );
    // The result loads as check-config would load it.
    crate::config::parse(&i.text, "t").unwrap();
}

#[test]
fn security_is_raised_for_authentication_only() {
    let cases = [
        ("smtp_tls_security_level = may\n", false, "may", false),
        ("smtp_tls_security_level = may\n", true, "verify", true),
        (
            "smtp_tls_security_level = encrypt\n",
            false,
            "encrypt",
            false,
        ),
        ("smtp_tls_security_level = secure\n", true, "verify", false),
        ("smtp_tls_security_level = verify\n", false, "verify", false),
        ("smtp_tls_security_level = dane\n", false, "verify", true),
        ("", false, "may", true),
        ("", true, "verify", true),
        ("smtp_tls_security_level = none\n", false, "none", false),
    ];
    for (level, auth, want, noted) in cases {
        let sasl = if auth {
            "smtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = hash:{dir}/sasl_passwd\n"
        } else {
            ""
        };
        let text = format!("relayhost = [smtp.provider.example]:587\n{level}{sasl}");
        let (_dir, i) = import(
            &text,
            &[("sasl_passwd", "[smtp.provider.example]:587 u:p\n")],
        );
        assert!(
            i.text.contains(&format!("security = \"{want}\"")),
            "{level} {auth}:\n{}",
            i.text
        );
        let changed = notes(&i, NoteKind::Changed);
        assert_eq!(
            changed.contains("security"),
            noted,
            "{level} {auth}: {changed}"
        );
    }
}

#[test]
fn relayhost_lists_become_relays_in_order() {
    let (_dir, i) = import(
        "relayhost = [a.example]:587, b.example:submission\nsmtp_tls_wrappermode = yes\n",
        &[],
    );
    let a = i.text.find("name = \"relayhost\"").unwrap();
    let b = i.text.find("name = \"relayhost-2\"").unwrap();
    assert!(a < b, "{}", i.text);
    assert_eq!(
        i.text.matches("tls = \"implicit\"").count(),
        2,
        "{}",
        i.text
    );
    let changed = notes(&i, NoteKind::Changed);
    assert!(
        changed.contains("b.example: without brackets Postfix looks up MX records"),
        "{changed}"
    );
    assert!(changed.contains("tried in the order written"), "{changed}");
}

#[test]
fn tables_postrelay_cannot_read_are_reported() {
    let main_cf = "transport_maps = regexp:/etc/postfix/transport.re, hash:{dir}/transport\nsmtp_generic_maps = mysql:/etc/postfix/generic.cf\nsender_dependent_relayhost_maps = hash:/etc/postfix/sender_relay\n";
    let (dir, i) = import(main_cf, &[("transport", "example.com local:\n")]);
    let transport = dir.path().join("transport");
    assert!(
        i.text
            .contains(&format!("transport = \"{}\"", transport.display())),
        "{}",
        i.text
    );
    assert!(!i.text.contains("generic ="), "{}", i.text);
    let dropped = notes(&i, NoteKind::NotCarried);
    for want in [
        "regexp:/etc/postfix/transport.re: regexp: tables match patterns",
        "mysql:/etc/postfix/generic.cf: mysql: tables are queried from a service",
        "sender_dependent_relayhost_maps = hash:/etc/postfix/sender_relay: not carried over: postrelay's [routing] sender_relay names relays",
    ] {
        assert!(dropped.contains(want), "{want}:\n{dropped}");
    }
}

#[test]
fn a_table_the_loader_refuses_is_commented_out_with_the_reason() {
    let main_cf =
        "transport_maps = hash:{dir}/transport\nrelayhost = [smtp.provider.example]:587\n";
    let (_dir, i) = import(
        main_cf,
        &[("transport", "example.com relay:[gateway.example]\n")],
    );
    assert_eq!(i.problem, None);
    assert!(i.text.contains("# not carried over: "), "{}", i.text);
    assert!(i.text.contains("\n# transport = \""), "{}", i.text);
    let dropped = notes(&i, NoteKind::NotCarried);
    assert!(dropped.contains("transport_maps = hash:"), "{dropped}");
    assert!(dropped.contains("postrelay refuses it"), "{dropped}");
    crate::config::parse(&i.text, "t").unwrap();
}

#[test]
fn a_badly_protected_sasl_passwd_stays_and_is_the_problem() {
    let main_cf = "relayhost = [smtp.provider.example]:587\nsmtp_sasl_auth_enable = yes\nsmtp_sasl_password_maps = hash:{dir}/sasl_passwd\n";
    let (dir, i) = import(main_cf, &[]);
    let sasl = dir.path().join("sasl_passwd");
    assert!(
        i.text
            .contains(&format!("\nsasl_passwd = \"{}\"", sasl.display())),
        "{}",
        i.text
    );
    let problem = i.problem.expect("a missing sasl_passwd is a problem");
    assert!(problem.contains("delivery.sasl_passwd"), "{problem}");
}

#[test]
fn credentials_without_auth_enable_are_not_carried_over() {
    let main_cf = "relayhost = [smtp.provider.example]:587\nsmtp_sasl_password_maps = hash:{dir}/sasl_passwd\n";
    let (_dir, i) = import(
        main_cf,
        &[("sasl_passwd", "[smtp.provider.example]:587 u:p\n")],
    );
    assert!(!i.text.contains("sasl_passwd ="), "{}", i.text);
    assert!(notes(&i, NoteKind::NotCarried).contains("smtp_sasl_auth_enable is not yes"));
}

#[test]
fn a_ca_file_goes_to_the_relay_and_other_hops_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let main_cf = format!(
        "relayhost = [smtp.provider.example]:587\nsmtp_tls_security_level = secure\nsmtp_tls_CAfile = {}\ntransport_maps = hash:{{dir}}/transport\n",
        ca.display()
    );
    let (_d, i) = import(
        &main_cf,
        &[(
            "transport",
            "* smtp:[smtp.provider.example]:587\nother.example smtp:[mx.other.example]:25\n",
        )],
    );
    assert!(
        i.text.contains(&format!("ca_file = \"{}\"", ca.display())),
        "{}",
        i.text
    );
    let changed = notes(&i, NoteKind::Changed);
    assert!(
        changed.contains("other.example: smtp:[mx.other.example]:25 is not the relayhost"),
        "{changed}"
    );
    assert!(
        !changed.contains("smtp:[smtp.provider.example]:587 is not"),
        "{changed}"
    );
}

#[test]
fn a_missing_main_cf_and_a_broken_one_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = postfix::import(dir.path()).unwrap_err();
    assert!(matches!(e, crate::import::ImportError::Read { .. }), "{e}");
    std::fs::write(
        dir.path().join("main.cf"),
        "relayhost = [a]\n  \nbroken line\n",
    )
    .unwrap();
    let e = postfix::import(dir.path()).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("main.cf:3: \"broken line\" is not \"name = value\""),
        "{e}"
    );
    let _ = Path::new("");
}

#[test]
fn without_a_relayhost_the_report_says_where_mail_goes() {
    let (_dir, i) = import("myhostname = host.example.org\n", &[]);
    let changed = notes(&i, NoteKind::Changed);
    assert!(changed.contains("main.cf: relayhost not set: carried over with a change: Postfix delivers mail without a relayhost to the recipients' MX hosts"), "{changed}");
    let (_dir, i) = import("relayhost = [smtp.provider.example]\n", &[]);
    assert!(!notes(&i, NoteKind::Changed).contains("MX hosts"));
}
