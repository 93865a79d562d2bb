//! Where the schema lives in the store: `<prefix>/lb/v1/vips/<name>`.

use crate::error::{ConfigError, Rejection};

/// Longest VIP name, in bytes (a DNS name's limit).
pub const MAX_NAME_LEN: usize = 253;

/// The key layout under one prefix (empty, or `/something` without a
/// trailing slash), so that several fleets can share one etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`; a trailing `/` is dropped. `None` when the
    /// prefix does not start with `/` (and is not empty).
    pub fn new(prefix: &str) -> Option<Self> {
        let prefix = prefix.trim_end_matches('/');
        (prefix.is_empty() || prefix.starts_with('/')).then(|| Self {
            prefix: prefix.to_owned(),
        })
    }

    /// The prefix every VIP key starts with, `/` included.
    pub fn vips(&self) -> String {
        format!("{}/lb/v1/vips/", self.prefix)
    }

    /// The key of the VIP named `name`.
    pub fn vip(&self, name: &str) -> String {
        format!("{}{name}", self.vips())
    }

    /// The VIP name a key stands for, checked.
    pub fn vip_name<'k>(&self, key: &'k str) -> Result<&'k str, ConfigError> {
        let vips = self.vips();
        let Some(name) = key.strip_prefix(vips.as_str()) else {
            return Err(ConfigError::new(
                key,
                Rejection::Key,
                "(key)",
                format!("not under {vips}"),
            ));
        };
        check_name(name)
            .map_err(|reason| ConfigError::new(key, Rejection::Key, "(key)", reason))?;
        Ok(name)
    }
}

/// Letters, digits, `-`, `_` and `.`, 1 to [`MAX_NAME_LEN`] bytes, so
/// that a name is one key segment and safe in a metric label.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "a VIP name has 1 to {MAX_NAME_LEN} bytes, not {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "{name:?} has {c:?}; a VIP name has letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_under_a_prefix() {
        let keys = Keys::new("/prod/").unwrap();
        assert_eq!(keys.vip("web"), "/prod/lb/v1/vips/web");
        assert_eq!(keys.vip_name("/prod/lb/v1/vips/web").unwrap(), "web");
        assert_eq!(Keys::new("").unwrap().vip("a"), "/lb/v1/vips/a");
        assert!(Keys::new("prod").is_none());
    }

    #[test]
    fn a_key_elsewhere_or_with_a_bad_name_is_refused() {
        let keys = Keys::new("").unwrap();
        for (key, says) in [
            ("/lb/v2/vips/web", "not under /lb/v1/vips/"),
            ("/lb/v1/vips/", "1 to 253 bytes"),
            ("/lb/v1/vips/a/b", "has '/'"),
            ("/lb/v1/vips/web app", "has ' '"),
        ] {
            let err = keys.vip_name(key).unwrap_err();
            assert_eq!((err.kind, err.field.as_str()), (Rejection::Key, "(key)"));
            assert!(err.reason.contains(says), "{key}: {err}");
        }
        let long = format!("/lb/v1/vips/{}", "a".repeat(MAX_NAME_LEN + 1));
        assert!(keys.vip_name(&long).is_err());
        let longest = format!("/lb/v1/vips/{}", "a".repeat(MAX_NAME_LEN));
        assert!(keys.vip_name(&longest).is_ok());
    }
}
