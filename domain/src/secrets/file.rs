//! The `file` backend: an environment's secrets in one file beside its
//! configuration (`<env>.secrets.json`, or `secrets.file`), each value
//! encrypted on its own with age to the recipients in `secrets.recipients`.
//! It reads and decrypts (with the identity in `ATELIER_SECRETS_IDENTITY` or
//! the file `ATELIER_SECRETS_IDENTITY_FILE`), encrypts, and writes the file
//! atomically (temporary file, fsync, rename, fsync of the directory).
//! Errors say what to do and never quote a value or an identity.

use super::document::{Document, Entry, FORMAT, Stage, Version};
use super::{SecretError, SecretStore, SecretValue, Staged, check_name};
use crate::config::Resolved;
use crate::rules::secrets as rules;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The variable holding an identity (`AGE-SECRET-KEY-1...`) itself.
pub const IDENTITY_VAR: &str = "ATELIER_SECRETS_IDENTITY";
/// The variable naming a file of identities (as `age-keygen` writes it).
pub const IDENTITY_FILE_VAR: &str = "ATELIER_SECRETS_IDENTITY_FILE";
const VALUE_PREFIX: &str = "age:";

/// One environment's encrypted secrets file.
#[derive(Debug, Clone)]
pub struct FileSecrets {
    path: PathBuf,
    env: String,
    recipients: Vec<String>,
}

fn store_error(message: impl Into<String>) -> SecretError {
    SecretError::Store(message.into())
}

impl FileSecrets {
    pub fn new(config: &Resolved) -> Self {
        let path = match &config.settings.secrets.file {
            Some(f) => PathBuf::from(f),
            None => config.dir.join(format!("{}.secrets.json", config.env)),
        };
        FileSecrets { path, env: config.env.clone(), recipients: config.settings.secrets.recipients.clone() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    /// The document, or a clear error: no file (create it with `secrets init`), or a corrupt one.
    pub fn read(&self) -> Result<Document, SecretError> {
        let shown = self.path.display();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(store_error(format!(
                    "the secrets file {shown} does not exist: create it with `atelier --env {} secrets init`",
                    self.env
                )));
            }
            Err(e) => return Err(store_error(format!("cannot read the secrets file {shown}: {e}"))),
        };
        let doc: Document = serde_json::from_str(&text).map_err(|e| {
            store_error(format!(
                "the secrets file {shown} is corrupt (line {}, column {}: {}): restore it from version control",
                e.line(),
                e.column(),
                match e.classify() {
                    serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "not valid JSON",
                    _ => "not the secrets file's layout",
                }
            ))
        })?;
        if doc.format != FORMAT {
            return Err(store_error(format!(
                "the secrets file {shown} is corrupt (its format is not {FORMAT}): restore it from version control"
            )));
        }
        Ok(doc)
    }

    /// Writes `doc` atomically: a crash leaves the old file or the new one, never half of one.
    pub fn write(&self, doc: &Document) -> Result<(), SecretError> {
        let fail =
            |e: std::io::Error| store_error(format!("cannot write the secrets file {}: {e}", self.path.display()));
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = self.path.file_name().and_then(|n| n.to_str()).unwrap_or("secrets.json");
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut text = serde_json::to_string_pretty(doc).map_err(|e| store_error(e.to_string()))?;
        text.push('\n');
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(fail)
    }

    fn parsed_recipients(&self) -> Result<Vec<age::x25519::Recipient>, SecretError> {
        if self.recipients.is_empty() {
            return Err(store_error(format!(
                "secrets.recipients is empty for environment '{}': add the age public keys (age1...) of the identities that may read its secrets to environments/{}.toml",
                self.env, self.env
            )));
        }
        self.recipients
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.parse::<age::x25519::Recipient>().map_err(|_| {
                    store_error(format!(
                        "secrets.recipients entry {} of environment '{}' is not an age public key (age1...): fix environments/{}.toml",
                        i + 1,
                        self.env,
                        self.env
                    ))
                })
            })
            .collect()
    }

    /// A new document for this environment (`secrets init`).
    pub fn new_document(&self) -> Result<Document, SecretError> {
        self.parsed_recipients()?;
        Ok(Document::new(&self.env, self.recipients.clone()))
    }

    /// Refuses to add values to a file encrypted to other recipients than the configuration's.
    pub fn check_recipients(&self, doc: &Document) -> Result<(), SecretError> {
        self.parsed_recipients()?;
        if doc.recipients != self.recipients {
            return Err(store_error(format!(
                "the secrets file {} is encrypted to other recipients than secrets.recipients of environment '{}': make them agree (a new recipient needs every value re-set by a holder of an old identity)",
                self.path.display(),
                self.env
            )));
        }
        Ok(())
    }

    /// Encrypts `value` to the environment's recipients.
    pub fn encrypt(&self, value: &SecretValue) -> Result<String, SecretError> {
        let recipients = self.parsed_recipients()?;
        let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| store_error(format!("cannot encrypt: {e}")))?;
        let mut out = Vec::new();
        let mut writer = encryptor.wrap_output(&mut out).map_err(|e| store_error(format!("cannot encrypt: {e}")))?;
        writer.write_all(value.expose().as_bytes()).map_err(|e| store_error(format!("cannot encrypt: {e}")))?;
        writer.finish().map_err(|e| store_error(format!("cannot encrypt: {e}")))?;
        Ok(format!("{VALUE_PREFIX}{}", STANDARD.encode(out)))
    }

    /// Decrypts `version` of secret `name` with the identity from the environment.
    pub fn decrypt(&self, name: &str, version: &Version) -> Result<SecretValue, SecretError> {
        self.decrypt_with(name, version, &identities()?)
    }

    /// [`FileSecrets::decrypt`] with the given identities (tools and tests).
    pub fn decrypt_with(
        &self,
        name: &str,
        version: &Version,
        identities: &[age::x25519::Identity],
    ) -> Result<SecretValue, SecretError> {
        let corrupt = || {
            store_error(format!(
                "the value of secret '{name}' version {} in {} is corrupt: restore the file from version control, or set the secret again",
                version.version,
                self.path.display()
            ))
        };
        let bytes =
            version.value.strip_prefix(VALUE_PREFIX).and_then(|b| STANDARD.decode(b).ok()).ok_or_else(corrupt)?;
        let decryptor = age::Decryptor::new_buffered(&bytes[..]).map_err(|_| corrupt())?;
        let mut reader = decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => store_error(format!(
                "wrong identity: the identity in ${IDENTITY_FILE_VAR} / ${IDENTITY_VAR} cannot decrypt secret '{name}' of environment '{}' (the file is encrypted to secrets.recipients): use the identity of one of those recipients",
                self.env
            )),
            _ => corrupt(),
        })?;
        let mut plain = String::new();
        reader.read_to_string(&mut plain).map_err(|_| corrupt())?;
        Ok(SecretValue::new(plain))
    }

    /// The entry `name`, with any pending version whose time has come promoted (in memory).
    pub fn entry(&self, doc: &Document, name: &str) -> Option<Entry> {
        let mut entry = doc.secrets.get(name)?.clone();
        rules::activate_due(&mut entry, chrono::Utc::now());
        Some(entry)
    }
}

/// Parses identities (`AGE-SECRET-KEY-1...` lines; `#` comments) as an identity file holds them.
pub fn parse_identities(text: &str, from: &str) -> Result<Vec<age::x25519::Identity>, SecretError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().map(str::trim).enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(
            line.parse::<age::x25519::Identity>().map_err(|_| {
                store_error(format!("{from} line {} is not an age identity (AGE-SECRET-KEY-1...)", n + 1))
            })?,
        );
    }
    if out.is_empty() {
        return Err(store_error(format!("{from} holds no age identity (AGE-SECRET-KEY-1...)")));
    }
    Ok(out)
}

/// Reads the identities from `ATELIER_SECRETS_IDENTITY` or the file `ATELIER_SECRETS_IDENTITY_FILE`.
fn identities() -> Result<Vec<age::x25519::Identity>, SecretError> {
    let (text, from) = match (
        std::env::var(IDENTITY_VAR).ok().filter(|v| !v.trim().is_empty()),
        std::env::var_os(IDENTITY_FILE_VAR),
    ) {
        (Some(text), _) => (text, format!("${IDENTITY_VAR}")),
        (None, Some(file)) => {
            let shown = PathBuf::from(&file).display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|e| {
                store_error(format!("cannot read the identity file {shown} (${IDENTITY_FILE_VAR}): {e}"))
            })?;
            (text, shown)
        }
        (None, None) => {
            return Err(store_error(format!(
                "no identity to decrypt secrets: set ${IDENTITY_FILE_VAR} to the file of one of the environment's identities (or ${IDENTITY_VAR} to the identity itself)"
            )));
        }
    };
    parse_identities(&text, &from)
}

/// A new identity and its recipient (public key), as `age-keygen` makes them.
pub fn generate_identity() -> (SecretValue, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    (SecretValue::new(identity.to_string().expose_secret().to_owned()), public)
}

impl SecretStore for FileSecrets {
    fn get(&self, name: &str) -> Result<Option<SecretValue>, SecretError> {
        Ok(self.staged(name)?.map(|s| s.current))
    }

    fn staged(&self, name: &str) -> Result<Option<Staged>, SecretError> {
        check_name(name)?;
        let doc = self.read()?;
        let Some(entry) = self.entry(&doc, name) else { return Ok(None) };
        let Some(current) = entry.stage(Stage::Current) else { return Ok(None) };
        let mut others = Vec::new();
        for stage in [Stage::Pending, Stage::Previous] {
            if let Some(v) = entry.stage(stage) {
                others.push((v.version, self.decrypt(name, v)?));
            }
        }
        Ok(Some(Staged {
            current: self.decrypt(name, current)?,
            current_version: Some(current.version),
            others,
            user: current.user.clone(),
        }))
    }

    fn hint(&self, name: &str) -> String {
        format!("set it with `atelier --env {} secrets set {name}` (file {})", self.env, self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::document::{Entry, Kind};

    fn store(dir: &Path, recipients: Vec<String>) -> FileSecrets {
        FileSecrets { path: dir.join("t.secrets.json"), env: "t".into(), recipients }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("atelier-secrets-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn version(value: String) -> Version {
        Version {
            version: 1,
            stage: Stage::Current,
            created_at: chrono::Utc::now(),
            activates_at: None,
            current_since: None,
            retired_at: None,
            user: None,
            value,
        }
    }

    #[test]
    fn a_value_round_trips_and_only_its_recipients_read_it() {
        let dir = tmp("roundtrip");
        let (id, public) = generate_identity();
        let (other, _) = generate_identity();
        let fs = store(&dir, vec![public]);
        let mine = parse_identities(id.expose(), "test").unwrap();
        let theirs = parse_identities(other.expose(), "test").unwrap();
        let encrypted = fs.encrypt(&SecretValue::new("hunter2-value")).unwrap();
        assert!(encrypted.starts_with("age:") && !encrypted.contains("hunter2"), "{encrypted}");
        // Two encryptions of one value differ (nothing to compare across files).
        assert_ne!(encrypted, fs.encrypt(&SecretValue::new("hunter2-value")).unwrap());
        let v = version(encrypted);
        assert_eq!(fs.decrypt_with("x", &v, &mine).unwrap().expose(), "hunter2-value");
        let wrong = fs.decrypt_with("x", &v, &theirs).unwrap_err().to_string();
        assert!(wrong.starts_with("wrong identity") && wrong.contains("'x'"), "{wrong}");
        let mut broken = v.clone();
        broken.value = "age:bm90IGFuIGFnZSBmaWxl".into();
        let corrupt = fs.decrypt_with("x", &broken, &mine).unwrap_err().to_string();
        assert!(corrupt.contains("is corrupt") && corrupt.contains("version 1"), "{corrupt}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_file_is_written_whole_and_a_corrupt_one_is_refused_clearly() {
        let dir = tmp("write");
        let (_, public) = generate_identity();
        let fs = store(&dir, vec![public.clone()]);
        let missing = fs.read().unwrap_err().to_string();
        assert!(missing.contains("does not exist") && missing.contains("secrets init"), "{missing}");
        let mut doc = fs.new_document().unwrap();
        let value = fs.encrypt(&SecretValue::new("v")).unwrap();
        doc.secrets.insert("a".into(), Entry { kind: Kind::Token, versions: vec![version(value)] });
        fs.write(&doc).unwrap();
        assert_eq!(fs.read().unwrap(), doc);
        // Only the file itself is left: no temporary file beside it.
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["t.secrets.json"]);
        let text = std::fs::read_to_string(fs.path()).unwrap();
        std::fs::write(fs.path(), &text[..text.len() / 2]).unwrap();
        let corrupt = fs.read().unwrap_err().to_string();
        assert!(corrupt.contains("is corrupt") && corrupt.contains("restore it"), "{corrupt}");
        std::fs::write(fs.path(), text.replace(FORMAT, "other/9")).unwrap();
        assert!(fs.read().unwrap_err().to_string().contains("format"));
        // Recipients that differ from the configuration's, or that are not age keys.
        let other = store(&dir, vec!["age1notakey".into()]);
        assert!(other.encrypt(&SecretValue::new("v")).unwrap_err().to_string().contains("not an age public key"));
        let (_, second) = generate_identity();
        let moved = store(&dir, vec![second]);
        assert!(moved.check_recipients(&doc).unwrap_err().to_string().contains("other recipients"));
        assert!(fs.check_recipients(&doc).is_ok());
        assert!(parse_identities("nonsense", "f").err().unwrap().to_string().contains("line 1"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
