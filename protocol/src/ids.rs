//! Site and device identifiers (`[a-z0-9-]{1,48}`), checked once at the edge and trusted after.

use crate::error::IdError;
use serde::{Deserialize, Serialize};
use std::fmt;

fn check(what: &'static str, value: &str) -> Result<(), IdError> {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdError {
            what,
            value: value.chars().take(64).collect(),
        })
    }
}

macro_rules! id_type {
    ($name:ident, $what:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check($what, &value)?;
                Ok(Self(value))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }
        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    SiteId,
    "site id",
    "A township office, e.g. `suixian-shangshi`."
);
id_type!(DeviceId, "device id", "A box at a site, e.g. `box-01`.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shape() {
        assert!(SiteId::new("suixian-shangshi").is_ok());
        assert!(DeviceId::new("box-01").is_ok());
        assert!(DeviceId::new("a".repeat(48)).is_ok());
    }

    #[test]
    fn refuses_everything_else_with_a_hint() {
        for bad in [
            "",
            "Box-01",
            "box_01",
            "box/01",
            "+",
            "#",
            "尚市",
            &"a".repeat(49),
        ] {
            let err = SiteId::new(bad).unwrap_err();
            assert!(err.to_string().contains("a-z, 0-9"), "{err}");
        }
    }
}
