//! Table tests of the local recipient table ([`Router::local_recipient`]).

use std::path::Path;

use super::*;
use crate::config::RoutingSettings;

const HOST: &str = "myhost.example";

fn router(aliases: Option<&str>, transport: Option<&str>) -> Router {
    let relays = vec!["ses".to_owned()];
    let settings = RoutingSettings {
        transport: transport
            .map(|t| TransportMap::parse(t, Path::new("/t/transport"), &relays).unwrap()),
        aliases: aliases.map(|a| Aliases::parse(a, Path::new("/t/aliases")).unwrap()),
        sender_relay: None,
        generic: None,
        rewrite_senders: None,
    };
    let local = ["localhost".to_owned(), HOST.to_owned()];
    Router::new(&settings, &local, HOST, &relays)
}

fn user(name: &str) -> LocalRecipient {
    LocalRecipient::User(name.to_owned())
}

#[test]
fn local_recipients_are_aliases_or_users_others_are_not_checked() {
    let r = router(
        Some("root: alice\nsupport: bob@example.com\n"),
        Some("billing@localhost relay:ses\nexample.org local:\n* relay:ses\n"),
    );
    for (rcpt, want) in [
        // Aliases are known without asking the system, in any case.
        ("root@localhost", LocalRecipient::Known),
        ("ROOT@myhost.example", LocalRecipient::Known),
        ("support@localhost", LocalRecipient::Known),
        ("root", LocalRecipient::Known),
        // postmaster must always be accepted (RFC 5321 §4.5.1).
        ("postmaster@localhost", LocalRecipient::Known),
        ("PostMaster@myhost.example", LocalRecipient::Known),
        // Anything else local is known only if the system has the user.
        ("alice@localhost", user("alice")),
        ("Nobody-Here@myhost.example", user("nobody-here")),
        ("carol@example.org", user("carol")),
        // Not delivered here: not this table's business.
        ("victim@example.com", LocalRecipient::NotLocal),
        ("billing@localhost", LocalRecipient::NotLocal),
    ] {
        assert_eq!(r.local_recipient(rcpt), want, "{rcpt}");
    }
}

#[test]
fn without_aliases_every_local_name_is_a_user() {
    let r = router(None, None);
    assert_eq!(r.local_recipient("root@localhost"), user("root"));
    assert_eq!(r.local_recipient("x@example.com"), LocalRecipient::NotLocal);
}
