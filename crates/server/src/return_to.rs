//! The OAuth `return_to` allowlist: a browser is only ever sent back to a URL
//! an operator configured.
//!
//! A candidate is first read as the raw text the browser sent, before any URL
//! parser normalises it: the parser resolves `.`/`..` segments, drops tabs and
//! newlines, maps full-width dots in hosts and reads `0x7f.1` as an IPv4
//! address, so a check made after parsing would judge a different URL than the
//! one the app behind `return_to` will see. The raw text must be plain
//! printable ASCII with no userinfo, fragment, backslash, encoded separator,
//! `;` or dot segment in its path (encoded or not, however many times), and
//! with its host spelled exactly as in the allowlist entry. Only then is it
//! parsed and compared: scheme, host and port equal, and a path that equals
//! the entry's or continues it after a `/`.

use url::Url;

/// The parameters the shim appends to `return_to`; a `return_to` that already
/// carries one is refused, or whoever built the link would choose the
/// `ticket` (or `state`) the app reads first.
pub(crate) const ADDED_PARAMS: [&str; 4] = ["ticket", "state", "error", "error_description"];

/// The longest `return_to` accepted.
const MAX_LEN: usize = 2048;

/// Characters some servers normalise (NFKC, legacy decoders) to `.`: a path
/// segment made only of these is treated as a dot segment.
const DOT_LIKE: [char; 5] = ['.', '\u{FF0E}', '\u{2024}', '\u{FE52}', '\u{3002}'];

/// Returns `candidate`, parsed, when it matches one of `allowed` (see the
/// module comment for what "matches" takes); `None` otherwise.
pub(crate) fn match_allowed(candidate: &str, allowed: &[Url]) -> Option<Url> {
    let raw = RawUrl::split(candidate)?;
    let url = Url::parse(candidate).ok()?;
    if url
        .query_pairs()
        .any(|(key, _)| ADDED_PARAMS.contains(&key.as_ref()))
    {
        return None;
    }
    allowed
        .iter()
        .any(|entry| matches_entry(&raw, &url, entry))
        .then_some(url)
}

/// `return_to` with `params` appended to its own query.
pub(crate) fn with_params(mut return_to: Url, params: &[(&str, &str)]) -> Url {
    {
        let mut query = return_to.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
    }
    return_to
}

/// The raw text of a candidate cut at its delimiters, every part already
/// checked on its own.
struct RawUrl<'a> {
    /// The host as sent: a name, a dotted IPv4 address or a bracketed IPv6 one.
    host: &'a str,
}

impl<'a> RawUrl<'a> {
    fn split(candidate: &'a str) -> Option<Self> {
        // Printable ASCII only: no tab or newline for the parser to drop, no
        // space to trim, no Unicode host to map onto an ASCII one.
        if candidate.is_empty()
            || candidate.len() > MAX_LEN
            || !candidate.bytes().all(|b| b.is_ascii_graphic())
            || candidate.contains(['\\', '#'])
        {
            return None;
        }
        let (scheme, rest) = candidate.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return None;
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, rest) = rest.split_at(authority_end);
        let path = rest.split('?').next().unwrap_or_default();
        let host = check_authority(authority)?;
        check_path(path)?;
        Some(Self { host })
    }
}

/// The host of `authority` when it has no userinfo, no percent-encoding, a
/// host in its plain spelling and a canonical port.
fn check_authority(authority: &str) -> Option<&str> {
    if authority.contains(['@', '%']) {
        return None;
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(inner) => {
            let (address, after) = inner.split_once(']')?;
            if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
                return None;
            }
            let host = &authority[..address.len() + 2];
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if !host.starts_with('[') {
        let labels_ok = host.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if !labels_ok {
            // An empty host, an empty label (`a..b`, a trailing `.`) or any
            // other character.
            return None;
        }
    }
    if let Some(port) = port {
        let canonical = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && (port == "0" || !port.starts_with('0'));
        if !canonical || port.parse::<u16>().is_err() {
            return None;
        }
    }
    Some(host)
}

/// Refuses a path with `;`, an encoded `/` or `\`, a malformed escape, an
/// empty segment before its last, or a segment that is a dot segment once
/// decoded (any number of times).
fn check_path(path: &str) -> Option<()> {
    if path.contains(';') {
        return None;
    }
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return None;
    }
    let Some(segments) = path.strip_prefix('/') else {
        return path.is_empty().then_some(());
    };
    let segments: Vec<&str> = segments.split('/').collect();
    let last = segments.len() - 1;
    for (index, segment) in segments.iter().enumerate() {
        if segment.is_empty() && index != last {
            return None;
        }
        let decoded = decode_fully(segment)?;
        if decoded.contains(['/', '\\', ';']) || decoded.chars().any(char::is_control) {
            return None;
        }
        let dots_only = !decoded.is_empty() && decoded.chars().all(|c| DOT_LIKE.contains(&c));
        if dots_only && decoded.chars().count() <= 2 {
            return None;
        }
    }
    Some(())
}

/// Percent-decodes `segment` until nothing changes; `None` for a `%` that
/// does not start an escape, or bytes that are not UTF-8 (such as the
/// overlong `%C0%AE` some decoders read as `.`).
fn decode_fully(segment: &str) -> Option<String> {
    let mut current = segment.to_owned();
    // Each round that changes the text shortens it, so this ends.
    loop {
        if !current.contains('%') {
            return Some(current);
        }
        let bytes = current.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut index = 0;
        while index < bytes.len() {
            if bytes[index] == b'%' {
                let escape = bytes.get(index + 1..index + 3)?;
                let text = std::str::from_utf8(escape).ok()?;
                decoded.push(u8::from_str_radix(text, 16).ok()?);
                index += 3;
            } else {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
        current = String::from_utf8(decoded).ok()?;
    }
}

fn matches_entry(raw: &RawUrl<'_>, url: &Url, entry: &Url) -> bool {
    if url.scheme() != entry.scheme()
        || entry.host_str() != Some(raw.host.to_ascii_lowercase().as_str())
        || url.host() != entry.host()
        || url.port_or_known_default() != entry.port_or_known_default()
    {
        return false;
    }
    let (path, allowed) = (url.path(), entry.path());
    path == allowed
        || (path.starts_with(allowed)
            && (allowed.ends_with('/') || path[allowed.len()..].starts_with('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<Url> {
        [
            "https://app.example/cb",
            "https://shop.example:8443/login/",
            "http://localhost:3000/done",
            "http://127.0.0.1:8080/demo/",
            "http://[::1]:9090/v6/",
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
            "https://app.example/cb?next=%2Forders%2F..%2Fx",
            "https://app.example/cb/mobile",
            "https://app.example/cb/",
            "https://app.example/cb/.well-known",
            "https://app.example/cb/%E8%AE%A2%E5%8D%95",
            "https://APP.example/cb",
            "HTTPS://app.example/cb",
            "https://app.example:443/cb",
            "https://app.example/cb?",
            "https://shop.example:8443/login/x",
            "https://shop.example:8443/login/",
            "http://localhost:3000/done",
            "http://127.0.0.1:8080/demo/",
            "http://[::1]:9090/v6/page",
        ] {
            assert!(match_allowed(ok, &allowed()).is_some(), "{ok}");
        }
    }

    /// Open-redirect and path-confusion tricks from the literature (OWASP's
    /// unvalidated-redirects cheat sheet, PortSwigger's URL validation bypass
    /// list, Orange Tsai's "A New Era of SSRF", PayloadsAllTheThings' open
    /// redirect page), each aimed at the allowlist above.
    #[test]
    fn hostile_return_urls_are_refused() {
        let hostile: &[(&str, &str)] = &[
            ("", "empty"),
            ("https://app.example/cb@evil.example", "@ in the path"),
            (
                "https://app.example.evil.example/cb",
                "allowed host as a subdomain",
            ),
            (
                "https://evil.example/?https://app.example/cb",
                "allowed URL in the query",
            ),
            (
                "https://evil.example/https://app.example/cb",
                "allowed URL in the path",
            ),
            (
                "https://app.example@evil.example/cb",
                "allowed host as userinfo",
            ),
            ("https://user:pw@app.example/cb", "credentials"),
            (
                "https://app.example:443@evil.example/cb",
                "port-looking userinfo",
            ),
            (
                "https://evil.example#@app.example/cb",
                "fragment hiding the host",
            ),
            ("https://app.example/cbevil", "prefix without a / boundary"),
            ("https://app.example/cb/../admin", "dot-dot segment"),
            (
                "https://app.example/cb/../cb/x",
                "dot-dot that lands back inside",
            ),
            ("https://app.example/cb/./x", "dot segment"),
            ("https://app.example/cb/%2e%2e/admin", "encoded dot-dot"),
            (
                "https://app.example/cb/%2E%2E/admin",
                "encoded dot-dot, upper case",
            ),
            ("https://app.example/cb/%2e./admin", "half-encoded dot-dot"),
            ("https://app.example/cb/%2e/x", "encoded dot"),
            (
                "https://app.example/cb/%252e%252e/admin",
                "double-encoded dot-dot",
            ),
            (
                "https://app.example/cb/%25252e%25252e/admin",
                "triple-encoded dot-dot",
            ),
            ("https://app.example/cb/..%2fadmin", "encoded slash"),
            (
                "https://app.example/cb/..%2Fadmin",
                "encoded slash, upper case",
            ),
            (
                "https://app.example/cb%2f..%2fadmin",
                "encoded slashes around dot-dot",
            ),
            ("https://app.example/cb/%252f..", "double-encoded slash"),
            ("https://app.example/cb/..%5cadmin", "encoded backslash"),
            (
                "https://app.example/cb/..%5Cadmin",
                "encoded backslash, upper case",
            ),
            ("https://app.example/cb\\..\\admin", "backslashes"),
            (
                "https://app.example\\@evil.example/cb",
                "backslash before @",
            ),
            ("https://app.example/cb;/../admin", "; before dot-dot"),
            ("https://app.example/cb/..;/admin", "Tomcat's ..;"),
            ("https://app.example/cb;jsessionid=1", "path parameter"),
            ("https://app.example/cb/%00", "encoded NUL"),
            ("https://app.example/cb/%u002e%u002e/admin", "IIS %u escape"),
            ("https://app.example/cb/%zz", "malformed escape"),
            (
                "https://app.example/cb/%C0%AE%C0%AE/admin",
                "overlong UTF-8 dots",
            ),
            (
                "https://app.example/cb/%EF%BC%8E%EF%BC%8E/admin",
                "full-width dots",
            ),
            ("https://app.example/cb//evil.example", "empty segment"),
            ("https://app.example/cb#frag", "fragment"),
            ("https://app.example/cb#", "empty fragment"),
            ("//app.example/cb", "scheme-relative"),
            ("/\\evil.example", "slash-backslash"),
            ("/cb", "relative path"),
            ("https:app.example/cb", "no slashes after the scheme"),
            ("https:/app.example/cb", "one slash after the scheme"),
            ("https:///app.example/cb", "three slashes: empty host"),
            (
                "https:/\\app.example/cb",
                "slash-backslash after the scheme",
            ),
            ("http:/\\localhost:3000/done", "http:/\\ to an allowed host"),
            (
                "HTTPS:/\\evil.example",
                "upper-case scheme with slash-backslash",
            ),
            ("https://app.exa\tmple/cb", "tab the parser would drop"),
            ("https://app.example/c\nb", "newline the parser would drop"),
            ("https://app.example/cb\r\n", "trailing CRLF"),
            (" https://app.example/cb", "leading space"),
            ("https://app.example/cb ", "trailing space"),
            ("https://app.example./cb", "trailing dot on the host"),
            ("https://.app.example/cb", "leading dot on the host"),
            ("https://app..example/cb", "empty label"),
            ("https://app%2eexample/cb", "encoded dot in the host"),
            ("https://%61pp.example/cb", "encoded letter in the host"),
            ("https://\u{430}pp.example/cb", "Cyrillic a look-alike"),
            ("https://xn--pp-8kc.example/cb", "punycode look-alike"),
            (
                "https://app\u{FF61}example/cb",
                "half-width ideographic full stop",
            ),
            ("https://\u{FF41}pp.example/cb", "full-width a"),
            ("https://app.example:0443/cb", "port with a leading zero"),
            ("https://app.example:/cb", "empty port"),
            ("https://app.example:443:443/cb", "two ports"),
            ("https://app.example:99999/cb", "port out of range"),
            ("http://app.example/cb", "scheme downgrade"),
            ("https://app.example:444/cb", "other port"),
            (
                "https://shop.example/login/x",
                "default port for a non-default entry",
            ),
            ("ftp://app.example/cb", "other scheme"),
            ("javascript:alert(1)//https://app.example/cb", "javascript:"),
            ("data:text/html,<script>alert(1)</script>", "data:"),
            ("http://0x7f000001:8080/demo/", "hex IPv4"),
            ("http://2130706433:8080/demo/", "decimal IPv4"),
            ("http://0177.0.0.1:8080/demo/", "octal IPv4"),
            ("http://127.1:8080/demo/", "short IPv4"),
            (
                "http://[0:0:0:0:0:0:0:1]:9090/v6/",
                "IPv6 in its long spelling",
            ),
            ("http://[::1%25lo]:9090/v6/", "IPv6 zone id"),
            ("http://[::ffff:127.0.0.1]:8080/demo/", "IPv4-mapped IPv6"),
            ("http://[::1]:9090/v6/../x", "dot-dot on an IPv6 host"),
            ("http://[::1:9090/v6/", "unclosed IPv6 bracket"),
        ];
        assert!(hostile.len() >= 30);
        for (url, what) in hostile {
            assert!(
                match_allowed(url, &allowed()).is_none(),
                "{what}: {url:?} was let through"
            );
        }
        let long = format!("https://app.example/cb/{}", "a".repeat(MAX_LEN));
        assert!(match_allowed(&long, &allowed()).is_none(), "too long");
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

    #[test]
    fn a_matched_url_still_matches_once_stored_and_read_back() {
        // The shim stores the parsed URL with the state and checks it again
        // in the callback: the serialised form must pass its own check.
        for ok in [
            "HTTPS://APP.example:443/cb/x?next=%2Forders&a=b",
            "http://[::1]:9090/v6/page",
            "https://app.example/cb/%E8%AE%A2%E5%8D%95",
        ] {
            let stored = match_allowed(ok, &allowed()).expect("allowed").to_string();
            assert!(match_allowed(&stored, &allowed()).is_some(), "{stored}");
        }
    }

    #[test]
    fn full_decoding_ends_and_refuses_malformed_escapes() {
        assert_eq!(decode_fully("%25252e").as_deref(), Some("."));
        assert_eq!(decode_fully("plain").as_deref(), Some("plain"));
        assert_eq!(decode_fully("%"), None);
        assert_eq!(decode_fully("%2"), None);
        assert_eq!(decode_fully("%ff"), None);
    }
}
