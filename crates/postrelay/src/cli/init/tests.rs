use std::path::{Path, PathBuf};

use super::Answers;
use super::files::render;
use crate::config;

fn answers(provider: &str, sender: Option<&str>) -> Answers {
    Answers {
        provider: config::provider_preset(provider).unwrap(),
        relay: provider.split(':').next().unwrap().to_owned(),
        user: "me \"quoted\"".to_owned(),
        password: "never-in-the-config".to_owned(),
        sender: sender.map(str::to_owned),
        args_host: None,
        port: Some(465),
        tls: Some("implicit".to_owned()),
        ca_file: None,
        daemon_user: "root".to_owned(),
        output: PathBuf::from("/etc/postrelay/postrelay.toml"),
        password_file: PathBuf::from("/etc/postrelay/secrets/x"),
    }
}

#[test]
fn the_text_names_the_preset_and_the_answers_and_never_the_password() {
    let a = answers("ses:eu-west-1", Some("alerts@example.com"));
    let text = render(&a, Path::new("/etc/postrelay/secrets/ses"));
    let table: toml::Table = toml::from_str(&text).unwrap();
    let relay = &table["relay"].as_array().unwrap()[0];
    assert_eq!(relay["name"].as_str(), Some("ses"));
    assert_eq!(relay["provider"].as_str(), Some("ses:eu-west-1"));
    assert_eq!(relay["username"].as_str(), Some("me \"quoted\""));
    assert_eq!(relay["port"].as_integer(), Some(465));
    assert_eq!(relay["tls"].as_str(), Some("implicit"));
    assert_eq!(
        relay["password_file"].as_str(),
        Some("/etc/postrelay/secrets/ses")
    );
    assert_eq!(
        table["routing"]["rewrite_senders"].as_str(),
        Some("alerts@example.com")
    );
    assert!(
        text.contains("email-smtp.eu-west-1.amazonaws.com port 587"),
        "{text}"
    );
    assert!(!text.contains("never-in-the-config"), "{text}");
}

#[test]
fn without_a_sender_local_senders_are_kept() {
    let text = render(&answers("brevo", None), Path::new("/p"));
    let table: toml::Table = toml::from_str(&text).unwrap();
    assert!(table.get("routing").is_none(), "{text}");
}
