//! Environment overrides: `WECHAT_IDENTITY__SECTION__FIELD=value` sets
//! `section.field`; numeric segments index lists (`WECHAT_IDENTITY__APPS__0__APP_ID`).
//! The environment comes in as an iterator, so tests never touch the process's own.

use toml::Value;

/// The prefix of every override.
pub const ENV_PREFIX: &str = "WECHAT_IDENTITY__";

/// Applies every `WECHAT_IDENTITY__…` pair of `env` to `document`.
///
/// # Errors
/// A message naming the variable when its path cannot be applied (a list index
/// past the end, or a path through a value that is not a table or list).
pub(crate) fn apply_env_overrides(
    document: &mut Value,
    env: &[(String, String)],
) -> Result<usize, String> {
    let mut applied = 0;
    let mut overrides: Vec<_> = env
        .iter()
        .filter_map(|(name, value)| {
            name.strip_prefix(ENV_PREFIX)
                .map(|path| (name, path, value))
        })
        .collect();
    // Lower list indexes first, so `APPS__0__…` exists before `APPS__1__…` is appended.
    overrides.sort_by(|a, b| a.1.cmp(b.1));
    for (name, path, raw) in overrides {
        let segments: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!("{name}: empty path segment"));
        }
        set(document, &segments, parse_value(raw))
            .map_err(|problem| format!("{name}: {problem}"))?;
        applied += 1;
    }
    Ok(applied)
}

/// Reads a value the way TOML would (numbers, booleans, arrays, inline tables),
/// falling back to a plain string.
fn parse_value(raw: &str) -> Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut table) => table
            .remove("v")
            .unwrap_or_else(|| Value::String(raw.to_owned())),
        Err(_) => Value::String(raw.to_owned()),
    }
}

fn set(node: &mut Value, path: &[String], value: Value) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    match node {
        Value::Table(table) => {
            let child = table
                .entry(head.clone())
                .or_insert_with(|| empty_like(rest));
            set(child, rest, value)
        }
        Value::Array(items) => {
            let index: usize = head
                .parse()
                .map_err(|_| format!("'{head}' is not a list index"))?;
            let len = items.len();
            if index == len {
                items.push(empty_like(rest));
            }
            let child = items
                .get_mut(index)
                .ok_or_else(|| format!("list index {index} is past the end ({len} items)"))?;
            set(child, rest, value)
        }
        _ => Err(format!(
            "'{head}' goes through a value that is not a table or a list"
        )),
    }
}

fn empty_like(rest: &[String]) -> Value {
    match rest.first() {
        Some(next) if next.parse::<usize>().is_ok() => Value::Array(Vec::new()),
        _ => Value::Table(toml::Table::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn overrides_nested_fields_with_typed_values() {
        let mut doc: Value =
            toml::from_str("[server]\ngrpc_listen = \"127.0.0.1:1\"").expect("toml");
        let applied = apply_env_overrides(
            &mut doc,
            &env(&[
                ("WECHAT_IDENTITY__SERVER__GRPC_LISTEN", "0.0.0.0:50051"),
                ("WECHAT_IDENTITY__SERVER__MAX_IN_FLIGHT", "512"),
                ("WECHAT_IDENTITY__SESSIONS__ACCESS_TTL", "1h"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("applies");
        assert_eq!(applied, 3);
        assert_eq!(doc["server"]["grpc_listen"].as_str(), Some("0.0.0.0:50051"));
        assert_eq!(doc["server"]["max_in_flight"].as_integer(), Some(512));
        assert_eq!(doc["sessions"]["access_ttl"].as_str(), Some("1h"));
    }

    #[test]
    fn numeric_segments_index_and_append_to_lists() {
        let mut doc: Value = toml::from_str("[[apps]]\napp_id = \"wx1\"").expect("toml");
        apply_env_overrides(
            &mut doc,
            &env(&[
                ("WECHAT_IDENTITY__APPS__0__SECRET__ENV", "MINI_SECRET"),
                ("WECHAT_IDENTITY__APPS__1__APP_ID", "wx2"),
            ]),
        )
        .expect("applies");
        assert_eq!(
            doc["apps"][0]["secret"]["env"].as_str(),
            Some("MINI_SECRET")
        );
        assert_eq!(doc["apps"][1]["app_id"].as_str(), Some("wx2"));
        let mut doc: Value = toml::from_str("apps = []").expect("toml");
        let error = apply_env_overrides(
            &mut doc,
            &env(&[("WECHAT_IDENTITY__APPS__3__APP_ID", "wx")]),
        )
        .expect_err("gap in list");
        assert!(
            error.contains("WECHAT_IDENTITY__APPS__3__APP_ID"),
            "{error}"
        );
    }
}
