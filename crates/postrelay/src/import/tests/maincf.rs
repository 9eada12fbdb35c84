//! main.cf syntax: continuation lines, comments, `$name` expansion, table
//! references.

use std::collections::HashMap;

use crate::import::maincf::{LineError, TableRef, list, parse};

#[test]
fn continuation_lines_join_and_comments_are_skipped() {
    let text = "# header\r\nmydestination = a.example,\r\n    b.example\n# a comment inside\n\tc.example\n\nrelayhost=[h]:587\n  # indented comment\nempty =\n";
    let cf = parse(text).unwrap();
    let p = cf.get("mydestination").unwrap();
    assert_eq!(p.value, "a.example, b.example c.example");
    assert_eq!(p.line, 2);
    assert_eq!(cf.get("relayhost").unwrap().value, "[h]:587");
    assert_eq!(cf.get("relayhost").unwrap().line, 7);
    assert_eq!(cf.get("empty").unwrap().value, "");
    let names: Vec<&str> = cf.params().iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mydestination", "relayhost", "empty"]);
}

#[test]
fn the_last_definition_wins() {
    let cf = parse("relayhost = [a]\nrelayhost = [b]\n").unwrap();
    assert_eq!(cf.get("relayhost").unwrap().value, "[b]");
    assert_eq!(cf.get("relayhost").unwrap().line, 2);
    assert_eq!(cf.params().len(), 1);
}

#[test]
fn lines_that_are_not_settings_are_errors_with_their_line() {
    for (text, line, words) in [
        (
            "  relayhost = x\n",
            1,
            "continues the entry above it, but there is none",
        ),
        ("a = 1\nnot a setting\n", 2, "is not \"name = value\""),
        (
            "a = 1\nbad-name = 2\n",
            2,
            "\"bad-name\" is not a parameter name",
        ),
        ("= 2\n", 1, "is not a parameter name"),
    ] {
        let LineError { line: l, message } = parse(text).unwrap_err();
        assert_eq!(l, line, "{text:?}: {message}");
        assert!(message.contains(words), "{text:?}: {message}");
    }
}

fn defaults() -> HashMap<&'static str, String> {
    let mut d = HashMap::new();
    d.insert("myhostname", "host.example.org".to_owned());
    d.insert("mydomain", "example.org".to_owned());
    d
}

#[test]
fn expansion_of_other_parameters() {
    let cf = parse(
        "dir = /etc/postfix\nmaps = hash:$dir/sasl ${dir}/x $(dir)/y\nnested = $maps\nme = $myhostname\ncost = $$5\n",
    )
    .unwrap();
    let d = defaults();
    let e = cf.expand("$nested", &d);
    assert_eq!(
        e.text,
        "hash:/etc/postfix/sasl /etc/postfix/x /etc/postfix/y"
    );
    assert!(e.unknown.is_empty());
    assert_eq!(
        cf.expand("$me, localhost.$mydomain", &d).text,
        "host.example.org, localhost.example.org"
    );
    assert_eq!(cf.expand("$cost", &d).text, "$5");
    let e = cf.expand("a $nothing b", &d);
    assert_eq!(e.text, "a  b");
    assert_eq!(e.unknown, ["nothing"]);
}

#[test]
fn conditional_expansion() {
    let cf = parse("set = yes\nempty =\n").unwrap();
    let d = defaults();
    assert_eq!(cf.expand("${set?on}", &d).text, "on");
    assert_eq!(cf.expand("${set:off}", &d).text, "");
    assert_eq!(cf.expand("${empty?on}", &d).text, "");
    assert_eq!(cf.expand("${empty:off}", &d).text, "off");
    assert_eq!(
        cf.expand("${set?{$myhostname}}", &d).text,
        "host.example.org"
    );
    // Unset: no complaint for a conditional reference.
    let e = cf.expand("${unset:fallback}", &d);
    assert_eq!((e.text.as_str(), e.unknown.len()), ("fallback", 0));
}

#[test]
fn a_parameter_that_refers_to_itself_ends() {
    let cf = parse("a = x$b\nb = y$a\n").unwrap();
    let e = cf.expand("$a", &defaults());
    assert!(e.text.starts_with("xyxy"), "{}", e.text);
    assert!(
        e.unknown.iter().any(|u| u.contains("nested more than")),
        "{:?}",
        e.unknown
    );
}

#[test]
fn table_references_and_their_text_sources() {
    let src = |s: &str| TableRef::parse(s).unwrap().text_source();
    assert_eq!(
        src("hash:/etc/postfix/sasl_passwd").unwrap(),
        "/etc/postfix/sasl_passwd"
    );
    assert_eq!(
        src("LMDB:/etc/postfix/transport").unwrap(),
        "/etc/postfix/transport"
    );
    assert_eq!(
        src("btree:/etc/postfix/generic.db").unwrap(),
        "/etc/postfix/generic"
    );
    assert_eq!(src("texthash:/etc/aliases").unwrap(), "/etc/aliases");
    assert_eq!(src("proxy:hash:/etc/postfix/x").unwrap(), "/etc/postfix/x");
    assert!(
        src("regexp:/etc/postfix/x")
            .unwrap_err()
            .contains("match patterns")
    );
    assert!(
        src("pcre:/etc/postfix/x")
            .unwrap_err()
            .contains("match patterns")
    );
    assert!(
        src("mysql:/etc/postfix/mysql.cf")
            .unwrap_err()
            .contains("queried from a service")
    );
    assert!(
        src("hash:sasl_passwd")
            .unwrap_err()
            .contains("not an absolute path")
    );
    assert!(src("inline:{a=b}").is_err());
    assert_eq!(TableRef::parse("/etc/aliases"), None);
    assert_eq!(
        list("hash:/a, hash:/b  hash:/c,,"),
        ["hash:/a", "hash:/b", "hash:/c"]
    );
}

#[test]
fn expansion_that_would_explode_is_bounded() {
    let mut text = String::from("p0 = x\n");
    for i in 1..=30 {
        text.push_str(&format!("p{i} = $p{j}$p{j}$p{j}$p{j}\n", j = i - 1));
    }
    let cf = parse(&text).unwrap();
    let e = cf.expand("$p30", &defaults());
    assert!(e.text.len() <= 10_000, "{}", e.text.len());
    assert!(
        e.unknown
            .iter()
            .any(|u| u.contains("more than 10000 references")),
        "{:?}",
        e.unknown
    );
}

proptest::proptest! {
    /// Any text: parse and expansion return (no panic), and an error names
    /// a line of the text.
    #[test]
    fn any_text_parses_or_names_a_line(text in "[a-z_=$ {}():?#\t\n\r.,/x0-9-]{0,200}") {
        match parse(&text) {
            Ok(cf) => {
                for p in cf.params() {
                    let e = cf.expand(&p.value, &defaults());
                    proptest::prop_assert!(e.text.len() <= 200 * 10_000 + 200);
                }
            }
            Err(e) => {
                let lines = text.split('\n').count();
                proptest::prop_assert!((1..=lines).contains(&e.line), "line {} of {lines}", e.line);
            }
        }
    }
}
