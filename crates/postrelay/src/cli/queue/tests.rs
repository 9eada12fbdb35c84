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
    // Nor is one named for another id, or of another version.
    let (named, inside) = (QueueId::generate(), QueueId::generate());
    let other = Envelope::new(
        inside,
        Origin::Bounce { of: None },
        "x@example.org".into(),
        vec![],
    );
    std::fs::write(
        root.join("queue").join(named.envelope_name()),
        other.to_json(),
    )
    .unwrap();
    let mut future = Envelope::new(named, Origin::Bounce { of: None }, String::new(), vec![]);
    future.version = crate::spool::ENVELOPE_VERSION + 1;
    std::fs::write(
        root.join("hold").join(named.envelope_name()),
        serde_json::to_vec_pretty(&future).unwrap(),
    )
    .unwrap();
    ids.sort();

    let reader = Spool::open_readonly(root).unwrap();
    let mut out = Vec::new();
    let mut table = Table::new();
    reader
        .visit_listed(|env, loc| {
            table.entry(&mut out, env, loc).unwrap();
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
    // The whole envelopes print the same table as their listed parts.
    assert_eq!(render_list(&reader.list().unwrap()), text);
}

#[test]
fn an_empty_queue_says_so() {
    assert_eq!(render_list(&[]), "Mail queue is empty\n");
}

/// What `queue list --json` printed when it built the whole array: the
/// bytes the streaming writer must keep.
fn json_as_one_array(all: &[(Envelope, Location)]) -> String {
    let items: Vec<serde_json::Value> = all
        .iter()
        .map(|(env, loc)| {
            let mut v = serde_json::to_value(env).unwrap();
            v["location"] = serde_json::json!(if *loc == Location::Hold {
                "hold"
            } else {
                "queue"
            });
            v
        })
        .collect();
    format!("{}\n", serde_json::to_string_pretty(&items).unwrap())
}

fn streamed_json(reader: &SpoolReader) -> String {
    let mut out = Vec::new();
    write_json(reader, &mut out).unwrap().unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_json_list_streams_the_bytes_of_the_whole_array() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["queue", "hold"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    let reader = Spool::open_readonly(root).unwrap();
    assert_eq!(streamed_json(&reader), "[]\n");
    assert_eq!(streamed_json(&reader), json_as_one_array(&[]));

    for i in 0..5u64 {
        let id = QueueId::generate();
        let mut rcpt = Recipient::new(format!("r{i}@example.net"));
        let mut env = Envelope::new(
            id,
            Origin::Smtp {
                peer: "127.0.0.1:40000".into(),
                helo: "client.example".into(),
            },
            if i == 2 {
                String::new()
            } else {
                format!("s{i}@example.org")
            },
            Vec::new(),
        );
        if i % 2 == 1 {
            // Deferred: what a refused attempt leaves.
            rcpt.last_reply = Some("connect to 127.0.0.1:9: Connection refused\n\"x\"".into());
            env.attempts = 1;
            env.reason = Some("relay sink: refused".into());
        }
        env.recipients = vec![rcpt, Recipient::new("second@example.net")];
        env.size = 1000 + i;
        let sub = if i == 0 || i == 3 { "hold" } else { "queue" };
        std::fs::write(root.join(sub).join(id.envelope_name()), env.to_json()).unwrap();
    }
    let all = reader.list().unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all.iter().filter(|(_, l)| *l == Location::Hold).count(), 2);
    let streamed = streamed_json(&reader);
    assert_eq!(streamed, json_as_one_array(&all));
    // And it is one array a JSON reader takes.
    let parsed: Vec<serde_json::Value> = serde_json::from_str(&streamed).unwrap();
    assert_eq!(parsed[4]["recipients"][1]["address"], "second@example.net");
}
