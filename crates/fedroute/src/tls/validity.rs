//! Certificate validity periods: expired and not-yet-valid certificates are
//! refused, and one that expires within [`EXPIRY_WARNING`] is warned about.
//! Trust on first use and pinned certificates bypass WebPKI's date checks,
//! so fedroute checks the dates itself.

use std::fmt;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

/// How long before a certificate's end of validity fedroute starts warning
/// (30 days).
pub(crate) const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where a certificate stands against its validity period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Validity {
    /// Valid for longer than [`EXPIRY_WARNING`].
    Valid,
    /// Valid, but not for long.
    ExpiresSoon { not_after: OffsetDateTime },
    /// Its validity ended.
    Expired { not_after: OffsetDateTime },
    /// Its validity has not begun.
    NotYetValid { not_before: OffsetDateTime },
    /// Its dates cannot be read.
    Unreadable(String),
}

impl Validity {
    /// True when the certificate must be refused.
    pub(crate) fn is_invalid(&self) -> bool {
        matches!(
            self,
            Validity::Expired { .. } | Validity::NotYetValid { .. } | Validity::Unreadable(_)
        )
    }

    /// True when it is valid but expires within [`EXPIRY_WARNING`].
    pub(crate) fn expires_soon(&self) -> bool {
        matches!(self, Validity::ExpiresSoon { .. })
    }
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = |t: &OffsetDateTime| t.date().to_string();
        match self {
            Validity::Valid => f.write_str("valid"),
            Validity::ExpiresSoon { not_after } => {
                write!(f, "expires on {} (in less than 30 days)", day(not_after))
            }
            Validity::Expired { not_after } => write!(f, "expired on {}", day(not_after)),
            Validity::NotYetValid { not_before } => {
                write!(f, "is not valid before {}", day(not_before))
            }
            Validity::Unreadable(why) => write!(f, "has no readable validity period ({why})"),
        }
    }
}

/// The validity of a DER certificate at `now`.
pub(crate) fn validity_of(cert: &[u8], now: SystemTime) -> Validity {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(cert) else {
        return Validity::Unreadable("not valid X.509".into());
    };
    let v = parsed.validity();
    let (not_before, not_after) = (v.not_before.to_datetime(), v.not_after.to_datetime());
    let now = OffsetDateTime::from(now);
    if now < not_before {
        Validity::NotYetValid { not_before }
    } else if now > not_after {
        Validity::Expired { not_after }
    } else if not_after - now < EXPIRY_WARNING {
        Validity::ExpiresSoon { not_after }
    } else {
        Validity::Valid
    }
}

/// Refuses one's own certificate (from `path`) outside its validity period,
/// and warns when it expires within [`EXPIRY_WARNING`].
pub(crate) fn check_own_certificate(
    cert: &[u8],
    path: &std::path::Path,
) -> Result<(), super::TlsError> {
    let validity = validity_of(cert, SystemTime::now());
    if validity.is_invalid() {
        return Err(super::TlsError::OwnCertificateInvalid {
            path: path.to_path_buf(),
            validity: validity.to_string(),
        });
    }
    if validity.expires_soon() {
        log::warn!("the certificate in {} {validity}: renew it", path.display());
    }
    Ok(())
}

/// The end of a certificate's validity, when readable (for display).
pub(crate) fn not_after_of(cert: &[u8]) -> Option<(OffsetDateTime, OffsetDateTime)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, parsed) = X509Certificate::from_der(cert).ok()?;
    let v = parsed.validity();
    Some((v.not_before.to_datetime(), v.not_after.to_datetime()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_valid(from: OffsetDateTime, to: OffsetDateTime) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = from;
        params.not_after = to;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn dates_decide_validity() {
        let now = OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let at = SystemTime::from(now);
        assert_eq!(
            validity_of(&cert_valid(now - day, now + 400 * day), at),
            Validity::Valid
        );
        assert!(validity_of(&cert_valid(now - day, now + 10 * day), at).expires_soon());
        let expired = validity_of(&cert_valid(now - 10 * day, now - day), at);
        assert!(
            expired.is_invalid() && expired.to_string().starts_with("expired on"),
            "{expired}"
        );
        assert!(validity_of(&cert_valid(now + day, now + 10 * day), at).is_invalid());
        assert!(validity_of(b"junk", at).is_invalid());
    }
}
