//! Secrets at rest: each secret (its variables and files) is serialised and sealed with
//! XChaCha20-Poly1305 under a key kept in a file of its own (created with mode 0600 on first
//! use), so a copy of the database alone reveals nothing. The secret's name is the associated
//! data: a sealed value moved to another name does not open.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretData {
    pub env_vars: Vec<(String, String)>,
    /// `(path in the job, content)`.
    pub files: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or create the secrets key {path}: {source}")]
    Key { path: String, source: std::io::Error },
    #[error("the secrets key {0} is damaged (it must be exactly 32 bytes); restore it from a backup")]
    BadKey(String),
    #[error("secret '{0}' cannot be opened: it was sealed with another key or altered")]
    Open(String),
    #[error("secret '{0}' could not be sealed")]
    Seal(String),
}

pub struct Sealer {
    cipher: XChaCha20Poly1305,
    /// The key that signs links (derived from the secrets key, so every replica shares it).
    mac_key: [u8; 32],
}

const NONCE: usize = 24;

impl Sealer {
    /// Loads the key at `path`, creating a new random one (mode 0600) if there is none.
    pub fn open_or_create(path: &Path) -> Result<Sealer, SecretError> {
        let err = |source| SecretError::Key { path: path.display().to_string(), source };
        let key = match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(_) => return Err(SecretError::BadKey(path.display().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(err)?;
                }
                let key = XChaCha20Poly1305::generate_key(&mut OsRng).to_vec();
                // Made aside and linked in place: another server replica starting at the same
                // time keeps whichever key was linked first, whole.
                let aside = path.with_extension(format!("new.{}", std::process::id()));
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&aside)
                    .map_err(err)?;
                f.write_all(&key).and_then(|()| f.sync_all()).map_err(err)?;
                let linked = std::fs::hard_link(&aside, path);
                let _ = std::fs::remove_file(&aside);
                match linked {
                    Ok(()) => key,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(path).map_err(err)?,
                    Err(e) => return Err(err(e)),
                }
            }
            Err(e) => return Err(err(e)),
        };
        use sha2::Digest as _;
        let mac_key: [u8; 32] =
            sha2::Sha256::new().chain_update(b"salve: signed links\0").chain_update(&key).finalize().into();
        Ok(Sealer { cipher: XChaCha20Poly1305::new(Key::from_slice(&key)), mac_key })
    }

    /// An HMAC-SHA-256 of `message` in hex, under a key only the server (and its replicas) has.
    pub fn sign(&self, message: &str) -> String {
        use hmac::Mac as _;
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.mac_key) else {
            return String::new();
        };
        mac.update(message.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `signature` is [`Sealer::sign`]'s of `message` (compared in constant time).
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        use hmac::Mac as _;
        let Some(bytes) = (0..signature.len())
            .step_by(2)
            .map(|i| signature.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
        else {
            return false;
        };
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.mac_key) else { return false };
        mac.update(message.as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    pub fn seal(&self, name: &str, data: &SecretData) -> Result<Vec<u8>, SecretError> {
        let plain = serde_json::to_vec(data).map_err(|_| SecretError::Seal(name.to_owned()))?;
        self.seal_bytes(name, &plain)
    }

    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<SecretData, SecretError> {
        let plain = self.open_bytes(name, sealed)?;
        serde_json::from_slice(&plain).map_err(|_| SecretError::Open(name.to_owned()))
    }

    /// Seals any bytes under `name` (the associated data: they open under that name only).
    pub fn seal_bytes(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>, SecretError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, Payload { msg: plain, aad: name.as_bytes() })
            .map_err(|_| SecretError::Seal(name.to_owned()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn open_bytes(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>, SecretError> {
        if sealed.len() < NONCE {
            return Err(SecretError::Open(name.to_owned()));
        }
        let (nonce, body) = sealed.split_at(NONCE);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: name.as_bytes() })
            .map_err(|_| SecretError::Open(name.to_owned()))
    }
}
