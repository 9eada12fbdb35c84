use super::*;

#[test]
fn messages_have_the_size_asked_for_and_end_with_the_dot() {
    for size in [1024, 102_400, 3000, 3001, 3002, 3003] {
        let t = Template::new("t", "load.test", size, 1);
        let m = t.message_bytes(7);
        assert_eq!(t.size(), size, "size {size}");
        assert_eq!(m.len(), size + 3);
        assert!(m.ends_with(b"\r\n.\r\n"));
        assert!(m.starts_with(b"X-Load-Id: t.7\r\n"));
        assert!(
            m.split(|&b| b == b'\n').all(|l| l.len() <= 80),
            "lines fit in 78 characters"
        );
    }
}

#[test]
fn a_tiny_size_still_gives_a_whole_message() {
    let t = Template::new("t", "load.test", 10, 1);
    let m = t.message_bytes(0);
    assert!(m.ends_with(b"\r\n\r\n.\r\n"), "headers, blank line, dot");
}

#[test]
fn commands_name_every_recipient_then_data() {
    let t = Template::new("t", "d.test", 1024, 3);
    let names: Vec<_> = t.commands().iter().map(|c| (c.1, c.2)).collect();
    assert_eq!(
        names,
        [
            ("MAIL", 2),
            ("RCPT", 2),
            ("RCPT", 2),
            ("RCPT", 2),
            ("DATA", 3)
        ]
    );
    assert_eq!(t.commands()[3].0, b"RCPT TO:<rcpt2@d.test>\r\n");
    let m = String::from_utf8(t.message_bytes(0)).unwrap();
    assert!(m.contains("To: <rcpt0@d.test>,\r\n <rcpt1@d.test>,\r\n <rcpt2@d.test>\r\n"));
}
