//! Values that travel as text in JSON (MACs, times, CIDRs, ...): written
//! with `Display`, read back with `FromStr`, so the CLI, the API and a
//! client of the API all agree on one form.

use std::fmt::Display;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serializer};

/// `#[serde(with = "crate::serde_text")]` for a field.
pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: FromStr,
    T::Err: Display,
    D: Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

/// The same for `Option<T>`.
pub mod opt {
    use super::*;

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => s.collect_str(x),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(d)? {
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Implement `Serialize` and `Deserialize` of a type through its text.
macro_rules! text_serde {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$t, D::Error> {
                $crate::serde_text::deserialize(d)
            }
        }
    };
}
pub(crate) use text_serde;

/// A count of addresses (`u128`: an IPv6 /48 has 2^80): a JSON number up
/// to 2^53 − 1, the largest integer JavaScript and jq hold exactly, and a
/// decimal string above it. Either form is read back.
pub mod count {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// The largest integer an IEEE double holds exactly.
    pub const EXACT: u128 = (1 << 53) - 1;

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        match u64::try_from(*v) {
            Ok(n) if *v <= EXACT => s.serialize_u64(n),
            _ => s.collect_str(v),
        }
    }

    struct Count;

    impl Visitor<'_> for Count {
        type Value = u128;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a count: a whole number, or one in a decimal string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u128, E> {
            Ok(u128::from(v))
        }
        fn visit_u128<E: de::Error>(self, v: u128) -> Result<u128, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u128, E> {
            u128::try_from(v).map_err(|_| E::custom("a count is not negative"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u128, E> {
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(E::custom(format!("not a count: {v:?}")));
            }
            v.parse().map_err(E::custom)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        d.deserialize_any(Count)
    }
}

#[cfg(test)]
mod tests {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct C(#[serde(with = "super::count")] u128);

    #[test]
    fn counts_beyond_2_53_travel_as_strings() {
        for (n, json) in [
            (0u128, "0"),
            (8, "8"),
            ((1 << 53) - 1, "9007199254740991"),
            (1 << 53, "\"9007199254740992\""),
            (1 << 80, "\"1208925819614629174706176\""),
        ] {
            assert_eq!(serde_json::to_string(&C(n)).unwrap(), json);
            assert_eq!(serde_json::from_str::<C>(json).unwrap(), C(n));
        }
        for bad in ["-1", "\"\"", "\"1e3\"", "\" 5\"", "1.5"] {
            assert!(serde_json::from_str::<C>(bad).is_err(), "{bad}");
        }
    }
}
