# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_postrelay_global_optspecs
    string join \n c/config= h/help V/version
end

function __fish_postrelay_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_postrelay_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_postrelay_using_subcommand
    set -l cmd (__fish_postrelay_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c postrelay -n "__fish_postrelay_needs_command" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_needs_command" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_needs_command" -s V -l version -d 'Print version'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "run" -d 'Run the relay in the foreground'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "check-config" -d 'Validate the configuration and print the effective settings'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "doctor" -d 'Check the setup: configuration, secrets, spool, daemon, each relay (TLS mode, certificate, AUTH), outbound ports, SPF/DKIM/DMARC'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "send-test" -d 'Send a tracked test message through the running daemon and report each step: queued, connected, TLS (certificate name), AUTH, accepted (the provider\'s queue id), or the step that failed and why'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "auth" -d 'OAuth2 relays: log in once (`auth login --relay NAME`), or show each one\'s token state (`auth status`)'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "queue" -d 'Inspect or change the queue'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "hash-password" -d 'Read a password (stdin; asked twice without echo on a terminal) and print its argon2id hash for the [intake.submission] users file'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "init" -d 'Write a commented configuration for a provider and the relay\'s password file (asks on a terminal, then runs doctor)'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "import-postfix" -d 'Read Postfix\'s main.cf (and the text sources of its tables) in DIR (default /etc/postfix) and write the equivalent postrelay configuration; what cannot be carried over is reported on stderr'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "import-msmtp" -d 'Read an msmtprc (default /etc/msmtprc) and write the equivalent postrelay configuration'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "import-nullmailer" -d 'Read nullmailer\'s remotes in DIR (default /etc/nullmailer) and write the equivalent postrelay configuration'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "sendmail" -d 'The sendmail(8) interface (also by argv[0]): reads a message on stdin and submits it. Takes sendmail\'s flags, e.g. `-t -i`'
complete -c postrelay -n "__fish_postrelay_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c postrelay -n "__fish_postrelay_using_subcommand run" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand run" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand check-config" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -l timeout -d 'How long each network step (connect, greeting, TLS, EHLO, AUTH, a DNS query) may take' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -l dns-server -d 'The DNS server for the SPF, DKIM and DMARC checks, as IP or IP:PORT. Default: the system\'s resolver (/etc/resolv.conf)' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -l probe-host -d 'Another host whose ports 25, 465 and 587 are probed for outbound reachability, besides the relays\' hosts (e.g. smtp.gmail.com)' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -l spf-include -d 'The SPF include your provider asks for (`include:DOMAIN`), when the doctor does not know the provider from the relay\'s host name' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -l dkim-selector -d 'A DKIM selector your provider signs with, when the doctor does not know the provider\'s selectors' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -l json -d 'Print one JSON object instead of the report for people'
complete -c postrelay -n "__fish_postrelay_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand send-test" -l to -d 'The recipient of the test message' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand send-test" -l from -d 'The envelope sender and From: (default postmaster@ the configured hostname; sender rewriting applies as to any message)' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand send-test" -l timeout -d 'How long to wait for the result (`60s`, `2m`)' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand send-test" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand send-test" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -f -a "login" -d 'Log in to a relay\'s OAuth2 provider once (authorization code: prints a URL to open, then takes the browser\'s redirect or the address pasted here; device code: prints a URL and a code to enter there), and keep the refresh token for the daemon'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -f -a "status" -d 'Show each OAuth2 relay\'s token state (exit status 1 when one needs a new login)'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and not __fish_seen_subcommand_from login status help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from login" -l relay -d 'The [[relay]] name' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from login" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from login" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from status" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from status" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "login" -d 'Log in to a relay\'s OAuth2 provider once (authorization code: prints a URL to open, then takes the browser\'s redirect or the address pasted here; device code: prints a URL and a code to enter there), and keep the refresh token for the daemon'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "status" -d 'Show each OAuth2 relay\'s token state (exit status 1 when one needs a new login)'
complete -c postrelay -n "__fish_postrelay_using_subcommand auth; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "list" -d 'List queued messages (also `mailq`)'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "show" -d 'Show one message\'s envelope, state and last delivery transcript'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "delete" -d 'Delete messages'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "hold" -d 'Hold messages: they stay queued but are not delivered'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "release" -d 'Release held messages'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "flush" -d 'Attempt delivery of every queued message now'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and not __fish_seen_subcommand_from list show delete hold release flush help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from list" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from list" -l json -d 'Print JSON (one array of envelopes) instead of the table'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from show" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from show" -l json -d 'Print the envelope as JSON'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from delete" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from delete" -l all -d 'Delete every queued message'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from delete" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from hold" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from hold" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from release" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from release" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from flush" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from flush" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "list" -d 'List queued messages (also `mailq`)'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one message\'s envelope, state and last delivery transcript'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "delete" -d 'Delete messages'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "hold" -d 'Hold messages: they stay queued but are not delivered'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "release" -d 'Release held messages'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "flush" -d 'Attempt delivery of every queued message now'
complete -c postrelay -n "__fish_postrelay_using_subcommand queue; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c postrelay -n "__fish_postrelay_using_subcommand hash-password" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand hash-password" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l provider -d 'The provider: brevo, ses:REGION, sendgrid, mailgun[:eu], postmark, smtp2go, gmail, google-workspace, m365. Asked on a terminal' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l user -d 'The user name for the provider\'s SMTP AUTH (SendGrid\'s is fixed). Asked on a terminal' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l sender -d 'The address local senders (root, cron, …) are rewritten to, one the provider has verified (`[routing] rewrite_senders`). Asked on a terminal; without it local senders are kept' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -s o -l output -d 'The configuration file to write' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l password-file -d 'The password file to write. Default: secrets/RELAY next to the configuration' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l daemon-user -d 'The `[daemon] user`; when run as root it owns the password file' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l host -d 'Override the provider\'s host' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l port -d 'Override the provider\'s port (e.g. 465 with --tls implicit)' -r
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l tls -d 'Override the provider\'s TLS mode' -r -f -a "starttls\t''
implicit\t''
auto\t''"
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l ca-file -d 'CA certificates (PEM) to verify the relay with instead of the system\'s' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l password-stdin -d 'Read the password from the first line of standard input (never from the command line). On a terminal it is asked without echo'
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -l force -d 'Replace an existing configuration and password file'
complete -c postrelay -n "__fish_postrelay_using_subcommand init" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand import-postfix" -s o -l output -d 'Write the configuration to FILE (replacing it) instead of standard output. Passwords written inline in the source (msmtp, nullmailer) then go to new files of mode 0600 in `secrets/` next to FILE' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand import-postfix" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand import-postfix" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand import-msmtp" -s o -l output -d 'Write the configuration to FILE (replacing it) instead of standard output. Passwords written inline in the source (msmtp, nullmailer) then go to new files of mode 0600 in `secrets/` next to FILE' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand import-msmtp" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand import-msmtp" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand import-nullmailer" -s o -l output -d 'Write the configuration to FILE (replacing it) instead of standard output. Passwords written inline in the source (msmtp, nullmailer) then go to new files of mode 0600 in `secrets/` next to FILE' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand import-nullmailer" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand import-nullmailer" -s h -l help -d 'Print help'
complete -c postrelay -n "__fish_postrelay_using_subcommand sendmail" -s c -l config -d 'Configuration file. Default: $POSTRELAY_CONFIG, else /etc/postrelay/postrelay.toml if it exists, else the built-in default (listen on 127.0.0.1:2525, spool ./postrelay-spool)' -r -F
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "run" -d 'Run the relay in the foreground'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "check-config" -d 'Validate the configuration and print the effective settings'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "doctor" -d 'Check the setup: configuration, secrets, spool, daemon, each relay (TLS mode, certificate, AUTH), outbound ports, SPF/DKIM/DMARC'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "send-test" -d 'Send a tracked test message through the running daemon and report each step: queued, connected, TLS (certificate name), AUTH, accepted (the provider\'s queue id), or the step that failed and why'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "auth" -d 'OAuth2 relays: log in once (`auth login --relay NAME`), or show each one\'s token state (`auth status`)'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "queue" -d 'Inspect or change the queue'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "hash-password" -d 'Read a password (stdin; asked twice without echo on a terminal) and print its argon2id hash for the [intake.submission] users file'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "init" -d 'Write a commented configuration for a provider and the relay\'s password file (asks on a terminal, then runs doctor)'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "import-postfix" -d 'Read Postfix\'s main.cf (and the text sources of its tables) in DIR (default /etc/postfix) and write the equivalent postrelay configuration; what cannot be carried over is reported on stderr'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "import-msmtp" -d 'Read an msmtprc (default /etc/msmtprc) and write the equivalent postrelay configuration'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "import-nullmailer" -d 'Read nullmailer\'s remotes in DIR (default /etc/nullmailer) and write the equivalent postrelay configuration'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "sendmail" -d 'The sendmail(8) interface (also by argv[0]): reads a message on stdin and submits it. Takes sendmail\'s flags, e.g. `-t -i`'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and not __fish_seen_subcommand_from run check-config doctor send-test auth queue hash-password init import-postfix import-msmtp import-nullmailer sendmail help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "login" -d 'Log in to a relay\'s OAuth2 provider once (authorization code: prints a URL to open, then takes the browser\'s redirect or the address pasted here; device code: prints a URL and a code to enter there), and keep the refresh token for the daemon'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from auth" -f -a "status" -d 'Show each OAuth2 relay\'s token state (exit status 1 when one needs a new login)'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "list" -d 'List queued messages (also `mailq`)'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "show" -d 'Show one message\'s envelope, state and last delivery transcript'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "delete" -d 'Delete messages'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "hold" -d 'Hold messages: they stay queued but are not delivered'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "release" -d 'Release held messages'
complete -c postrelay -n "__fish_postrelay_using_subcommand help; and __fish_seen_subcommand_from queue" -f -a "flush" -d 'Attempt delivery of every queued message now'
