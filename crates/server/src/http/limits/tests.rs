#![allow(clippy::unwrap_used)]

use std::net::Ipv4Addr;

use axum::body::Body;
use axum::http::StatusCode;
use axum::routing::get;
use tower::ServiceExt as _;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn trusted(entries: &[&str]) -> ClientAddress {
    ClientAddress::new(
        entries
            .iter()
            .map(|entry| parse_trusted_proxy(entry).unwrap())
            .collect::<Vec<_>>()
            .into(),
    )
}

fn forwarded(values: &[&str]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append("x-forwarded-for", value.parse().unwrap());
    }
    headers
}

#[test]
fn a_client_that_is_not_a_trusted_proxy_cannot_choose_its_address() {
    let addresses = trusted(&["10.0.0.0/8"]);
    assert_eq!(
        addresses.client(ip("203.0.113.9"), &forwarded(&["198.51.100.1"])),
        ip("203.0.113.9")
    );
    assert_eq!(
        trusted(&[]).client(ip("10.1.2.3"), &forwarded(&["198.51.100.1"])),
        ip("10.1.2.3"),
        "no proxy is trusted by default"
    );
}

#[test]
fn behind_trusted_proxies_the_right_most_untrusted_hop_is_the_client() {
    let addresses = trusted(&["10.0.0.0/8", "192.0.2.7"]);
    let peer = ip("10.0.0.5");
    for (header, client) in [
        (vec!["198.51.100.1"], "198.51.100.1"),
        // The client wrote the left part itself: only the proxies' part counts.
        (vec!["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        (vec!["6.6.6.6, 198.51.100.1, 192.0.2.7"], "198.51.100.1"),
        (vec!["6.6.6.6", "198.51.100.1, 10.9.9.9"], "198.51.100.1"),
        (vec!["198.51.100.1:4711"], "198.51.100.1"),
        (vec!["[2001:db8::1]:443"], "2001:db8::1"),
        (vec!["::ffff:198.51.100.1"], "198.51.100.1"),
        // Garbage to the left of the last readable hop stops the walk there.
        (vec!["not-an-ip, 198.51.100.1"], "198.51.100.1"),
        (vec!["198.51.100.1, garbage"], "10.0.0.5"),
        (vec![], "10.0.0.5"),
        // Every hop trusted: the left-most one is as far as we can see.
        (vec!["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
    ] {
        assert_eq!(
            addresses.client(peer, &forwarded(&header)),
            ip(client),
            "{header:?}"
        );
    }
}

#[test]
fn ipv6_clients_share_a_bucket_per_64_and_mapped_ipv4_is_ipv4() {
    assert_eq!(bucket(ip("2001:db8:1:2:aaaa::1")), ip("2001:db8:1:2::"));
    assert_eq!(
        bucket(ip("2001:db8:1:2:aaaa::1")),
        bucket(ip("2001:db8:1:2:bbbb::9"))
    );
    assert_ne!(bucket(ip("2001:db8:1:2::1")), bucket(ip("2001:db8:1:3::1")));
    assert_eq!(canonical(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
    assert_eq!(bucket(ip("192.0.2.1")), ip("192.0.2.1"));
}

#[test]
fn trusted_proxies_are_addresses_or_cidr_blocks() {
    assert!(parse_trusted_proxy("10.0.0.0/8").is_ok());
    assert!(parse_trusted_proxy("192.0.2.7").is_ok());
    assert!(parse_trusted_proxy("2001:db8::/32").is_ok());
    assert!(parse_trusted_proxy("::1").is_ok());
    for bad in ["", "10.0.0.0/33", "proxy.internal", "10.0.0.1-10.0.0.9"] {
        assert!(parse_trusted_proxy(bad).is_err(), "{bad}");
    }
}

fn limits(per_second: u32, burst: u32, max_in_flight: usize, timeout: Duration) -> OAuthLimits {
    OAuthLimits {
        per_second,
        burst,
        max_in_flight,
        request_timeout: timeout,
        trusted_proxies: Vec::new().into(),
    }
}

fn routes(limits: &OAuthLimits) -> Router {
    let inner = Router::new().route("/fast", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            "slow"
        }),
    );
    limit(
        inner,
        limits,
        client_limiter(limits).unwrap(),
        Arc::new(Metrics::new()),
    )
}

async fn call(router: &Router, path: &str, from: [u8; 4]) -> Response {
    let mut request = Request::get(path).body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((Ipv4Addr::from(from), 40000))));
    router.clone().oneshot(request).await.unwrap()
}

fn reason(response: &Response) -> Option<&str> {
    response
        .headers()
        .get(crate::http::pages::ERROR_HEADER)
        .and_then(|value| value.to_str().ok())
}

#[tokio::test]
async fn a_client_over_its_rate_gets_a_429_page_and_others_do_not() {
    let router = routes(&limits(1, 3, 100, Duration::from_secs(5)));
    for _ in 0..3 {
        assert_eq!(
            call(&router, "/fast", [198, 51, 100, 1]).await.status(),
            200
        );
    }
    let refused = call(&router, "/fast", [198, 51, 100, 1]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reason(&refused), Some("too_many_requests"));
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(
        call(&router, "/fast", [198, 51, 100, 2]).await.status(),
        200,
        "another client has its own budget"
    );
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_at_once() {
    let router = routes(&limits(1000, 1000, 1, Duration::from_secs(5)));
    let slow = tokio::spawn({
        let router = router.clone();
        async move { call(&router, "/slow", [198, 51, 100, 1]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let shed = call(&router, "/fast", [198, 51, 100, 2]).await;
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_millis(400), "not queued");
    assert_eq!(slow.await.unwrap().status(), 200);
    assert_eq!(
        call(&router, "/fast", [198, 51, 100, 2]).await.status(),
        200
    );
}

#[tokio::test]
async fn a_request_past_its_timeout_gets_a_504_page() {
    let router = routes(&limits(1000, 1000, 10, Duration::from_millis(100)));
    let late = call(&router, "/slow", [198, 51, 100, 1]).await;
    assert_eq!(late.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(reason(&late), Some("deadline_exceeded"));
}
