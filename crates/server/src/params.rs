//! Query-string parameters (rest spec 1.1, 1.3): names matched
//! case-insensitively, values percent-decoded with `+` as space, repeats refused.

use crate::error::ApiError;
use std::collections::HashMap;

/// The decoded parameters of one request.
#[derive(Debug, Default)]
pub struct Params {
    map: HashMap<String, String>,
}

impl Params {
    /// Parses a raw query string.
    pub fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut map = HashMap::new();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k)?, decode(v)?);
            // Script variables keep the case of their name part.
            let key = match k.find('_') {
                Some(i)
                    if matches!(
                        k[..i].to_ascii_lowercase().as_str(),
                        "str" | "int" | "dbl" | "bool"
                    ) =>
                {
                    format!("{}{}", k[..i].to_ascii_lowercase(), &k[i..])
                }
                _ => k.to_ascii_lowercase(),
            };
            if map.insert(key.clone(), v).is_some() {
                return Err(ApiError::param(format!(
                    "parameter '{key}' is given more than once"
                )));
            }
        }
        Ok(Params { map })
    }

    /// The raw value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Every parameter, name (lowercased but for a script variable's name) and value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A boolean parameter (`true`, `t`, `1`, `yes`, empty / `false`, `f`, `0`, `no`).
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| {
                ApiError::param(format!(
                    "parameter '{name}' must be true or false; got '{v}'"
                ))
            }),
        }
    }

    /// An integer parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::param(format!("parameter '{name}' must be an integer; got '{v}'"))
                })
            })
            .transpose()
    }
}

/// Percent-decodes one name or value (`+` is a space); invalid UTF-8 is a 400.
pub(crate) fn decode(raw: &str) -> Result<String, ApiError> {
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            ApiError::param(format!(
                "query string part '{raw}' is not valid UTF-8 once decoded"
            ))
        })
}

/// Reads a boolean parameter value.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "true" | "t" | "1" | "yes" => Some(true),
        "false" | "f" | "0" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_and_repeats() {
        let p = Params::parse(Some("Partitions=4&debug&str_Name=a+b%2B&x=1")).unwrap();
        assert_eq!(p.get("partitions"), Some("4"));
        assert_eq!(p.get("str_Name"), Some("a b+"));
        assert!(p.bool("debug", false).unwrap());
        assert_eq!(p.int("partitions").unwrap(), Some(4));
        assert!(Params::parse(Some("a=1&A=2")).is_err());
        assert!(Params::parse(Some("b=maybe"))
            .unwrap()
            .bool("b", false)
            .is_err());
        assert!(Params::parse(Some("n=x")).unwrap().int("n").is_err());
        assert!(
            Params::parse(Some("str_x=%FF%FE")).is_err(),
            "invalid UTF-8"
        );
        assert_eq!(Params::parse(Some("a=%C3%A9")).unwrap().get("a"), Some("é"));
    }
}
