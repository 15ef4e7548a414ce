//! Vendor error codes, one table per vendor, turned into what the tool does.

/// What a vendor's answer means for the call that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Try again after a backoff (system busy, transient server fault).
    Transient,
    /// Rate limited: wait at least the throttle wait, then try again.
    Throttled,
    /// The access token is invalid or expired: refresh it and retry once.
    Token,
    /// This record or employee is bad; the others go on.
    Record,
    /// The request was too large (e.g. too many userids): shrink it and retry.
    TooLarge,
    /// The record to update no longer exists.
    NotFound,
    /// Stop the job: only the operator can fix this. The text says what to fix.
    Fatal(&'static str),
}

/// WeCom `errcode` (docs/vendors/wecom.md "Errors").
pub fn wecom(code: i64) -> Class {
    use Class::*;
    match code {
        -1 | 301022 | 301070 => Transient,
        45009 => Throttled,
        45033 => Throttled,
        40014 | 42001 | 40001 => Token,
        301021 | 40003 | 46004 | 60111 => Record,
        301023 => TooLarge,
        40013 => Fatal("check `corp_id` in the job's [source]"),
        40091 => Fatal("check `secret` in the job's [source]: it must be the secret of the self-built app"),
        41001 => Fatal("the access token was not sent (a bug in attendsync; please report it)"),
        48002 => Fatal("the app may not call this API: in the WeCom admin console add the self-built app to 打卡 → 可调用接口的应用, and use that app's secret (not the 打卡 system app's)"),
        60011 => Fatal("the app cannot see these members or departments: widen the app's 可见范围 or fix `departments`/`userids`"),
        60020 => Fatal("this machine's IP is not trusted: add the `from ip` shown above to the app's 企业可信IP"),
        301024 => Fatal("the requested time range was rejected (a month-arithmetic bug; please report it with the month)"),
        301075 => Fatal("WeCom rejected the request parameters"),
        _ => Fatal("WeCom rejected the call"),
    }
}

/// What to fix when `gettoken` itself fails: a token error there means the secret.
pub fn wecom_gettoken(code: i64) -> Class {
    match code {
        40001 | 40091 => Class::Fatal(
            "check `secret` in the job's [source]: it must be the secret of the self-built app listed under 打卡 → 可调用接口的应用",
        ),
        other => wecom(other),
    }
}

/// DingTalk old-style `errcode` values the client acts on by value, not only by
/// class (docs/vendors/dingtalk.md "Answers and errors", "Body encoding").
pub mod dingtalk_code {
    /// A department outside the app's contact scope.
    pub const OUT_OF_SCOPE: i64 = 50004;
    /// Invalid parameter: on `v2/user/list`, shrink the page size.
    pub const INVALID_PARAMETER: i64 = 400002;
    /// Invalid `Content-Type` (the endpoint wants the other body encoding).
    pub const BAD_CONTENT_TYPE: i64 = 43004;
    /// The endpoint wants `application/json`.
    pub const NEEDS_JSON: i64 = 43005;
    /// `status` of the JSON body DingTalk sends instead of an answer while this
    /// IP is banned (no errcode).
    pub const IP_BANNED_STATUS: i64 = 1111;
}

/// DingTalk old-style `errcode` (docs/vendors/dingtalk.md "Answers and errors"). 400002
/// is [`Class::Record`]: on a per-user report call it fails that employee-month;
/// elsewhere the caller treats it as fatal. 60003 and the user-not-found codes are
/// [`Class::NotFound`].
pub fn dingtalk(code: i64) -> Class {
    use Class::*;
    match code {
        -1 | 400001 => Transient,
        90018 | 90002 | 45009 | 90005 | 90006 => Throttled,
        90001 | 90003 | 90004 => Throttled,
        40014 | 42001 | 40001 => Token,
        400002 => Record,
        60003 | 33012 | 60121 => NotFound,
        40089 => Fatal("check `app_key` and `app_secret` in the job's [source]: DingTalk rejected them (use the internal app's Client ID and Client Secret)"),
        41001 | 43007 => Fatal("the access token was not sent (a bug in attendsync; please report it)"),
        88 => Fatal("DingTalk reported an authentication exception; the sub-code and sub-message above say why"),
        60011 => Fatal("grant the app the permission points it needs (qyapi_base, qyapi_get_attendance_data, qyapi_get_department_list, qyapi_get_department_member) in the DingTalk developer console"),
        60020 => Fatal("this machine's egress IP is not on the app's whitelist: add this server's IP to the app's IP whitelist (开发管理 → 服务器出口IP)"),
        50004 => Fatal("a configured department is outside the app's contact scope (通讯录权限范围): widen the scope or fix `departments`"),
        41100 | 850012 | 41041 => Fatal("DingTalk rejected the report dates (a date-arithmetic bug in attendsync; please report it with the month)"),
        90020 => Fatal("the org's monthly quota of metered DingTalk API calls is used up (standard edition: 5,000 per calendar month); DingTalk refuses attendance calls until the quota resets at the start of next calendar month. Stopping the job; lower `monthly_call_budget` or run less often"),
        43004 | 43005 => Fatal("DingTalk refused the request body in both JSON and form encoding (a bug in attendsync; please report it)"),
        40035 => Fatal("DingTalk rejected the request parameters"),
        _ => Fatal("DingTalk rejected the call"),
    }
}

/// What to fix when `gettoken` itself fails: a token error there means the credentials
/// (docs/vendors/dingtalk.md "Answers and errors": 40001 on `gettoken` is a bad
/// secret).
pub fn dingtalk_gettoken(code: i64) -> Class {
    match code {
        40001 | 40089 => Class::Fatal(
            "check `app_key` and `app_secret` in the job's [source]: DingTalk rejected them (use the internal app's Client ID and Client Secret)",
        ),
        other => dingtalk(other),
    }
}

/// The least wait DingTalk asks for after some throttling codes: per-minute
/// limits (90005, 90006: wait for the next minute) and temporary blocks of this
/// server, org or credentials (90001, 90003, 90004: back off minutes).
/// `None`: the usual throttle backoff.
pub fn dingtalk_retry_after(code: i64) -> Option<std::time::Duration> {
    match code {
        90005 | 90006 | 90001 | 90003 | 90004 => Some(std::time::Duration::from_secs(60)),
        _ => None,
    }
}

/// True when DingTalk refused the body's encoding, so the other one (JSON or
/// form) should be tried (docs/vendors/dingtalk.md "Body encoding").
pub fn dingtalk_wrong_encoding(code: i64) -> bool {
    matches!(
        code,
        dingtalk_code::BAD_CONTENT_TYPE | dingtalk_code::NEEDS_JSON
    )
}

/// Jiandaoyun `code` of an HTTP 400 answer (docs/vendors/jiandaoyun.md "Errors").
pub fn jiandaoyun(code: i64) -> Class {
    use Class::*;
    match code {
        8303 | 8304 | 8309 => Throttled,
        4012 | 9004 | 9007 | 1022 => Transient,
        8301 | 17018 => Fatal("check `api_key` in the job's [target]: Jiandaoyun rejected it"),
        8302 => Fatal("enable API access for this API key in Jiandaoyun (开放平台 → 密钥管理)"),
        17052 => Fatal("the API key may not be used from this machine's IP: update its IP whitelist"),
        17053 => Fatal("the API key may not access this app: update the key's app scope"),
        17054 => Fatal("the API key may not call this API: update the key's API scope"),
        2004 => Fatal("check `app_id` in the job's [target]: the app does not exist"),
        3000 => Fatal("check `entry_id` in the job's [target]: the form does not exist"),
        8017 => Fatal("the Jiandaoyun company is missing or closed"),
        7103 | 7206 | 7212 | 7221 => Fatal("a Jiandaoyun plan limit was reached (API paused, disabled, monthly data volume or API creation quota); contact the Jiandaoyun admin"),
        17024 | 17023 | 17033 | 17025 => Fatal("the batch was malformed (a bug in attendsync; please report it)"),
        17032 | 17034 => Fatal("a mapped field's type is not supported by the form; run `attendsync check --remote`"),
        1 | 3005 | 17017 | 4000 | 1010 | 4402 => Record,
        4001 => NotFound,
        4815 => TooLarge,
        _ => Fatal("Jiandaoyun rejected the call"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wecom_table() {
        assert_eq!(wecom(45009), Class::Throttled);
        assert_eq!(wecom(42001), Class::Token);
        assert_eq!(wecom(-1), Class::Transient);
        assert_eq!(wecom(301023), Class::TooLarge);
        assert!(matches!(wecom(60020), Class::Fatal(m) if m.contains("企业可信IP")));
        assert!(matches!(wecom(48002), Class::Fatal(m) if m.contains("可调用接口的应用")));
        assert!(matches!(wecom_gettoken(40001), Class::Fatal(m) if m.contains("secret")));
    }

    #[test]
    fn jiandaoyun_table() {
        assert_eq!(jiandaoyun(8303), Class::Throttled);
        assert_eq!(jiandaoyun(8304), Class::Throttled);
        assert_eq!(jiandaoyun(17017), Class::Record);
        assert_eq!(jiandaoyun(4001), Class::NotFound);
        assert!(matches!(jiandaoyun(8301), Class::Fatal(m) if m.contains("api_key")));
        assert!(matches!(jiandaoyun(3000), Class::Fatal(m) if m.contains("entry_id")));
    }

    #[test]
    fn dingtalk_table() {
        assert_eq!(dingtalk(90018), Class::Throttled);
        assert_eq!(dingtalk(90002), Class::Throttled);
        assert_eq!(dingtalk(45009), Class::Throttled);
        assert_eq!(dingtalk(-1), Class::Transient);
        assert_eq!(dingtalk(400001), Class::Transient);
        for code in [40014, 42001, 40001] {
            assert_eq!(dingtalk(code), Class::Token, "{code}");
        }
        assert_eq!(dingtalk(400002), Class::Record);
        assert_eq!(dingtalk(60003), Class::NotFound);
        assert_eq!(dingtalk(33012), Class::NotFound);
        assert!(matches!(dingtalk(90020), Class::Fatal(m) if m.contains("next calendar month")));
        assert!(matches!(dingtalk(60011), Class::Fatal(m) if m.contains("permission")));
        assert!(matches!(dingtalk(60020), Class::Fatal(m) if m.contains("whitelist")));
        assert!(matches!(dingtalk(40089), Class::Fatal(m) if m.contains("app_secret")));
        assert!(matches!(dingtalk(850012), Class::Fatal(m) if m.contains("date")));
        assert!(matches!(dingtalk(88), Class::Fatal(m) if m.contains("sub-code")));
        assert!(matches!(dingtalk(123456), Class::Fatal(_)));
        assert!(matches!(dingtalk_gettoken(40001), Class::Fatal(m) if m.contains("app_key")));
        assert_eq!(dingtalk_gettoken(90018), Class::Throttled);
        assert_eq!(
            dingtalk_retry_after(90006),
            Some(std::time::Duration::from_secs(60))
        );
        assert_eq!(dingtalk_retry_after(90018), None);
        assert!(dingtalk_wrong_encoding(43004) && dingtalk_wrong_encoding(43005));
        assert!(!dingtalk_wrong_encoding(43002));
    }
}
