//! The verdicts on what a relay probe saw: its certificate, its EHLO
//! capabilities and the credentials. Each says what was seen and, when
//! something is wrong, the setting or the person that fixes it.
//!
//! Not for: talking to the relay (the parent module does).

use super::super::{Finding, Verdict};
use super::{Probe, Seen};
use crate::config::Security;
use crate::deliver::{Phase, Reason};
use crate::net::cert::{CertInfo, WARN_DAYS};

/// How the verifying session ended: `None` when there was none.
type Verified = Option<Result<(), Reason>>;

/// Whether the verifying session failed at TLS (certificate, handshake).
fn failed_at_tls(verified: &Verified) -> Option<String> {
    match verified {
        Some(Err(Reason::Tls(text))) => Some(text.clone()),
        Some(Err(
            r @ Reason::Timeout {
                phase: Phase::Tls, ..
            },
        )) => Some(r.to_string()),
        _ => None,
    }
}

impl Probe {
    /// The TLS session and the certificate the relay presented, or the
    /// finding that there is none to judge.
    fn presented<'a>(&self, seen: &'a Seen) -> Result<(&'a str, &'a CertInfo), Finding> {
        let subject = self.subject();
        let Some(session) = &seen.tls else {
            return Err(Finding::bad(
                "relay.certificate",
                Verdict::Warning,
                subject,
                format!(
                    "no TLS (security = \"{}\"): mail and credentials cross the network in plaintext",
                    self.rc.security.as_str()
                ),
                format!("set security = \"verify\" on relay {}", self.rc.name),
            ));
        };
        match &seen.leaf {
            Some(Ok(info)) => Ok((session, info)),
            Some(Err(why)) => Err(Finding::bad(
                "relay.certificate",
                Verdict::Warning,
                subject,
                why.clone(),
                "ask the provider; the certificate is not one the doctor can read",
            )),
            None => Err(Finding::bad(
                "relay.certificate",
                Verdict::Warning,
                subject,
                "the relay presented no certificate",
                "ask the provider",
            )),
        }
    }

    pub(super) fn certificate_finding(&self, seen: &Seen, verified: &Verified) -> Finding {
        let (session, info) = match self.presented(seen) {
            Ok(found) => found,
            Err(finding) => return finding,
        };
        let subject = self.subject();
        let now = jiff::Timestamp::now().as_second();
        let days = info.days_left(now);
        let facts = format!(
            "{session}; chain of {} certificate(s); certificate for {}, issued by {}, expires {} \
             ({days} days)",
            seen.chain,
            info.names.join(", "),
            info.issuer,
            info.expiry_date()
        );
        let renew = format!(
            "the relay's certificate expired on {}: the provider must renew it; until then \
             verified TLS fails and mail waits (security = \"encrypt\" would send without \
             checking, which protects against eavesdroppers only)",
            info.expiry_date()
        );
        if let Some(failure) = failed_at_tls(verified) {
            // describe_error's sentence: what failed; what to configure
            // (the advice has no "; " of its own, what failed may).
            let (what, advice) = failure.rsplit_once("; ").unwrap_or((
                failure.as_str(),
                "ask the provider which CA signs its certificate",
            ));
            let fix = if days < 0 { renew } else { advice.to_owned() };
            let evidence = format!("verification failed: {what}; {facts}");
            return Finding::bad(
                "relay.certificate",
                Verdict::Problem,
                subject,
                evidence,
                fix,
            );
        }
        if days < 0 {
            return Finding::bad("relay.certificate", Verdict::Problem, subject, facts, renew);
        }
        if self.rc.security != Security::Verify {
            return Finding::bad(
                "relay.certificate",
                Verdict::Warning,
                subject,
                format!(
                    "not verified (security = \"{}\"); {facts}",
                    self.rc.security.as_str()
                ),
                format!(
                    "set security = \"verify\" on relay {} (with ca_file = the CA's certificate \
                     for a relay with a private CA)",
                    self.rc.name
                ),
            );
        }
        if verified.is_none() {
            return Finding::bad(
                "relay.certificate",
                Verdict::Warning,
                subject,
                format!("not verified: the configuration does not load with its secrets; {facts}"),
                "fix the config and secrets problems above, then run postrelay doctor again",
            );
        }
        let trust = match &self.rc.ca_file {
            Some(ca) => format!("the CA in {}", ca.display()),
            None => "the system's CAs".to_owned(),
        };
        let name = self.rc.tls_name.as_deref().unwrap_or(&self.rc.host);
        let evidence = format!("verified for {name} against {trust}; {facts}");
        if days < WARN_DAYS {
            return Finding::bad(
                "relay.certificate",
                Verdict::Warning,
                subject,
                evidence,
                "the certificate expires soon: the provider should renew it; check again in a few days",
            );
        }
        Finding::ok("relay.certificate", subject, evidence)
    }

    pub(super) fn ehlo_finding(&self, seen: &Seen) -> Finding {
        let caps = &seen.caps;
        let mut words = Vec::new();
        if !caps.auth.is_empty() {
            words.push(format!("AUTH {}", caps.auth.join(" ")));
        }
        for (on, word) in [
            (caps.pipelining, "PIPELINING"),
            (caps.eight_bit_mime, "8BITMIME"),
            (caps.smtputf8, "SMTPUTF8"),
            (caps.enhanced_status_codes, "ENHANCEDSTATUSCODES"),
            (caps.chunking, "CHUNKING"),
            (caps.dsn, "DSN"),
        ] {
            if on {
                words.push(word.to_owned());
            }
        }
        if let Some(size) = caps.size {
            words.push(format!("SIZE {size}"));
        }
        let after = if seen.tls.is_some() { " after TLS" } else { "" };
        let evidence = format!("EHLO{after}: {}", words.join(", "));
        let subject = self.subject();
        if self.rc.credentials.is_none() {
            // Without a password (or with a token: relay.auth says which
            // mechanism) there is nothing to check here.
            return Finding::ok("relay.ehlo", subject, evidence);
        }
        let usable = caps.supports_auth("PLAIN") || caps.supports_auth("LOGIN");
        if caps.auth.is_empty() {
            return Finding::bad(
                "relay.ehlo",
                Verdict::Warning,
                subject,
                format!("{evidence}; no AUTH offered, so the credentials are not used"),
                format!(
                    "check host and port of relay {}: a provider's submission port offers AUTH",
                    self.rc.name
                ),
            );
        }
        if !usable {
            return Finding::bad(
                "relay.ehlo",
                Verdict::Problem,
                subject,
                format!("{evidence}; postrelay logs in with PLAIN or LOGIN, neither is offered"),
                "ask the provider for SMTP credentials usable with AUTH PLAIN or LOGIN",
            );
        }
        Finding::ok("relay.ehlo", subject, evidence)
    }

    /// An OAuth2 relay: which mechanism the token would go through (the
    /// token itself is `relay.oauth`'s; the doctor does not spend one).
    fn oauth_finding(&self, seen: &Seen, user: &str) -> Finding {
        let subject = self.subject();
        let mechanism = if seen.caps.supports_auth("OAUTHBEARER") {
            "OAUTHBEARER"
        } else if seen.caps.supports_auth("XOAUTH2") {
            "XOAUTH2"
        } else {
            return Finding::bad(
                "relay.auth",
                Verdict::Problem,
                subject,
                format!(
                    "the relay offers no OAuth2 mechanism (offered: {}); postrelay sends a token \
                     through OAUTHBEARER or XOAUTH2",
                    seen.caps.auth.join(" ")
                ),
                format!(
                    "check host and port of relay {}: the provider's submission port offers XOAUTH2",
                    self.rc.name
                ),
            );
        };
        Finding::ok(
            "relay.auth",
            subject,
            format!(
                "logs in as {user} with {mechanism} and an OAuth2 access token (the token's \
                 state: relay.oauth)"
            ),
        )
    }

    pub(super) fn auth_finding(&self, seen: &Seen, verified: &Verified) -> Finding {
        let subject = self.subject();
        let name = &self.rc.name;
        if !self.complete {
            return Finding::bad(
                "relay.auth",
                Verdict::Warning,
                subject,
                "credentials not tried: the configuration does not load with its secrets",
                "fix the config and secrets problems above, then run postrelay doctor again",
            );
        }
        if let Some(o) = &self.rc.oauth {
            return self.oauth_finding(seen, &o.username);
        }
        let Some(creds) = &self.rc.credentials else {
            if seen.caps.auth.is_empty() {
                return Finding::ok(
                    "relay.auth",
                    subject,
                    "no credentials configured, none asked",
                );
            }
            return Finding::bad(
                "relay.auth",
                Verdict::Warning,
                subject,
                format!(
                    "no credentials configured, but the relay offers AUTH ({}): providers refuse \
                     to relay mail without it",
                    seen.caps.auth.join(" ")
                ),
                format!("set username and password_file on relay {name}"),
            );
        };
        let user = &creds.username;
        let mechanism = if seen.caps.supports_auth("PLAIN") {
            "PLAIN"
        } else {
            "LOGIN"
        };
        match verified {
            Some(Ok(())) => Finding::ok(
                "relay.auth",
                subject,
                format!("AUTH {mechanism} as {user} accepted (no mail sent)"),
            ),
            Some(Err(Reason::Auth(text))) => Finding::bad(
                "relay.auth",
                Verdict::Problem,
                subject,
                text.clone(),
                format!(
                    "check username = \"{user}\" on relay {name} and the password in {} (the \
                     provider's SMTP credentials, which often differ from the account's \
                     password); then systemctl reload postrelay",
                    creds.source.display()
                ),
            ),
            _ if failed_at_tls(verified).is_some() => Finding::bad(
                "relay.auth",
                Verdict::Warning,
                subject,
                "credentials not tried: TLS verification failed first (they are never sent to \
                 an unverified server)",
                "fix the certificate problem above, then run postrelay doctor again",
            ),
            Some(Err(other)) => Finding::bad(
                "relay.auth",
                Verdict::Problem,
                subject,
                format!("the session with credentials failed: {other}"),
                format!(
                    "see the reason; postrelay queue show ID has a transcript for relay {name}"
                ),
            ),
            None => Finding::bad(
                "relay.auth",
                Verdict::Warning,
                subject,
                "credentials not tried",
                "run postrelay doctor again",
            ),
        }
    }
}
