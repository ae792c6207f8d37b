//! Listings printed as they arrive, page by page: `vm list` over a million
//! VMs starts printing at once and holds one page in memory, whether it
//! reads the database or a controller.

use std::future::Future;
use std::io::Write;

use serde::Serialize;
use vmfabric_model::{Error, Result};
use vmfabric_store::{Page, PageRequest};

use crate::Out;
use crate::render::Table;

/// Items asked for per page.
const PAGE: usize = 1000;

/// How a listing looks as text.
pub struct Text<'a, T> {
    pub headers: &'a [&'a str],
    pub rows: &'a dyn Fn(&[T]) -> Vec<Vec<String>>,
    /// What to print instead of an empty table, if anything.
    pub empty: Option<&'a str>,
}

/// Print every page `fetch` returns: a table (`text`), or with `json` one
/// JSON array written item by item. A reader that goes away (`| head`)
/// ends the listing quietly.
pub async fn stream<T, F, Fut>(json: bool, text: Text<'_, T>, mut fetch: F) -> Result<Out>
where
    T: Serialize,
    F: FnMut(PageRequest) -> Fut,
    Fut: Future<Output = Result<Page<T>>>,
{
    let mut out = std::io::stdout();
    let mut table = Table::new(text.headers);
    let mut req = PageRequest::first(PAGE);
    let mut first = true;
    let mut count = 0usize;
    loop {
        let page = fetch(req.clone()).await?;
        let mut chunk = String::new();
        if json {
            for item in &page.items {
                let v = serde_json::to_string(item)
                    .map_err(|e| Error::storage(format!("cannot encode the result: {e}")))?;
                chunk.push_str(if count == 0 { "[\n" } else { ",\n" });
                chunk.push_str(&v);
                count += 1;
            }
        } else if !(first && page.items.is_empty() && page.next.is_none() && text.empty.is_some()) {
            chunk = table.page(&(text.rows)(&page.items));
            count += page.items.len();
        }
        first = false;
        let last = page.next.is_none();
        if last {
            if json {
                chunk.push_str(if count == 0 { "[]\n" } else { "\n]\n" });
            } else if count == 0
                && let Some(e) = text.empty
            {
                chunk.push_str(e);
            }
        }
        if out
            .write_all(chunk.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(Out::streamed());
        }
        match page.next {
            Some(next) => req = req.next(next),
            None => return Ok(Out::streamed()),
        }
    }
}
