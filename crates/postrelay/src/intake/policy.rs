//! Accept-or-reject decisions of intake that do not depend on the protocol
//! state: who may relay, which recipients are acceptable, when the spool is
//! too full to take more. Pure functions over the configuration, so every
//! rule has a table test.
//!
//! The one rule that must never break: postrelay is not an open relay. A
//! client outside `mynetworks` may only send to `local_domains`.

use std::net::IpAddr;

use postrelay_smtp::address::ForwardPath;
use postrelay_smtp::reply::Reply;

use crate::config::Intake;

/// Whether a client address may relay to any domain.
pub fn is_trusted(intake: &Intake, ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    intake.mynetworks.iter().any(|net| net.contains(ip))
}

/// Decides one RCPT: the recipient as it will be stored, or the reply that
/// refuses it. `hostname` completes the bare `<Postmaster>` recipient.
pub fn recipient(
    intake: &Intake,
    hostname: &str,
    trusted: bool,
    smtputf8: bool,
    to: &ForwardPath,
) -> Result<String, Reply> {
    let mailbox = match to {
        ForwardPath::Postmaster => return Ok(format!("postmaster@{hostname}")),
        ForwardPath::Mailbox(m) => m,
    };
    if !mailbox.is_ascii() && !smtputf8 {
        return Err(Reply::new(
            553,
            "5.6.7",
            format!("<{mailbox}>: non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM"),
        ));
    }
    let domain = mailbox.domain_lowercase();
    let local = intake.local_domains.contains(&domain);
    if !trusted && !local {
        return Err(Reply::new(
            554,
            "5.7.1",
            format!("<{mailbox}>: Relay access denied"),
        ));
    }
    Ok(mailbox.to_address())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postrelay_smtp::address::Mailbox;

    fn intake() -> Intake {
        crate::config::builtin_default().intake
    }

    fn rcpt(s: &str) -> ForwardPath {
        ForwardPath::Mailbox(Mailbox::parse(s).unwrap())
    }

    #[test]
    fn loopback_and_mynetworks_are_trusted_others_not() {
        let i = intake();
        for (ip, want) in [
            ("127.0.0.1", true),
            ("127.9.9.9", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("10.0.0.1", false),
            ("192.0.2.7", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_trusted(&i, ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn outsiders_may_only_send_to_local_domains() {
        let i = intake();
        let local = i.local_domains[0].clone();
        let ok = recipient(&i, "h", false, false, &rcpt(&format!("root@{local}"))).unwrap();
        assert_eq!(ok, format!("root@{local}"));
        let upper = recipient(
            &i,
            "h",
            false,
            false,
            &rcpt(&format!("root@{}", local.to_uppercase())),
        );
        assert!(upper.is_ok(), "domains compare case-insensitively");
        let denied = recipient(&i, "h", false, false, &rcpt("victim@example.com")).unwrap_err();
        assert_eq!(
            (denied.code, denied.enhanced.unwrap().to_string()),
            (554, "5.7.1".into())
        );
        assert!(recipient(&i, "h", true, false, &rcpt("victim@example.com")).is_ok());
    }

    #[test]
    fn postmaster_goes_to_this_host() {
        let got = recipient(
            &intake(),
            "relay.example",
            false,
            false,
            &ForwardPath::Postmaster,
        );
        assert_eq!(got.unwrap(), "postmaster@relay.example");
    }

    #[test]
    fn utf8_address_needs_smtputf8() {
        let i = intake();
        let r = rcpt("jösé@example.com");
        assert_eq!(recipient(&i, "h", true, false, &r).unwrap_err().code, 553);
        assert_eq!(
            recipient(&i, "h", true, true, &r).unwrap(),
            "jösé@example.com"
        );
    }
}
