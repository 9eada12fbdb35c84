//! The one check of a domain name's shape, shared by the configuration
//! (`intake.local_domains`, the host name) and the routing tables, so that
//! both accept the same names.
//!
//! A leaf: it uses nothing of the crate, so `config` and `route` can both
//! use it without using each other. Not for: looking names up, or the
//! wording of a caller's message: [`DomainError`] says what is wrong, and
//! each caller words the cases it words differently.

use std::net::IpAddr;

/// What is wrong with a domain name, in the order [`check`] looks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("a domain name cannot be empty")]
    Empty,
    #[error("write internationalised names in their ASCII form (xn--…)")]
    NotAscii,
    #[error("an IP address is not a domain name")]
    IpAddress,
    #[error("longer than the 253 characters a domain name may have")]
    TooLong,
    #[error("each dot-separated part must have 1 to 63 characters")]
    LabelLength,
    /// A dot-separated part (`label`) holds something other than ASCII
    /// letters, digits and inner hyphens.
    #[error("only letters, digits, dots and inner hyphens are allowed in a domain name")]
    NotLdh { label: String },
}

/// Checks a domain name (ASCII letters, digits, inner hyphens, dots; not an
/// IP address) and returns it lower-cased.
pub fn check(name: &str) -> Result<String, DomainError> {
    if name.is_empty() {
        return Err(DomainError::Empty);
    }
    if !name.is_ascii() {
        return Err(DomainError::NotAscii);
    }
    if name.parse::<IpAddr>().is_ok() {
        return Err(DomainError::IpAddress);
    }
    if name.len() > 253 {
        return Err(DomainError::TooLong);
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(DomainError::LabelLength);
        }
        let ldh = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ldh || label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::NotLdh {
                label: label.to_owned(),
            });
        }
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert_eq!(check("Mail.Example.COM"), Ok("mail.example.com".into()));
        assert_eq!(
            check("xn--bcher-kva.example"),
            Ok("xn--bcher-kva.example".into())
        );
        let refused: [(&str, DomainError); 8] = [
            ("", DomainError::Empty),
            ("bücher.example", DomainError::NotAscii),
            ("192.0.2.1", DomainError::IpAddress),
            (&"a.".repeat(127), DomainError::TooLong),
            ("a..example", DomainError::LabelLength),
            ("example.", DomainError::LabelLength),
            ("-a.example", DomainError::NotLdh { label: "-a".into() }),
            (
                "b_c.example",
                DomainError::NotLdh {
                    label: "b_c".into(),
                },
            ),
        ];
        for (name, want) in refused {
            assert_eq!(check(name), Err(want), "{name:?}");
        }
    }
}
