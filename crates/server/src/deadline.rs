//! The caller's gRPC deadline, carried into every WeChat retry and database
//! wait: `grpc-timeout` from the request, capped by the configured limit.

use std::time::Duration;

use tonic::metadata::MetadataMap;
use wechat_client::Deadline;

/// The time budget of one request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestDeadline {
    /// When WeChat calls and database waits must be done: a little before the
    /// answer is due, so that the bookkeeping after a timed-out WeChat call
    /// still runs and the caller gets DEADLINE_EXCEEDED with its reason.
    pub work: Deadline,
    /// When the service answers DEADLINE_EXCEEDED whatever the work is doing;
    /// still before the transport's own timeout, which would answer CANCELLED.
    pub answer: Deadline,
}

/// The deadline of a request received now: the caller's `grpc-timeout` when it
/// is shorter than `limit`, else `limit`, less a margin of a tenth (at most
/// 50 ms) for the work and half that for the answer.
pub(crate) fn request_deadline(metadata: &MetadataMap, limit: Duration) -> RequestDeadline {
    let timeout = metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(limit, |caller| caller.min(limit));
    let margin = (timeout / 10).min(Duration::from_millis(50));
    RequestDeadline {
        work: Deadline::after(timeout - margin),
        answer: Deadline::after(timeout - margin / 2),
    }
}

/// Parses the gRPC wire format: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_grpc_timeout_unit() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_shorter_of_caller_and_limit_wins() {
        let mut metadata = MetadataMap::new();
        let limit = Duration::from_secs(10);
        let unbounded = request_deadline(&metadata, limit)
            .work
            .remaining()
            .expect("bounded");
        assert!(unbounded > Duration::from_secs(9) && unbounded <= limit);
        metadata.insert("grpc-timeout", "200m".parse().expect("ascii"));
        let short = request_deadline(&metadata, limit);
        let (work, answer) = (
            short.work.remaining().expect("bounded"),
            short.answer.remaining().expect("bounded"),
        );
        assert!(
            work < answer && answer < Duration::from_millis(200),
            "{work:?} {answer:?}"
        );
        assert!(
            work >= Duration::from_millis(170),
            "a margin, not a cut: {work:?}"
        );
        metadata.insert("grpc-timeout", "1H".parse().expect("ascii"));
        assert!(
            request_deadline(&metadata, limit)
                .answer
                .remaining()
                .expect("bounded")
                <= limit
        );
    }
}
