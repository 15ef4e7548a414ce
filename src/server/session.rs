//! The status page's sessions: after a login with the token, a random session
//! id in an `HttpOnly`, `SameSite=Strict` cookie, and a CSRF token per session
//! that every form posts back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "attendsync_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; the oldest goes first beyond it.
const MAX_SESSIONS: usize = 1000;

struct Session {
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// A new session: (its id, its CSRF token).
    pub fn open(&self) -> (String, String) {
        let (id, csrf) = (random_hex(), random_hex());
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let session = Session {
            csrf: csrf.clone(),
            expires: now + SESSION_TTL,
        };
        map.insert(id.clone(), session);
        (id, csrf)
    }

    /// The CSRF token of a live session.
    pub fn csrf(&self, id: &str) -> Option<String> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    pub fn close(&self, id: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(id);
    }
}

/// The session id a `Cookie` header carries.
pub fn session_id(cookie_header: Option<&str>) -> Option<&str> {
    cookie_header?
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value of a new session (`Secure` when the page is
/// served over HTTPS through a proxy).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        SESSION_TTL.as_secs()
    )
}

/// Ends the session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_has_its_own_csrf_token_until_it_is_closed() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open();
        let (other, other_csrf) = sessions.open();
        assert_ne!(id, other);
        assert_ne!(csrf, other_csrf);
        assert_eq!(sessions.csrf(&id).as_deref(), Some(csrf.as_str()));
        sessions.close(&id);
        assert_eq!(sessions.csrf(&id), None);
        assert_eq!(sessions.csrf("made-up"), None);
    }

    #[test]
    fn the_cookie_is_found_among_others_and_set_strictly() {
        let header = format!("theme=dark; {COOKIE}=abc123; x=y");
        assert_eq!(session_id(Some(&header)), Some("abc123"));
        assert_eq!(session_id(Some("theme=dark")), None);
        let set = set_cookie("abc123", false);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        assert!(!set.contains("Secure"));
        assert!(set_cookie("abc123", true).ends_with("; Secure"));
    }
}
