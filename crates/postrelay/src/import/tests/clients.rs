//! msmtp and nullmailer: accounts and their inheritance, passwords.

use std::path::PathBuf;

use crate::import::{NoteKind, SecretSink, msmtp, nullmailer};

#[test]
fn msmtp_default_account_inherits_and_passwordeval_is_a_todo() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("msmtprc");
    std::fs::write(
        &rc,
        "defaults\nport 587\ntls on\n\naccount base\nhost smtp.base.example\nauth on\nuser base-user\n\
         account work : base\npasswordeval \"pass show mail\"\nauth cram-md5\n\naccount default : work\n",
    )
    .unwrap();
    let sink = SecretSink::Refer(PathBuf::from("/etc/postrelay/secrets"));
    let i = msmtp::import(&rc, &sink).unwrap();
    assert!(
        i.text.contains("host = \"smtp.base.example\"") && i.text.contains("port = 587"),
        "{}",
        i.text
    );
    let todo: Vec<String> = i.report.notes.iter().map(|n| n.to_string()).collect();
    let todo = todo.join("\n");
    assert!(
        todo.contains("msmtprc:2: account base: not carried over")
            || todo.contains("account base: not carried over"),
        "{todo}"
    );
    assert!(todo.contains("auth cram-md5: not carried over"), "{todo}");
    // cram-md5: no credentials, so the relay is used without AUTH.
    assert!(!i.text.contains("username"), "{}", i.text);
}

#[test]
fn msmtp_inline_password_without_output_is_referenced_not_copied() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("msmtprc");
    std::fs::write(
        &rc,
        "account a\nhost smtp.a.example\ntls on\nauth on\nuser u\npassword hunter2\n",
    )
    .unwrap();
    let sink = SecretSink::Refer(dir.path().join("secrets"));
    let i = msmtp::import(&rc, &sink).unwrap();
    assert!(!i.text.contains("hunter2"));
    assert!(!dir.path().join("secrets").exists());
    let action = i
        .report
        .notes
        .iter()
        .find(|n| n.kind == NoteKind::Action)
        .unwrap();
    assert!(!action.to_string().contains("hunter2"), "{action}");
    assert!(action.why.contains("was not copied"), "{action}");
    // The password file does not exist yet: that is the problem to fix.
    assert!(i.problem.unwrap().contains("password_file"));
}

#[test]
fn msmtp_without_accounts_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("msmtprc");
    std::fs::write(&rc, "defaults\ntls on\n").unwrap();
    let e = msmtp::import(&rc, &SecretSink::Refer(PathBuf::from("/x"))).unwrap_err();
    assert!(e.to_string().contains("no \"account\""), "{e}");
}

#[test]
fn nullmailer_password_never_shown_and_bad_port_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("remotes"),
        "smtp.a.example smtp --starttls --user=u --pass=pw-XYZ\n",
    )
    .unwrap();
    let sink = SecretSink::Refer(dir.path().join("secrets"));
    let i = nullmailer::import(dir.path(), &sink).unwrap();
    let all: Vec<String> = i.report.notes.iter().map(|n| n.to_string()).collect();
    assert!(!i.text.contains("pw-XYZ") && !all.join("\n").contains("pw-XYZ"));
    assert!(i.text.contains("--pass=<redacted>"), "{}", i.text);
    std::fs::write(dir.path().join("remotes"), "smtp.a.example smtp --port=0\n").unwrap();
    let e = nullmailer::import(dir.path(), &sink).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("remotes:1: --port=0: not a port number"),
        "{e}"
    );
}
