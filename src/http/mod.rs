//! The HTTP layer every vendor shares: one client, token caching, pacing,
//! retries, and the tables that classify vendor error codes.
//!
//! Invariant: only this module knows vendor error codes; callers see a [`codes::Class`].

pub mod call;
pub mod codes;
pub mod pace;
pub mod rate;
pub mod retry;
pub mod token;

use std::time::Duration;

use codes::Class;

pub use reqwest::Url;

pub const USER_AGENT: &str = concat!("attendsync/", env!("CARGO_PKG_VERSION"));
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct ClientError(String);

/// Builds the shared client: rustls (ring), connect and request timeouts, a User-Agent.
pub fn client(request_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    // Installing fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(request_timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        // Vendor APIs answer where they are asked; a redirect followed could carry
        // an access token in the query to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientError(describe(e)))
}

/// `parts` joined by `/` under the base URL's own path: `https://proxy/wecom` and
/// `["cgi-bin", "gettoken"]` give `https://proxy/wecom/cgi-bin/gettoken`. The base
/// is parsed once, when the job is read, so a request does not parse its host again
/// and builds its path in one string.
pub fn endpoint_url(base: &Url, parts: &[&str]) -> Url {
    let mut path = base.path().trim_end_matches('/').to_string();
    for part in parts {
        path.push('/');
        path.push_str(part);
    }
    let mut url = base.clone();
    url.set_path(&path);
    url
}

/// What a redirect answer means, since none is followed (see [`client`]): the
/// job's `base_url` names a scheme or host the vendor has moved away from. The
/// target address is not shown; it could echo the query and its token.
pub fn redirected(status: reqwest::StatusCode) -> Option<String> {
    status.is_redirection().then(|| {
        format!(
            "HTTP {status}: the server redirects elsewhere and redirects are not followed; \
             check `base_url` in the job"
        )
    })
}

/// The most any answer may hold, unless its endpoint has its own cap below. Token,
/// roster, form-field, record-page and webhook answers are a few KiB to a few
/// hundred KiB; 1 MiB leaves room and still keeps a hostile or broken server from
/// growing the process (a 256 Mi container limit in deploy/) by streaming forever.
pub const BODY_CAP: usize = 1024 * 1024;
/// Report answers: WeCom `getcheckin_monthdata` (up to 100 users × a month of
/// rule and exception detail) and DingTalk attendance-report columns run to a few
/// MiB on large pages, so they get 8 MiB.
pub const REPORT_BODY_CAP: usize = 8 * 1024 * 1024;

/// Why an answer's body could not be read in full.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The answer is (or says it is) larger than the endpoint's cap: not retried,
    /// since the same request gets the same answer.
    #[error("the answer from {endpoint} is larger than its {cap_mib} MiB cap{declared}; it was not read", cap_mib = mib(*cap), declared = declared.map(|n| format!(" (Content-Length {n})")).unwrap_or_default())]
    TooLarge {
        endpoint: String,
        cap: usize,
        declared: Option<u64>,
    },
    /// The connection failed while reading (already [`describe`]d).
    #[error("{0}")]
    Transport(String),
}

fn mib(bytes: usize) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    if m.fract() == 0.0 {
        format!("{m:.0}")
    } else {
        format!("{m:.2}")
    }
}

/// Reads an answer's body, at most `cap` bytes: a `Content-Length` over the cap is
/// refused before anything is read, and a body without one (chunked) is read chunk
/// by chunk and given up as soon as it passes the cap, so memory stays bounded
/// whatever the server sends.
pub async fn read_capped(
    mut resp: reqwest::Response,
    cap: usize,
    endpoint: &str,
) -> Result<Vec<u8>, ReadError> {
    let too_large = |declared| ReadError::TooLarge {
        endpoint: endpoint.to_string(),
        cap,
        declared,
    };
    let declared = resp.content_length();
    if let Some(n) = declared {
        if n > cap as u64 {
            return Err(too_large(Some(n)));
        }
    }
    let mut body = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| ReadError::Transport(describe(e)))?
    {
        if body.len() + chunk.len() > cap {
            return Err(too_large(None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Describes a transport error without its URL: URLs carry access tokens and,
/// for token endpoints, secrets.
pub fn describe(err: reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_decode() {
        "could not decode the answer"
    } else if err.is_body() || err.is_request() {
        "request failed"
    } else {
        "HTTP error"
    };
    let err = err.without_url();
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    if chain.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {}", chain.join(": "))
    }
}

/// A message that came from outside (a vendor's error text could echo a parameter
/// back, and could hold newlines or terminal escapes) made fit for a log line,
/// stdout and SQLite: every secret removed ([`redact_secrets`]), then control
/// characters escaped ([`crate::text::clean`]).
pub fn redact(message: &str, secrets: &[&str]) -> String {
    crate::text::clean(&redact_secrets(message, secrets)).into_owned()
}

/// Removes every occurrence of each secret, in its plain form and percent-encoded
/// (upper- and lower-case hex, with and without `/` left as is: a vendor may echo
/// a query parameter back as it was sent), and nothing else. For text attendsync
/// wrote itself, whose line breaks are meant (an alert); see [`redact`].
pub fn redact_secrets(message: &str, secrets: &[&str]) -> String {
    // Every form of every secret, longest first: a secret that contains
    // another (an app secret starting with its app key) goes whole.
    let mut patterns: Vec<String> = secrets
        .iter()
        .filter(|s| s.len() >= 4)
        .flat_map(|s| std::iter::once(s.to_string()).chain(percent_forms(s)))
        .collect();
    patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    patterns.dedup();
    let mut out = message.to_string();
    for p in &patterns {
        if out.contains(p.as_str()) {
            out = out.replace(p.as_str(), "***");
        }
    }
    out
}

/// The percent-encoded forms of `s` a server might echo: as a URL component
/// (RFC 3986 unreserved bytes kept, or also `/`) and as a form value (what
/// reqwest's `.query()` sends: `*-._` kept, `~` encoded, space as `+`), each
/// in upper- and lower-case hex.
fn percent_forms(s: &str) -> Vec<String> {
    let component = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    let with_slash = |b: u8| component(b) || b == b'/';
    let form = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_');
    let kept: [&dyn Fn(u8) -> bool; 3] = [&component, &with_slash, &form];
    let mut forms = Vec::new();
    for keep in kept {
        for upper in [true, false] {
            for plus_space in [false, true] {
                let mut out = String::with_capacity(s.len() * 3);
                for &b in s.as_bytes() {
                    if keep(b) {
                        out.push(b as char);
                    } else if plus_space && b == b' ' {
                        out.push('+');
                    } else if upper {
                        out.push_str(&format!("%{b:02X}"));
                    } else {
                        out.push_str(&format!("%{b:02x}"));
                    }
                }
                if !forms.contains(&out) {
                    forms.push(out);
                }
            }
        }
    }
    forms
}

/// Calls and throttling answers per endpoint, for the run summary and benchmarks.
#[derive(Debug, Default)]
pub struct CallStats {
    inner: std::sync::Mutex<std::collections::BTreeMap<String, EndpointStats>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct EndpointStats {
    pub calls: u64,
    pub throttled: u64,
    pub retried: u64,
    /// Calls counted against a metered source's budget (DingTalk's attendance
    /// calls); not shown when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub metered: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CallStats {
    fn update(&self, endpoint: &str, f: impl FnOnce(&mut EndpointStats)) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(map.entry(endpoint.to_string()).or_default());
    }

    pub fn call(&self, endpoint: &str) {
        self.update(endpoint, |s| s.calls += 1);
    }

    pub fn throttled(&self, endpoint: &str) {
        self.update(endpoint, |s| s.throttled += 1);
    }

    pub fn retried(&self, endpoint: &str) {
        self.update(endpoint, |s| s.retried += 1);
    }

    /// A call of `endpoint` counted against a metered source's budget (the
    /// call itself is counted by [`CallStats::call`]).
    pub fn metered(&self, endpoint: &str) {
        self.update(endpoint, |s| s.metered += 1);
    }

    pub fn snapshot(&self) -> std::collections::BTreeMap<String, EndpointStats> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Calls counted against a metered source's budget, over every endpoint.
pub fn metered_calls(stats: &std::collections::BTreeMap<String, EndpointStats>) -> u64 {
    stats.values().map(|s| s.metered).sum()
}

/// A non-zero vendor code that the retry loop does not handle by itself.
#[derive(Debug)]
pub struct ApiFailure {
    pub code: i64,
    pub message: String,
    pub class: Class,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_plain_and_percent_encoded() {
        let secrets = ["abc+def/gh=", "p%ss w0rd"];
        let echoed = "corpsecret=abc%2Bdef%2Fgh%3D&x=abc%2bdef%2fgh%3d&y=abc%2Bdef/gh%3D \
                      z=abc+def/gh= a=p%25ss%20w0rd b=p%25ss+w0rd c=p%ss w0rd";
        let out = redact(echoed, &secrets);
        assert_eq!(out, "corpsecret=***&x=***&y=*** z=*** a=*** b=*** c=***");
        for form in ["abc", "def", "w0rd", "%2B", "%2b"] {
            assert!(!out.contains(form), "{form} left in {out}");
        }
    }

    /// A vendor's `errmsg` with a line break and terminal escapes reaches logs,
    /// stdout and SQLite escaped, on one line.
    #[test]
    fn vendor_text_is_escaped_after_redaction() {
        let out = redact("no\n2026-01-01 INFO forged\x1b[2J s3cr3t", &["s3cr3t"]);
        assert_eq!(out, "no\\n2026-01-01 INFO forged\\u{1b}[2J ***");
        assert_eq!(redact_secrets("a\nb s3cr3t", &["s3cr3t"]), "a\nb ***");
    }

    #[test]
    fn endpoint_urls_keep_the_base_path() {
        let at =
            |base: &str, path: &str| endpoint_url(&Url::parse(base).unwrap(), &[path]).to_string();
        assert_eq!(
            at("https://qyapi.weixin.qq.com", "cgi-bin/gettoken"),
            "https://qyapi.weixin.qq.com/cgi-bin/gettoken"
        );
        assert_eq!(
            at(
                "http://127.0.0.1:9/proxy/wecom/",
                "cgi-bin/checkin/getcheckin_monthdata"
            ),
            "http://127.0.0.1:9/proxy/wecom/cgi-bin/checkin/getcheckin_monthdata"
        );
        assert_eq!(
            at("http://127.0.0.1:9/proxy", "topapi/v1"),
            "http://127.0.0.1:9/proxy/topapi/v1"
        );
    }

    async fn serve(app: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn an_oversized_content_length_is_refused_before_reading() {
        let addr = serve(axum::Router::new().fallback(|| async { vec![b'x'; 4096] })).await;
        let http = client(Duration::from_secs(5)).unwrap();
        let resp = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(resp.content_length(), Some(4096));
        let err = read_capped(resp, 1024, "widget/list").await.unwrap_err();
        assert!(matches!(
            err,
            ReadError::TooLarge {
                declared: Some(4096),
                ..
            }
        ));
        let text = err.to_string();
        assert!(text.contains("widget/list"), "{text}");
        assert!(text.contains("Content-Length 4096"), "{text}");

        // At the cap is fine.
        let resp = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(read_capped(resp, 4096, "x").await.unwrap().len(), 4096);
    }

    #[tokio::test]
    async fn an_endless_stream_stops_at_the_cap() {
        let endless = || async {
            let chunk = bytes_chunk();
            let stream = futures::stream::repeat_with(move || {
                Ok::<_, std::convert::Infallible>(chunk.clone())
            });
            axum::body::Body::from_stream(stream)
        };
        let addr = serve(axum::Router::new().fallback(endless)).await;
        let http = client(Duration::from_secs(30)).unwrap();
        let resp = http.get(format!("http://{addr}/")).send().await.unwrap();
        assert_eq!(resp.content_length(), None);
        let started = std::time::Instant::now();
        let err = read_capped(resp, BODY_CAP, "widget/list")
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "the answer from widget/list is larger than its 1 MiB cap; it was not read"
        );
    }

    fn bytes_chunk() -> axum::body::Bytes {
        axum::body::Bytes::from(vec![b'x'; 16 * 1024])
    }

    /// A vendor's redirect is an answer, not an instruction: following it would
    /// send the access token in the query to whatever host it names.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let elsewhere_hits = Arc::new(AtomicUsize::new(0));
        let hits = elsewhere_hits.clone();
        let elsewhere = axum::Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            async { "stolen" }
        });
        let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let other_addr = other.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(other, elsewhere).await });
        let redirecting = axum::Router::new().fallback(move || async move {
            (
                axum::http::StatusCode::FOUND,
                [("location", format!("http://{other_addr}/steal"))],
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, redirecting).await });

        let http = client(Duration::from_secs(5)).unwrap();
        let answer = http
            .get(format!("http://{addr}/cgi-bin/gettoken?access_token=t0ken"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 302);
        assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
    }
}
