//! Which relays the engine tries for a destination, and in what order.
//! The failover between them (and what makes it happen) is tested against
//! scripted servers in `tests/relay_failover.rs`.

use super::*;

/// An engine with relays `a` (falling back to `c`), `b` and `c`.
async fn engine() -> Arc<Deliverer> {
    let mut text = "hostname = \"client.postrelay.test\"\n".to_owned();
    for (name, port, fallbacks) in [("a", 2501, "[\"c\"]"), ("b", 2502, "[]"), ("c", 2503, "[]")] {
        text.push_str(&format!(
            "[[relay]]\nname = \"{name}\"\nhost = \"127.0.0.1\"\nport = {port}\n\
             tls = \"starttls\"\nsecurity = \"none\"\nfallbacks = {fallbacks}\n"
        ));
    }
    let config = crate::config::parse(&text, "test").unwrap_or_else(|e| panic!("{e}\n{text}"));
    Deliverer::new(&config, None, Arc::new(Resolver::system())).unwrap()
}

/// The names of the relays tried for `dest`, in order.
fn tried(engine: &Deliverer, dest: Destination) -> Result<Vec<String>, Reason> {
    let relays = engine.relays_for(&dest)?;
    Ok(relays.iter().map(|r| r.config.name.clone()).collect())
}

#[tokio::test]
async fn every_relay_in_order_by_default() {
    let e = engine().await;
    assert_eq!(
        tried(&e, Destination::Relays(None)).unwrap(),
        ["a", "b", "c"]
    );
}

#[tokio::test]
async fn a_relay_chosen_by_name_comes_first_then_its_own_fallbacks() {
    let e = engine().await;
    assert_eq!(
        tried(&e, Destination::Relays(Some("a".into()))).unwrap(),
        ["a", "c"]
    );
    assert_eq!(
        tried(&e, Destination::Relays(Some("b".into()))).unwrap(),
        ["b"],
        "b has no fallbacks: the default order does not apply"
    );
}

#[tokio::test]
async fn a_next_hop_at_a_relays_address_uses_that_relay() {
    let e = engine().await;
    let dest = Destination::Smtp {
        host: "127.0.0.1".into(),
        port: 2503,
    };
    assert_eq!(tried(&e, dest).unwrap(), ["c"]);
}

#[tokio::test]
async fn an_unknown_relay_or_next_hop_waits_and_says_why() {
    let e = engine().await;
    let unknown = tried(&e, Destination::Relays(Some("zz".into()))).unwrap_err();
    assert!(
        matches!(&unknown, Reason::Unavailable(t) if t == "relay \"zz\" is not configured"),
        "{unknown:?}"
    );
    let hop = Destination::Smtp {
        host: "192.0.2.9".into(),
        port: 25,
    };
    let unknown = tried(&e, hop).unwrap_err();
    assert!(
        matches!(&unknown, Reason::Unavailable(t) if t.contains("smtp:[192.0.2.9]:25")),
        "{unknown:?}"
    );
}
