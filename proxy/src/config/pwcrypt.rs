//! Atlas-compatible password obfuscation for the `pwds` key.
//!
//! Atlas 2.x stores backend passwords in its `.cnf` as `user:ENCRYPTED`, where `ENCRYPTED` is what
//! its `bin/encrypt` tool prints. Atlas's `plugins/proxy/proxy-plugin.c` (`decrypt` /
//! `pwds_decrypt`) undoes it with OpenSSL's EVP interface:
//!
//! * cipher `EVP_des_ecb()` — single DES, ECB mode, no IV;
//! * key: the C string literal `"aCtZlHaUs"` handed to `EVP_DecryptInit_ex`, which reads only the
//!   cipher's key length (8 bytes) from it, so the effective key is the raw ASCII bytes
//!   `aCtZlHaU` (no `DES_string_to_key`, no parity fix-up; DES ignores the parity bits anyway);
//! * EVP's default PKCS#7 padding (a full block of `08` when the length is a multiple of 8);
//! * standard base64 (with `=` padding) of the ciphertext.
//!
//! This is obfuscation, not security: the key is public. It only keeps passwords from being read
//! over someone's shoulder.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::Des;

/// The effective 8-byte DES key Atlas uses (first 8 bytes of `"aCtZlHaUs"`).
const ATLAS_KEY: &[u8; 8] = b"aCtZlHaU";
const BLOCK: usize = 8;

/// Why an Atlas-encrypted password could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("not valid base64")]
    Base64,
    #[error("ciphertext length {0} is not a positive multiple of 8")]
    Length(usize),
    #[error("bad padding (wrong key or not produced by Atlas's encrypt tool)")]
    Padding,
    #[error("decrypted password is not valid UTF-8")]
    Utf8,
}

fn cipher() -> Des {
    // A fixed 8-byte key: `new_from_slice` cannot fail, but stay panic-free anyway.
    Des::new(GenericArray::from_slice(ATLAS_KEY))
}

/// Encrypt `plain` exactly like Atlas's `encrypt` tool: DES-ECB, PKCS#7 padding, base64.
///
/// `atlas_encrypt("mypwd") == "HJBoxfRsjeI="`.
pub fn atlas_encrypt(plain: &str) -> String {
    let des = cipher();
    let mut data = plain.as_bytes().to_vec();
    let pad = BLOCK - data.len() % BLOCK;
    data.resize(data.len() + pad, pad as u8);
    for chunk in data.chunks_exact_mut(BLOCK) {
        des.encrypt_block(GenericArray::from_mut_slice(chunk));
    }
    STANDARD.encode(&data)
}

/// Decrypt a password produced by [`atlas_encrypt`] (or Atlas's `encrypt` tool).
///
/// Surrounding whitespace is ignored; anything else that is not a valid ciphertext is an error.
pub fn atlas_decrypt(enc: &str) -> Result<String, DecryptError> {
    let mut data = STANDARD
        .decode(enc.trim().as_bytes())
        .map_err(|_| DecryptError::Base64)?;
    if data.is_empty() || data.len() % BLOCK != 0 {
        return Err(DecryptError::Length(data.len()));
    }
    let des = cipher();
    for chunk in data.chunks_exact_mut(BLOCK) {
        des.decrypt_block(GenericArray::from_mut_slice(chunk));
    }
    let pad = usize::from(*data.last().ok_or(DecryptError::Padding)?);
    if pad == 0
        || pad > BLOCK
        || data[data.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return Err(DecryptError::Padding);
    }
    data.truncate(data.len() - pad);
    String::from_utf8(data).map_err(|_| DecryptError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(atlas_encrypt("mypwd"), "HJBoxfRsjeI=");
        assert_eq!(atlas_encrypt("123456"), "/iZxz+0GRoA=");
        assert_eq!(atlas_decrypt("HJBoxfRsjeI=").unwrap(), "mypwd");
        assert_eq!(atlas_decrypt("/iZxz+0GRoA=").unwrap(), "123456");
        assert_eq!(atlas_decrypt("  HJBoxfRsjeI=\n").unwrap(), "mypwd");
    }

    #[test]
    fn round_trips() {
        for p in [
            "",
            "a",
            "1234567",
            "12345678",
            "123456789",
            "pässwörd with spaces & :colons:",
            "a-much-longer-password-that-spans-several-des-blocks",
        ] {
            let enc = atlas_encrypt(p);
            assert_eq!(atlas_decrypt(&enc).unwrap(), p, "{p:?} -> {enc}");
        }
        // Exactly one block of input gets a whole block of padding, as with OpenSSL.
        assert_eq!(
            STANDARD.decode(atlas_encrypt("12345678")).unwrap().len(),
            16
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(atlas_decrypt(""), Err(DecryptError::Length(0)));
        assert_eq!(atlas_decrypt("not base64!"), Err(DecryptError::Base64));
        assert_eq!(atlas_decrypt("AAAA"), Err(DecryptError::Length(3)));
        // Valid base64, right length, but the padding check fails for a random block.
        assert!(atlas_decrypt("AAAAAAAAAAA=").is_err());
        // Plain text where an encrypted password was expected (a common mistake in `pwds`).
        assert!(atlas_decrypt("secret").is_err());
        for s in [
            "====",
            "QUJD",
            "////////////",
            "HJBoxfRsjeI",
            "HJBoxfRsjeI=x",
        ] {
            let _ = atlas_decrypt(s);
        }
    }
}
