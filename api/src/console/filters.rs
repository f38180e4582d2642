//! The query string of a console list page, read by the admin API's own query types (the same
//! names, checks and messages as `GET /v1/admin/logins`, `/v1/admin/audit`, …), after dropping
//! what a browser adds that the API would refuse: empty fields of a submitted filter form and
//! the console's `lang`. The kept pairs build the page's links (next page, CSV export).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use url::form_urlencoded;

use crate::http::ApiError;

/// A query string parsed as `T`, with the pairs it was parsed from.
pub struct Filters<T> {
    pub query: T,
    pub links: Links,
}

/// The pairs of a filter, for the page's form and links.
pub struct Links {
    pairs: Vec<(String, String)>,
}

impl<T: DeserializeOwned> Filters<T> {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
            .filter(|(k, v)| k != "lang" && !v.is_empty())
            .collect();
        let query = serde_urlencoded::from_str(&encode(pairs.iter().map(|(k, v)| (k, v))))
            .map_err(|e| ApiError::InvalidRequest(format!("the query is malformed: {e}")))?;
        Ok(Self {
            query,
            links: Links { pairs },
        })
    }
}

impl Links {
    /// The value of field `name`, empty when absent (to fill the filter form in).
    pub fn value(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// `path` with this filter, without its paging fields (`cursor`, `after`, `limit`), and then
    /// `extra`: the next page's link, or the CSV export's.
    pub fn link(&self, path: &str, extra: &[(&str, &str)]) -> String {
        let kept = self
            .pairs
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "cursor" | "after" | "limit"))
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let query = encode(kept.chain(extra.iter().copied()));
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }
}

fn encode<K: AsRef<str>, V: AsRef<str>>(pairs: impl Iterator<Item = (K, V)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Filters<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Self::parse(parts.uri.query())
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        appid: Option<String>,
        cursor: Option<String>,
    }

    #[test]
    fn empty_fields_and_lang_are_dropped_before_the_strict_parse() {
        let filters = Filters::<Strict>::parse(Some("appid=wxa&cursor=&lang=zh-CN")).expect("ok");
        assert_eq!(filters.query.appid.as_deref(), Some("wxa"));
        assert_eq!(filters.query.cursor, None);
        assert_eq!(filters.links.value("appid"), "wxa");
        assert_eq!(filters.links.value("to"), "");
        let error = Filters::<Strict>::parse(Some("bogus=1"))
            .err()
            .expect("refused");
        assert!(matches!(error, ApiError::InvalidRequest(d) if d.contains("bogus")));
        assert!(Filters::<Strict>::parse(None).is_ok());
    }

    #[test]
    fn links_keep_the_filter_and_replace_the_paging() {
        let filters = Filters::<Strict>::parse(Some("appid=wx%26a&cursor=c1"))
            .expect("ok")
            .links;
        assert_eq!(
            filters.link("/console/logins", &[("cursor", "c 2")]),
            "/console/logins?appid=wx%26a&cursor=c+2"
        );
        assert_eq!(filters.link("/x.csv", &[]), "/x.csv?appid=wx%26a");
        let none = Filters::<Strict>::parse(Some("cursor=c1"))
            .expect("ok")
            .links;
        assert_eq!(none.link("/x.csv", &[]), "/x.csv");
    }
}
