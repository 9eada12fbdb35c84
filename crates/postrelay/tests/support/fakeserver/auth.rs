//! AUTH in the fake server: PLAIN (with or without an initial response)
//! and LOGIN against the script's credentials, XOAUTH2 and OAUTHBEARER
//! against its bearer check. Not for: advertising AUTH (the EHLO reply).

use super::{Peer, Script};

/// AUTH PLAIN (initial response) and AUTH LOGIN.
pub(super) async fn auth(p: &mut Peer<'_>, script: &Script, line: &str) -> std::io::Result<()> {
    use postrelay_smtp::sasl::{decode_challenge, login_user as encode};
    let decode = |s: &str| decode_challenge(s).unwrap_or_else(|_| b"\xffinvalid".to_vec());
    let (user, pass) = &script.credentials;
    let mut words = line.split(' ').skip(1);
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let ok = match mechanism.as_str() {
        "PLAIN" => {
            let initial = match words.next() {
                Some(i) => i.to_owned(),
                None => {
                    p.reply("334 ").await?;
                    p.line().await.unwrap_or_default()
                }
            };
            decode(&initial) == format!("\0{user}\0{pass}").into_bytes()
        }
        "LOGIN" => {
            p.reply(&format!("334 {}", encode("Username:"))).await?;
            let u = p.line().await.unwrap_or_default();
            p.reply(&format!("334 {}", encode("Password:"))).await?;
            let w = p.line().await.unwrap_or_default();
            decode(&u) == user.as_bytes() && decode(&w) == pass.as_bytes()
        }
        "XOAUTH2" | "OAUTHBEARER" if script.bearer.is_some() => {
            return bearer(
                p,
                script,
                &mechanism,
                &decode(words.next().unwrap_or_default()),
            )
            .await;
        }
        _ => {
            return p.reply("504 5.5.4 Unrecognized authentication type").await;
        }
    };
    if ok {
        p.reply("235 2.7.0 Authentication successful").await
    } else {
        p.reply("535 5.7.8 Error: authentication failed: bad credentials")
            .await
    }
}

/// XOAUTH2 or OAUTHBEARER: the decoded initial response `msg` must be
/// exactly `user=U^Aauth=Bearer T^A^A` or `n,a=U,^Ahost=H^Aport=P^Aauth=Bearer
/// T^A^A`, and the token good for the user; a refusal sends the error
/// challenge, expects the mechanism's answer to it, then 535.
async fn bearer(
    p: &mut Peer<'_>,
    script: &Script,
    mechanism: &str,
    msg: &[u8],
) -> std::io::Result<()> {
    let text = String::from_utf8_lossy(msg).into_owned();
    let parsed = if mechanism == "XOAUTH2" {
        text.strip_prefix("user=")
            .and_then(|r| r.strip_suffix("\x01\x01"))
            .and_then(|r| r.split_once("\x01auth=Bearer "))
            .map(|(u, t)| (u.to_owned(), t.to_owned()))
    } else {
        text.strip_prefix("n,a=")
            .and_then(|r| r.strip_suffix("\x01\x01"))
            .and_then(|r| r.split_once(",\x01"))
            .and_then(|(u, rest)| {
                let f: Vec<&str> = rest.split('\x01').collect();
                let ok = f.len() == 3
                    && f[0].strip_prefix("host=").is_some_and(|h| !h.is_empty())
                    && f[1]
                        .strip_prefix("port=")
                        .is_some_and(|n| n.parse::<u16>().is_ok());
                let token = f.get(2)?.strip_prefix("auth=Bearer ")?;
                ok.then(|| (u.replace("=2C", ",").replace("=3D", "="), token.to_owned()))
            })
    };
    let parsed =
        parsed.filter(|(u, t)| !t.is_empty() && !u.contains('\x01') && !t.contains('\x01'));
    let check = script.bearer.clone().expect("checked by the caller");
    let ok = match parsed {
        Some((u, t)) => tokio::task::spawn_blocking(move || check(&u, &t))
            .await
            .unwrap_or(false),
        None => false,
    };
    if ok {
        return p.reply("235 2.7.0 Accepted").await;
    }
    // {"status":"401","schemes":"bearer"}
    p.reply("334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=")
        .await?;
    let answer = p.line().await.unwrap_or_default();
    let expected = if mechanism == "XOAUTH2" { "" } else { "AQ==" };
    if answer.trim_end() != expected {
        return p
            .reply("501 5.5.2 wrong answer to the error challenge")
            .await;
    }
    p.reply("535 5.7.8 Username and Password not accepted")
        .await
}
