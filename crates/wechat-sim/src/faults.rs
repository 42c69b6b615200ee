//! Failures a test can schedule for the next calls of an endpoint.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::endpoint::Endpoint;

/// A failure served instead of (or before) the normal answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Answer `{"errcode":-1,"errmsg":"system error, rid: …"}`. With `consume_code`, the
    /// request's code (js_code, OAuth code or phone code) is marked used first:
    /// WECHAT_API.md §2, a retry after -1 met 40163.
    SystemError {
        /// Burn the request's code before answering.
        consume_code: bool,
    },
    /// Answer this HTTP status with a small non-JSON body, as a broken gateway would.
    HttpStatus {
        /// The HTTP status code, e.g. 502; a number that is no HTTP status answers 502.
        status: u16,
    },
    /// Sleep this long, then answer normally.
    Delay {
        /// How long to sleep, in milliseconds.
        millis: u64,
    },
    /// Read the request, then drop the TCP connection without any response.
    /// Nothing is processed: a code in the request stays unused.
    ConnectionReset,
    /// Answer this errcode with its documented errmsg (WECHAT_API.md §12), HTTP 200.
    Errcode {
        /// The WeChat errcode, e.g. 45011.
        errcode: i64,
    },
}

/// Scheduled faults, first in first out, per endpoint.
#[derive(Debug, Default)]
pub(crate) struct FaultQueue {
    queued: HashMap<Endpoint, VecDeque<Fault>>,
}

impl FaultQueue {
    /// Queue `fault` for the next `times` calls, after whatever is already queued.
    pub(crate) fn push(&mut self, endpoint: Endpoint, fault: Fault, times: u32) {
        let queue = self.queued.entry(endpoint).or_default();
        for _ in 0..times {
            queue.push_back(fault.clone());
        }
    }

    /// The fault for the call arriving now, if one is queued.
    pub(crate) fn pop(&mut self, endpoint: Endpoint) -> Option<Fault> {
        self.queued.get_mut(&endpoint)?.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_injections_queue_after_earlier_ones() {
        let mut queue = FaultQueue::default();
        queue.push(Endpoint::Token, Fault::ConnectionReset, 1);
        queue.push(Endpoint::Token, Fault::Errcode { errcode: 45009 }, 2);
        assert_eq!(queue.pop(Endpoint::Token), Some(Fault::ConnectionReset));
        assert_eq!(
            queue.pop(Endpoint::Token),
            Some(Fault::Errcode { errcode: 45009 })
        );
        assert_eq!(
            queue.pop(Endpoint::Token),
            Some(Fault::Errcode { errcode: 45009 })
        );
        assert_eq!(queue.pop(Endpoint::Token), None);
        assert_eq!(queue.pop(Endpoint::StableToken), None);
    }

    #[test]
    fn faults_read_the_documented_json_shape() {
        let fault: Fault = serde_json::from_str(r#"{"kind":"system_error","consume_code":false}"#)
            .unwrap_or(Fault::ConnectionReset);
        assert_eq!(
            fault,
            Fault::SystemError {
                consume_code: false
            }
        );
    }
}
