//! The read side: records, filters, keyset pages, and the queries behind the admin API. All
//! queries go through the views (`users`, `login_history`, …) on the live generation.

mod audit;
mod logins;
mod rejections;
mod sessions;
mod stats;
mod users;

pub use audit::AuditRecord;
pub use logins::LoginRecord;
pub use sessions::{SessionFilter, SessionRecord};
pub use stats::DailyStatsRecord;
pub use users::{AccountRecord, UserRecord};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::cursor::{self, TimeCursor};
use crate::db::{bind, AnyQuery, Db, Val};
use crate::error::ProjectionError;
use crate::event::{day_text, micros, time_from_micros};
use crate::ReadModels;

/// The most rows one page holds, whatever was asked.
pub const MAX_PAGE_LIMIT: u32 = 200;

/// Which page: at most `limit` rows after `cursor` (the previous page's `next_cursor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<String>,
}

impl PageRequest {
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }

    /// The limit, clamped to 1..=MAX_PAGE_LIMIT.
    pub(crate) fn size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_LIMIT) as usize
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more rows may follow.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Cuts `rows` (fetched with one row more than the page size) to the page, with a cursor
    /// after its last row when the extra row shows there is more.
    pub(crate) fn from_rows(mut rows: Vec<T>, size: usize, cursor: impl Fn(&T) -> String) -> Self {
        let more = rows.len() > size;
        rows.truncate(size);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Self {
            items: rows,
            next_cursor,
        }
    }
}

/// Users matching every given field (exact match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    pub appid: Option<String>,
    /// Only these users (found by openid or unionid through the claims' keyed hashes: the
    /// read models hold those identifiers sealed only).
    pub user_ids: Option<Vec<Uuid>>,
    /// The keyed hash of the phone number, as `PhoneNumberBound` carries it.
    pub phone_index: Option<String>,
    /// `active`, `blocked` or `erased`.
    pub status: Option<String>,
}

/// Logins in an app and a time range: `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoginFilter {
    pub appid: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Audit entries matching every given field; `from` inclusive, `to` exclusive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries whose target is this user.
    pub user_id: Option<Uuid>,
    /// `user:{id}`, `admin:{key id}` or `system`.
    pub actor: Option<String>,
    /// An event type, e.g. `UserBlocked`.
    pub action: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Reading a read-model row: ids are stored as text, times as microseconds, JSON as text; a
/// value that does not parse is corruption.
pub(crate) fn uuid_at(row: &AnyRow, column: &str) -> Result<Uuid, ProjectionError> {
    let text: String = row.try_get(column)?;
    Uuid::try_parse(&text).map_err(|e| ProjectionError::Corrupt(format!("{column}: {e}")))
}

pub(crate) fn time_at(row: &AnyRow, column: &str) -> Result<DateTime<Utc>, ProjectionError> {
    Ok(time_from_micros(row.try_get(column)?))
}

pub(crate) fn time_or_null_at(
    row: &AnyRow,
    column: &str,
) -> Result<Option<DateTime<Utc>>, ProjectionError> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(time_from_micros))
}

pub(crate) fn json_or_null_at(
    row: &AnyRow,
    column: &str,
) -> Result<Option<serde_json::Value>, ProjectionError> {
    row.try_get::<Option<String>, _>(column)?
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| ProjectionError::Corrupt(format!("{column}: {e}")))
}

/// A `WHERE` clause under construction, with its numbered arguments.
#[derive(Default)]
pub(crate) struct Where {
    clauses: Vec<String>,
    args: Vec<Val>,
}

impl Where {
    /// Adds an argument; returns its placeholder.
    pub fn arg(&mut self, value: impl Into<Val>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    pub fn and(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `WHERE …` or nothing.
    pub fn sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub fn bind<'q>(&self, mut query: AnyQuery<'q>) -> AnyQuery<'q> {
        for arg in &self.args {
            query = bind(query, arg.clone());
        }
        query
    }

    /// The rows of `sql` with these arguments, read on the read pool (again once if the
    /// connection was lost: see `Db::read`).
    pub async fn fetch_all(&self, db: &Db, sql: &str) -> Result<Vec<AnyRow>, ProjectionError> {
        db.read(|pool| async move { Ok(self.bind(sqlx::query(sql)).fetch_all(&pool).await?) })
            .await
    }

    /// `fetch_all` of a statement answering one row.
    pub async fn fetch_one(&self, db: &Db, sql: &str) -> Result<AnyRow, ProjectionError> {
        db.read(|pool| async move { Ok(self.bind(sqlx::query(sql)).fetch_one(&pool).await?) })
            .await
    }

    /// Days from `from` to `to` (both inclusive), in one app or all: the daily lists.
    pub fn days(&mut self, appid: Option<&str>, from: NaiveDate, to: NaiveDate) {
        let p = self.arg(day_text(from));
        self.and(format!("day >= {p}"));
        let p = self.arg(day_text(to));
        self.and(format!("day <= {p}"));
        if let Some(appid) = appid {
            let p = self.arg(appid);
            self.and(format!("appid = {p}"));
        }
    }

    /// Time range and keyset conditions of a list ordered by `(occurred_at, position)`, newest
    /// first. The plain `occurred_at <= t` lets both databases range-scan the index; the row
    /// comparison then drops the rows of that instant already shown.
    pub fn time_page(
        &mut self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<(i64, i64)>,
    ) {
        if let Some(from) = from {
            let p = self.arg(from.timestamp_micros());
            self.and(format!("occurred_at >= {p}"));
        }
        if let Some(to) = to {
            let p = self.arg(to.timestamp_micros());
            self.and(format!("occurred_at < {p}"));
        }
        if let Some((time, position)) = after {
            let t = self.arg(time);
            let p = self.arg(position);
            self.and(format!(
                "occurred_at <= {t} AND (occurred_at, position) < ({t}, {p})"
            ));
        }
    }
}

/// A list ordered by `(occurred_at, position)`, newest first: `kind` tells its cursors from
/// other lists' cursors.
pub(crate) struct TimeList<T> {
    pub kind: char,
    /// `SELECT {columns} FROM {view}`.
    pub columns: &'static str,
    pub view: &'static str,
    pub decode: fn(&AnyRow) -> Result<T, ProjectionError>,
    /// The row's `(occurred_at, position)`, for the next page's cursor.
    pub key: fn(&T) -> (DateTime<Utc>, i64),
}

impl ReadModels {
    /// One page of `list` under the filter conditions already in `w`.
    pub(crate) async fn newest_first<T>(
        &self,
        list: TimeList<T>,
        w: Where,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        page: &PageRequest,
    ) -> Result<Page<T>, ProjectionError> {
        let after = after_cursor(list.kind, page)?;
        let size = page.size();
        let rows = self
            .newest_first_rows(&list, w, from, to, after, size + 1)
            .await?;
        Ok(time_page(list.kind, rows, size, list.key))
    }

    /// Up to `limit` rows of `list` after `after` (a cursor's `(occurred_at, position)`),
    /// newest first, under the filter conditions already in `w`.
    pub(crate) async fn newest_first_rows<T>(
        &self,
        list: &TimeList<T>,
        mut w: Where,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<(i64, i64)>,
        limit: usize,
    ) -> Result<Vec<T>, ProjectionError> {
        w.time_page(from, to, after);
        let limit = w.arg(limit as i64);
        let sql = format!(
            "SELECT {} FROM {} {} ORDER BY occurred_at DESC, position DESC LIMIT {limit}",
            list.columns,
            list.view,
            w.sql()
        );
        let rows = w.fetch_all(self.db(), &sql).await?;
        rows.iter().map(list.decode).collect()
    }
}

/// The `(occurred_at, position)` a page starts after, from its cursor for list `kind`.
pub(crate) fn after_cursor(
    kind: char,
    page: &PageRequest,
) -> Result<Option<(i64, i64)>, ProjectionError> {
    Ok(page
        .cursor
        .as_deref()
        .map(|c| TimeCursor::decode_for(kind, c))
        .transpose()?
        .map(|c| (c.t, c.p)))
}

/// A page of a list ordered by `(occurred_at, position)`, from `size` + 1 rows.
pub(crate) fn time_page<T>(
    kind: char,
    rows: Vec<T>,
    size: usize,
    key: fn(&T) -> (DateTime<Utc>, i64),
) -> Page<T> {
    Page::from_rows(rows, size, |r: &T| {
        let (time, position) = key(r);
        cursor::encode(&TimeCursor {
            k: kind,
            t: micros(time),
            p: position,
        })
    })
}
