use super::*;

/// A submitter's name is reused for [`NAME_KEPT_FOR`] after its lookup,
/// then looked up again; other users' names are their own; at most
/// [`NAMES_KEPT`] are kept, the oldest going first. (One test: the names
/// are the process's.)
#[test]
fn a_looked_up_name_is_reused_for_a_while() {
    // uids no test or user of this machine has.
    let (uid, other) = (4_000_000_001, 4_000_000_002);
    let t0 = Instant::now();
    assert_eq!(known_name(uid, t0), None);
    remember_name(uid, "cron", t0);
    let later = t0 + NAME_KEPT_FOR - Duration::from_secs(1);
    assert_eq!(known_name(uid, later).as_deref(), Some("cron"));
    assert_eq!(known_name(other, later), None);
    assert_eq!(known_name(uid, t0 + NAME_KEPT_FOR), None, "kept too long");
    let t1 = t0 + NAME_KEPT_FOR;
    remember_name(uid, "renamed", t1);
    assert_eq!(known_name(uid, t1).as_deref(), Some("renamed"));

    let base = 4_000_001_000;
    for i in 1..=NAMES_KEPT as u32 {
        let at = t1 + Duration::from_millis(u64::from(i));
        remember_name(base + i, &format!("u{i}"), at);
    }
    let names = NAMES.lock().unwrap();
    assert_eq!(names.len(), NAMES_KEPT);
    assert!(
        !names.iter().any(|(u, _, _)| *u == uid),
        "the oldest was kept"
    );
}
