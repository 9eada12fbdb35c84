//! Delivery into a Maildir: layout, names, and what is refused.

use super::*;

#[test]
fn maildir_delivery() {
    let home = TempDir::new().unwrap();
    let body = spool(home.path(), BODY);
    let user = me(home.path());
    let out = deliver_to(&user, &message(&body), &maildir_settings());
    let Outcome::Delivered(reply) = out else {
        panic!("{out:?}")
    };
    assert_eq!(reply.to_string(), "250 2.0.0 delivered to maildir");

    let md = home.path().join("Maildir");
    for sub in ["", "tmp", "new", "cur"] {
        let m = fs::metadata(md.join(sub)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o700, "{sub}");
        assert_eq!(m.uid(), user.uid.as_raw());
    }
    assert!(files_in(&md.join("tmp")).is_empty());
    assert!(files_in(&md.join("cur")).is_empty());
    let new = files_in(&md.join("new"));
    assert_eq!(new.len(), 1);
    let m = fs::metadata(&new[0]).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o600);
    assert_eq!(m.nlink(), 1);
    let mut want =
        b"Return-Path: <cron@host.example>\nX-Original-To: root\nDelivered-To: root@host.example\n"
            .to_vec();
    want.extend_from_slice(BODY_LF);
    assert_eq!(fs::read(&new[0]).unwrap(), want);

    // The name: time.M<usec>P<pid>Q<n>.<host>
    let name = new[0].file_name().unwrap().to_str().unwrap().to_string();
    let (secs, rest) = name.split_once('.').unwrap();
    assert!(secs.parse::<u64>().is_ok(), "{name}");
    let pid = format!("P{}Q", std::process::id());
    assert!(rest.starts_with('M') && rest.contains(&pid), "{name}");
    assert!(!name.contains('/') && !name.contains(':'), "{name}");

    // A second delivery gets another name.
    assert!(matches!(
        deliver_to(&user, &message(&body), &maildir_settings()),
        Outcome::Delivered(_)
    ));
    assert_eq!(files_in(&md.join("new")).len(), 2);
}

#[test]
fn maildir_in_a_subdirectory() {
    let home = TempDir::new().unwrap();
    let body = spool(home.path(), BODY);
    let settings = LocalSettings {
        maildir: "./Mail/inbox/".into(),
        ..LocalSettings::default()
    };
    let out = deliver_to(&me(home.path()), &message(&body), &settings);
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(files_in(&home.path().join("Mail/inbox/new")).len(), 1);
}

#[test]
fn maildir_host_escaping() {
    assert_eq!(maildir::escape_host("a/b:c.d"), "a\\057b\\072c.d");
}

#[test]
fn maildir_path_must_stay_in_home() {
    let home = TempDir::new().unwrap();
    let body = spool(home.path(), BODY);
    for bad in ["/var/mail/x", "../other/Maildir", "Mail/../../x", "", "./"] {
        let settings = LocalSettings {
            maildir: bad.into(),
            ..LocalSettings::default()
        };
        let r = deferred(deliver_to(&me(home.path()), &message(&body), &settings));
        assert!(r.to_string().contains("relative to the home"), "{bad}: {r}");
    }
}

#[test]
fn missing_home_is_deferred_with_its_path() {
    let dir = TempDir::new().unwrap();
    let body = spool(dir.path(), BODY);
    let home = dir.path().join("no-such-home");
    let r = deferred(deliver_to(&me(&home), &message(&body), &maildir_settings()));
    assert_eq!(r.status(), "4.3.0");
    let text = r.to_string();
    assert!(text.contains(&home.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(!home.exists());
}

#[test]
fn maildir_symlink_to_own_directory_is_followed() {
    let home = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    symlink(elsewhere.path(), home.path().join("Maildir")).unwrap();
    let body = spool(home.path(), BODY);
    let out = deliver_to(&me(home.path()), &message(&body), &maildir_settings());
    assert!(matches!(out, Outcome::Delivered(_)), "{out:?}");
    assert_eq!(files_in(&elsewhere.path().join("new")).len(), 1);
}

#[test]
fn maildir_symlink_to_someone_elses_directory_is_refused() {
    if !crate::test_root::require_root("making a directory of another user") {
        return;
    }
    let home = TempDir::new().unwrap();
    let victim = TempDir::new().unwrap();
    std::os::unix::fs::chown(victim.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir(victim.path().join(sub)).unwrap();
        std::os::unix::fs::chown(victim.path().join(sub), Some(NOBODY), Some(NOBODY)).unwrap();
    }
    symlink(victim.path(), home.path().join("Maildir")).unwrap();
    let body = spool(home.path(), BODY);
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(&body),
        &maildir_settings(),
    ));
    let text = r.to_string();
    assert!(text.contains("refusing to deliver into"), "{text}");
    assert!(text.contains(&format!("uid {NOBODY}")), "{text}");
    for sub in ["tmp", "new", "cur"] {
        assert!(files_in(&victim.path().join(sub)).is_empty());
    }
    // The same for a subdirectory.
    fs::remove_file(home.path().join("Maildir")).unwrap();
    fs::create_dir(home.path().join("Maildir")).unwrap();
    symlink(victim.path().join("new"), home.path().join("Maildir/new")).unwrap();
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(&body),
        &maildir_settings(),
    ));
    assert!(r.to_string().contains("refusing to deliver into"), "{r}");
    assert!(files_in(&home.path().join("Maildir/tmp")).is_empty());
}

#[test]
fn maildir_not_created_in_a_home_the_user_does_not_own() {
    if !crate::test_root::require_root("chown") {
        return;
    }
    let home = TempDir::new().unwrap();
    std::os::unix::fs::chown(home.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let body = spool(&std::env::temp_dir(), b"x\r\n");
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(&body),
        &maildir_settings(),
    ));
    assert!(r.to_string().contains("will not create"), "{r}");
    assert!(!home.path().join("Maildir").exists());
}

#[test]
fn maildir_unreadable_body_leaves_no_tmp_file() {
    let home = TempDir::new().unwrap();
    let body_dir = TempDir::new().unwrap(); // reading a directory fails
    let r = deferred(deliver_to(
        &me(home.path()),
        &message(body_dir.path()),
        &maildir_settings(),
    ));
    assert!(r.to_string().contains("cannot read queue file"), "{r}");
    assert!(files_in(&home.path().join("Maildir/tmp")).is_empty());
    assert!(files_in(&home.path().join("Maildir/new")).is_empty());
}
