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

/// WeCom `errcode` (wecom.md §9).
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

/// Jiandaoyun `code` of an HTTP 400 answer (jiandaoyun.md §10).
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
}
