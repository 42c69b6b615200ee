//! Query parameters as WeChat reads them.

use std::collections::HashMap;

/// Query parameters, first occurrence wins, empty values treated as absent.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(raw_query: Option<&str>) -> Self {
        let mut params = HashMap::new();
        for (name, value) in url::form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
            params
                .entry(name.into_owned())
                .or_insert_with(|| value.into_owned());
        }
        Self(params)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_keep_the_first_value_and_drop_empty_ones() {
        let params = Params::parse(Some("a=1&a=2&b=&c=%E4%B8%AD"));
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("中"));
        assert_eq!(Params::parse(None).get("a"), None);
    }
}
