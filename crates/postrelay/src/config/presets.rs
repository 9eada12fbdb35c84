//! Provider presets: `provider = "ses:us-east-1"` on a `[[relay]]` fills
//! the host, port, TLS mode (and, for SendGrid, the fixed user name) that
//! the provider publishes; the relay's own keys override each of them.
//!
//! The presets also carry what a provider says about itself: the AUTH
//! mechanisms its server announces, the SPF `include:` to publish for the
//! sending domain, and its published sending limits, in words and, where
//! the provider publishes numbers, as the default `[relay.limits]`
//! (`quota`). `check-config` shows them; docs/config.md names the provider
//! documentation each value comes from.
//!
//! **Not for:** enforcing the limits (`quota` counts, the delivery engine
//! waits) or choosing the AUTH mechanism (the relay client uses PLAIN when
//! offered, else LOGIN, whatever the preset says).

use super::{PresetLimits, TlsMode};

/// What a provider publishes about its submission service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preset {
    /// The `provider` value as written, normalised (`ses:us-east-1`).
    pub id: String,
    /// The provider's SMTP host.
    pub host: String,
    /// The port used by default (STARTTLS submission).
    pub port: u16,
    /// How TLS starts on that port.
    pub tls: TlsMode,
    /// The user name every customer uses, where the provider fixes one.
    pub username: Option<&'static str>,
    /// The AUTH mechanisms the provider documents (or, where marked in
    /// docs/config.md, that its server announces).
    pub auth: &'static [&'static str],
    /// The SPF mechanism to add to the sending domain's record.
    pub spf_include: &'static str,
    /// The published sending limits, in words.
    pub limits: &'static str,
    /// The published limits postrelay enforces by default (the relay's
    /// `[relay.limits]` keys override them).
    pub quota: super::PresetLimits,
}

/// One row of the table: everything but the host, which may depend on the
/// region.
struct Known {
    name: &'static str,
    /// The host; `{}` stands for the region.
    host: &'static str,
    /// Regions: `None` for no region; `Some(&[])` for any well-formed AWS
    /// region name (required); `Some(list)` for one of `list`, the first
    /// being the default.
    regions: Option<&'static [(&'static str, &'static str)]>,
    username: Option<&'static str>,
    auth: &'static [&'static str],
    spf_include: &'static str,
    limits: &'static str,
    quota: super::PresetLimits,
}

const NONE: PresetLimits = PresetLimits {
    rate: None,
    recipients_per_day: 0,
    messages_per_day: 0,
    recipients_per_transaction: 0,
};

const KNOWN: &[Known] = &[
    Known {
        name: "ses",
        host: "email-smtp.{}.amazonaws.com",
        regions: Some(&[]),
        username: None,
        auth: &["PLAIN", "LOGIN"],
        spf_include: "include:amazonses.com",
        limits: "sandbox: 200 messages per 24 hours, 1 message per second; production: the account's own quota (SES console); 50 recipients per message; 40 MB per message",
        quota: PresetLimits {
            rate: Some((1, 1, 1)),
            recipients_per_transaction: 50,
            ..NONE
        },
    },
    Known {
        name: "brevo",
        host: "smtp-relay.brevo.com",
        regions: None,
        username: None,
        auth: &["PLAIN", "LOGIN"],
        spf_include: "include:spf.brevo.com",
        limits: "free plan: 300 emails per day; paid plans: by plan",
        quota: PresetLimits {
            recipients_per_day: 300,
            ..NONE
        },
    },
    Known {
        name: "smtp2go",
        host: "mail.smtp2go.com",
        regions: None,
        username: None,
        auth: &["PLAIN", "LOGIN"],
        spf_include: "include:spf.smtp2go.com",
        limits: "free plan: 1,000 emails per month, 200 per day; paid plans: by plan",
        quota: PresetLimits {
            recipients_per_day: 200,
            ..NONE
        },
    },
    Known {
        name: "sendgrid",
        host: "smtp.sendgrid.net",
        regions: None,
        username: Some("apikey"),
        auth: &["PLAIN", "LOGIN"],
        spf_include: "include:sendgrid.net",
        limits: "30 MB per message; daily volume: by plan",
        quota: NONE,
    },
    Known {
        name: "mailgun",
        host: "{}",
        regions: Some(&[("us", "smtp.mailgun.org"), ("eu", "smtp.eu.mailgun.org")]),
        username: None,
        auth: &["PLAIN", "LOGIN"],
        spf_include: "include:mailgun.org",
        limits: "25 MB per message; 1,000 recipients per message; volume: by plan",
        quota: PresetLimits {
            recipients_per_transaction: 1000,
            ..NONE
        },
    },
    Known {
        name: "postmark",
        host: "smtp.postmarkapp.com",
        regions: None,
        username: None,
        auth: &["PLAIN", "LOGIN", "CRAM-MD5"],
        spf_include: "include:spf.mtasv.net",
        limits: "10 MB per message (attachments included); 50 recipients per message (To, Cc and Bcc together)",
        quota: PresetLimits {
            recipients_per_transaction: 50,
            ..NONE
        },
    },
    Known {
        name: "gmail",
        host: "smtp.gmail.com",
        regions: None,
        username: None,
        auth: &["PLAIN", "LOGIN", "XOAUTH2"],
        spf_include: "include:_spf.google.com",
        limits: "about 500 recipients per day for a personal account; 25 MB per message",
        quota: PresetLimits {
            recipients_per_day: 500,
            ..NONE
        },
    },
    Known {
        name: "google-workspace",
        host: "smtp-relay.gmail.com",
        regions: None,
        username: None,
        auth: &["PLAIN", "LOGIN"],
        spf_include: "include:_spf.google.com",
        limits: "SMTP relay service: 10,000 recipients per user per day; 2,000 messages per user per day through smtp.gmail.com",
        quota: PresetLimits {
            recipients_per_day: 10_000,
            ..NONE
        },
    },
    Known {
        name: "m365",
        host: "smtp.office365.com",
        regions: None,
        username: None,
        auth: &["LOGIN", "XOAUTH2"],
        spf_include: "include:spf.protection.outlook.com",
        limits: "10,000 recipients per day; 30 messages per minute; 500 recipients per message",
        quota: PresetLimits {
            rate: Some((30, 60, 1)),
            recipients_per_day: 10_000,
            recipients_per_transaction: 500,
            ..NONE
        },
    },
];

/// The known provider values, for messages: `ses:REGION, brevo, …`.
pub fn known_list() -> String {
    let names: Vec<String> = KNOWN
        .iter()
        .map(|k| match k.regions {
            None => k.name.to_owned(),
            Some([]) => format!("{}:REGION", k.name),
            Some(list) => {
                let r: Vec<&str> = list.iter().map(|(r, _)| *r).collect();
                format!(
                    "{} ({}:{})",
                    k.name,
                    k.name,
                    r.join(&format!(", {}:", k.name))
                )
            }
        })
        .collect();
    names.join(", ")
}

/// The preset for a `provider` value. The error completes
/// `relay[i].provider = "…": `.
pub fn lookup(written: &str) -> Result<Preset, String> {
    let lower = written.to_ascii_lowercase();
    let (name, region) = match lower.split_once(':') {
        Some((n, r)) => (n, Some(r)),
        None => (lower.as_str(), None),
    };
    let Some(k) = KNOWN.iter().find(|k| k.name == name) else {
        return Err(format!(
            "unknown provider; the known providers are: {}. For another provider, leave provider out and write host and port",
            known_list()
        ));
    };
    let (id, host) = match (k.regions, region) {
        (None, None) => (k.name.to_owned(), k.host.to_owned()),
        (None, Some(_)) => {
            return Err(format!(
                "{} has no regions; write provider = \"{}\"",
                k.name, k.name
            ));
        }
        (Some([]), None) => {
            return Err(format!(
                "{} needs the region of your account: write e.g. provider = \"{}:us-east-1\"",
                k.name, k.name
            ));
        }
        (Some([]), Some(r)) => {
            check_aws_region(r)?;
            (format!("{}:{r}", k.name), k.host.replace("{}", r))
        }
        (Some(list), r) => {
            let r = r.unwrap_or(list[0].0);
            let Some((r, host)) = list.iter().find(|(name, _)| *name == r) else {
                let names: Vec<String> = list
                    .iter()
                    .map(|(n, _)| format!("\"{}:{n}\"", k.name))
                    .collect();
                return Err(format!(
                    "unknown {} region \"{r}\"; write {}",
                    k.name,
                    names.join(" or ")
                ));
            };
            let id = if *r == list[0].0 && region.is_none() {
                k.name.to_owned()
            } else {
                format!("{}:{r}", k.name)
            };
            (id, k.host.replace("{}", host))
        }
    };
    Ok(Preset {
        id,
        host,
        port: 587,
        tls: TlsMode::StartTls,
        username: k.username,
        auth: k.auth,
        spf_include: k.spf_include,
        limits: k.limits,
        quota: k.quota,
    })
}

/// An AWS region name: lower-case words and a number, separated by `-`
/// (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`). Regions are not
/// listed, so that a new region needs no new postrelay.
fn check_aws_region(r: &str) -> Result<(), String> {
    let parts: Vec<&str> = r.split('-').collect();
    let shaped = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if shaped {
        Ok(())
    } else {
        Err(format!(
            "\"{r}\" is not an AWS region name; write the region of your SES account, e.g. \"ses:us-east-1\" or \"ses:eu-west-1\""
        ))
    }
}

impl Preset {
    /// What `check-config` says about the provider, as comment lines.
    pub fn describe(&self) -> String {
        format!(
            "# provider {}: AUTH offered: {} (postrelay uses PLAIN, else LOGIN)\n\
             # provider {}: SPF for the sending domain: {}\n\
             # provider {}: published limits: {} (enforced by default: see [relay.limits])\n",
            self.id,
            self.auth.join(" "),
            self.id,
            self.spf_include,
            self.id,
            self.limits
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_provider_resolves() {
        for k in KNOWN {
            let written = match k.regions {
                Some([]) => format!("{}:us-east-1", k.name),
                _ => k.name.to_owned(),
            };
            let p = lookup(&written).unwrap();
            assert!(!p.host.contains("{}"), "{}", p.host);
            assert_eq!((p.port, p.tls), (587, TlsMode::StartTls));
            assert!(p.spf_include.starts_with("include:"));
        }
    }

    #[test]
    fn regions() {
        let p = lookup("SES:eu-west-1").unwrap();
        assert_eq!(p.host, "email-smtp.eu-west-1.amazonaws.com");
        assert_eq!(p.id, "ses:eu-west-1");
        assert_eq!(lookup("mailgun").unwrap().host, "smtp.mailgun.org");
        assert_eq!(lookup("mailgun").unwrap().id, "mailgun");
        assert_eq!(lookup("mailgun:eu").unwrap().host, "smtp.eu.mailgun.org");
        for (bad, why) in [
            ("ses", "needs the region"),
            ("ses:", "not an AWS region"),
            ("ses:useast1", "not an AWS region"),
            ("ses:us-east-x", "not an AWS region"),
            ("ses:us-east-1.evil.example", "not an AWS region"),
            ("brevo:eu", "has no regions"),
            ("mailgun:asia", "unknown mailgun region"),
            ("sendgrid2", "known providers are: ses:REGION, brevo"),
        ] {
            let e = lookup(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn sendgrid_fixes_the_user_name() {
        assert_eq!(lookup("sendgrid").unwrap().username, Some("apikey"));
        assert_eq!(lookup("m365").unwrap().username, None);
    }
}
