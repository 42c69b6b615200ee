//! The OAuth `return_to` allowlist: a browser is only ever sent back to a URL
//! an operator configured, compared as URLs, never as strings, so
//! `https://app.example/cb@evil.example` and `https://app.example.evil.example`
//! do not pass for `https://app.example/cb`.

use url::Url;

/// The parameters the shim appends to `return_to`; a `return_to` that already
/// carries one is refused, or whoever built the link would choose the
/// `ticket` (or `state`) the app reads first.
pub const ADDED_PARAMS: [&str; 4] = ["ticket", "state", "error", "error_description"];

/// Parses `candidate` and returns it when it matches one of `allowed`: same
/// scheme, host and port exactly, no credentials, no fragment, none of
/// [`ADDED_PARAMS`] in its query, and a path that is the prefix's path or
/// continues it at a `/` boundary (or the prefix ends in `/`).
pub fn match_allowed(candidate: &str, allowed: &[Url]) -> Option<Url> {
    if candidate.len() > 2048 || candidate.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let url = Url::parse(candidate).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
        || url.fragment().is_some()
        || url.host().is_none()
        || url
            .query_pairs()
            .any(|(key, _)| ADDED_PARAMS.contains(&key.as_ref()))
    {
        return None;
    }
    allowed
        .iter()
        .any(|prefix| matches_prefix(&url, prefix))
        .then_some(url)
}

fn matches_prefix(url: &Url, prefix: &Url) -> bool {
    if url.scheme() != prefix.scheme()
        || url.host() != prefix.host()
        || url.port_or_known_default() != prefix.port_or_known_default()
    {
        return false;
    }
    let (path, allowed) = (url.path(), prefix.path());
    // `Url` has already resolved `.` and `..` segments, so `/cb/../admin` is `/admin` here.
    path == allowed
        || (path.starts_with(allowed)
            && (allowed.ends_with('/') || path[allowed.len()..].starts_with('/')))
}

/// `return_to` with `params` appended to its own query.
pub fn with_params(mut return_to: Url, params: &[(&str, &str)]) -> Url {
    {
        let mut query = return_to.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
    }
    return_to
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<Url> {
        [
            "https://app.example/cb",
            "https://shop.example:8443/login/",
            "http://localhost:3000/done",
        ]
        .iter()
        .map(|u| Url::parse(u).expect("url"))
        .collect()
    }

    #[test]
    fn configured_prefixes_match_with_their_own_queries() {
        for ok in [
            "https://app.example/cb",
            "https://app.example/cb?next=/orders",
            "https://app.example/cb/mobile",
            "https://APP.example/cb",
            "https://app.example:443/cb",
            "https://shop.example:8443/login/x",
            "http://localhost:3000/done",
        ] {
            assert!(match_allowed(ok, &allowed()).is_some(), "{ok}");
        }
    }

    #[test]
    fn look_alikes_and_tricks_do_not_match() {
        for bad in [
            "https://app.example/cb@evil.example",
            "https://app.example.evil.example/cb",
            "https://evil.example/?https://app.example/cb",
            "https://app.example@evil.example/cb",
            "https://user:pw@app.example/cb",
            "https://app.example/cbevil",
            "https://app.example/cb/../admin",
            "https://app.example/other",
            "http://app.example/cb",
            "https://app.example:444/cb",
            "https://shop.example/login/x",
            "https://app.example/cb#frag",
            "//app.example/cb",
            "javascript:alert(1)//https://app.example/cb",
            "https:\\\\evil.example\\app.example/cb",
            "https://app.example/cb\n.evil",
            "",
        ] {
            assert!(match_allowed(bad, &allowed()).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_return_to_carrying_a_parameter_the_shim_adds_is_refused() {
        for param in ADDED_PARAMS {
            let forged = format!("https://app.example/cb?{param}=chosen-by-the-link");
            assert!(match_allowed(&forged, &allowed()).is_none(), "{forged}");
        }
        assert!(match_allowed("https://app.example/cb?tickets=1", &allowed()).is_some());
    }

    #[test]
    fn params_are_added_to_the_existing_query() {
        let url =
            match_allowed("https://app.example/cb?next=%2Forders", &allowed()).expect("allowed");
        let url = with_params(url, &[("ticket", "t1"), ("state", "s 1")]);
        assert_eq!(
            url.as_str(),
            "https://app.example/cb?next=%2Forders&ticket=t1&state=s+1"
        );
    }
}
