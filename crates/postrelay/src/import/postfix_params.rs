//! Why a `main.cf` parameter that `import-postfix` does not carry over has
//! no counterpart in postrelay, by name or by family (`smtpd_*`).
//!
//! `None` is for parameters whose effect postrelay has anyway, so that
//! reporting them would only be noise.

/// The reason for a parameter nothing else dealt with.
pub(super) fn reason(name: &str, value: &str) -> Option<String> {
    match by_name(name) {
        Some(why) => why.map(str::to_owned),
        None => by_family(name, value),
    }
}

/// Parameters known by name: `Some(None)` for those with nothing to say.
fn by_name(name: &str) -> Option<Option<&'static str>> {
    let fixed = Some;
    let why = match name {
        "compatibility_level"
        | "readme_directory"
        | "html_directory"
        | "manpage_directory"
        | "sample_directory"
        | "command_directory"
        | "daemon_directory"
        | "data_directory"
        | "meta_directory"
        | "shlib_directory"
        | "queue_directory"
        | "sendmail_path"
        | "newaliases_path"
        | "mailq_path"
        | "setgid_group"
        | "mail_owner" => fixed("a setting of Postfix's own installation; postrelay has none"),
        "biff" => fixed("postrelay does not notify comsat(8)"),
        "append_dot_mydomain" | "append_at_myorigin" => {
            fixed("postrelay completes only bare names (root), with hostname")
        }
        "alias_database" => fixed(
            "postrelay reads the aliases text file itself (routing.aliases); there is no newaliases step",
        ),
        "inet_protocols" => fixed("intake.listen lists the addresses (IPv4, IPv6) to listen on"),
        "mailbox_size_limit" => fixed("postrelay does not limit mailbox sizes"),
        "mailbox_command" | "mailbox_transport" | "local_transport" | "fallback_transport" => {
            fixed(
                "postrelay delivers local mail itself (Maildir or mbox, [local]) and runs no delivery program",
            )
        }
        "local_recipient_maps" => fixed(
            "postrelay always checks local recipients against the aliases and the system's users",
        ),
        "relay_domains" | "relay_recipient_maps" => fixed(
            "postrelay relays for clients in intake.mynetworks only; other clients may only send to intake.local_domains",
        ),
        "default_transport" | "relay_transport" => fixed(
            "mail without a transport entry goes to the [[relay]] tables in order; a transport map entry \"* smtp:[host]:port\" sends everything to one host",
        ),
        "smtp_tls_loglevel" | "smtp_tls_note_starttls_offer" => {
            fixed("postrelay logs the TLS version and cipher of each relay session")
        }
        "smtp_tls_session_cache_database" | "smtp_tls_session_cache_timeout" => {
            fixed("postrelay keeps relay connections open for reuse instead (idle_timeout)")
        }
        "smtp_tls_protocols"
        | "smtp_tls_mandatory_protocols"
        | "smtp_tls_ciphers"
        | "smtp_tls_mandatory_ciphers"
        | "smtp_tls_exclude_ciphers"
        | "smtp_tls_mandatory_exclude_ciphers"
        | "tls_high_cipherlist"
        | "tls_medium_cipherlist"
        | "tls_preempt_cipherlist"
        | "tls_ssl_options" => {
            fixed("postrelay speaks TLS 1.2 and 1.3 with its TLS library's safe cipher suites only")
        }
        "smtp_tls_cert_file" | "smtp_tls_key_file" | "smtp_tls_chain_files" => {
            fixed("postrelay does not present a client certificate to relays")
        }
        "smtp_tls_policy_maps" => {
            fixed("write a [[relay]] per host with its tls, security, ca_file and tls_name instead")
        }
        "smtp_connect_timeout"
        | "smtp_helo_timeout"
        | "smtp_mail_timeout"
        | "smtp_rcpt_timeout"
        | "smtp_data_init_timeout"
        | "smtp_data_xfer_timeout"
        | "smtp_data_done_timeout"
        | "smtp_quit_timeout"
        | "smtp_starttls_timeout" => fixed(
            "postrelay's relay timeouts are in [relay.timeouts] (connect, ehlo, mail, rcpt, data, data_end, quit, tls), with their own defaults; set them per relay if needed",
        ),
        "smtp_destination_concurrency_limit" | "default_destination_concurrency_limit" => {
            fixed("set max_connections on the [[relay]]")
        }
        "delay_notice_recipient"
        | "bounce_notice_recipient"
        | "error_notice_recipient"
        | "notify_classes" => fixed(
            "postrelay sends delivery notices to the sender and double bounces to [bounce] postmaster only",
        ),
        "bounce_queue_lifetime" => {
            fixed("bounces are retried for queue.max_lifetime like any message")
        }
        "queue_run_delay" => fixed(
            "postrelay schedules each message by its own back-off; there is no periodic queue run",
        ),
        "smtp_sasl_type" | "smtp_tls_wrappermode" => None,
        _ => return None,
    };
    Some(why)
}

/// Parameters known by family (`smtpd_*`), and the rest.
fn by_family(name: &str, value: &str) -> Option<String> {
    let fixed = |s: &str| Some(s.to_owned());
    match name {
        n if n.starts_with("smtpd_") || n.starts_with("postscreen_") => fixed(
            "a setting of Postfix's SMTP server; postrelay's intake is set in [intake] ([intake.submission] for TLS and AUTH listeners) and has its own limits and checks",
        ),
        n if n.starts_with("milter_") || n.ends_with("_milters") => {
            fixed("postrelay does not run milters")
        }
        n if n.starts_with("virtual_") => fixed(
            "postrelay has no virtual mailbox or alias domains; use aliases and the transport map",
        ),
        n if n.starts_with("lmtp_") => fixed("postrelay does not deliver over LMTP"),
        n if n.starts_with("content_filter") || n.ends_with("_checks") => {
            fixed("postrelay does not filter content")
        }
        _ if value.is_empty() => None,
        _ => fixed("postrelay has no such setting"),
    }
}
