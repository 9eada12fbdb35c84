//! `provider` on a `[[relay]]`: what a preset fills, what the relay's own
//! keys override, the errors, and what `check-config` shows.

use super::*;

#[test]
fn a_preset_fills_host_port_and_tls() {
    let c = ok("[[relay]]\nname = \"ses\"\nprovider = \"ses:eu-west-1\"\n");
    let r = &c.relays[0];
    assert_eq!(r.host, "email-smtp.eu-west-1.amazonaws.com");
    assert_eq!((r.port, r.tls), (587, TlsMode::StartTls));
    assert_eq!(r.security, Security::Verify);
    assert_eq!(r.provider.as_ref().unwrap().id, "ses:eu-west-1");
    let c = ok("[[relay]]\nname = \"m\"\nprovider = \"m365\"\n");
    assert_eq!(c.relays[0].host, "smtp.office365.com");
}

#[test]
fn the_relays_own_keys_override_the_preset() {
    let c = ok(
        "[[relay]]\nname = \"sg\"\nprovider = \"sendgrid\"\nhost = \"smtp.example.net\"\nport = 465\ntls = \"implicit\"\n",
    );
    let r = &c.relays[0];
    assert_eq!(r.host, "smtp.example.net");
    assert_eq!((r.port, r.tls), (465, TlsMode::Implicit));
    // Only the port, with the preset's STARTTLS.
    let c = ok("[[relay]]\nname = \"b\"\nprovider = \"brevo\"\nport = 2525\n");
    assert_eq!(
        (c.relays[0].port, c.relays[0].tls),
        (2525, TlsMode::StartTls)
    );
}

#[test]
fn sendgrid_presets_its_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let pw = super::relay::Files::new(dir.path()).secret("sg", "SG.key\n");
    let text = format!(
        "[[relay]]\nname = \"sg\"\nprovider = \"sendgrid\"\npassword_file = \"{}\"\n",
        pw.display()
    );
    let c = ok(&text);
    assert_eq!(c.relays[0].credentials.as_ref().unwrap().username, "apikey");
}

#[test]
fn unknown_providers_and_regions_are_errors() {
    for (provider, words) in [
        (
            "sendgird",
            &["unknown provider", "ses:REGION, brevo, smtp2go, sendgrid"][..],
        ),
        ("ses", &["needs the region", "ses:us-east-1"][..]),
        ("ses:moon-1", &["not an AWS region"][..]),
        ("gmail:eu", &["has no regions"][..]),
    ] {
        let text = format!("[[relay]]\nname = \"a\"\nprovider = \"{provider}\"\n");
        let e = err(&text).to_string();
        let start = format!("t.toml:3: relay \"a\": provider = \"{provider}\": ");
        assert!(e.starts_with(&start), "{e}");
        for w in words {
            assert!(e.contains(w), "{provider}: {e}");
        }
    }
}

#[test]
fn check_config_shows_the_published_data_and_round_trips() {
    let c = ok("[[relay]]\nname = \"pm\"\nprovider = \"postmark\"\n");
    let text = c.render();
    assert_eq!(ok(&text), c, "{text}");
    assert!(text.contains("provider = \"postmark\""), "{text}");
    assert!(
        text.contains("# provider postmark: SPF for the sending domain: include:spf.mtasv.net"),
        "{text}"
    );
    assert!(
        text.contains("# provider postmark: published limits: 10 MB"),
        "{text}"
    );
}
