//! WeChat errcodes the simulator answers, and their documented errmsgs (WECHAT_API.md §12).

/// -1 `system error`.
pub(crate) const SYSTEM_ERROR: i64 = -1;
/// 40001: bad, superseded or invalidated app access token; also a bad web token on `sns/userinfo` (§4).
pub(crate) const INVALID_CREDENTIAL: i64 = 40001;
/// 40002 `invalid grant_type`.
pub(crate) const INVALID_GRANT_TYPE: i64 = 40002;
/// 40003 `invalid openid`.
pub(crate) const INVALID_OPENID: i64 = 40003;
/// 40013 `invalid appid`.
pub(crate) const INVALID_APPID: i64 = 40013;
/// 40014 `invalid access_token`: a bad web token on `sns/auth` (§5).
pub(crate) const INVALID_ACCESS_TOKEN: i64 = 40014;
/// 40029 `invalid code`.
pub(crate) const INVALID_CODE: i64 = 40029;
/// 40030 `invalid refresh_token`.
pub(crate) const INVALID_REFRESH_TOKEN: i64 = 40030;
/// 40125 `invalid appsecret`.
pub(crate) const INVALID_APPSECRET: i64 = 40125;
/// 40163 `code been used`.
pub(crate) const CODE_USED: i64 = 40163;
/// 40164: the caller's IP is not whitelisted (§8).
pub(crate) const IP_NOT_IN_WHITELIST: i64 = 40164;
/// 41001 `access_token missing`.
pub(crate) const ACCESS_TOKEN_MISSING: i64 = 41001;
/// 41002 `appid missing`.
pub(crate) const APPID_MISSING: i64 = 41002;
/// 41003 `refresh_token missing`.
pub(crate) const REFRESH_TOKEN_MISSING: i64 = 41003;
/// 41004 `appsecret missing`.
pub(crate) const APPSECRET_MISSING: i64 = 41004;
/// 41008 `missing code`.
pub(crate) const CODE_MISSING: i64 = 41008;
/// 42001 `access_token expired`.
pub(crate) const ACCESS_TOKEN_EXPIRED: i64 = 42001;
/// 42002 `refresh_token expired`.
pub(crate) const REFRESH_TOKEN_EXPIRED: i64 = 42002;
/// 45009: the daily `cgi-bin/token` quota is spent (§8).
pub(crate) const DAILY_QUOTA: i64 = 45009;
/// 47001 `data format error`.
pub(crate) const DATA_FORMAT_ERROR: i64 = 47001;
/// 48001 `api unauthorized`.
pub(crate) const API_UNAUTHORIZED: i64 = 48001;
/// 87009 `invalid signature`.
pub(crate) const INVALID_SIGNATURE: i64 = 87009;

/// The documented errmsg of an errcode (WECHAT_API.md §12); `unknown error` for others.
pub(crate) fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40029 => "invalid code",
        40030 => "invalid refresh_token",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40164 => "invalid ip, not in whitelist",
        40226 => "code blocked",
        40243 => "AppSecret frozen",
        41001 => "access_token missing",
        41002 => "appid missing",
        41003 => "refresh_token missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        42002 => "refresh_token expired",
        42003 => "code expired",
        45009 => "reach max api daily quota limit",
        45011 => "api minute-quota reach limit, must slower, retry next minute",
        47001 => "data format error",
        48001 => "api unauthorized",
        50001 => "api unauthorized or user unauthorized",
        50002 => "user limited",
        61024 => "must use api(api_component_token) to get token for component acct",
        87009 => "invalid signature",
        _ => "unknown error",
    }
}
