//! What a relay's certificate says about itself: the names it is for, who
//! issued it and how many days it has left, for `postrelay doctor` and the
//! session facts `postrelay send-test` reports. Read with `x509-parser`
//! from the chain the relay presented; whether the chain is trusted is
//! decided by rustls in the verifying session, never here.
//!
//! Not for: verification (see `net::tls`).

use std::net::IpAddr;

/// Fewer days than this before expiry is a warning.
pub(crate) const WARN_DAYS: i64 = 14;

/// The facts of one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// DNS names and IP addresses of its subjectAltName (the subject's
    /// common name when it has none).
    pub(crate) names: Vec<String>,
    /// The issuer's distinguished name.
    pub(crate) issuer: String,
    /// End of validity, seconds since the Unix epoch.
    pub(crate) not_after: i64,
}

impl CertInfo {
    /// Whole days from `now` (Unix seconds) to the end of validity;
    /// negative once expired.
    pub(crate) fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    /// The end of validity as a date (`2027-03-01`).
    pub(crate) fn expiry_date(&self) -> String {
        jiff::Timestamp::from_second(self.not_after)
            .map(|t| t.strftime("%Y-%m-%d").to_string())
            .unwrap_or_else(|_| self.not_after.to_string())
    }
}

/// Reads a DER certificate.
pub(crate) fn parse(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the relay's certificate cannot be read: {e}"))?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => names.push((*n).to_owned()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from(bytes) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned)),
        );
    }
    Ok(CertInfo {
        names,
        issuer: cert.issuer().to_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_issuer_and_expiry_are_read() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![
            "smtp.example.com".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .unwrap();
        params.not_after = rcgen::date_time_ymd(2030, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        let info = parse(cert.der()).unwrap();
        assert_eq!(info.names, vec!["smtp.example.com", "127.0.0.1"]);
        assert_eq!(info.expiry_date(), "2030-01-02");
        assert!(info.issuer.contains("rcgen"), "{}", info.issuer);
        let day_before = info.not_after - 86_400;
        assert_eq!(info.days_left(day_before), 1);
        assert_eq!(info.days_left(info.not_after + 1), -1);
        assert!(parse(b"not a certificate").is_err());
    }
}
