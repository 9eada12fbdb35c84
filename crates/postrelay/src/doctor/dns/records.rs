//! The text of SPF and DMARC records, and what the doctor knows of
//! providers: pure functions, no lookups.
//!
//! Not for: DNS queries (the parent module makes them).

/// A provider known by its relay's host name: the SPF include it asks its
/// customers to publish, and the DKIM selectors it signs with when they
/// are the same for every customer (empty when they are per customer).
pub(super) struct Provider {
    pub(super) name: &'static str,
    /// Host name suffixes of its relays.
    suffixes: &'static [&'static str],
    /// Any one of these includes authorises it.
    pub(super) includes: &'static [&'static str],
    pub(super) selectors: &'static [&'static str],
}

/// Providers whose SPF include (and, where fixed, DKIM selectors) are
/// published in their setup guides.
const PROVIDERS: &[Provider] = &[
    Provider {
        name: "Amazon SES",
        suffixes: &[".amazonaws.com"],
        includes: &["amazonses.com"],
        selectors: &[],
    },
    Provider {
        name: "Google",
        suffixes: &[".gmail.com", ".google.com", ".googlemail.com"],
        includes: &["_spf.google.com"],
        selectors: &["google"],
    },
    Provider {
        name: "Microsoft 365",
        suffixes: &[".office365.com", ".outlook.com"],
        includes: &["spf.protection.outlook.com"],
        selectors: &["selector1", "selector2"],
    },
    Provider {
        name: "SendGrid",
        suffixes: &[".sendgrid.net"],
        includes: &["sendgrid.net"],
        selectors: &["s1", "s2"],
    },
    Provider {
        name: "Mailgun",
        suffixes: &[".mailgun.org"],
        includes: &["mailgun.org"],
        selectors: &[],
    },
    Provider {
        name: "Postmark",
        suffixes: &[".postmarkapp.com"],
        includes: &["spf.mtasv.net"],
        selectors: &[],
    },
    Provider {
        name: "Brevo",
        suffixes: &[".brevo.com", ".sendinblue.com"],
        includes: &["spf.brevo.com", "spf.sendinblue.com"],
        selectors: &[],
    },
    Provider {
        name: "Mailjet",
        suffixes: &[".mailjet.com"],
        includes: &["spf.mailjet.com"],
        selectors: &["mailjet"],
    },
    Provider {
        name: "Fastmail",
        suffixes: &[".fastmail.com"],
        includes: &["spf.messagingengine.com"],
        selectors: &["fm1", "fm2", "fm3"],
    },
];

/// The provider whose relay `host` is, if the doctor knows it.
pub(super) fn provider(host: &str) -> Option<&'static Provider> {
    let host = host.to_ascii_lowercase();
    PROVIDERS
        .iter()
        .find(|p| p.suffixes.iter().any(|s| host.ends_with(s)))
}

/// The SPF records among a name's TXT strings.
pub(super) fn spf_records(txt: &[String]) -> Vec<&String> {
    txt.iter()
        .filter(|t| {
            let t = t.trim_start().to_ascii_lowercase();
            t == "v=spf1" || t.starts_with("v=spf1 ")
        })
        .collect()
}

/// The domains an SPF record sends the check on to: `include:` and
/// `redirect=` targets, lower-cased, in order.
pub(super) fn spf_targets(record: &str) -> Vec<String> {
    record
        .split_ascii_whitespace()
        .filter_map(|term| {
            let t = term.trim_start_matches(['+', '-', '~', '?']);
            let lower = t.to_ascii_lowercase();
            lower
                .strip_prefix("include:")
                .or_else(|| lower.strip_prefix("redirect="))
                .map(|d| d.trim_end_matches('.').to_owned())
        })
        .collect()
}

/// `record` with `include:<include>` added before its `all` (or
/// `redirect=`) term, or at the end.
pub(super) fn with_include(record: &str, include: &str) -> String {
    let mut terms: Vec<&str> = record.split_ascii_whitespace().collect();
    let at = terms
        .iter()
        .position(|t| {
            let t = t
                .trim_start_matches(['+', '-', '~', '?'])
                .to_ascii_lowercase();
            t == "all" || t.starts_with("redirect=")
        })
        .unwrap_or(terms.len());
    let term = format!("include:{include}");
    terms.insert(at, &term);
    terms.join(" ")
}

/// A DMARC record's policy and alignment modes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Dmarc {
    /// `p=`: none, quarantine or reject.
    pub(super) policy: String,
    /// `aspf=s`.
    pub(super) strict_spf: bool,
    /// `adkim=s`.
    pub(super) strict_dkim: bool,
}

/// Reads a `v=DMARC1` record; `None` for anything else.
pub(super) fn dmarc(record: &str) -> Option<Dmarc> {
    let mut tags = record.split(';').map(|t| t.trim());
    if !tags.next()?.eq_ignore_ascii_case("v=DMARC1") {
        return None;
    }
    let mut found = Dmarc {
        policy: String::new(),
        strict_spf: false,
        strict_dkim: false,
    };
    for tag in tags {
        let Some((k, v)) = tag.split_once('=') else {
            continue;
        };
        let v = v.trim().to_ascii_lowercase();
        match k.trim().to_ascii_lowercase().as_str() {
            "p" => found.policy = v,
            "aspf" => found.strict_spf = v == "s",
            "adkim" => found.strict_dkim = v == "s",
            _ => {}
        }
    }
    Some(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_terms_are_read_and_extended() {
        let txt = vec![
            "google-site-verification=x".to_owned(),
            "v=spf1 ip4:192.0.2.1 include:_spf.Example.net. ~all".to_owned(),
        ];
        let spf = spf_records(&txt);
        assert_eq!(spf.len(), 1);
        assert_eq!(spf_targets(spf[0]), vec!["_spf.example.net"]);
        assert_eq!(
            spf_targets("v=spf1 redirect=_spf.x.org"),
            vec!["_spf.x.org"]
        );
        assert_eq!(
            with_include("v=spf1 mx -all", "amazonses.com"),
            "v=spf1 mx include:amazonses.com -all"
        );
        assert_eq!(
            with_include("v=spf1 mx", "amazonses.com"),
            "v=spf1 mx include:amazonses.com"
        );
        assert!(spf_records(&["v=spf10 x".to_owned()]).is_empty());
    }

    #[test]
    fn dmarc_policy_and_alignment() {
        assert_eq!(
            dmarc("v=DMARC1; p=reject; aspf=s; adkim=r"),
            Some(Dmarc {
                policy: "reject".into(),
                strict_spf: true,
                strict_dkim: false
            })
        );
        assert_eq!(dmarc("v=spf1 -all"), None);
    }

    #[test]
    fn providers_are_known_by_host() {
        let ses = provider("email-smtp.eu-west-1.amazonaws.com").unwrap();
        assert_eq!(ses.includes, ["amazonses.com"]);
        assert_eq!(provider("smtp.gmail.com").unwrap().name, "Google");
        assert!(provider("localhost").is_none());
    }
}
