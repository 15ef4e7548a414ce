//! The hard cap on metered calls: a [`Meter`] set by the run takes one call
//! for every metered attempt (retries and retries after a token refresh
//! included) before it is sent. Without a meter (`check --remote`, tests of
//! the client alone) calls are only counted in memory.

use std::sync::Arc;

use super::{lock, DingtalkClient};
use crate::budget::Meter;
use crate::source::SourceError;

impl DingtalkClient {
    /// Counts every later metered attempt against `meter`, refusing the ones
    /// it refuses.
    pub fn set_meter(&self, meter: Arc<Meter>) {
        *lock(&self.meter) = Some(meter);
    }

    /// Takes one call from the meter for an attempt about to be sent.
    pub(super) async fn take_metered(&self) -> Result<(), SourceError> {
        let meter = lock(&self.meter).clone();
        match meter {
            Some(m) => m.take().await.map_err(SourceError::from),
            None => Ok(()),
        }
    }
}
