//! `[relay.oauth]`: the provider's endpoints filled from the preset, the
//! flows, where the token is kept, and the mistakes refused.

use super::*;

fn m365(extra: &str) -> String {
    format!(
        "spool = \"/sp\"\n[[relay]]\nname = \"m\"\nprovider = \"m365\"\nusername = \"relay@contoso.example\"\n[relay.oauth]\nclient_id = \"app-1\"\n{extra}"
    )
}

#[test]
fn presets_fill_the_endpoints_scopes_and_token_file() {
    let c = ok(&m365(""));
    let o = c.relays[0].oauth.as_ref().unwrap();
    assert_eq!(o.provider, OAuthProvider::Microsoft);
    assert_eq!(o.flow, OAuthFlow::Device);
    assert_eq!(o.username, "relay@contoso.example");
    assert_eq!(
        o.token_url,
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
    );
    assert_eq!(
        o.device_url.as_deref(),
        Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode")
    );
    assert_eq!(
        o.scopes,
        ["https://outlook.office.com/SMTP.Send", "offline_access"]
    );
    assert_eq!(
        o.auth_url.as_deref(),
        Some("https://login.microsoftonline.com/organizations/oauth2/v2.0/authorize")
    );
    assert_eq!(o.token_file, PathBuf::from("/sp/oauth/m.token"));
    assert_eq!(o.refresh_token_lifetime, Some(secs(90 * 86400)));
    assert!(c.relays[0].credentials.is_none());

    let c = ok(
        "[[relay]]\nname = \"g\"\nprovider = \"gmail\"\nusername = \"me@gmail.example\"\n[relay.oauth]\nclient_id = \"c\"\ntoken_file = \"/t/g.json\"\n",
    );
    let o = c.relays[0].oauth.as_ref().unwrap();
    assert_eq!(o.provider, OAuthProvider::Google);
    assert_eq!(o.flow, OAuthFlow::AuthorizationCode);
    assert_eq!(
        o.auth_url.as_deref(),
        Some("https://accounts.google.com/o/oauth2/v2/auth")
    );
    assert_eq!(o.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(o.scopes, ["https://mail.google.com/"]);
    assert_eq!(o.token_file, PathBuf::from("/t/g.json"));
    assert_eq!(o.refresh_token_lifetime, None);
}

#[test]
fn endpoints_must_be_https_except_on_loopback() {
    for ok_url in [
        "https://login.example/token",
        "http://127.0.0.1:8080/token",
        "http://[::1]:9/t",
        "http://localhost/t",
    ] {
        assert_eq!(check_oauth_endpoint(ok_url), Ok(()), "{ok_url}");
    }
    for bad in [
        "http://login.example/token",
        "http://127.0.0.1.evil.example/t",
        "http://10.0.0.1/t",
        "ftp://x/",
        "https:///t",
    ] {
        assert!(check_oauth_endpoint(bad).is_err(), "{bad}");
    }
    let e = err(&m365("token_url = \"http://login.example/token\"\n")).to_string();
    assert!(e.contains("must be an https:// URL"), "{e}");
}

#[test]
fn mistakes_are_refused_with_the_fix() {
    let cases: &[(&str, &str)] = &[
        // No client id.
        (
            "[[relay]]\nname = \"m\"\nprovider = \"m365\"\nusername = \"u@x.example\"\n[relay.oauth]\ntenant = \"t\"\n",
            "client_id is required",
        ),
        // No user name.
        (
            "[[relay]]\nname = \"m\"\nprovider = \"m365\"\n[relay.oauth]\nclient_id = \"c\"\n",
            "needs username",
        ),
        // A password and a token.
        (
            "[[relay]]\nname = \"m\"\nprovider = \"m365\"\nusername = \"u@x.example\"\npassword_file = \"/p\"\n[relay.oauth]\nclient_id = \"c\"\n",
            "either a password or an OAuth token",
        ),
        // Client credentials without a secret, or without a tenant.
        (
            "[[relay]]\nname = \"m\"\nprovider = \"m365\"\nusername = \"u@x.example\"\n[relay.oauth]\nclient_id = \"c\"\nflow = \"client_credentials\"\n",
            "set client_secret_file",
        ),
        // No endpoint without a known provider.
        (
            "[[relay]]\nname = \"x\"\nhost = \"smtp.example.net\"\nusername = \"u@x.example\"\n[relay.oauth]\nclient_id = \"c\"\n",
            "token_url is required",
        ),
        // A token in clear text.
        (
            "[[relay]]\nname = \"m\"\nprovider = \"m365\"\nsecurity = \"none\"\nusername = \"u@x.example\"\n[relay.oauth]\nclient_id = \"c\"\n",
            "an OAuth token is a credential",
        ),
        (
            "[[relay]]\nname = \"m\"\nprovider = \"m365\"\nusername = \"u@x.example\"\n[relay.oauth]\nclient_id = \"c\"\nflow = \"password\"\n",
            "must be \"authorization_code\" (postrelay auth login: a browser",
        ),
        // The authorization code flow without a known authorization page.
        (
            "[[relay]]\nname = \"x\"\nhost = \"smtp.example.net\"\nusername = \"u@x.example\"\n[relay.oauth]\nclient_id = \"c\"\ntoken_url = \"https://id.example/t\"\nflow = \"authorization_code\"\n",
            "set oauth.auth_url",
        ),
    ];
    for (text, words) in cases {
        let e = err(text).to_string();
        assert!(e.contains(words), "{text}\n→ {e}");
    }
}

#[test]
fn the_examples_oauth_block_parses_uncommented() {
    let dir = tempfile::tempdir().unwrap();
    let client = super::relay::Files::new(dir.path()).secret("m365-client", "s\n");
    let (_, block) = EXAMPLE.split_once("\n# [relay.oauth]\n").unwrap();
    let oauth: String = block
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|r| !keys_in(r).is_empty())
                .unwrap_or(l)
        })
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "/etc/postrelay/secrets/m365-client",
            &client.display().to_string(),
        );
    let text = format!(
        "[[relay]]\nname = \"m365\"\nprovider = \"m365\"\nusername = \"u@contoso.example\"\n[relay.oauth]\n{oauth}"
    );
    let o = ok(&text).relays[0].oauth.clone().unwrap();
    assert_eq!(o.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
    assert_eq!(o.client_secret.unwrap().expose(), "s");
}
