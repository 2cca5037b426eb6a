//! Interim metrics (replaced by the ops branch).
use crate::protocol::{Command, Response};
use std::time::Duration;
pub enum RejectReason {
    Limit,
    Resources,
}
#[derive(Default)]
pub struct Metrics;
impl Metrics {
    pub fn new() -> Metrics {
        Metrics
    }
    pub fn record_request(&self, _c: Option<Command>, _r: Response, _e: Duration) {}
    pub fn connection_opened(&self) {}
    pub fn connection_closed(&self) {}
    pub fn connection_rejected(&self, _r: RejectReason) {}
}
