#![allow(clippy::unwrap_used)]

use super::*;

const APP: &str = "wxd000000000000002";

fn app(id: &str) -> AppId {
    AppId::new(id).unwrap()
}

fn binding(secure: bool) -> WebBinding {
    WebBinding::new(&[7; 32], &[9; 32], secure)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn start(binding: &WebBinding) -> StartedLogin {
    start_beside(binding, "", 0)
}

/// A login started in a browser that sends `cookies`, `secs` into the test.
fn start_beside(binding: &WebBinding, cookies: &str, secs: u64) -> StartedLogin {
    binding
        .start(
            &app(APP),
            "snsapi_userinfo",
            "https://app.example/cb?x=1",
            Some("caller-state"),
            [cookies],
            at(secs),
        )
        .unwrap()
}

/// The cookie's `name=value`, as the browser sends it back.
fn cookie_pair(started: &StartedLogin) -> &str {
    started.set_cookie.split(';').next().unwrap()
}

#[test]
fn a_state_is_short_alphanumeric_and_unique() {
    let binding = binding(true);
    let (one, two) = (start(&binding), start(&binding));
    for state in [&one.state, &two.state] {
        assert_eq!(state.len(), STATE_LEN);
        assert!(state.len() <= 128, "WeChat's limit");
        assert!(state.bytes().all(|b| b.is_ascii_alphanumeric()), "{state}");
    }
    assert_ne!(one.state, two.state);
    assert_ne!(one.set_cookie, two.set_cookie);
}

#[test]
fn the_cookie_is_host_only_secure_httponly_lax_and_lives_ten_minutes() {
    let https = start(&binding(true));
    assert!(https.set_cookie.starts_with("__Host-wxid-login="));
    for attribute in [
        "; Path=/",
        "; Max-Age=600",
        "; HttpOnly",
        "; SameSite=Lax",
        "; Secure",
    ] {
        assert!(https.set_cookie.contains(attribute), "{attribute}");
    }
    assert!(!https.set_cookie.contains("Domain"), "host-only");

    let plain = start(&binding(false));
    assert!(plain.set_cookie.starts_with("wxid-login="));
    assert!(!plain.set_cookie.contains("Secure"));
    assert!(plain.set_cookie.contains("; HttpOnly; SameSite=Lax"));
}

#[test]
fn the_cookie_of_the_login_opens_to_its_context() {
    let binding = binding(true);
    let started = start(&binding);
    let state = binding
        .check_state(&app(APP), &started.state, at(1))
        .unwrap();
    let header = format!("theme=dark; {}; lang=zh", cookie_pair(&started));
    let context = binding.open([header.as_str()], &state, &app(APP)).unwrap();
    assert_eq!(context.id, state.id);
    assert_eq!(context.return_to, "https://app.example/cb?x=1");
    assert_eq!(context.caller_state.as_deref(), Some("caller-state"));
    assert_eq!(context.scope, "snsapi_userinfo");
    assert_eq!(
        UNIX_EPOCH + Duration::from_secs(context.expires_at),
        state.expires_at
    );
}

#[test]
fn forged_tampered_foreign_and_expired_states_are_refused() {
    let binding = binding(true);
    let started = start(&binding);
    let good = &started.state;
    let flip = |index: usize| {
        let mut bytes = good.clone().into_bytes();
        bytes[index] = if bytes[index] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    };
    let other_key = WebBinding::new(&[8; 32], &[9; 32], true);
    let foreign_key = start(&other_key).state;
    for (what, state) in [
        ("empty", String::new()),
        ("short", good[..STATE_LEN - 1].to_owned()),
        ("long", format!("{good}0")),
        ("version", format!("2{}", &good[1..])),
        ("id", flip(5)),
        ("expiry", flip(1 + ID_HEX + 3)),
        ("mac", flip(STATE_LEN - 1)),
        ("another key", foreign_key),
        ("not hex", format!("{}zz", &good[..STATE_LEN - 2])),
        ("multibyte", format!("{}é", &good[..STATE_LEN - 2])),
    ] {
        assert_eq!(
            binding.check_state(&app(APP), &state, at(1)),
            Err(BindingError::BadState),
            "{what}"
        );
    }
    assert_eq!(
        binding.check_state(&app("wxd000000000000003"), good, at(1)),
        Err(BindingError::BadState),
        "another app's callback"
    );
    assert_eq!(
        binding.check_state(&app(APP), good, at(LOGIN_TTL.as_secs())),
        Err(BindingError::BadState),
        "expired"
    );
    assert!(binding.check_state(&app(APP), good, at(599)).is_ok());
}

#[test]
fn a_callback_without_the_cookie_of_its_own_state_is_a_mismatch() {
    let binding = binding(true);
    let (mine, theirs) = (start(&binding), start(&binding));
    let state = binding.check_state(&app(APP), &mine.state, at(1)).unwrap();
    let tampered = {
        let pair = cookie_pair(&mine);
        let last = pair.chars().last().unwrap();
        format!(
            "{}{}",
            &pair[..pair.len() - 1],
            if last == 'A' { 'B' } else { 'A' }
        )
    };
    let plain_name = cookie_pair(&mine).replace("__Host-wxid-login", "wxid-login");
    let other_keys = start(&WebBinding::new(&[7; 32], &[1; 32], true));
    for (what, header) in [
        ("no cookie", String::new()),
        ("another login's cookie", cookie_pair(&theirs).to_owned()),
        ("a tampered cookie", tampered),
        ("the cookie under another name", plain_name),
        (
            "a cookie sealed with another key",
            cookie_pair(&other_keys).to_owned(),
        ),
        ("garbage", "__Host-wxid-login=%%%".to_owned()),
    ] {
        assert_eq!(
            binding.open([header.as_str()], &state, &app(APP)),
            Err(BindingError::Mismatch),
            "{what}"
        );
    }
    // Both cookies present (two logins started in one browser): the right one wins.
    let both = format!("{}; {}", cookie_pair(&theirs), cookie_pair(&mine));
    assert!(binding.open([both.as_str()], &state, &app(APP)).is_ok());
}

#[test]
fn a_context_too_large_for_a_cookie_is_refused() {
    let huge = format!("https://app.example/cb?{}", "x".repeat(4000));
    assert_eq!(
        binding(true)
            .start(&app(APP), "snsapi_base", &huge, None, [""], at(0))
            .map(|_| ()),
        Err(BindingError::TooLarge)
    );
}

#[test]
fn a_browser_keeps_its_three_newest_pending_logins() {
    let binding = binding(true);
    let first = start(&binding);
    let second = start_beside(&binding, cookie_pair(&first), 1);
    let third = start_beside(&binding, cookie_pair(&second), 2);
    let opens = |cookie: &StartedLogin, login: &StartedLogin| {
        let state = binding.check_state(&app(APP), &login.state, at(3)).unwrap();
        binding
            .open([cookie_pair(cookie)], &state, &app(APP))
            .is_ok()
    };
    assert!(opens(&third, &first) && opens(&third, &second) && opens(&third, &third));
    let fourth = start_beside(&binding, cookie_pair(&third), 3);
    assert!(!opens(&fourth, &first), "the oldest gives way");
    assert!(opens(&fourth, &second) && opens(&fourth, &third) && opens(&fourth, &fourth));

    let later = start_beside(&binding, cookie_pair(&fourth), LOGIN_TTL.as_secs() + 2);
    let state = binding
        .check_state(&app(APP), &later.state, at(LOGIN_TTL.as_secs() + 3))
        .unwrap();
    assert!(
        binding
            .open([cookie_pair(&later)], &state, &app(APP))
            .is_ok()
    );
    assert!(
        binding.pending([cookie_pair(&later)]).len() == 2,
        "expired logins are dropped from the cookie"
    );
}

#[test]
fn long_pending_logins_give_way_to_a_new_one_that_would_not_fit_beside_them() {
    let binding = binding(true);
    let long = format!("https://app.example/cb?{}", "y".repeat(1800));
    let begin = |cookies: &str| {
        binding
            .start(&app(APP), "snsapi_base", &long, None, [cookies], at(0))
            .unwrap()
    };
    let first = begin("");
    let second = begin(cookie_pair(&first));
    assert!(
        second.set_cookie.len() < 4096,
        "{}",
        second.set_cookie.len()
    );
    assert_eq!(binding.pending([cookie_pair(&second)]).len(), 1);
}
