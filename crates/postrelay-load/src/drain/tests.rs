use super::*;

#[test]
fn the_nth_recipient_after_the_skipped_lines_is_found() {
    let log = "a.1 1 10\n- 10 20\n- 5 30\n- 5 40\n";
    assert_eq!(nth_arrival(log, 1, 10).unwrap(), Some(20));
    assert_eq!(nth_arrival(log, 1, 11).unwrap(), Some(30));
    assert_eq!(nth_arrival(log, 1, 20).unwrap(), Some(40));
    assert_eq!(nth_arrival(log, 1, 21).unwrap(), None);
    assert!(matches!(
        nth_arrival("- 1 x\n", 0, 1),
        Err(LoadError::Parse { line: 1, .. })
    ));
}
