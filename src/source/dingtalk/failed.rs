//! DingTalk's list of failed pushes (docs/vendors/events.md "DingTalk HTTP push
//! and the failed list"): events whose push was never answered with `success`,
//! read with `GET call_back/get_call_back_failed_result`, up to 200 a call,
//! `has_more` asking for another.
//!
//! Reading is destructive: each call clears what the previous one returned.
//! So each page's changes are recorded, every one acknowledged by the sink,
//! before the next call; a sink failure stops the drain with the page still
//! on DingTalk's side.

use serde_json::Value;

use super::events;
use super::push::hex_sha256;
use super::wire::{text, truthy};
use super::DingtalkClient;
use crate::events::{Change, Sink, SinkError};
use crate::source::SourceError;

pub const FAILED_LIST: &str = "call_back/get_call_back_failed_result";
/// Calls in one drain, at most: a list that never says it is done (or one
/// that keeps growing as fast as it is read) is left for the next drain.
pub const MAX_PAGES: usize = 1000;

/// What one drain read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Events recorded.
    pub items: usize,
    /// Calls to the list answered.
    pub pages: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    #[error("reading DingTalk's failed pushes: {error}")]
    Source {
        error: SourceError,
        drained: Drained,
    },
    /// The list was not called again; the changes not recorded are in
    /// `carried`.
    #[error("recording DingTalk's failed pushes: {error}")]
    Sink { error: SinkError, drained: Drained },
}

/// Reads the failed-push list to its end, each page's events recorded in
/// `sink` before the next call.
///
/// `carried` holds changes a previous drain read but could not record: the
/// list will not return them again (the next call clears their page), so
/// they are recorded first, and nothing is read until they are. A sink
/// failure puts the rest of the page there.
pub async fn drain(
    client: &DingtalkClient,
    sink: &dyn Sink,
    carried: &mut Vec<Change>,
) -> Result<Drained, DrainError> {
    let mut drained = Drained::default();
    record_all(sink, carried, &mut drained).await?;
    while drained.pages < MAX_PAGES {
        let page = match client.get_ok(FAILED_LIST).await {
            Ok(page) => page,
            Err(error) => return Err(DrainError::Source { error, drained }),
        };
        drained.pages += 1;
        let items = page.get("failed_list").and_then(Value::as_array);
        *carried = items.into_iter().flatten().map(item_change).collect();
        let last = carried.is_empty() || !truthy(&page["has_more"]);
        record_all(sink, carried, &mut drained).await?;
        if last {
            break;
        }
    }
    Ok(drained)
}

/// Records `changes` in order, each removed once the sink has it.
async fn record_all(
    sink: &dyn Sink,
    changes: &mut Vec<Change>,
    drained: &mut Drained,
) -> Result<(), DrainError> {
    while let Some(change) = changes.first() {
        if let Err(error) = sink.record(change.clone()).await {
            return Err(DrainError::Sink {
                error,
                drained: *drained,
            });
        }
        changes.remove(0);
        drained.items += 1;
    }
    Ok(())
}

/// One item of the list: `call_back_tag`, `event_time` and the event's data
/// under the tag's name, itself possibly wrapped in `callbackData` (an object,
/// or JSON text).
pub fn item_change(item: &Value) -> Change {
    let tag = item
        .get("call_back_tag")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let outer = item
        .get(tag)
        .filter(|_| !tag.is_empty())
        .or_else(|| item.get("callbackData"))
        .unwrap_or(&Value::Null);
    let data = match outer.get("callbackData") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        Some(inner) => inner.clone(),
        None => outer.clone(),
    };
    let id = [&data, item]
        .iter()
        .find_map(|v| {
            ["eventId", "EventId"]
                .iter()
                .map(|k| text(&v[*k]))
                .find(|t| !t.is_empty())
        })
        .unwrap_or_else(|| {
            let time = text(&item["event_time"]);
            let hashed = format!("{tag}\n{time}\n{data}");
            format!("sha256:{}", hex_sha256(hashed.as_bytes()))
        });
    events::change(tag, &id, &data)
}

#[cfg(test)]
mod tests;
