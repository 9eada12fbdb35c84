//! Table tests of the local recipient table ([`Router::local_recipient`]).

use std::path::Path;

use super::super::*;
use crate::route::RoutingSettings;

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

fn local(user: &str) -> Route {
    Route::Local { user: user.into() }
}

fn routes(r: &Router, recipient: &str) -> Vec<(String, Route)> {
    r.route(recipient)
        .into_iter()
        .map(|d| (d.address, d.route))
        .collect()
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

#[test]
fn an_extension_is_the_user_and_its_alias_unless_the_tagged_alias_exists() {
    let r = router(
        Some("support: alice\nsupport+billing: bob\nowner-list: carol\nlist-request: carol\n"),
        None,
    )
    .with_recipient_delimiter("+-");
    // The user without the tag; the address keeps it (Delivered-To).
    assert_eq!(
        routes(&r, "Dave+News@localhost"),
        [("Dave+News@localhost".into(), local("dave"))]
    );
    assert_eq!(r.transport("dave-news@localhost"), local("dave"));
    assert_eq!(r.local_recipient("dave+news@localhost"), user("dave"));
    // The tagged alias first, then the alias without the tag.
    assert_eq!(
        routes(&r, "support+billing@localhost"),
        [("bob@myhost.example".into(), local("bob"))]
    );
    assert_eq!(
        routes(&r, "support+other@localhost"),
        [("alice@myhost.example".into(), local("alice"))]
    );
    assert_eq!(
        r.local_recipient("support+other@localhost"),
        LocalRecipient::Known
    );
    // Never split, as in Postfix: the name would be empty, postmaster,
    // mailer-daemon, owner-… and …-request when '-' is a delimiter.
    for (rcpt, name) in [
        ("+tag@localhost", "+tag"),
        ("mailer-daemon@localhost", "mailer-daemon"),
        ("postmaster@localhost", "postmaster"),
    ] {
        assert_eq!(r.transport(rcpt), local(name), "{rcpt}");
    }
    assert_eq!(
        r.local_recipient("owner-list@localhost"),
        LocalRecipient::Known
    );
    assert_eq!(
        r.local_recipient("list-request@localhost"),
        LocalRecipient::Known
    );
    // Mail that leaves keeps its address as written.
    assert_eq!(routes(&r, "x+y@example.com")[0].0, "x+y@example.com");
}

#[test]
fn without_a_delimiter_the_tag_is_part_of_the_name() {
    let r = router(Some("support: alice\n"), None).with_recipient_delimiter("");
    assert_eq!(r.transport("dave+news@localhost"), local("dave+news"));
    assert_eq!(r.local_recipient("support+x@localhost"), user("support+x"));
}
