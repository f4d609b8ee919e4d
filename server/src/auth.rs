//! Tokens and what they may do.

use std::collections::BTreeSet;

use base64::Engine as _;
use telemark_engine::query::Access;

use crate::config::TokenConfig;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials, or unknown ones.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known credentials without the right.
    #[error("{0}")]
    PermissionDenied(String),
}

/// The caller's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's name (or "anonymous" when authentication is off).
    pub name: String,
    /// Its secret, to hand back as a bearer token after a basic-auth handshake.
    pub token: Option<String>,
    /// The databases it may read and write.
    pub access: Access,
}

impl Principal {
    /// Fails unless the principal may read `database`.
    pub fn require_read(&self, database: &str) -> Result<(), AuthError> {
        if self.access.can_read(database) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied(format!("token `{}` may not read database `{database}`", self.name)))
        }
    }

    /// Fails unless the principal may write `database`.
    pub fn require_write(&self, database: &str) -> Result<(), AuthError> {
        if self.access.can_write(database) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied(format!("token `{}` may not write database `{database}`", self.name)))
        }
    }
}

/// The configured tokens.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Vec<TokenConfig>,
}

fn rights(list: &[String]) -> Option<BTreeSet<String>> {
    if list.iter().any(|d| d == "*") { None } else { Some(list.iter().cloned().collect()) }
}

/// Compares secrets without an early exit, so timing does not reveal a prefix.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Builds the authenticator; with no tokens, authentication is off.
    pub fn new(tokens: Vec<TokenConfig>) -> Self {
        Authenticator { tokens }
    }

    /// True if requests need credentials.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn principal(t: &TokenConfig) -> Principal {
        Principal {
            name: t.name.clone(),
            token: Some(t.token.clone()),
            access: Access { read: rights(&t.read), write: rights(&t.write) },
        }
    }

    /// Checks a username and password where the password is a token
    /// (MQTT CONNECT, InfluxDB 1 `u`/`p` parameters).
    pub fn check_password(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal { name: "anonymous".into(), token: None, access: Access::all() });
        }
        self.tokens
            .iter()
            .find(|t| same(&t.token, password) && t.username.as_deref().is_none_or(|u| u == user))
            .map(Self::principal)
            .ok_or_else(|| AuthError::Unauthenticated("invalid username or password".into()))
    }

    /// Checks an `authorization` header value: `Bearer <token>`, `Token <token>` or `Basic <base64 user:password>`.
    pub fn check(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        if !self.enabled() {
            return Ok(Principal { name: "anonymous".into(), token: None, access: Access::all() });
        }
        let header = header.ok_or_else(|| {
            AuthError::Unauthenticated("missing credentials: send `Authorization: Bearer <token>`".into())
        })?;
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header, ""));
        let rest = rest.trim();
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" | "token" => self
                .tokens
                .iter()
                .find(|t| same(&t.token, rest))
                .map(Self::principal)
                .ok_or_else(|| AuthError::Unauthenticated("invalid token".into())),
            "basic" => {
                // Go clients send unpadded base64: accept both.
                let trimmed = rest.trim_end_matches('=');
                let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                    .decode(trimmed)
                    .map_err(|_| AuthError::Unauthenticated("malformed basic credentials".into()))?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| AuthError::Unauthenticated("malformed basic credentials".into()))?;
                let (user, password) = text.split_once(':').unwrap_or(("", text.as_str()));
                self.check_password(user, password)
            }
            other => Err(AuthError::Unauthenticated(format!(
                "unsupported authorization scheme `{other}`: use `Bearer <token>`, `Token <token>` or `Basic`"
            ))),
        }
    }
}

/// MQTT devices: a verified client certificate, or an API token as the CONNECT password.
#[derive(Debug, Clone)]
pub struct MqttAuth(pub Authenticator);

impl telemark_ingest::mqtt::Authorizer for MqttAuth {
    fn authenticate(&self, c: &telemark_ingest::mqtt::Credentials<'_>) -> Result<telemark_ingest::mqtt::Grant, String> {
        use telemark_ingest::mqtt::Grant;
        if let Some(id) = c.certificate {
            // The CA vouched for the device; topic policies bound what it may publish.
            return Ok(Grant::device(format!("certificate `{id}`")));
        }
        if !self.0.enabled() {
            return Ok(Grant::all("anonymous"));
        }
        let password = c.password.ok_or("no password: send an API token as the MQTT password")?;
        let password = std::str::from_utf8(password).map_err(|_| "the password is not a UTF-8 token".to_string())?;
        let principal = self.0.check_password(c.username.unwrap_or(""), password).map_err(|e| e.to_string())?;
        Ok(Grant {
            name: format!("token `{}`", principal.name),
            databases: principal.access.write.clone(),
            read: principal.access.read.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(vec![
            TokenConfig {
                name: "a".into(),
                token: "sa".into(),
                read: vec!["A".into()],
                write: vec!["A".into()],
                username: None,
            },
            TokenConfig {
                name: "admin".into(),
                token: "root".into(),
                read: vec!["*".into()],
                write: vec![],
                username: Some("admin".into()),
            },
        ])
    }

    #[test]
    fn schemes_and_rights() {
        let a = auth();
        let p = a.check(Some("Bearer sa")).unwrap();
        assert!(p.require_read("A").is_ok() && p.require_read("B").is_err());
        assert_eq!(a.check(Some("Token sa")).unwrap().name, "a");
        assert!(matches!(a.check(Some("Bearer nope")), Err(AuthError::Unauthenticated(_))));
        assert!(matches!(a.check(None), Err(AuthError::Unauthenticated(_))));
        // "admin:root" padded and unpadded
        assert_eq!(a.check(Some("Basic YWRtaW46cm9vdA==")).unwrap().name, "admin");
        assert_eq!(a.check(Some("Basic YWRtaW46cm9vdA")).unwrap().name, "admin");
        let admin = a.check(Some("Basic YWRtaW46cm9vdA")).unwrap();
        assert!(admin.require_read("anything").is_ok() && admin.require_write("A").is_err());
        assert!(Authenticator::new(vec![]).check(None).unwrap().access.can_write("x"));
    }
}
