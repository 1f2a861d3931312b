//! Authentication, the pure parts: staff passwords (argon2 PHC strings), the
//! token signing key set and its text format, and the HS256 tokens (JWT) the
//! API hands out and checks. No I/O: the daemon reads the secret and the user.
//!
//! Key set format (the secret named by `auth.jwt_secret`, e.g.
//! `ATELIER_SECRET_JWT_SIGNING_KEY`): comma-separated `kid:base64key` entries,
//! the first is the current key (signs new tokens), the others are previous
//! keys (still accepted, so a rotation logs nobody out):
//! `k2026b:9q3J...=,k2026a:Xf0a...=`. A kid is 1 to 32 of `[A-Za-z0-9_-]`; a
//! key is standard or URL-safe base64 of at least 32 bytes.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use std::fmt;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The shortest signing key accepted, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

// ---------------------------------------------------------------- passwords

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must be 8 to 1024 characters")]
    Length,
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hashes a password into an argon2id PHC string with a random salt.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    use argon2::password_hash::PasswordHasher;
    let n = password.chars().count();
    if !(8..=1024).contains(&n) {
        return Err(PasswordError::Length);
    }
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::PasswordVerifier;
    argon2::Argon2::default().verify_password(password.as_bytes(), hash).is_ok()
}

/// A hash of nothing anyone types, to spend the same time on an unknown email
/// as on a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a password of anyone").unwrap_or_default())
}

// ---------------------------------------------------------------- keys

/// One signing key: its id (`kid`) and its bytes. Never printed.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    secret: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, <redacted>)", self.kid)
    }
}

/// The current key and the previous ones still accepted.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// Generated at start (where `policy.allow_ephemeral_token_key` lets an
    /// environment run without the secret): tokens die with the process.
    pub ephemeral: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key set is empty: expected kid:base64key[,kid:base64key...]")]
    Empty,
    #[error("entry {0}: expected kid:base64key")]
    Entry(usize),
    #[error("entry {0}: a kid is 1 to 32 letters, digits, '-' or '_'")]
    Kid(usize),
    #[error("entry {0}: the key is not base64")]
    Base64(usize),
    #[error("entry {0}: the key is shorter than {MIN_KEY_BYTES} bytes")]
    Short(usize),
    #[error("kid '{0}' appears twice")]
    Duplicate(String),
}

fn valid_kid(kid: &str) -> bool {
    (1..=32).contains(&kid.len()) && kid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl KeySet {
    /// Parses the secret's value (see the module's doc). Errors never quote the key.
    pub fn parse(text: &str) -> Result<KeySet, KeyError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        for (i, entry) in text.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let n = i + 1;
            let (kid, b64) = entry.split_once(':').ok_or(KeyError::Entry(n))?;
            let (kid, b64) = (kid.trim(), b64.trim());
            if !valid_kid(kid) {
                return Err(KeyError::Kid(n));
            }
            let secret = STANDARD
                .decode(b64)
                .or_else(|_| URL_SAFE.decode(b64))
                .or_else(|_| URL_SAFE_NO_PAD.decode(b64))
                .map_err(|_| KeyError::Base64(n))?;
            if secret.len() < MIN_KEY_BYTES {
                return Err(KeyError::Short(n));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(KeyError::Duplicate(kid.to_owned()));
            }
            keys.push(SigningKey { kid: kid.to_owned(), secret });
        }
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(KeySet { keys, ephemeral: false })
    }

    /// A random key for this process only (see `policy.allow_ephemeral_token_key`).
    pub fn ephemeral() -> KeySet {
        let secret: [u8; 32] = rand::random();
        KeySet { keys: vec![SigningKey { kid: "ephemeral".into(), secret: secret.to_vec() }], ephemeral: true }
    }

    /// Formats a key set in the secret's format (tools and tests).
    pub fn format(entries: &[(&str, &[u8])]) -> String {
        entries.iter().map(|(kid, key)| format!("{kid}:{}", STANDARD.encode(key))).collect::<Vec<_>>().join(",")
    }

    /// This set's keys, then every key of `previous` not already here: the
    /// set after a rotation.
    pub fn with_previous(mut self, previous: &KeySet) -> KeySet {
        for k in &previous.keys {
            if self.find(&k.kid).is_none() {
                self.keys.push(k.clone());
            }
        }
        self
    }

    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Signs `claims` with the current key.
    pub fn sign(&self, claims: &Claims) -> String {
        self.sign_with(self.current(), claims)
    }

    fn sign_with(&self, key: &SigningKey, claims: &Claims) -> String {
        let header = Header { alg: "HS256".into(), typ: Some("JWT".into()), kid: Some(key.kid.clone()) };
        // Plain structs of strings and numbers always serialize.
        let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
        let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{h}.{c}");
        let sig = URL_SAFE_NO_PAD.encode(mac(&key.secret, signing_input.as_bytes()));
        format!("{signing_input}.{sig}")
    }

    /// Checks a token's signature (by its `kid`, against the current or a
    /// previous key) and its expiry.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let header: Header = decode_part(h)?;
        if header.alg != "HS256" {
            return Err(TokenError::Malformed);
        }
        let key = header.kid.as_deref().and_then(|k| self.find(k)).ok_or(TokenError::UnknownKey)?;
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed)?;
        let mut m = HmacSha256::new_from_slice(&key.secret).map_err(|_| TokenError::BadSignature)?;
        m.update(h.as_bytes());
        m.update(b".");
        m.update(c.as_bytes());
        m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = decode_part(c)?;
        if claims.exp <= now.timestamp() {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: new_from_slice cannot fail.
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

// ---------------------------------------------------------------- tokens

/// What a token says: who (`sub`, a user id), for which business (`bid`),
/// issued and expiring when (Unix seconds). The role is read from the user at
/// each request, so a changed role or a disabled user takes effect at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: i64,
    pub bid: i64,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

impl Claims {
    pub fn new(user_id: i64, business_id: i64, role: &str, now: DateTime<Utc>, lifetime: std::time::Duration) -> Self {
        let iat = now.timestamp();
        let exp = iat.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
        Claims { sub: user_id, bid: business_id, role: role.to_owned(), iat, exp }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn set(entries: &[(&str, u8)]) -> KeySet {
        let keys: Vec<(&str, Vec<u8>)> = entries.iter().map(|(k, b)| (*k, vec![*b; 32])).collect();
        let refs: Vec<(&str, &[u8])> = keys.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        KeySet::parse(&KeySet::format(&refs)).unwrap()
    }

    #[test]
    fn a_token_round_trips_and_expires() {
        let keys = set(&[("k1", 1)]);
        let claims = Claims::new(7, 3, "admin", t(0), Duration::from_secs(60));
        let token = keys.sign(&claims);
        assert_eq!(keys.verify(&token, t(30)), Ok(claims));
        assert_eq!(keys.verify(&token, t(60)), Err(TokenError::Expired));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_the_old_key_is_dropped() {
        let old = set(&[("k0", 1)]);
        let token = old.sign(&Claims::new(1, 1, "cashier", t(0), Duration::from_secs(60)));
        let rotated = set(&[("k1", 2), ("k0", 1)]);
        assert!(rotated.verify(&token, t(1)).is_ok());
        assert_eq!(rotated.current().kid, "k1");
        let finished = set(&[("k1", 2)]);
        assert_eq!(finished.verify(&token, t(1)), Err(TokenError::UnknownKey));
    }

    #[test]
    fn tampering_is_caught() {
        let keys = set(&[("k1", 1)]);
        let token = keys.sign(&Claims::new(1, 1, "cashier", t(0), Duration::from_secs(60)));
        let forged_claims = URL_SAFE_NO_PAD.encode(br#"{"sub":1,"bid":2,"role":"admin","iat":0,"exp":9999999999}"#);
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(keys.verify(&forged, t(1)), Err(TokenError::BadSignature));
        let same_kid_other_key = set(&[("k1", 9)]);
        assert_eq!(same_kid_other_key.verify(&token, t(1)), Err(TokenError::BadSignature));
        assert_eq!(keys.verify("a.b", t(1)), Err(TokenError::Malformed));
        let none_alg = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","kid":"k1"}"#), parts[1]);
        assert_eq!(keys.verify(&none_alg, t(1)), Err(TokenError::Malformed));
    }

    #[test]
    fn key_sets_parse_strictly_and_never_quote_keys() {
        assert_eq!(KeySet::parse("").unwrap_err(), KeyError::Empty);
        assert_eq!(KeySet::parse("nokid").unwrap_err(), KeyError::Entry(1));
        assert_eq!(KeySet::parse("k1:c2hvcnQ=").unwrap_err(), KeyError::Short(1));
        assert_eq!(KeySet::parse("k 1:AAAA").unwrap_err(), KeyError::Kid(1));
        let err = KeySet::parse("k1:!!!notbase64secret!!!").unwrap_err();
        assert!(!err.to_string().contains("notbase64secret"));
        let k = "k1:".to_owned() + &STANDARD.encode([5u8; 32]);
        assert_eq!(KeySet::parse(&format!("{k},{k}")).unwrap_err(), KeyError::Duplicate("k1".into()));
        assert!(!format!("{:?}", KeySet::parse(&k).unwrap()).contains(&STANDARD.encode([5u8; 32])));
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_eq!(hash_password("short"), Err(PasswordError::Length));
    }
}
