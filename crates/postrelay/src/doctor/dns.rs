//! The DNS of each sending domain (the domains of `rewrite_senders`, of
//! the `generic` map's addresses and of `bounce.sender`): does SPF
//! authorise the provider (its `include:`, followed through nested
//! includes), are the provider's DKIM keys published where its selectors
//! are known, does DMARC exist and can its alignment pass? TXT queries
//! through hickory, to the system's resolver or to `--dns-server`.
//!
//! The provider is known from its relay's host name (`records::provider`)
//! or told with `--spf-include` / `--dkim-selector`.
//!
//! Not for: relay name resolution (`net::resolve`), or proving that mail
//! will pass: the provider's own DKIM domain and return path are theirs
//! to set.

mod records;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use super::{DoctorArgs, Finding, Verdict};
use crate::config::Config;

/// SPF's own limit on lookups (RFC 7208 §4.6.4); the doctor follows
/// includes no further.
const SPF_LOOKUPS: usize = 10;

/// What the sending domains must show for the relays in use.
struct Expect {
    /// Any of these `include:` targets authorises the provider.
    includes: Vec<String>,
    selectors: Vec<String>,
    /// Who asks for them, for the messages.
    provider: String,
}

/// Every sending domain's SPF, DKIM and DMARC.
pub(super) async fn check(config: &Config, args: &DoctorArgs) -> Vec<Finding> {
    if config.relays.is_empty() {
        return Vec::new();
    }
    let domains = sending_domains(config);
    if domains.is_empty() {
        return vec![Finding::bad(
            "dns",
            Verdict::Warning,
            "sending domains",
            format!(
                "none configured: mail leaves with the local programs' addresses \
                 (user@{}), which providers refuse or mark as spam",
                config.hostname
            ),
            "set [routing] rewrite_senders = \"alerts@your-domain\" (a domain whose DNS you \
             manage), or map senders with [routing] generic",
        )];
    }
    let dns = match Dns::new(args) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            return vec![Finding::bad(
                "dns",
                Verdict::Warning,
                "resolver",
                e,
                "check /etc/resolv.conf, or name a server with --dns-server IP[:PORT]",
            )];
        }
    };
    let expect = Arc::new(expect(config, args));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, domain) in domains.into_iter().enumerate() {
        let (dns, expect) = (dns.clone(), expect.clone());
        tasks.spawn(async move { (i, check_domain(&dns, &expect, &domain).await) });
    }
    let mut found = tasks.join_all().await;
    found.sort_by_key(|(i, _)| *i);
    found.into_iter().flat_map(|(_, f)| f).collect()
}

/// The domains mail leaves with, sorted.
fn sending_domains(config: &Config) -> Vec<String> {
    let mut domains = BTreeSet::new();
    let domain_of = |a: &str| a.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
    if let Some(d) = config
        .routing
        .rewrite_senders
        .as_deref()
        .and_then(domain_of)
    {
        domains.insert(d);
    }
    if let Some(generic) = &config.routing.generic {
        domains.extend(generic.domains());
    }
    if let Some(d) = domain_of(&config.bounce.sender) {
        domains.insert(d);
    }
    domains.into_iter().collect()
}

/// The includes and selectors asked for: from the options, else from the
/// providers the relays belong to.
fn expect(config: &Config, args: &DoctorArgs) -> Expect {
    let known: Vec<&records::Provider> = config
        .relays
        .iter()
        .filter_map(|r| records::provider(&r.host))
        .collect();
    let mut names: Vec<&str> = known.iter().map(|p| p.name).collect();
    names.dedup();
    // The options win; else what the known providers publish.
    let pick = |given: &[String],
                known_list: &dyn Fn(&records::Provider) -> &'static [&'static str]| {
        if given.is_empty() {
            let all = known.iter().flat_map(|p| known_list(p));
            all.map(|s| s.to_string()).collect::<Vec<_>>()
        } else {
            given.iter().map(|s| s.to_ascii_lowercase()).collect()
        }
    };
    let includes = pick(&args.spf_include, &|p| p.includes);
    let selectors = pick(&args.dkim_selector, &|p| p.selectors);
    Expect {
        includes,
        selectors,
        provider: if names.is_empty() {
            "your provider".to_owned()
        } else {
            names.join(", ")
        },
    }
}

/// SPF, DKIM and DMARC of one domain.
async fn check_domain(dns: &Dns, expect: &Expect, domain: &str) -> Vec<Finding> {
    let (spf, dkim) = tokio::join!(spf(dns, expect, domain), dkim(dns, expect, domain));
    let spf_passes = spf.verdict == Verdict::Ok && !expect.includes.is_empty();
    let dkim_passes = dkim.verdict == Verdict::Ok && !expect.selectors.is_empty();
    let dmarc = dmarc(dns, domain, spf_passes, dkim_passes).await;
    vec![spf, dkim, dmarc]
}

/// A TXT resolver with the doctor's time limit.
struct Dns {
    resolver: TokioResolver,
    limit: Duration,
}

impl Dns {
    fn new(args: &DoctorArgs) -> Result<Dns, String> {
        let mut builder = match &args.dns_server {
            Some(server) => {
                let addr = parse_server(server)?;
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_parts(None, Vec::new(), vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?,
        };
        let opts = builder.options_mut();
        opts.timeout = args.timeout;
        opts.attempts = 1;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot set up the DNS resolver: {e}"))?;
        Ok(Dns {
            resolver,
            limit: args.timeout.saturating_mul(2),
        })
    }

    /// The TXT strings at `name` (each record's strings joined); empty
    /// when the name or the record type does not exist.
    async fn txt(&self, name: &str) -> Result<Vec<String>, String> {
        let fqdn = format!("{}.", name.trim_end_matches('.'));
        let lookup = match tokio::time::timeout(self.limit, self.resolver.txt_lookup(fqdn)).await {
            Err(_) => return Err(format!("no DNS answer for {name} within {:?}", self.limit)),
            Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => return Ok(Vec::new()),
            Ok(Err(e)) => return Err(format!("DNS lookup of {name} failed: {e}")),
            Ok(Ok(l)) => l,
        };
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect())
    }
}

/// `IP` (port 53) or `IP:PORT` (`[v6]:PORT` for IPv6).
fn parse_server(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("--dns-server {text:?} is not IP or IP:PORT (e.g. 127.0.0.1:5353)"))
}

/// SPF: one record, authorising the provider (through nested includes).
async fn spf(dns: &Dns, expect: &Expect, domain: &str) -> Finding {
    let txt = match dns.txt(domain).await {
        Ok(t) => t,
        Err(e) => return lookup_failed("dns.spf", domain, e),
    };
    let records = records::spf_records(&txt);
    let example_include = expect.includes.first().map_or("PROVIDER", String::as_str);
    let Some(record) = records.first() else {
        return Finding::bad(
            "dns.spf",
            Verdict::Problem,
            domain,
            "no SPF record: receivers cannot tell that the provider may send for this domain",
            format!("publish a TXT record at {domain}: \"v=spf1 include:{example_include} ~all\""),
        );
    };
    if records.len() > 1 {
        return Finding::bad(
            "dns.spf",
            Verdict::Problem,
            domain,
            format!(
                "{} SPF records ({}): receivers treat that as an error (permerror)",
                records.len(),
                records
                    .iter()
                    .map(|r| format!("\"{r}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            format!("merge them into one TXT record at {domain}"),
        );
    }
    if expect.includes.is_empty() {
        return Finding::bad(
            "dns.spf",
            Verdict::Warning,
            domain,
            format!("\"{record}\"; the provider's include is not known to the doctor"),
            "name it with --spf-include DOMAIN (the include: your provider's guide asks for)",
        );
    }
    let reached = includes_reached(dns, record).await;
    if let Some(hit) = expect.includes.iter().find(|i| reached.contains(*i)) {
        return Finding::ok(
            "dns.spf",
            domain,
            format!(
                "\"{record}\" authorises {} (include:{hit})",
                expect.provider
            ),
        );
    }
    Finding::bad(
        "dns.spf",
        Verdict::Problem,
        domain,
        format!(
            "\"{record}\" does not include {} (include:{}): mail through it fails SPF",
            expect.provider,
            expect.includes.join(" or include:")
        ),
        format!(
            "change the TXT record at {domain} to \"{}\"",
            records::with_include(record, example_include)
        ),
    )
}

/// The domains reachable from `record` through `include:` and
/// `redirect=`, following at most [`SPF_LOOKUPS`] records.
async fn includes_reached(dns: &Dns, record: &str) -> BTreeSet<String> {
    let mut reached = BTreeSet::new();
    let mut queue: Vec<String> = records::spf_targets(record);
    let mut lookups = 0;
    while let Some(target) = queue.pop() {
        if !reached.insert(target.clone()) || lookups >= SPF_LOOKUPS {
            continue;
        }
        lookups += 1;
        if let Ok(txt) = dns.txt(&target).await
            && let Some(nested) = records::spf_records(&txt).first()
        {
            queue.extend(records::spf_targets(nested));
        }
    }
    reached
}

/// DKIM: a key at each known selector.
async fn dkim(dns: &Dns, expect: &Expect, domain: &str) -> Finding {
    if expect.selectors.is_empty() {
        return Finding::ok(
            "dns.dkim",
            domain,
            format!(
                "not checked: no DKIM selector is known for {} (pass --dkim-selector to check one)",
                expect.provider
            ),
        );
    }
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for sel in &expect.selectors {
        let name = format!("{sel}._domainkey.{domain}");
        match dns.txt(&name).await {
            Ok(txt) if txt.iter().any(|t| t.contains("p=")) => found.push(name),
            Ok(_) => missing.push(name),
            Err(e) => return lookup_failed("dns.dkim", domain, e),
        }
    }
    if found.is_empty() {
        return Finding::bad(
            "dns.dkim",
            Verdict::Warning,
            domain,
            format!("no DKIM key at {}", missing.join(", ")),
            format!(
                "publish the DKIM records {} gives you for {domain} (in its domain settings), \
                 so that its signatures align with your domain",
                expect.provider
            ),
        );
    }
    Finding::ok(
        "dns.dkim",
        domain,
        format!("DKIM key published at {}", found.join(", ")),
    )
}

/// DMARC: a record, and a way for its alignment to pass.
async fn dmarc(dns: &Dns, domain: &str, spf_passes: bool, dkim_passes: bool) -> Finding {
    let name = format!("_dmarc.{domain}");
    let txt = match dns.txt(&name).await {
        Ok(t) => t,
        Err(e) => return lookup_failed("dns.dmarc", domain, e),
    };
    let Some((record, policy)) = txt.iter().find_map(|t| records::dmarc(t).map(|p| (t, p))) else {
        return Finding::bad(
            "dns.dmarc",
            Verdict::Warning,
            domain,
            format!("no DMARC record at {name}: large mailbox providers expect one"),
            format!(
                "publish a TXT record at {name}: \"v=DMARC1; p=none; rua=mailto:postmaster@{domain}\""
            ),
        );
    };
    let mut ways = Vec::new();
    if spf_passes {
        ways.push(if policy.strict_spf {
            "SPF (strict: only if the provider keeps your domain as the return path)"
        } else {
            "SPF"
        });
    }
    if dkim_passes {
        ways.push("DKIM");
    }
    if !ways.is_empty() {
        return Finding::ok(
            "dns.dmarc",
            domain,
            format!(
                "\"{record}\"; alignment can pass through {}",
                ways.join(" and ")
            ),
        );
    }
    let verdict = if policy.policy == "none" {
        Verdict::Warning
    } else {
        Verdict::Problem
    };
    Finding::bad(
        "dns.dmarc",
        verdict,
        domain,
        format!(
            "\"{record}\"; neither SPF nor DKIM above can align, so mail fails DMARC (p={})",
            if policy.policy.is_empty() {
                "?"
            } else {
                &policy.policy
            }
        ),
        "fix the SPF and DKIM findings above for this domain",
    )
}

fn lookup_failed(check: &'static str, domain: &str, why: String) -> Finding {
    Finding::bad(
        check,
        Verdict::Warning,
        domain,
        why,
        "check this machine's DNS (/etc/resolv.conf), or name a server with --dns-server",
    )
}
