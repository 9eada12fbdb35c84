//! The mail log through a real syslog daemon: a private `rsyslogd` reads
//! its own socket (as it reads /dev/log) and writes facility `mail` to a
//! file, as Debian's `mail.* -/var/log/mail.log` does. With
//! `log.syslog_name = "postfix"` the lines are Postfix's to the letter and
//! `pflogsumm` reads them without options.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{Daemon, Options};
use support::peers;
use support::pflogsumm::grand_totals;
use support::smtp::Raw;

/// rsyslogd in the foreground on a socket of its own; killed on drop.
struct Rsyslog {
    child: Child,
    dir: tempfile::TempDir,
}

impl Rsyslog {
    fn start() -> Rsyslog {
        let dir = tempfile::Builder::new()
            .prefix("postrelay-rsyslog")
            .tempdir()
            .unwrap();
        let d = dir.path().display();
        let conf = format!(
            "global(workDirectory=\"{d}\")\n\
             module(load=\"imuxsock\" SysSock.Use=\"off\")\n\
             input(type=\"imuxsock\" Socket=\"{d}/log\")\n\
             mail.* action(type=\"omfile\" file=\"{d}/mail.log\" template=\"RSYSLOG_TraditionalFileFormat\")\n\
             *.*;mail.none action(type=\"omfile\" file=\"{d}/other.log\")\n"
        );
        std::fs::write(dir.path().join("rsyslog.conf"), conf).unwrap();
        let child = Command::new("rsyslogd")
            .args(["-n", "-f"])
            .arg(dir.path().join("rsyslog.conf"))
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let socket = dir.path().join("log");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Rsyslog { child, dir }
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn mail_log_reaches_syslog_facility_mail_in_postfix_form() {
    if !peers::require("rsyslogd") || !peers::require("pflogsumm") {
        return;
    }
    let syslog = Rsyslog::start();
    let d = Daemon::start_with(Options {
        log: format!(
            "to = \"syslog\"\nsyslog_name = \"postfix\"\nsyslog_socket = \"{}\"\n",
            syslog.dir.path().join("log").display()
        ),
        ..Options::default()
    });
    let (mut c, _) = Raw::connect(d.port);
    assert_eq!(c.cmd("EHLO client.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<alice@example.org>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<bob@example.com>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: syslog\r\n\r\nbody\r\n");
    let reply = c.cmd(".");
    assert_eq!(reply.code, 250);
    let id = reply.text().rsplit(' ').next().unwrap().to_string();

    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = syslog.file("mail.log");
        if log.contains(&format!("{id}: from=<alice@example.org>")) {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "nothing in mail.log:\n{log}\n{}",
            syslog.file("other.log")
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // "Dec  7 04:06:56 relay postfix/smtpd[123]: ID: client=client.example[127.0.0.1]"
    let client = log
        .lines()
        .find(|l| l.contains(&format!("]: {id}: client=client.example[127.0.0.1]")))
        .unwrap_or_else(|| panic!("no client= line:\n{log}"));
    let tag = client.split_whitespace().nth(4).unwrap();
    assert!(
        tag.starts_with("postfix/smtpd[") && tag.ends_with("]:"),
        "{client}"
    );
    assert!(
        d.maillog().is_empty(),
        "to = \"syslog\" must not also write the file"
    );
    assert!(!syslog.file("other.log").contains(&id), "not facility mail");

    let report = Command::new("pflogsumm")
        .arg(syslog.dir.path().join("mail.log"))
        .output()
        .unwrap();
    let report = String::from_utf8(report.stdout).unwrap();
    assert_eq!(grand_totals(&report).get("received"), Some(&1), "{report}");
}
