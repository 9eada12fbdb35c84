//! The sendmail(8) command line, parsed by hand the way getopt(3) does it
//! for Sendmail and Postfix: flags may be grouped (`-ti`), an option's
//! argument may be attached (`-fuser`) or the next word (`-f user`),
//! options end at `--` or at the first word that is not one.
//!
//! Historic flags that cron, mailx, PHP and monitoring tools pass are
//! accepted and ignored without a word on stderr.

use std::ffi::OsString;

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Read a message on stdin and submit it (`-bm`, the default).
    #[default]
    Submit,
    /// SMTP on stdin/stdout (`-bs`).
    Smtp,
    /// List the queue (`-bp`, `mailq`).
    ListQueue,
    /// Attempt delivery of the queue now (`-q`, `-qR…`, `-qS…`).
    Flush,
    /// `-q<interval>`: a queue-run interval for a Sendmail daemon; nothing
    /// to do here (Postfix also ignores it).
    Nothing,
}

/// The parsed command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// What to do.
    pub mode: Mode,
    /// `-t`: recipients from To/Cc/Bcc.
    pub from_headers: bool,
    /// `-i` / `-oi`: a line with a lone `.` is content.
    pub ignore_dots: bool,
    /// `-f` / `-r`: envelope sender as given.
    pub sender: Option<String>,
    /// `-F`: full name for an added From: header.
    pub full_name: Option<String>,
    /// `-B 8BITMIME`.
    pub eight_bit: bool,
    /// `-N`: DSN NOTIFY, upper-case.
    pub notify: Option<Vec<String>>,
    /// `-v`.
    pub verbose: bool,
    /// Recipients on the command line.
    pub recipients: Vec<String>,
}

/// A usage error: one line for stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

/// Options that take an argument (attached or the next word).
const WITH_ARG: &[u8] = b"BCFLNORVXbdefhopr";
/// Options without an argument. Ignored unless handled below: -G (relay
/// gateway), -I (initialise aliases), -U (initial user submission), -c,
/// -m (me too), -n (no aliases), -s (save From lines), -x.
const NO_ARG: &[u8] = b"GIUcimnstvx";

/// Parses the arguments after argv\[0\].
pub fn parse(args: Vec<OsString>) -> Result<Options, UsageError> {
    let mut o = Options::default();
    let mut words = args.into_iter();
    let mut rest = Vec::new();
    while let Some(word) = words.next() {
        let word = utf8(word)?;
        if word == "--" {
            rest.extend(words.by_ref());
            break;
        }
        if word.len() < 2 || !word.starts_with('-') {
            rest.push(word.into());
            rest.extend(words.by_ref());
            break;
        }
        let bytes = word.as_bytes();
        let mut i = 1;
        while i < bytes.len() {
            let flag = bytes[i];
            i += 1;
            if flag == b'q' {
                // Optional attached argument only.
                let arg = &word[i..];
                o.mode = if arg.is_empty() || arg.starts_with(['R', 'S', 'I', 'Q']) {
                    Mode::Flush
                } else {
                    Mode::Nothing
                };
                break;
            }
            if WITH_ARG.contains(&flag) {
                let arg = if i < bytes.len() {
                    word[i..].to_string()
                } else {
                    match words.next() {
                        Some(w) => utf8(w)?,
                        None => {
                            return Err(usage(&format!(
                                "option -{} needs an argument",
                                flag as char
                            )));
                        }
                    }
                };
                with_arg(&mut o, flag, arg)?;
                break;
            }
            if !NO_ARG.contains(&flag) {
                return Err(usage(&format!(
                    "unknown option -{}",
                    char::from(flag).escape_default()
                )));
            }
            match flag {
                b't' => o.from_headers = true,
                b'i' => o.ignore_dots = true,
                b'v' => o.verbose = true,
                _ => {}
            }
        }
    }
    for word in rest {
        o.recipients.push(utf8(word)?);
    }
    Ok(o)
}

fn with_arg(o: &mut Options, flag: u8, arg: String) -> Result<(), UsageError> {
    match flag {
        b'f' | b'r' => o.sender = Some(arg),
        b'F' => {
            if arg.chars().any(char::is_control) {
                return Err(usage(
                    "-F: the full name must not contain control characters",
                ));
            }
            o.full_name = Some(arg);
        }
        b'b' => {
            o.mode = match arg.as_str() {
                "m" => Mode::Submit,
                "s" => Mode::Smtp,
                "p" => Mode::ListQueue,
                other => {
                    return Err(usage(&format!(
                        "-b{other} is not supported (use -bm, -bs or -bp)"
                    )));
                }
            }
        }
        b'B' => match arg.to_ascii_uppercase().as_str() {
            "8BITMIME" => o.eight_bit = true,
            "7BIT" => o.eight_bit = false,
            _ => return Err(usage(&format!("-B{arg}: use -B 7BIT or -B 8BITMIME"))),
        },
        b'N' => {
            let values: Vec<String> = arg
                .split(',')
                .map(|v| v.trim().to_ascii_uppercase())
                .collect();
            crate::maildrop::check_notify(&values).map_err(|e| usage(&format!("-N {arg}: {e}")))?;
            o.notify = Some(values);
        }
        // -oi is -i; -oem, -oee, -odi, -odb, -odq, -om, -oXXX: ignored.
        b'o' if arg == "i" => o.ignore_dots = true,
        // -C config, -L label, -O option=value, -R ret, -V envid, -X log
        // file, -d debug, -e mode, -h hops, -p protocol: accepted, ignored.
        _ => {}
    }
    Ok(())
}

fn utf8(word: OsString) -> Result<String, UsageError> {
    word.into_string()
        .map_err(|w| usage(&format!("argument {w:?} is not UTF-8")))
}

fn usage(what: &str) -> UsageError {
    UsageError(format!(
        "{what}; usage: sendmail [-t] [-i] [-f sender] [-F 'Full Name'] [--] recipient…"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Options, UsageError> {
        parse(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn typical_callers() {
        // cron (cronie / Debian cron)
        let o = p(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("CronDaemon"));
        assert!(o.ignore_dots && o.eight_bit);
        assert_eq!(o.recipients, ["root"]);
        // PHP default
        let o = p(&["-t", "-i"]).unwrap();
        assert!(o.from_headers && o.ignore_dots && o.recipients.is_empty());
        // grouped, attached and separate arguments
        let o = p(&[
            "-ti", "-f", "a@b", "-oi", "-odi", "-N", "never", "-R", "hdrs", "-V", "x", "x@y",
        ])
        .unwrap();
        assert_eq!(o.sender.as_deref(), Some("a@b"));
        assert_eq!(o.notify, Some(vec!["NEVER".to_string()]));
        let o = p(&[
            "-ra@b", "-L", "lbl", "-C", "/etc/x", "-X", "/tmp/log", "-em", "-ep", "-U", "--",
            "-odd",
        ])
        .unwrap();
        assert_eq!(o.sender.as_deref(), Some("a@b"));
        assert_eq!(o.recipients, ["-odd"]);
    }

    #[test]
    fn modes() {
        assert_eq!(p(&["-bs"]).unwrap().mode, Mode::Smtp);
        assert_eq!(p(&["-bp"]).unwrap().mode, Mode::ListQueue);
        assert_eq!(p(&["-q"]).unwrap().mode, Mode::Flush);
        assert_eq!(p(&["-qRexample.com"]).unwrap().mode, Mode::Flush);
        assert_eq!(p(&["-q30m"]).unwrap().mode, Mode::Nothing);
        assert!(p(&["-bd"]).is_err());
    }

    #[test]
    fn errors() {
        for bad in [
            &["-Z"][..],
            &["-f"],
            &["-N", "sometimes"],
            &["-B", "BINARYMIME"],
            &["-F", "a\nb"],
        ] {
            let e = p(bad).unwrap_err();
            assert!(e.0.contains("usage: sendmail"), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn options_stop_at_the_first_recipient() {
        let o = p(&["a@b", "-t"]).unwrap();
        assert_eq!(o.recipients, ["a@b", "-t"]);
        assert!(!o.from_headers);
    }
}
