//! `queue list` over a spool of many messages: each listed once, in id
//! order, held ones marked, the total right.

use super::*;
use crate::spool::{Origin, Recipient};

#[test]
fn the_list_of_a_large_queue_shows_every_message_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["queue", "hold"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    let mut ids = Vec::new();
    for i in 0..500u64 {
        let id = QueueId::generate();
        let mut env = Envelope::new(
            id,
            Origin::Bounce { of: None },
            format!("s{i}@example.org"),
            vec![Recipient::new(format!("r{i}@example.net"))],
        );
        env.size = 1000 + i;
        let sub = if i % 10 == 3 { "hold" } else { "queue" };
        std::fs::write(root.join(sub).join(id.envelope_name()), env.to_json()).unwrap();
        ids.push((id, sub));
    }
    // Not an envelope of this id: skipped with a warning, not listed.
    let stray = QueueId::generate();
    std::fs::write(root.join("queue").join(stray.envelope_name()), b"{").unwrap();
    ids.sort();

    let reader = Spool::open_readonly(root).unwrap();
    let mut out = Vec::new();
    let mut table = Table::new();
    reader
        .visit(|env, loc| {
            table.entry(&mut out, &env, loc).unwrap();
            ControlFlow::Continue(())
        })
        .unwrap();
    table.finish(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();

    let listed: Vec<(String, bool)> = text
        .lines()
        .filter(|l| l.len() > 26 && l.as_bytes()[0].is_ascii_alphanumeric())
        .map(|l| (l[..26].to_string(), &l[26..27] == "!"))
        .collect();
    let want: Vec<(String, bool)> = ids
        .iter()
        .map(|(id, sub)| (id.to_string(), *sub == "hold"))
        .collect();
    assert_eq!(listed, want);
    let kbytes = (0..500u64).map(|i| 1000 + i).sum::<u64>().div_ceil(1024);
    assert!(
        text.ends_with(&format!("-- {kbytes} Kbytes in 500 Requests.\n")),
        "{}",
        &text[text.len() - 80..]
    );
    // The whole-list helper prints the same table.
    assert_eq!(render_list(&reader.list().unwrap()), text);
}

#[test]
fn an_empty_queue_says_so() {
    assert_eq!(render_list(&[]), "Mail queue is empty\n");
}
