//! The people of the fake WeChat and their profiles.

use serde::{Deserialize, Serialize};

use crate::ids::stable_number;

/// Default avatar WeChat shows for a user without one and for snapshot-page users.
pub(crate) const DEFAULT_AVATAR: &str = "https://thirdwx.qlogo.cn/mmopen/vi_32/POgEwh4mIHO4nibH0KlMECNjjGxQUq24ZEaGT4poC6icRiccVGKSyXwibcPq4BWmiaIGuG1icwxaQX6grC9VemZoJ8rg/132";

/// A WeChat user, keyed by a test-chosen `key` (the same person across every app).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimUser {
    /// Test-chosen identity of the person, e.g. `"alice"`; openids derive from it.
    pub key: String,
    /// Nickname as `sns/userinfo` returns it (may hold CJK and emoji).
    pub nickname: String,
    /// 0 unknown, 1 male, 2 female (WECHAT_API.md §4).
    pub sex: u8,
    /// Province as `sns/userinfo` returns it.
    pub province: String,
    /// City as `sns/userinfo` returns it.
    pub city: String,
    /// Country as `sns/userinfo` returns it.
    pub country: String,
    /// Avatar URL; the last path segment is the size (WECHAT_API.md §4).
    pub headimgurl: String,
    /// `privilege` of `sns/userinfo`.
    pub privileges: Vec<String>,
    /// The phone number the phone button would share; `None`: the code exchange gives 40029.
    pub phone: Option<SimPhone>,
    /// The user lands on the snapshot page (WECHAT_API.md §1): virtual ids, placeholder profile.
    pub snapshot: bool,
}

/// A phone number as `getuserphonenumber` returns it (WECHAT_API.md §10).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SimPhone {
    /// With the country code for foreign numbers, e.g. `"+86 13800138000"`.
    pub phone_number: String,
    /// Without the country code, e.g. `"13800138000"`.
    pub pure_phone_number: String,
    /// The country code without `+`, e.g. `"86"`.
    pub country_code: String,
}

const GIVEN_NAMES: [&str; 8] = [
    "小明", "小红", "阿强", "小芳", "大伟", "丽丽", "小龙", "阿珍",
];
const EMOJI: [&str; 8] = ["🐼", "🐱", "🌸", "🍀", "🚀", "🐯", "🍉", "⭐"];

impl SimUser {
    /// The profile a person gets when a test names them without adding them first.
    /// Everything derives from the key, so the same key always gets the same profile.
    pub(crate) fn with_default_profile(key: &str) -> Self {
        let seed = stable_number(key);
        let name = GIVEN_NAMES[(seed % 8) as usize];
        let emoji = EMOJI[((seed >> 8) % 8) as usize];
        let sex = if (seed >> 16).is_multiple_of(2) { 1 } else { 2 };
        let subscriber = 10_000_000 + (seed >> 24) % 90_000_000;
        let avatar_hash = hex::encode(&seed.to_be_bytes()[..]);
        Self {
            key: key.to_owned(),
            nickname: format!("{name}{emoji}"),
            sex,
            province: "广东".to_owned(),
            city: "深圳".to_owned(),
            country: "中国".to_owned(),
            headimgurl: format!("https://thirdwx.qlogo.cn/mmopen/vi_32/{avatar_hash}/132"),
            privileges: Vec::new(),
            phone: Some(SimPhone {
                phone_number: format!("+86 138{subscriber}"),
                pure_phone_number: format!("138{subscriber}"),
                country_code: "86".to_owned(),
            }),
            snapshot: false,
        }
    }

    /// What a snapshot-page user's profile reads as (WECHAT_API.md §1): all placeholders.
    pub(crate) fn snapshot_view(&self) -> Self {
        Self {
            key: self.key.clone(),
            nickname: "微信用户".to_owned(),
            sex: 0,
            province: String::new(),
            city: String::new(),
            country: String::new(),
            headimgurl: DEFAULT_AVATAR.to_owned(),
            privileges: Vec::new(),
            phone: None,
            snapshot: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_profiles_are_stable_per_key() {
        let first = SimUser::with_default_profile("alice");
        let again = SimUser::with_default_profile("alice");
        assert_eq!(first.nickname, again.nickname);
        assert!(first.nickname.chars().count() >= 3);
        assert!(first.headimgurl.ends_with("/132"));
        assert!(first.sex == 1 || first.sex == 2);
        let phone = first
            .phone
            .unwrap_or_else(|| panic!("default users have a phone"));
        assert_eq!(phone.pure_phone_number.len(), 11);
        assert_eq!(
            phone.phone_number,
            format!("+86 {}", phone.pure_phone_number)
        );
    }
}
