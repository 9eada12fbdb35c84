use super::*;

#[test]
fn the_load_id_is_read_from_the_header_section_only() {
    assert_eq!(
        load_id(b"Received: x\r\nX-Load-Id: ab.7\r\n\r\nbody"),
        Some("ab.7")
    );
    assert_eq!(load_id(b"x-load-id:   ab.8  \r\n\r\n"), Some("ab.8"));
    assert_eq!(load_id(b"Subject: s\r\n\r\nX-Load-Id: ab.9\r\n"), None);
    assert_eq!(load_id(b"X-Load-Id: two words\r\n\r\n"), None);
    assert_eq!(load_id(b"X-Load-Id:\r\n\r\n"), None);
    assert_eq!(load_id(b""), None);
}
