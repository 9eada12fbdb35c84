//! The Debian package, built by `cargo deb` from the binaries under test
//! and installed as an administrator would: `apt-get install ./postrelay.deb`
//! on a copy of this machine (an overlay root, see `support::chroot`; the
//! host is never changed). Then mail from `mail` and from a cron-style
//! `sendmail -t` reaches the real provider, `mailq` lists what waits, an
//! upgrade keeps the queue and the configuration, and `apt-get purge`
//! leaves the file system, the accounts and dpkg's overrides as they were.
//!
//! The package is built once per run: the test binaries (debug profile,
//! debug info stripped) are put where `cargo deb --no-build` looks for
//! release binaries, so the metadata, maintainer scripts and assets are
//! exactly those of `cargo deb -p postrelay`; only the optimisation differs.
//!
//! Needs root, cargo-deb, lintian and the provider's Postfix; under CI a
//! missing one fails.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::chroot::{Chroot, describe};
use support::daemon::free_port;
use support::peers;
use support::provider::{Provider, repo_root};

/// The two packages: as built, and the same with a higher version (the
/// upgrade).
struct Debs {
    _dir: tempfile::TempDir,
    first: PathBuf,
    upgrade: PathBuf,
}

fn require_tools() -> bool {
    if !peers::require_root("installing a package into an overlay root") {
        return false;
    }
    let cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !cargo_deb {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cargo-deb is missing under CI: scripts/install-test-deps installs it"
        );
        eprintln!("SKIP: cargo-deb is not installed (cargo install cargo-deb --locked)");
        return false;
    }
    [
        "lintian",
        "dpkg-deb",
        "unshare",
        "nsenter",
        "systemd-analyze",
        "postfix",
    ]
    .iter()
    .all(|p| peers::require(p))
}

fn run_ok(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{c:?}\n{}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds the package once for all tests of this binary.
fn debs() -> &'static Debs {
    static DEBS: OnceLock<Debs> = OnceLock::new();
    DEBS.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("postrelay-deb")
            .tempdir()
            .unwrap();
        let release = dir.path().join("target/release");
        std::fs::create_dir_all(&release).unwrap();
        for (name, exe) in [
            ("postrelay", env!("CARGO_BIN_EXE_postrelay")),
            (
                "postrelay-postdrop",
                env!("CARGO_BIN_EXE_postrelay-postdrop"),
            ),
            (
                "postrelay-sendmail",
                env!("CARGO_BIN_EXE_postrelay-sendmail"),
            ),
        ] {
            let to = release.join(name);
            std::fs::copy(exe, &to).unwrap();
            run_ok(Command::new("strip").arg("--strip-debug").arg(&to));
        }
        let out_dir = dir.path().join("out");
        run_ok(
            Command::new("cargo")
                .args(["deb", "-p", "postrelay", "--no-build", "--fast", "-o"])
                .arg(&out_dir)
                .env("CARGO_TARGET_DIR", dir.path().join("target"))
                .current_dir(repo_root()),
        );
        let first = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .expect("cargo deb wrote no .deb");
        // The upgrade: the same package with the next revision.
        let unpacked = dir.path().join("unpacked");
        run_ok(
            Command::new("dpkg-deb")
                .arg("-R")
                .arg(&first)
                .arg(&unpacked),
        );
        let control = unpacked.join("DEBIAN/control");
        let text = std::fs::read_to_string(&control).unwrap();
        let version = text
            .lines()
            .find_map(|l| l.strip_prefix("Version: "))
            .unwrap()
            .to_string();
        let next = format!("{version}.1");
        std::fs::write(
            &control,
            text.replace(&format!("Version: {version}"), &format!("Version: {next}")),
        )
        .unwrap();
        let upgrade = dir.path().join("postrelay-upgrade.deb");
        run_ok(
            Command::new("dpkg-deb")
                .args(["--root-owner-group", "-Zgzip", "-z1", "-b"])
                .arg(&unpacked)
                .arg(&upgrade),
        );
        Debs {
            _dir: dir,
            first,
            upgrade,
        }
    })
}

#[test]
fn lintian_finds_no_errors() {
    if !require_tools() {
        return;
    }
    let out = Command::new("lintian")
        .arg("--fail-on")
        .arg("error")
        .arg(&debs().first)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("E:")).collect();
    assert!(
        out.status.success() && errors.is_empty(),
        "lintian errors:\n{}",
        describe(&out)
    );
    eprintln!("lintian:\n{text}");
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    if !peers::require("systemd-analyze") {
        return;
    }
    // Offline, on the unit as shipped but for the binary's path (the
    // installed unit is verified again, man pages included, below).
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("debian/postrelay.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/sbin/postrelay run"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("postrelay.service");
    std::fs::write(
        &path,
        unit.replace("/usr/sbin/postrelay", env!("CARGO_BIN_EXE_postrelay")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        describe(&out)
    );
}

/// What a path is, for the before/after comparison.
fn describe_path(path: &Path) -> Option<String> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let kind = if m.file_type().is_symlink() {
        format!("-> {}", std::fs::read_link(path).ok()?.display())
    } else if m.is_dir() {
        "dir".to_string()
    } else {
        format!("file {}", m.len())
    };
    Some(format!(
        "{kind} {:o} {}:{}",
        m.permissions().mode() & 0o7777,
        m.uid(),
        m.gid()
    ))
}

/// Bookkeeping that packaging changes anyway.
const NOT_COMPARED: &[&str] = &[
    "/var/lib/dpkg",
    "/var/lib/apt",
    "/var/cache",
    "/var/log",
    "/var/backups",
    "/var/lib/man-db",
    "/etc/passwd-",
    "/etc/group-",
    "/etc/shadow-",
    "/etc/gshadow-",
    "/etc/ld.so.cache",
];

/// Every path the chroot changed (its overlay's upper layer holds exactly
/// those: new and modified files, and whiteouts for removed ones), with
/// what is there now. Changes to the host meanwhile are not in it.
fn changes(root: &Chroot) -> BTreeMap<String, Option<String>> {
    let upper = root.upper();
    let mut out = BTreeMap::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        for e in std::fs::read_dir(upper.join(rel.trim_start_matches('/')))
            .unwrap()
            .flatten()
        {
            let p = format!("{rel}/{}", e.file_name().to_string_lossy());
            if NOT_COMPARED
                .iter()
                .any(|n| p == *n || p.starts_with(&format!("{n}/")))
            {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.clone(), describe_path(&root.host_path(&p)));
        }
    }
    for f in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
        let text = std::fs::read_to_string(root.host_path(f)).unwrap();
        out.insert(format!("{f} content"), Some(text));
    }
    out
}

/// The files of installed packages `names`, as dpkg lists them, under
/// both names where /lib, /bin and /sbin are links into /usr.
fn package_files(root: &Chroot, names: &[&str]) -> BTreeSet<String> {
    let mut script = String::new();
    for n in names {
        script.push_str(&format!("dpkg -L {n}; "));
    }
    let mut files = BTreeSet::new();
    for p in root.sh(&script).lines() {
        if ["/lib/", "/bin/", "/sbin/"]
            .iter()
            .any(|d| p.starts_with(d))
        {
            files.insert(format!("/usr{p}"));
        }
        files.insert(p.to_string());
    }
    files
}

/// Whether a change at `key` is the removal of a displaced package (the
/// MTA postrelay replaced, and mail(1), which apt removes with the last
/// MTA): its files, and the alternatives it had registered.
fn removed_with(
    displaced: &BTreeSet<String>,
    key: &str,
    was: Option<&str>,
    now: &BTreeMap<String, Option<String>>,
) -> bool {
    if displaced.contains(key) {
        return true;
    }
    let target = was
        .and_then(|w| w.strip_prefix("-> "))
        .and_then(|w| w.split(' ').next());
    match target {
        // /etc/alternatives/mail -> /usr/bin/bsd-mailx
        Some(t) if key.starts_with("/etc/alternatives/") => displaced.contains(t),
        // /usr/bin/mail -> /etc/alternatives/mail, removed with it
        Some(t) if t.starts_with("/etc/alternatives/") => now.get(t) == Some(&None),
        _ => false,
    }
}

fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon of the installed package, started as the unit starts it,
/// with a notify socket to know when it serves.
struct Service {
    child: std::process::Child,
}

impl Service {
    fn start(root: &Chroot) -> Service {
        let sock_path = root.host_path("/run/postrelay-notify");
        let _ = std::fs::remove_file(&sock_path);
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        // Writable by all, as systemd's own notify socket: the daemon
        // sends READY=1 after it has dropped to the user postrelay.
        std::fs::set_permissions(
            &sock_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let log = std::fs::File::create(root.host_path("/run/postrelay.stderr")).unwrap();
        let child = root
            .command("/usr/sbin/postrelay")
            .arg("run")
            .env("NOTIFY_SOCKET", "/run/postrelay-notify")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap_or_else(|e| {
            let log = std::fs::read_to_string(root.host_path("/run/postrelay.stderr"));
            panic!("the installed daemon did not report READY=1: {e}\n{log:?}")
        });
        assert!(buf[..n].starts_with(b"READY=1"));
        Service { child }
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn install_send_upgrade_purge() {
    if !require_tools() {
        return;
    }
    let debs = debs();
    let provider = Provider::start();
    let root = Chroot::new();
    // man-db's index is not what this test is about, and costs seconds.
    root.sh("echo 'man-db man-db/auto-update boolean false' | debconf-set-selections");
    let before = changes(&root);
    let displaced = package_files(&root, &["postfix", "bsd-mailx"]);

    install_replaces_the_mta(&root, debs);
    let config = configure_the_provider(&root, &provider);
    let service = Service::start(&root);
    mail_and_cron_reach_the_provider(&root, &provider);
    let id = deferred_message_in_mailq(&root);
    upgrade_keeps_config_and_queue(&root, service, &config, &id);
    purge_leaves_nothing(&root, &before, &displaced);
}

/// Install: apt replaces the MTA there is (Conflicts/Replaces/Provides);
/// the files, modes, owners, links, user, unit and man pages are there.
fn install_replaces_the_mta(root: &Chroot, debs: &Debs) {
    root.put(&debs.first, "/tmp/postrelay.deb");
    root.put(&debs.upgrade, "/tmp/postrelay-upgrade.deb");
    root.sh("apt-get install -y -q ./tmp/postrelay.deb");
    let status = root.sh(
        "dpkg-query -W -f '${db:Status-Status} ' postrelay postfix bsd-mailx 2>/dev/null || true",
    );
    assert!(status.starts_with("installed "), "postrelay: {status}");
    assert!(
        !status.contains("installed installed installed"),
        "postfix stayed installed: {status}"
    );
    let facts = root.sh(
        "stat -c '%A %U:%G %n' /usr/sbin/postrelay-postdrop /var/spool/postrelay /var/spool/postrelay/maildrop /etc/postrelay/secrets /var/log/postrelay; \
         readlink /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq; \
         getent passwd postrelay | cut -d: -f1,6,7; \
         readlink /etc/systemd/system/multi-user.target.wants/postrelay.service; \
         systemd-analyze verify /usr/lib/systemd/system/postrelay.service 2>&1; \
         man -w postrelay postrelay.toml sendmail mailq",
    );
    for want in [
        "-rwxr-sr-x root:postdrop /usr/sbin/postrelay-postdrop",
        "drwx--x--- postrelay:postdrop /var/spool/postrelay\n",
        "drwx-wx--T postrelay:postdrop /var/spool/postrelay/maildrop",
        "drwx------ postrelay:postrelay /etc/postrelay/secrets",
        "drwxr-s--- postrelay:adm /var/log/postrelay",
        "postrelay-sendmail\n../sbin/postrelay-sendmail\n../sbin/postrelay\n",
        "postrelay:/var/spool/postrelay:/usr/sbin/nologin",
        "/lib/systemd/system/postrelay.service\n",
        "/usr/share/man/man5/postrelay.toml.5.gz",
        "/usr/share/man/man1/sendmail.1.gz",
    ] {
        assert!(facts.contains(want), "{want:?} not in:\n{facts}");
    }
}

/// The administrator's configuration: the provider as relay, SMTP on a
/// free port (the host's network is shared). Returns the file's text.
fn configure_the_provider(root: &Chroot, provider: &Provider) -> String {
    let port = free_port();
    root.put(&provider.ca_file(), "/etc/postrelay/provider-ca.pem");
    std::fs::write(
        root.host_path("/etc/postrelay/secrets/provider"),
        &provider.password,
    )
    .unwrap();
    // Owned by the user the daemon drops to, which re-reads it on SIGHUP.
    root.sh("chown postrelay /etc/postrelay/secrets/provider && chmod 600 /etc/postrelay/secrets/provider");
    let config = format!(
        "hostname = \"relay.test\"\n[intake]\nlisten = [\"127.0.0.1:{port}\"]\n\
         [[relay]]\nname = \"provider\"\nhost = \"127.0.0.1\"\nport = {p}\ntls = \"starttls\"\n\
         ca_file = \"/etc/postrelay/provider-ca.pem\"\nusername = \"{user}\"\n\
         password_file = \"/etc/postrelay/secrets/provider\"\n",
        p = provider.starttls_port,
        user = provider.user,
    );
    std::fs::write(root.host_path("/etc/postrelay/postrelay.toml"), &config).unwrap();
    config
}

/// mail(1) as root, and cron's way as an unprivileged user, reach the
/// provider.
fn mail_and_cron_reach_the_provider(root: &Chroot, provider: &Provider) {
    root.sh("echo 'hello from mail' | mail -s 'mail(1) test' someone@example.com");
    root.sh(
        "printf 'To: cron-user@example.net\\nSubject: Cron <nobody@relay> job\\n\\njob output\\n' \
         | setpriv --reuid=nobody --regid=nogroup --clear-groups \
           /usr/sbin/sendmail -FCronDaemon -i -odi -oem -oi -t",
    );
    let delivered = provider.wait_delivered(2, Duration::from_secs(60));
    let all: String = delivered
        .iter()
        .map(|(_, m)| String::from_utf8_lossy(m).into_owned())
        .collect();
    for want in [
        "Subject: mail(1) test",
        "hello from mail",
        "Subject: Cron <nobody@relay> job",
        "job output",
        "X-Original-To: cron-user@example.net",
        "X-Original-To: someone@example.com",
    ] {
        assert!(all.contains(want), "{want:?} not delivered:\n{all}");
    }
}

/// A message the provider defers stays queued; mailq shows it. Returns
/// its queue ID.
fn deferred_message_in_mailq(root: &Chroot) -> String {
    root.sh("echo later | mail -s deferred fail451@example.com");
    let mut listing = String::new();
    wait_for("the deferred message in mailq", || {
        listing = root.sh("mailq");
        listing.contains("fail451@example.com") && listing.contains("451")
    });
    listing
        .lines()
        .find_map(|l| l.split_whitespace().next().filter(|w| w.len() == 26))
        .unwrap_or_else(|| panic!("no queue id in:\n{listing}"))
        .to_string()
}

/// Upgrade (as dpkg does it without systemd: the running daemon is not
/// restarted; the administrator restarts it): the configuration, the
/// queued message `id` and the setgid bit survive.
fn upgrade_keeps_config_and_queue(root: &Chroot, service: Service, config: &str, id: &str) {
    service.stop();
    root.sh("dpkg -i /tmp/postrelay-upgrade.deb");
    assert_eq!(
        std::fs::read_to_string(root.host_path("/etc/postrelay/postrelay.toml")).unwrap(),
        config,
        "the upgrade changed the administrator's configuration"
    );
    assert!(
        !root
            .host_path("/etc/postrelay/postrelay.toml.dpkg-new")
            .exists()
    );
    let service = Service::start(root);
    let after = root.sh("mailq");
    assert!(after.contains(id), "{id} lost in the upgrade:\n{after}");
    assert!(
        root.sh("stat -c '%A %U:%G' /usr/sbin/postrelay-postdrop")
            .starts_with("-rwxr-sr-x root:postdrop"),
        "the upgrade lost the setgid bit"
    );
    service.stop();
}

/// Purge: nothing of postrelay's is left (compared with `before`, less
/// the files of the `displaced` packages).
fn purge_leaves_nothing(
    root: &Chroot,
    before: &BTreeMap<String, Option<String>>,
    displaced: &BTreeSet<String>,
) {
    root.sh("apt-get purge -y -q postrelay");
    let overrides = root.sh("dpkg-statoverride --list");
    assert!(!overrides.contains("postrelay"), "{overrides}");
    let after = changes(root);
    let mut left = Vec::new();
    for (key, now) in &after {
        // Before the install the path was as on the host.
        let was = before
            .get(key)
            .cloned()
            .unwrap_or_else(|| describe_path(Path::new(key)));
        if &was == now {
            continue;
        }
        if removed_with(displaced, key, was.as_deref(), &after) {
            continue;
        }
        left.push(format!("{key}: {was:?} -> {now:?}"));
    }
    assert!(left.is_empty(), "purge left changes:\n{}", left.join("\n"));
}
