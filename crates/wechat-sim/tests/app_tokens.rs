//! `cgi-bin/token` and `cgi-bin/stable_token`: overlaps, renewals, refresh limits, quotas.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// An API call that only checks the app token: 41001/40001/42001, else it goes on to the code.
async fn token_status(h: &Harness, token: &str) -> i64 {
    let answer = h.phone_number(token, "no-such-code").await;
    match answer.errcode() {
        40029 => 0,
        other => other,
    }
}

#[tokio::test]
async fn cgi_token_issues_a_long_new_token_on_every_call() {
    let h = start().await;
    let first = h.cgi_token(MINI, MINI_SECRET).await;
    assert_eq!(first.body["expires_in"], 7200);
    assert_eq!(first.body.get("errcode"), None);
    let first = first.text("access_token");
    assert!(first.len() >= 150, "{} chars", first.len());
    let second = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_superseded_cgi_token_keeps_working_for_five_minutes_then_answers_40001() {
    let h = start().await;
    let old = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    let new = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    h.sim.advance_clock(Duration::from_secs(299));
    assert_eq!(token_status(&h, &old).await, 0);
    h.sim.advance_clock(Duration::from_secs(2));
    assert_eq!(token_status(&h, &old).await, 40001);
    assert_eq!(token_status(&h, &new).await, 0);
}

#[tokio::test]
async fn an_app_token_expires_after_7200_seconds_with_42001() {
    let h = start().await;
    let token = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    h.sim.advance_clock(Duration::from_secs(7200));
    let answer = h.phone_number(&token, "no-such-code").await;
    assert_eq!(answer.errcode(), 42001);
    assert!(
        answer
            .text("errmsg")
            .starts_with("access_token expired, rid: ")
    );
}

#[tokio::test]
async fn cgi_token_checks_grant_type_appid_and_secret() {
    let h = start().await;
    assert_eq!(h.cgi_token(MINI, "wrong-secret").await.errcode(), 40125);
    assert_eq!(
        h.cgi_token("wx-unknown", MINI_SECRET).await.errcode(),
        40013
    );
    let no_grant = h
        .get(
            "/cgi-bin/token",
            &[("appid", MINI), ("secret", MINI_SECRET)],
        )
        .await;
    assert_eq!(no_grant.errcode(), 40002);
    let no_secret = h
        .get(
            "/cgi-bin/token",
            &[("grant_type", "client_credential"), ("appid", MINI)],
        )
        .await;
    assert_eq!(no_secret.errcode(), 41004);
}

#[tokio::test]
async fn cgi_token_stops_at_2000_calls_a_day_with_45009() {
    let h = start().await;
    for _ in 0..2000 {
        assert_eq!(h.cgi_token(OFFICIAL, OFFICIAL_SECRET).await.errcode(), 0);
    }
    let over = h.cgi_token(OFFICIAL, OFFICIAL_SECRET).await;
    assert_eq!(over.errcode(), 45009);
    assert_rid_suffix(&over.text("errmsg"));
    h.sim.advance_clock(Duration::from_secs(24 * 3600));
    assert_eq!(h.cgi_token(OFFICIAL, OFFICIAL_SECRET).await.errcode(), 0);
}

#[tokio::test]
async fn stable_token_returns_the_same_token_while_it_is_valid() {
    let h = start().await;
    let first = h.stable_token(MINI, MINI_SECRET, false).await;
    assert_eq!(first.body["expires_in"], 7200);
    let first = first.text("access_token");
    h.sim.advance_clock(Duration::from_secs(600));
    let again = h.stable_token(MINI, MINI_SECRET, false).await;
    assert_eq!(again.text("access_token"), first);
    let left = again.body["expires_in"].as_u64().unwrap();
    assert!((6590..=6600).contains(&left), "{left}");
    assert_eq!(h.sim.current_stable_token(MINI), Some(first));
}

#[tokio::test]
async fn stable_token_renews_in_its_last_five_minutes_and_the_old_one_lives_on() {
    let h = start().await;
    let first = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    h.sim.advance_clock(Duration::from_secs(7200 - 200));
    let renewed = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    assert_ne!(renewed, first);
    assert_eq!(token_status(&h, &first).await, 0);
    h.sim.advance_clock(Duration::from_secs(200));
    assert_eq!(token_status(&h, &first).await, 42001);
    assert_eq!(token_status(&h, &renewed).await, 0);
}

#[tokio::test]
async fn a_forced_refresh_replaces_the_token_but_only_every_30_seconds() {
    let h = start().await;
    let first = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    let forced = h
        .stable_token(MINI, MINI_SECRET, true)
        .await
        .text("access_token");
    assert_ne!(forced, first);
    assert_eq!(token_status(&h, &first).await, 40001);
    // Too soon: no refresh, no error, the current token comes back.
    h.sim.advance_clock(Duration::from_secs(29));
    let too_soon = h.stable_token(MINI, MINI_SECRET, true).await;
    assert_eq!(too_soon.errcode(), 0);
    assert_eq!(too_soon.text("access_token"), forced);
    h.sim.advance_clock(Duration::from_secs(1));
    let later = h
        .stable_token(MINI, MINI_SECRET, true)
        .await
        .text("access_token");
    assert_ne!(later, forced);
}

#[tokio::test]
async fn forced_refreshes_stop_after_20_a_day() {
    let h = start().await;
    // The 20 refreshes take ten simulated minutes: start them just after a
    // Beijing midnight, or a run near 16:00 UTC crosses into a new day, whose
    // fresh count allows a 21st.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let into_beijing_day = (now + 8 * 3600) % 86_400;
    h.sim
        .advance_clock(Duration::from_secs(86_400 - into_beijing_day + 60));
    let mut token = String::new();
    for _ in 0..20 {
        let next = h
            .stable_token(WEBSITE, WEBSITE_SECRET, true)
            .await
            .text("access_token");
        assert_ne!(next, token);
        token = next;
        h.sim.advance_clock(Duration::from_secs(31));
    }
    let refused = h
        .stable_token(WEBSITE, WEBSITE_SECRET, true)
        .await
        .text("access_token");
    assert_eq!(refused, token);
}

#[tokio::test]
async fn stable_and_cgi_tokens_do_not_affect_each_other() {
    let h = start().await;
    let stable = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    let plain = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    h.cgi_token(MINI, MINI_SECRET).await;
    h.stable_token(MINI, MINI_SECRET, true).await;
    h.sim.advance_clock(Duration::from_secs(301));
    assert_eq!(token_status(&h, &plain).await, 40001);
    let stable_again = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    assert_ne!(stable_again, stable);
    assert_eq!(token_status(&h, &stable).await, 40001);
}

#[tokio::test]
async fn stable_token_wants_a_json_body() {
    let h = start().await;
    let response = h
        .http
        .post(h.url("/cgi-bin/stable_token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credential&appid={MINI}&secret={MINI_SECRET}"
        ))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], 41002);
    let wrong_grant = h
        .post_json(
            "/cgi-bin/stable_token",
            &[],
            &json!({ "grant_type": "password", "appid": MINI, "secret": MINI_SECRET }),
        )
        .await;
    assert_eq!(wrong_grant.errcode(), 40002);
}

#[tokio::test]
async fn invalidating_tokens_kills_both_kinds_and_stable_token_issues_a_fresh_one() {
    let h = start().await;
    let stable = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    let plain = h.cgi_token(MINI, MINI_SECRET).await.text("access_token");
    h.sim.invalidate_access_tokens(MINI);
    assert_eq!(token_status(&h, &stable).await, 40001);
    assert_eq!(token_status(&h, &plain).await, 40001);
    assert_eq!(h.sim.current_stable_token(MINI), None);
    let fresh = h
        .stable_token(MINI, MINI_SECRET, false)
        .await
        .text("access_token");
    assert_ne!(fresh, stable);
    assert_eq!(token_status(&h, &fresh).await, 0);
}
