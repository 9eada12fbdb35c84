//! The recovery table: plant every kind of leftover, check the exact report
//! and the resulting directories.

use std::path::{Path, PathBuf};

use crate::spool::faults::names_in;
use crate::spool::tests::envelope_for;
use crate::spool::{Envelope, Found, Location, QueueId, RecoveryReport, Spool};

fn put(root: &Path, sub: &str, name: &str, bytes: &[u8]) -> PathBuf {
    let path = root.join(sub).join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A message's two files; `size_delta` makes the recorded size wrong.
fn plant(root: &Path, env_dir: &str, id: QueueId, body: Option<&[u8]>, size_delta: u64) -> PathBuf {
    let mut env: Envelope = envelope_for(id);
    env.size = body.map_or(10, |b| b.len() as u64) + size_delta;
    if let Some(body) = body {
        put(root, "queue", &id.body_name(), body);
    }
    put(root, env_dir, &id.envelope_name(), &env.to_json())
}

/// What recovery should find of the sound messages `kept` (planted with
/// `envelope_for`, so due when they were made), sorted by id.
fn expected_found(kept: &[(QueueId, Location)]) -> Vec<Found> {
    let mut found: Vec<Found> = kept
        .iter()
        .map(|&(id, location)| Found {
            id,
            location,
            next_attempt_ms: id.created_ms(),
        })
        .collect();
    found.sort_by_key(|f| f.id);
    found
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// What [`plant_every_leftover`] planted: the messages, and the files
/// the report must name.
struct Planted {
    good: QueueId,
    held: QueueId,
    bad_json: QueueId,
    size: QueueId,
    no_body: QueueId,
    held_no_body: QueueId,
    wrong_id: QueueId,
    twice: QueueId,
    bad_json_env: PathBuf,
    size_env: PathBuf,
    no_body_env: PathBuf,
    held_no_body_env: PathBuf,
    wrong_id_env: PathBuf,
    twice_queue_env: PathBuf,
    notes: PathBuf,
    stray_body: PathBuf,
}

/// Plants every kind of leftover in the spool at `root`: tmp/ files,
/// sound messages (one in both queue/ and hold/), an orphan body, damaged
/// envelopes, a name already in corrupt/, and files that are not ours.
fn plant_every_leftover(root: &Path) -> Planted {
    let id = QueueId::generate;
    let (good, held, orphan, bad_json, size) = (id(), id(), id(), id(), id());
    let (no_body, held_no_body, wrong_id, twice) = (id(), id(), id(), id());

    // tmp/: a half-written message and a stray file.
    put(root, "tmp", &good.body_name(), b"partial");
    put(root, "tmp", "x.env.0123456789abcdef", b"{");
    // Sound messages.
    plant(root, "queue", good, Some(b"good\r\n"), 0);
    plant(root, "hold", held, Some(b"held\r\n"), 0);
    // Never committed.
    put(root, "queue", &orphan.body_name(), b"orphan\r\n");
    // Damaged.
    put(root, "queue", &bad_json.body_name(), b"kept for humans\r\n");
    let bad_json_env = put(
        root,
        "queue",
        &bad_json.envelope_name(),
        b"{\"version\": 1, \"id\": ",
    );
    let size_env = plant(root, "queue", size, Some(b"short\r\n"), 5);
    let no_body_env = plant(root, "queue", no_body, None, 0);
    let held_no_body_env = plant(root, "hold", held_no_body, None, 0);
    let wrong_id_env = put(
        root,
        "queue",
        &wrong_id.envelope_name(),
        &envelope_for(good).to_json(),
    );
    // In both queue/ and hold/: the held copy wins.
    plant(root, "queue", twice, Some(b"twice\r\n"), 0);
    plant(root, "hold", twice, Some(b"twice\r\n"), 0);
    let twice_queue_env = root.join("queue").join(twice.envelope_name());
    // An earlier recovery already kept a file of the same name.
    put(root, "corrupt", &bad_json.envelope_name(), b"older");
    // Not ours.
    let notes = put(root, "queue", "NOTES", b"admin was here");
    let stray_body = put(root, "hold", &held.body_name(), b"bodies live in queue/");
    std::fs::create_dir(root.join("queue").join("subdir")).unwrap();
    Planted {
        good,
        held,
        bad_json,
        size,
        no_body,
        held_no_body,
        wrong_id,
        twice,
        bad_json_env,
        size_env,
        no_body_env,
        held_no_body_env,
        wrong_id_env,
        twice_queue_env,
        notes,
        stray_body,
    }
}

/// The report names each damaged envelope with its reason, each file that
/// is not ours, and the sound messages; and counts what it removed.
fn assert_report(root: &Path, p: &Planted, report: RecoveryReport) {
    let (good, held, twice, wrong_id) = (p.good, p.held, p.twice, p.wrong_id);
    let mut corrupt = report.corrupt.clone();
    corrupt.sort();
    let mut expected_corrupt = vec![
        (p.bad_json_env.clone(), "numeric \"version\"".to_string()),
        (
            p.size_env.clone(),
            "envelope says the body has 12 bytes but".to_string(),
        ),
        (p.no_body_env.clone(), "is missing".to_string()),
        (p.held_no_body_env.clone(), "is missing".to_string()),
        (
            p.wrong_id_env.clone(),
            format!("envelope says it is {good} but the file is named for {wrong_id}"),
        ),
        (
            p.twice_queue_env.clone(),
            "also present in hold/".to_string(),
        ),
    ];
    expected_corrupt.sort();
    assert_eq!(corrupt.len(), expected_corrupt.len(), "{corrupt:#?}");
    for ((path, why), (want_path, want_why)) in corrupt.iter().zip(&expected_corrupt) {
        assert_eq!(path, want_path);
        assert!(
            why.contains(want_why.as_str()),
            "{path:?}: {why:?} lacks {want_why:?}"
        );
    }
    let mut unknown = vec![
        p.notes.clone(),
        p.stray_body.clone(),
        root.join("queue").join("subdir"),
    ];
    unknown.sort();
    let mut got_unknown = report.unknown.clone();
    got_unknown.sort();
    assert_eq!(
        RecoveryReport {
            corrupt: Vec::new(),
            unknown: got_unknown,
            ..report
        },
        RecoveryReport {
            tmp_removed: 2,
            free_removed: 0,
            orphan_bodies_removed: 1,
            corrupt: Vec::new(),
            messages: 3,
            held: 2,
            unknown,
            found: expected_found(&[
                (good, Location::Queue),
                (held, Location::Hold),
                (twice, Location::Hold),
            ]),
            journal_records: 0,
            journal_rewritten: 0,
        }
    );
}

/// What is left in tmp/, queue/, hold/ and corrupt/ after recovery; the
/// body of a damaged message is kept, byte for byte.
fn assert_directories(root: &Path, p: &Planted) {
    assert!(names_in(root, "tmp").is_empty());
    assert_eq!(
        names_in(root, "queue"),
        sorted(vec![
            p.good.body_name(),
            p.good.envelope_name(),
            p.held.body_name(),
            p.twice.body_name(),
            "NOTES".into(),
            "subdir".into(),
        ])
    );
    assert_eq!(
        names_in(root, "hold"),
        sorted(vec![
            p.held.envelope_name(),
            p.held.body_name(),
            p.twice.envelope_name()
        ])
    );
    assert_eq!(
        names_in(root, "corrupt"),
        sorted(vec![
            p.bad_json.envelope_name(),
            format!("{}.1", p.bad_json.envelope_name()),
            p.bad_json.body_name(),
            p.size.envelope_name(),
            p.size.body_name(),
            p.no_body.envelope_name(),
            p.held_no_body.envelope_name(),
            p.wrong_id.envelope_name(),
            p.twice.envelope_name(),
        ])
    );
    // The body of a damaged message is kept, byte for byte.
    assert_eq!(
        std::fs::read(root.join("corrupt").join(p.bad_json.body_name())).unwrap(),
        b"kept for humans\r\n"
    );
    assert_eq!(
        std::fs::read(root.join("corrupt").join(p.bad_json.envelope_name())).unwrap(),
        b"older"
    );
}

/// Recovery of a spool holding every kind of leftover: the exact report,
/// the resulting directories, the survivors listed, and idempotence.
/// A spool at a new temporary directory with every kind of leftover
/// planted.
fn planted_spool() -> (tempfile::TempDir, Spool, Planted) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    let p = plant_every_leftover(dir.path());
    (dir, spool, p)
}

#[test]
fn recovery_table() {
    let (dir, spool, p) = planted_spool();
    let root = dir.path();

    let report = spool.recover().unwrap();
    assert_report(root, &p, report);
    assert_directories(root, &p);
    let (good, held, twice) = (p.good, p.held, p.twice);

    // What survived is exactly what the spool lists.
    let listed: Vec<QueueId> = spool
        .list()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.id)
        .collect();
    let mut survivors = vec![good, held, twice];
    survivors.sort();
    assert_eq!(listed, survivors);

    // Recovery is idempotent: a second run changes nothing.
    let again = spool.recover().unwrap();
    assert_eq!(
        again.tmp_removed + again.orphan_bodies_removed + again.corrupt.len(),
        0
    );
    assert_eq!((again.messages, again.held, again.unknown.len()), (3, 2, 3));
}

/// The same table read by one thread per message (as many as recovery
/// starts, the rest shared among them): the same report, moves and
/// survivors as one reader.
#[test]
fn recovery_table_read_by_many_threads() {
    let (dir, spool, p) = planted_spool();
    let report = super::recover_with(&spool.inner.layout, &*spool.inner.ops, 1).unwrap();
    assert_report(dir.path(), &p, report);
    assert_directories(dir.path(), &p);
}

#[test]
fn recovery_of_an_empty_spool_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path()).unwrap();
    assert_eq!(spool.recover().unwrap(), RecoveryReport::default());
}

/// A spool of many messages, some held, each due at its own time: recovery
/// finds every one exactly once, where it is and when it is due (the queue
/// is loaded from this list, not from a second reading of the files).
#[test]
fn recovery_finds_every_message_of_a_large_spool_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let mut kept = Vec::new();
    for i in 0..600u64 {
        let id = QueueId::generate();
        let loc = if i % 7 == 0 {
            Location::Hold
        } else {
            Location::Queue
        };
        let mut env = envelope_for(id);
        env.size = 3;
        env.next_attempt_ms = 1_000_000 + (i * 7919) % 600;
        put(root, "queue", &id.body_name(), b"b\r\n");
        put(root, &loc.to_string(), &id.envelope_name(), &env.to_json());
        kept.push(Found {
            id,
            location: loc,
            next_attempt_ms: env.next_attempt_ms,
        });
    }
    kept.sort_by_key(|f| f.id);
    let report = spool.recover().unwrap();
    assert_eq!((report.messages, report.held), (600, 86));
    assert_eq!(report.found, kept);
}

/// With one `syncfs` per commit (the default), a power cut during a
/// commit may leave a message that was never acknowledged with its
/// envelope on the disk but not its body: a recycled body file still
/// holds its earlier message, at the same size. Recovery reads the body
/// of each message not yet tried and compares it with its envelope's
/// checksum: such a message goes to corrupt/ for a human, never out. A
/// tried message's body is not read (its envelope was rewritten after a
/// completed commit), and an envelope of version 1 (no checksums) is
/// kept as it was.
#[test]
fn a_body_that_is_not_the_one_its_envelope_names_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let spool = Spool::open(root).unwrap();
    let id = QueueId::generate;
    let (torn, sound, tried, old) = (id(), id(), id(), id());
    let plant_checked = |id: QueueId, staged: &[u8], on_disk: &[u8], attempts: u32| {
        let mut env = envelope_for(id);
        env.size = staged.len() as u64;
        env.body_crc32 = Some(crc32fast::hash(staged));
        env.attempts = attempts;
        put(root, "queue", &id.body_name(), on_disk);
        put(root, "queue", &id.envelope_name(), &env.to_json())
    };
    let torn_env = plant_checked(torn, b"to: bob\r\nhello\r\n", b"to: eve\r\nhowdy\r\n", 0);
    plant_checked(sound, b"sound\r\n", b"sound\r\n", 0);
    plant_checked(tried, b"tried\r\n", b"TRIED\r\n", 1);
    let mut v1 = envelope_for(old);
    v1.version = 1;
    v1.size = 5;
    put(root, "queue", &old.body_name(), b"old\r\n");
    put(
        root,
        "queue",
        &old.envelope_name(),
        &serde_json::to_vec_pretty(&v1).unwrap(),
    );

    let report = spool.recover().unwrap();
    assert_eq!(report.corrupt.len(), 1, "{:#?}", report.corrupt);
    let (path, why) = &report.corrupt[0];
    assert_eq!(path, &torn_env);
    assert!(
        why.contains("does not match its envelope's checksum") && why.contains("power cut"),
        "{why}"
    );
    let found: Vec<QueueId> = report.found.iter().map(|f| f.id).collect();
    let mut want = vec![sound, tried, old];
    want.sort();
    assert_eq!(found, want);
    assert!(names_in(root, "corrupt").contains(&torn.body_name()));
}
