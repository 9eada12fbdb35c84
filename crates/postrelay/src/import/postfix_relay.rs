//! The relay part of `import-postfix`: `relayhost` becomes `[[relay]]`
//! tables, with the TLS settings (`smtp_tls_*`) and SASL settings
//! (`smtp_sasl_*`) of main.cf.
//!
//! Security is raised, never lowered: a relay that authenticates always
//! gets `security = "verify"` (TLS required, certificate checked), whatever
//! `smtp_tls_security_level` says, so that the password cannot be read or
//! replayed by someone on the path; the report says so, and how to get
//! Postfix's level back.

use super::maincf;
use super::postfix::{Cx, Value};
use super::{NoteKind, toml_string};

/// A relay host and port, from `relayhost`.
#[derive(Debug)]
struct Hop {
    host: String,
    port: u16,
    /// Written without brackets: Postfix would look up MX records.
    mx: bool,
}

impl Cx {
    /// `smtp_sasl_*`: sets `delivery.sasl_passwd`; whether relays
    /// authenticate.
    pub(super) fn sasl(&mut self) -> bool {
        let enable = self.take("smtp_sasl_auth_enable");
        let on = enable.as_ref().is_some_and(|v| yes(&v.text));
        let maps = self.take("smtp_sasl_password_maps");
        for name in [
            "smtp_sasl_security_options",
            "smtp_sasl_tls_security_options",
        ] {
            if let Some(v) = self.take(name) {
                let only_noanonymous = maincf::list(&v.text).iter().all(|o| *o == "noanonymous");
                if !only_noanonymous {
                    self.drop(&v, "postrelay never authenticates anonymously and sends AUTH only over TLS (unless allow_plaintext_auth); other SASL options have no counterpart");
                }
            }
        }
        if let Some(v) = self.take("smtp_sasl_mechanism_filter") {
            self.drop(&v, "postrelay chooses the mechanism itself: PLAIN when the relay offers it, else LOGIN");
        }
        self.take("smtp_sasl_type");
        match (on, maps) {
            (true, Some(v)) => {
                let Some(path) = self.first_text_table(&v) else {
                    return false;
                };
                self.draft
                    .set(
                        "delivery",
                        "sasl_passwd",
                        toml_string(&path),
                        &v.origin(),
                        &v.setting(),
                    )
                    .secret();
                self.report.note(&v.origin(), &v.setting(), NoteKind::Action, format!(
                    "postrelay reads the text file {path} (not its .db), when the configuration is loaded; it must be owned by the user postrelay runs as and not readable by others: chown postrelay {path} && chmod 600 {path}"
                ));
                true
            }
            (true, None) => {
                if let Some(e) = &enable {
                    self.drop(
                        e,
                        "no smtp_sasl_password_maps, so there are no credentials to carry over",
                    );
                }
                false
            }
            (false, Some(v)) => {
                self.drop(&v, "smtp_sasl_auth_enable is not yes, so Postfix does not authenticate, and neither will postrelay");
                false
            }
            (false, None) => false,
        }
    }

    /// `relayhost` → one `[[relay]]` per destination; returns their hosts
    /// and ports.
    pub(super) fn relays(&mut self, auth: bool) -> Vec<(String, u16)> {
        let tls = self.tls_settings(auth);
        let Some(v) = self.take("relayhost") else {
            return Vec::new();
        };
        let mut hops = Vec::new();
        for item in maincf::list(&v.text) {
            match hop(item) {
                Ok(h) => hops.push(h),
                Err(why) => self.drop(&v, format!("{item}: {why}")),
            }
        }
        let mut out = Vec::new();
        for (n, h) in hops.iter().enumerate() {
            let name = if n == 0 {
                "relayhost".to_owned()
            } else {
                format!("relayhost-{}", n + 1)
            };
            if h.mx {
                self.changed(&v, format!(
                    "{}: without brackets Postfix looks up MX records of {}; postrelay never does, it connects to the A/AAAA addresses of the name",
                    h.host, h.host
                ));
            }
            let i = self.draft.relay(&format!("{} from relayhost", h.host));
            let (origin, setting) = (v.origin(), v.setting());
            self.draft
                .set_relay(i, "name", toml_string(&name), &origin, &setting);
            self.draft
                .set_relay(i, "host", toml_string(&h.host), &origin, &setting);
            self.draft
                .set_relay(i, "port", h.port.to_string(), &origin, &setting);
            for (key, value, origin, setting) in &tls {
                self.draft.set_relay(i, key, value.clone(), origin, setting);
            }
            out.push((h.host.clone(), h.port));
        }
        if hops.len() > 1 {
            self.changed(&v, "the relays are tried in the order written, the next one when one cannot be reached or refuses the session");
        }
        out
    }

    /// The relay keys from `smtp_tls_*`: (key, value, origin, setting).
    fn tls_settings(&mut self, auth: bool) -> Vec<(&'static str, String, String, String)> {
        let mut keys = Vec::new();
        if let Some(v) = self.take("smtp_tls_wrappermode")
            && yes(&v.text)
        {
            keys.push(("tls", toml_string("implicit"), v.origin(), v.setting()));
        }
        let level = self.take("smtp_tls_security_level");
        let legacy_use = self.take("smtp_use_tls");
        let legacy_enforce = self.take("smtp_enforce_tls");
        let written = match (&level, &legacy_enforce, &legacy_use) {
            (Some(v), _, _) => Some(v),
            (None, Some(v), _) if yes(&v.text) => Some(v),
            (None, _, Some(v)) if yes(&v.text) => Some(v),
            _ => None,
        };
        let security = self.security(written, auth);
        let (origin, setting) = written.map_or(
            (
                "main.cf".to_owned(),
                "smtp_tls_security_level not set".to_owned(),
            ),
            |v| (v.origin(), v.setting()),
        );
        keys.push(("security", toml_string(security), origin, setting));
        if let Some(v) = self.take("smtp_tls_CAfile") {
            if security == "verify" {
                keys.push(("ca_file", toml_string(&v.text), v.origin(), v.setting()));
            } else {
                self.drop(&v, format!("the certificate is not checked with security = \"{security}\", so there is no use for a CA"));
            }
        }
        if let Some(v) = self.take("smtp_tls_CApath") {
            self.drop(&v, "postrelay verifies against the system's trusted CAs, or the CAs of one ca_file (concatenate the directory's certificates into one PEM file)");
        }
        if let Some(v) = self.take("smtp_tls_servername") {
            match v.text.as_str() {
                "" | "hostname" | "nexthop" => {}
                name if security == "verify" => {
                    keys.push(("tls_name", toml_string(name), v.origin(), v.setting()))
                }
                _ => self.drop(
                    &v,
                    "only used to check the certificate, which this security level does not do",
                ),
            }
        }
        keys
    }

    /// The postrelay security level for Postfix's `written` one.
    fn security(&mut self, written: Option<&Value>, auth: bool) -> &'static str {
        let level = match written {
            None => "",
            Some(v) if v.param.name == "smtp_enforce_tls" => "encrypt",
            Some(v) if v.param.name == "smtp_use_tls" => "may",
            Some(v) => match v.text.as_str() {
                "" => "",
                other => other,
            },
        };
        let mapped = match (level, auth) {
            ("verify" | "secure", _) => "verify",
            (_, true) => "verify",
            ("", false) | ("may", false) => "may",
            ("none", false) => "none",
            ("encrypt", false) => "encrypt",
            (_, false) => "verify",
        };
        let why = match (level, mapped) {
            ("verify" | "secure", _) => None,
            (l, "verify") if auth && matches!(l, "" | "none" | "may" | "encrypt") => Some(format!(
                "the relay authenticates, so postrelay requires TLS and checks the relay's certificate (security = \"verify\"); Postfix's \"{}\" would let someone on the path read the password. To keep Postfix's level, write security = \"{}\" (not advised)",
                if l.is_empty() { "none" } else { l },
                if l.is_empty() || l == "none" { "none\" with allow_plaintext_auth = true" } else { l }
            )),
            ("", "may") => Some("Postfix's default is no TLS; postrelay uses TLS when the relay offers it (security = \"may\")".to_owned()),
            (l, "verify") => Some(format!("postrelay has no \"{l}\" level (DANE, fingerprints); it verifies the certificate against trusted CAs (security = \"verify\"; give a private CA with ca_file)")),
            _ => None,
        };
        if let Some(why) = why {
            match written {
                Some(v) => self.changed(v, why),
                None => self.report.note(
                    "main.cf",
                    "smtp_tls_security_level not set",
                    NoteKind::Changed,
                    why,
                ),
            }
        }
        mapped
    }
}

/// Postfix's yes/no.
fn yes(text: &str) -> bool {
    matches!(
        text.to_ascii_lowercase().as_str(),
        "yes" | "true" | "on" | "1"
    )
}

/// A `relayhost` destination: `[host]:port`, `[host]`, `host:port`,
/// `host`; ports by number or service name.
fn hop(item: &str) -> Result<Hop, String> {
    let (host, port, mx) = match item.strip_prefix('[') {
        Some(rest) => {
            let Some((host, after)) = rest.split_once(']') else {
                return Err("a \"[\" without \"]\"".to_owned());
            };
            let port = after.strip_prefix(':');
            if port.is_none() && !after.is_empty() {
                return Err(format!("\"{after}\" after the \"]\" is not \":port\""));
            }
            (host, port, false)
        }
        None => match item.rsplit_once(':') {
            Some((h, p)) => (h, Some(p), true),
            None => (item, None, true),
        },
    };
    if host.is_empty() {
        return Err("no host".to_owned());
    }
    let port = match port {
        None => 25,
        Some(p) => service_port(p).ok_or_else(|| format!("\"{p}\" is not a port number or a known service (smtp, submission, submissions, smtps)"))?,
    };
    Ok(Hop {
        host: host.to_ascii_lowercase(),
        port,
        mx,
    })
}

fn service_port(p: &str) -> Option<u16> {
    match p {
        "smtp" => Some(25),
        "submission" => Some(587),
        "submissions" | "smtps" => Some(465),
        n => n.parse().ok().filter(|&n| n != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::hop;

    #[test]
    fn relayhost_forms() {
        let h = hop("[smtp.example.com]:587").unwrap();
        assert_eq!(
            (h.host.as_str(), h.port, h.mx),
            ("smtp.example.com", 587, false)
        );
        let h = hop("[Smtp.Example.com]").unwrap();
        assert_eq!(
            (h.host.as_str(), h.port, h.mx),
            ("smtp.example.com", 25, false)
        );
        let h = hop("smtp.example.com:submission").unwrap();
        assert_eq!((h.port, h.mx), (587, true));
        let h = hop("[ipv6:2001:db8::1]:465").unwrap();
        assert_eq!((h.host.as_str(), h.port), ("ipv6:2001:db8::1", 465));
        assert!(hop("[smtp.example.com:587").is_err());
        assert!(hop("[smtp.example.com]587").is_err());
        assert!(hop("[h]:imap").unwrap_err().contains("not a port number"));
        assert!(hop("[h]:0").is_err());
    }
}
