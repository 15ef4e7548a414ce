//! The message encryption WeCom callbacks and DingTalk's HTTP push share
//! (docs/vendors/events.md "Callback crypto"): a SHA-1 signature over the
//! sorted token, timestamp, nonce and ciphertext, and AES-256-CBC of
//! `16 random bytes ‖ u32 length ‖ message ‖ owner` padded to 32-byte blocks.
//!
//! Everything that comes in is checked before it is trusted: the signature
//! (in constant time) before anything is decrypted, then the padding, the
//! length frame and the owner (the WeCom corp id, the DingTalk app key).

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use sha1::{Digest, Sha1};

type Encryptor = cbc::Encryptor<aes::Aes256>;
type Decryptor = cbc::Decryptor<aes::Aes256>;

/// Padding is to multiples of 32 bytes, not AES's 16.
const PAD_BLOCK: usize = 32;
/// The random prefix and the length field.
const FRAME: usize = 16 + 4;
/// The largest ciphertext taken (base64 text), far above any event.
pub const MAX_ENCRYPTED: usize = 1024 * 1024;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// The vendors' 43-character keys end in a character whose low bits are not
/// zero: their decoders ignore those bits, and so must this one.
const KEY_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the EncodingAESKey must be 43 letters and digits")]
    BadKey,
    #[error("the signature does not match")]
    BadSignature,
    #[error("the encrypted text is not base64 of whole AES blocks")]
    NotCiphertext,
    #[error("the encrypted text is over {MAX_ENCRYPTED} bytes")]
    TooLarge,
    #[error("the decrypted text has no valid padding")]
    BadPadding,
    #[error("the decrypted text's length field does not fit it")]
    BadLength,
    #[error("the message is for another owner (corp id or app key)")]
    WrongOwner,
    #[error("the message is not UTF-8")]
    NotText,
}

/// One callback's secrets: the token, the AES key and the owner id.
pub struct MsgCrypt {
    token: String,
    key: [u8; 32],
    owner: String,
}

impl std::fmt::Debug for MsgCrypt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MsgCrypt")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// `hex(sha1(concat(sort([token, timestamp, nonce, encrypt]))))`.
pub fn signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    let mut parts = [token, timestamp, nonce, encrypt];
    parts.sort_unstable();
    let digest = Sha1::digest(parts.concat().as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal texts, compared without an early exit.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl MsgCrypt {
    /// `encoding_aes_key` is the 43-character key from the vendor's console.
    pub fn new(token: &str, encoding_aes_key: &str, owner: &str) -> Result<MsgCrypt, CryptoError> {
        if encoding_aes_key.len() != 43
            || !encoding_aes_key.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(CryptoError::BadKey);
        }
        let bytes = KEY_B64
            .decode(format!("{encoding_aes_key}="))
            .map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(MsgCrypt {
            token: token.to_string(),
            key,
            owner: owner.to_string(),
        })
    }

    pub fn sign(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        signature(&self.token, timestamp, nonce, encrypt)
    }

    /// Checks the signature, then decrypts: the message, once padding, length
    /// and owner are right.
    pub fn open(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt: &str,
    ) -> Result<String, CryptoError> {
        if encrypt.len() > MAX_ENCRYPTED {
            return Err(CryptoError::TooLarge);
        }
        if !same(
            &self.sign(timestamp, nonce, encrypt),
            &msg_signature.to_ascii_lowercase(),
        ) {
            return Err(CryptoError::BadSignature);
        }
        self.decrypt(encrypt)
    }

    /// Decrypts a ciphertext whose signature was checked.
    pub fn decrypt(&self, encrypt: &str) -> Result<String, CryptoError> {
        let mut data = B64
            .decode(encrypt)
            .map_err(|_| CryptoError::NotCiphertext)?;
        if data.is_empty() || data.len() % PAD_BLOCK != 0 {
            return Err(CryptoError::NotCiphertext);
        }
        let iv: [u8; 16] = self.key[..16].try_into().map_err(|_| CryptoError::BadKey)?;
        let plain = Decryptor::new(&self.key.into(), &iv.into())
            .decrypt_padded_mut::<NoPadding>(&mut data)
            .map_err(|_| CryptoError::NotCiphertext)?;
        let pad = usize::from(*plain.last().ok_or(CryptoError::BadPadding)?);
        if pad == 0
            || pad > PAD_BLOCK
            || pad > plain.len()
            || plain[plain.len() - pad..]
                .iter()
                .any(|&b| usize::from(b) != pad)
        {
            return Err(CryptoError::BadPadding);
        }
        let body = &plain[..plain.len() - pad];
        let len_bytes: [u8; 4] = body
            .get(16..FRAME)
            .and_then(|s| s.try_into().ok())
            .ok_or(CryptoError::BadLength)?;
        let len = u32::from_be_bytes(len_bytes) as usize;
        let message = body
            .get(FRAME..FRAME.saturating_add(len))
            .ok_or(CryptoError::BadLength)?;
        let owner = &body[FRAME + len..];
        if !same(&String::from_utf8_lossy(owner), &self.owner) {
            return Err(CryptoError::WrongOwner);
        }
        String::from_utf8(message.to_vec()).map_err(|_| CryptoError::NotText)
    }

    /// Encrypts `message` with the given 16-byte random prefix (random in use;
    /// fixed in the vendors' test vectors).
    pub fn encrypt_with(&self, message: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(FRAME + message.len() + self.owner.len() + PAD_BLOCK);
        plain.extend_from_slice(&random);
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.owner.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let len = plain.len();
        let iv: [u8; 16] = self.key[..16].try_into().unwrap_or([0; 16]);
        let out = Encryptor::new(&self.key.into(), &iv.into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, len)
            .map(|c| c.to_vec())
            .unwrap_or_default();
        B64.encode(out)
    }

    pub fn encrypt(&self, message: &str) -> String {
        self.encrypt_with(message, rand::random())
    }
}

#[cfg(test)]
mod tests;
