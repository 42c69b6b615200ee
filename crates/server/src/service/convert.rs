//! Storage records as contract messages, and WeChat's answers as storage records.

use crate::pb;

use super::timestamp;

/// WeChat's `sns/userinfo` answer as the profile fields storage keeps.
pub(super) fn profile_fields(info: wechat_client::WebUserInfo) -> storage::ProfileFields {
    storage::ProfileFields {
        nickname: info.nickname,
        avatar_url: info.headimgurl,
        sex: info.sex,
        province: info.province,
        city: info.city,
        country: info.country,
        privileges: info.privileges,
    }
}

pub(super) fn app_kind(kind: storage::AppKind) -> pb::AppKind {
    match kind {
        storage::AppKind::MiniProgram => pb::AppKind::MiniProgram,
        storage::AppKind::OfficialAccount => pb::AppKind::OfficialAccount,
        storage::AppKind::Website => pb::AppKind::Website,
    }
}

pub(super) fn profile(user: storage::UserProfile) -> pb::Profile {
    let fields = user.profile;
    pb::Profile {
        user_id: user.user_id.to_string(),
        external_id: user.external_id.unwrap_or_default(),
        unionid: user.unionid.map(String::from).unwrap_or_default(),
        nickname: fields.nickname,
        avatar_url: fields.avatar_url,
        sex: match fields.sex {
            1 => pb::Sex::Male,
            2 => pb::Sex::Female,
            _ => pb::Sex::Unspecified,
        } as i32,
        province: fields.province,
        city: fields.city,
        country: fields.country,
        privileges: fields.privileges,
        phone: user.phone.map(|phone| pb::Phone {
            phone_number: phone.phone_number,
            pure_phone_number: phone.pure_phone_number,
            country_code: phone.country_code,
        }),
        identities: user
            .identities
            .into_iter()
            .map(|identity| pb::LinkedIdentity {
                app_id: identity.app_id.to_string(),
                app_kind: app_kind(identity.app_kind) as i32,
                openid: identity.openid.to_string(),
                unionid: identity.unionid.map(String::from).unwrap_or_default(),
                linked_at: Some(timestamp(identity.linked_at)),
            })
            .collect(),
        created_at: Some(timestamp(user.created_at)),
        updated_at: Some(timestamp(user.updated_at)),
    }
}
