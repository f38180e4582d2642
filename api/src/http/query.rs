//! Query-string parsing for the admin and analytics APIs: typos and bad values are 400
//! `invalid_request` naming the parameter, never ignored.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiError;

/// `axum::extract::Query` with rejections in our error format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|rejection| ApiError::InvalidRequest(rejection.body_text()))
    }
}

pub const DEFAULT_PAGE_LIMIT: u32 = 50;
pub const MAX_PAGE_LIMIT: u32 = 200;

/// `limit` and `cursor` of a keyset-paginated list: a route's whole query, or the end of one
/// (`#[serde(flatten)] #[param(ignore)] page: PageParams`, with `PageParams` named after the
/// route's query in `params(...)`, as utoipa does not flatten parameters).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<super::values::PageLimit>)]
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageParams {
    pub fn parse(self) -> Result<projections::PageRequest, ApiError> {
        let limit = limit_of(self.limit.as_deref(), DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)?;
        Ok(projections::PageRequest {
            limit,
            cursor: self.cursor.filter(|c| !c.is_empty()),
        })
    }
}

/// `limit`: an integer from 1 to `max`; `default` when absent.
pub fn limit_of(value: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    count("limit", value, default, max)
}

/// Parameter `name`: an integer from 1 to `max`; `default` when absent.
pub fn count(name: &str, value: Option<&str>, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::InvalidRequest(format!("{name} must be an integer from 1 to {max}"))
            }),
    }
}

/// A position in the event log: an integer ≥ 0; 0 (before the first event) when absent.
pub fn position(name: &str, value: Option<&str>) -> Result<i64, ApiError> {
    match value {
        None => Ok(0),
        Some(text) => text.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::InvalidRequest(format!("{name} must be an event position (an integer ≥ 0)"))
        }),
    }
}

/// An RFC 3339 instant, e.g. `2026-11-25T08:00:00Z`.
pub fn instant(name: &str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    value
        .map(|text| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    ApiError::InvalidRequest(format!(
                        "{name} must be an RFC 3339 time such as 2026-11-25T08:00:00Z"
                    ))
                })
        })
        .transpose()
}

/// A calendar day, `YYYY-MM-DD`.
pub fn day(name: &str, value: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    value
        .map(|text| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                ApiError::InvalidRequest(format!("{name} must be a date such as 2026-11-25"))
            })
        })
        .transpose()
}

/// `from` must not be after `to`.
pub fn ordered<T: PartialOrd>(from: Option<T>, to: Option<T>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => {
            Err(ApiError::InvalidRequest("from must not be after to".into()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Filtered {
        appid: Option<String>,
        #[serde(flatten)]
        page: PageParams,
    }

    fn parse<T: DeserializeOwned>(query: &str) -> Result<T, String> {
        let uri: axum::http::Uri = format!("/?{query}").parse().expect("a URI");
        Query::<T>::try_from_uri(&uri)
            .map(|Query(value)| value)
            .map_err(|rejection| rejection.body_text())
    }

    #[test]
    fn page_params_alone_or_flattened_read_their_fields_and_refuse_others() {
        let page = parse::<PageParams>("limit=7&cursor=c")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!((page.limit, page.cursor.as_deref()), (7, Some("c")));
        let filtered = parse::<Filtered>("appid=a&limit=9&cursor=").unwrap();
        assert_eq!(filtered.appid.as_deref(), Some("a"));
        let page = filtered.page.parse().unwrap();
        assert_eq!((page.limit, page.cursor), (9, None));
        let page = parse::<Filtered>("").unwrap().page.parse().unwrap();
        assert_eq!(page.limit, DEFAULT_PAGE_LIMIT);
        for query in ["bogus=1", "limit=1&bogus=1"] {
            let detail = parse::<PageParams>(query).unwrap_err();
            assert!(detail.contains("unknown field `bogus`"), "{detail}");
            let detail = parse::<Filtered>(query).unwrap_err();
            assert!(detail.contains("unknown field `bogus`"), "{detail}");
        }
        for limit in ["0", "201", "x"] {
            let page = parse::<Filtered>(&format!("limit={limit}")).unwrap().page;
            assert!(matches!(page.parse(), Err(ApiError::InvalidRequest(_))));
        }
    }
}
