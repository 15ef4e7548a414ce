//! The Jiandaoyun (简道云) v5 target: the client (`client.rs`), its formats
//! (`wire.rs`), the codes the writer reacts to (`codes.rs`), what a writer needs
//! of the form (`fields.rs`) and `check --remote`'s widget check (`form_check.rs`).

mod client;
pub mod codes;
pub mod config;
mod fields;
pub mod form_check;
pub mod wire;

use std::time::Duration;

use serde_json::{Map, Value};

use crate::target::{
    BeforeSend, BoxFuture, Created, FieldKind, Form, FormError, FormRow, Widget, WriteData,
};

pub use client::*;

/// How long after a request's timeout Jiandaoyun might still commit it.
pub const IN_FLIGHT_MARGIN: Duration = Duration::from_secs(5);

impl Form for Jiandaoyun {
    fn in_flight_window(&self) -> Duration {
        self.request_timeout() + IN_FLIGHT_MARGIN
    }

    fn fields(&self) -> BoxFuture<'_, Result<Vec<Widget>, FormError>> {
        Box::pin(self.widgets())
    }

    fn find_by_keys<'a>(
        &'a self,
        key_fields: &'a [(String, FieldKind)],
        keys: &'a [Vec<Value>],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FormRow>, FormError>> {
        Box::pin(Jiandaoyun::find_by_keys(self, key_fields, keys, fields))
    }

    fn rows_where<'a>(
        &'a self,
        equal: &'a [(String, FieldKind, Value)],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<FormRow>, FormError>> {
        Box::pin(Jiandaoyun::rows_where(self, equal, fields))
    }

    fn holds_any<'a>(
        &'a self,
        equal: &'a [(String, FieldKind, Value)],
        fields: &'a [String],
    ) -> BoxFuture<'a, Result<bool, FormError>> {
        Box::pin(Jiandaoyun::holds_any(self, equal, fields))
    }

    fn create_batch<'a>(
        &'a self,
        transaction_id: &'a str,
        records: &'a [&'a WriteData],
        before_send: &'a BeforeSend<'a>,
    ) -> BoxFuture<'a, Result<Created, FormError>> {
        Box::pin(self.batch_create(transaction_id, records, before_send))
    }

    fn update<'a>(
        &'a self,
        id: &'a str,
        data: &'a WriteData,
    ) -> BoxFuture<'a, Result<(), FormError>> {
        Box::pin(Jiandaoyun::update(self, id, data))
    }

    fn delete<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<u64, FormError>> {
        Box::pin(self.batch_delete(ids))
    }

    fn decode(&self, data: &WriteData) -> Option<Map<String, Value>> {
        wire::decode(data)
    }
}
