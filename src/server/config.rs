//! `attendsync.toml` `[server]` in the config dir: where the daemon listens and
//! the token that guards its API, metrics and page (README "The daemon's HTTP
//! API"). The file is optional: without it the daemon serves nothing.

use std::net::SocketAddr;
use std::path::Path;

use crate::http::Url;
use crate::secret::Secret;
use crate::settings::is_loopback;
use crate::toml_reader::{parse, ConfigError, ConfigErrors, EnvLookup, SourceFile, Table};

/// The file, in the config dir.
pub const SERVER_FILE: &str = "attendsync.toml";
/// Loopback by default: a TLS reverse proxy goes in front for anything else.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// A shorter token can be guessed.
pub const MIN_TOKEN_CHARS: usize = 16;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Guards the API, `/metrics` and the page; from the environment only.
    pub token: Secret,
    /// What vendors call for callbacks.
    pub public_url: Option<Url>,
}

/// Reads `[server]` of the config dir's `attendsync.toml`; `None` when the
/// file does not exist. Every problem is reported with its line.
pub fn load(config_dir: &Path, env: EnvLookup<'_>) -> Result<Option<ServerConfig>, ConfigErrors> {
    let path = config_dir.join(SERVER_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            let error =
                SourceFile::new(&path, "").error(None, "", format!("cannot read the file: {e}"));
            return Err(ConfigErrors(vec![error]));
        }
    };
    let file = SourceFile::new(&path, text.clone());
    let mut errors = Vec::new();
    let config = parse(&file, &text, &mut errors).and_then(|doc| {
        let root = Table::root(&file, &doc, Some(env));
        let server = match root.table("server", &mut errors) {
            Some(server) => read_server(&server, &mut errors),
            None if !root.contains("server") => {
                errors.push(root.error(root.span(), "server", "required table is missing"));
                None
            }
            None => None,
        };
        root.finish(&["server"], &mut errors);
        server
    });
    match (config, errors.is_empty()) {
        (Some(config), true) => Ok(Some(config)),
        _ => Err(ConfigErrors(errors)),
    }
}

fn read_server(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<ServerConfig> {
    let listen = read_listen(t, errors);
    let token = read_token(t, errors);
    let public_url = read_public_url(t, errors);
    t.finish(&["listen", "token", "public_url"], errors);
    Some(ServerConfig {
        listen: listen?,
        token: token?,
        public_url: public_url?,
    })
}

fn read_listen(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<SocketAddr> {
    let Some(text) = t.string("listen", errors) else {
        return (!t.contains("listen")).then(default_listen);
    };
    match text.value.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let message = format!(
                "{} is not an address and port, e.g. \"{DEFAULT_LISTEN}\"",
                t.shown(&text)
            );
            errors.push(t.error(text.span, "listen", message));
            None
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}

/// The token: required, from `${VAR}` (a token written into the file would be
/// read by whoever reads the config), at least [`MIN_TOKEN_CHARS`] long.
fn read_token(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Secret> {
    let value = t.required_from_env("token", "ATTENDSYNC_API_TOKEN", errors)?;
    // It travels in an HTTP header: only visible ASCII can be read back from
    // one, and spaces at its ends are trimmed away. The value is not shown.
    let token = value.value.as_str();
    if !token.chars().all(|c| c == ' ' || c.is_ascii_graphic()) || token.trim() != token {
        let message = "must be visible ASCII characters (inner spaces allowed): \
                       an HTTP client cannot send anything else in a header";
        errors.push(t.error(value.span, "token", message));
        return None;
    }
    if value.value.chars().count() < MIN_TOKEN_CHARS {
        let message = format!("is too short: at least {MIN_TOKEN_CHARS} characters");
        errors.push(t.error(value.span, "token", message));
        return None;
    }
    Some(Secret::new(value.value))
}

/// `Some(None)` when not given; `None` when given and wrong.
fn read_public_url(t: &Table<'_, '_>, errors: &mut Vec<ConfigError>) -> Option<Option<Url>> {
    let Some(text) = t.string("public_url", errors) else {
        return (!t.contains("public_url")).then_some(None);
    };
    match Url::parse(&text.value) {
        Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url)) => {
            Some(Some(url))
        }
        Ok(_) => {
            let message = "must be an https:// URL (vendors call it over the internet)";
            errors.push(t.error(text.span, "public_url", message));
            None
        }
        Err(e) => {
            errors.push(t.error(text.span, "public_url", format!("not a valid URL: {e}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Option<ServerConfig>, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(SERVER_FILE), text).expect("write");
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        load(dir.path(), &lookup).map_err(|e| e.to_string())
    }

    fn text_of_env() -> &'static str {
        "[server]\ntoken = \"${T}\"\n"
    }

    const TOKEN: (&str, &str) = ("ATTENDSYNC_API_TOKEN", "a-long-enough-token-0123");

    #[test]
    fn no_file_serves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(load(dir.path(), &|_| None).expect("no file").is_none());
    }

    #[test]
    fn defaults_to_loopback_with_the_token_from_the_environment() {
        let text = "[server]\ntoken = \"${ATTENDSYNC_API_TOKEN}\"\n";
        let config = load_text(text, &[TOKEN]).expect("ok").expect("some");
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.token.expose(), TOKEN.1);
        assert!(config.public_url.is_none());
    }

    #[test]
    fn every_problem_is_reported_with_its_line_and_no_secret() {
        let text = "[server]\nlisten = \"localhost\"\ntoken = \"${SHORT}\"\npublic_url = \"http://sync.example.com\"\ncolour = 1\n";
        let errors = load_text(text, &[("SHORT", "abc123secret")]).expect_err("refused");
        for needle in [
            "attendsync.toml:2",
            "server.listen",
            "is not an address and port",
            "attendsync.toml:3",
            "is too short",
            "attendsync.toml:4",
            "must be an https:// URL",
            "attendsync.toml:5",
        ] {
            assert!(errors.contains(needle), "{needle} in {errors}");
        }
        assert!(!errors.contains("abc123secret"), "{errors}");
    }

    #[test]
    fn a_token_written_in_the_file_or_missing_is_refused() {
        let literal = load_text("[server]\ntoken = \"a-long-enough-token-0123\"\n", &[]);
        assert!(literal
            .expect_err("refused")
            .contains("must come from the environment"));
        let missing = load_text("[server]\nlisten = \"127.0.0.1:9000\"\n", &[]);
        assert!(missing
            .expect_err("refused")
            .contains("required key is missing"));
        let unset = load_text("[server]\ntoken = \"${NOPE}\"\n", &[]);
        assert!(unset.expect_err("refused").contains("`NOPE` is not set"));
        for bad in [
            "pässwörter-für-die-api-0123",
            " a-long-enough-token-0123",
            "a-long-enough-token-0123\t",
        ] {
            let refused = load_text(text_of_env(), &[("T", bad)]).expect_err("refused");
            assert!(refused.contains("visible ASCII"), "{refused}");
            assert!(!refused.contains(bad.trim()), "{refused}");
        }
        let sixteen = load_text(text_of_env(), &[("T", "sixteen ch token")]);
        assert!(sixteen.is_ok());
        let no_table = load_text("listen = \"127.0.0.1:9000\"\n", &[]);
        assert!(no_table.expect_err("refused").contains("server"));
    }
}
