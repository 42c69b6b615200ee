//! The endpoints, grouped by what they serve.

pub(crate) mod app_token;
pub(crate) mod mini_program;
pub(crate) mod web_oauth;

/// Accepts a JSON number or string and yields a string (WeChat's docs and
/// captures disagree on some fields' types, WECHAT_API.md §4, §10).
pub(crate) fn string_or_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    use serde::Deserialize;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Text(String),
        Int(i64),
    }
    Ok(match Loose::deserialize(deserializer)? {
        Loose::Text(text) => text,
        Loose::Int(number) => number.to_string(),
    })
}
