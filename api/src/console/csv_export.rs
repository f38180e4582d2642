//! CSV export of a console list (login history, audit log): the current filter, newest first,
//! at most [`MAX_ROWS`] rows (the page says so; narrowing the filter gets the rest).
//!
//! Safe to open in a spreadsheet: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return would be read as a formula (CSV injection, OWASP), so it gets a leading `'`. Every cell
//! is treated so, our own numbers included: a negative position reads `'-3`, which is harmless.

use std::future::Future;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use projections::{Page, PageRequest};

use crate::http::query::MAX_PAGE_LIMIT;
use crate::http::ApiError;

/// The most rows one export holds.
pub const MAX_ROWS: usize = 10_000;

/// A spreadsheet opens UTF-8 (Chinese nicknames, device names) as such only with a BOM.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A CSV document being written, with its header row.
pub struct CsvExport {
    writer: csv::Writer<Vec<u8>>,
    rows: usize,
    truncated: bool,
}

impl CsvExport {
    pub fn new(header: &[&str]) -> Result<Self, csv::Error> {
        let mut writer = csv::Writer::from_writer(BOM.to_vec());
        writer.write_record(header)?;
        Ok(Self {
            writer,
            rows: 0,
            truncated: false,
        })
    }

    /// Whether another row fits.
    pub fn has_room(&self) -> bool {
        self.rows < MAX_ROWS
    }

    /// Notes that rows were left out (the response says so in a header).
    pub fn truncate(&mut self) {
        self.truncated = true;
    }

    pub fn row<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> Result<(), csv::Error> {
        let cells: Vec<_> = cells.into_iter().map(inert).collect();
        self.writer
            .write_record(cells.iter().map(|cell| cell.as_bytes()))?;
        self.rows += 1;
        Ok(())
    }

    /// The `text/csv` download, named `{name}.csv`.
    pub fn into_response(self, name: &str) -> Result<Response, csv::Error> {
        let truncated = self.truncated;
        let body = self
            .writer
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))?;
        let disposition = format!("attachment; filename=\"{name}.csv\"");
        let mut response = (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            body,
        )
            .into_response();
        if truncated {
            response.headers_mut().insert(
                "x-export-truncated",
                header::HeaderValue::from(MAX_ROWS as u64),
            );
        }
        Ok(response)
    }
}

/// The rows of a keyset-paginated list from its first page on, until the list or
/// [`MAX_ROWS`] ends, as the `{name}.csv` download.
pub async fn export<T, F, Fut>(
    name: &str,
    header: &[&str],
    mut next_page: F,
    cells: impl Fn(&T) -> Vec<String>,
) -> Result<Response, ApiError>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>, ApiError>>,
{
    let mut csv = CsvExport::new(header).map_err(ApiError::internal)?;
    let mut cursor = None;
    loop {
        let page = next_page(PageRequest {
            limit: MAX_PAGE_LIMIT,
            cursor,
        })
        .await?;
        for item in &page.items {
            if !csv.has_room() {
                csv.truncate();
                return csv.into_response(name).map_err(ApiError::internal);
            }
            let row = cells(item);
            csv.row(row.iter().map(String::as_str))
                .map_err(ApiError::internal)?;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return csv.into_response(name).map_err(ApiError::internal),
        }
    }
}

/// `text` as a cell a spreadsheet shows as text, never evaluates.
fn inert(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}").into()
    } else {
        text.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_made_inert_and_others_kept() {
        for hostile in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(inert(hostile), format!("'{hostile}"));
        }
        for plain in ["wx0123", "", "a=b", "昵称", "'quoted"] {
            assert_eq!(inert(plain), plain);
        }
    }

    #[tokio::test]
    async fn the_document_has_a_bom_a_header_and_quoted_cells() {
        let mut csv = CsvExport::new(&["a", "b"]).expect("header");
        csv.row(["=cmd|' /C calc'!A0", "x,\"y\"\nz"]).expect("row");
        assert!(csv.has_room());
        csv.truncate();
        let response = csv.into_response("logins").expect("response");
        assert_eq!(response.headers()["x-export-truncated"], "10000");
        assert_eq!(
            response.headers()[header::CONTENT_DISPOSITION],
            "attachment; filename=\"logins.csv\""
        );
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let text = std::str::from_utf8(&body[3..]).expect("UTF-8");
        assert_eq!(text, "a,b\n'=cmd|' /C calc'!A0,\"x,\"\"y\"\"\nz\"\n");
    }
}
