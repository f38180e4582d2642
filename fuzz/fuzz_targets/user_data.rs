//! The legacy encrypted user data (`POST /v1/me/profile/authorize`): the `rawData` signature
//! check, the base64/iv/length parse and the decryption, for text as a client sends it and
//! for well-formed ciphertexts of arbitrary plaintexts. Besides never panicking, a sealed
//! plaintext opens exactly when it is JSON naming the app in its watermark.
#![no_main]

use aes::Aes128;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use infra::wechat::user_data::{decrypt, verify_raw_data, EncryptedData, UserDataError};
use infra::wechat::SessionKey;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    key: [u8; 16],
    appid: &'a str,
    raw_data: &'a str,
    signature: &'a str,
    encrypted_data: &'a str,
    iv_text: &'a str,
    iv: [u8; 16],
    plaintext: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let key = SessionKey::from_bytes(input.key);
    let _ = verify_raw_data(input.raw_data, input.signature, &key);
    let _ = decrypt(input.encrypted_data, input.iv_text, &key, input.appid);

    let sealed = cbc::Encryptor::<Aes128>::new(&input.key.into(), &input.iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(input.plaintext);
    let parsed = EncryptedData::parse(&STANDARD.encode(&sealed), &STANDARD.encode(input.iv))
        .expect("a whole-block ciphertext with a 16-byte iv parses");
    let opened = parsed.open(&key, input.appid);
    let expected = serde_json::from_slice::<Value>(input.plaintext)
        .ok()
        .filter(|data| data["watermark"]["appid"].as_str() == Some(input.appid));
    match expected {
        Some(data) => assert_eq!(opened, Ok(data)),
        None => assert_eq!(opened, Err(UserDataError::Undecryptable)),
    }
    // The ciphertext with its last block cut off: still whole blocks, or refused as such.
    if sealed.len() > 16 {
        let cut = &sealed[..sealed.len() - 16];
        let _ = decrypt(
            &STANDARD.encode(cut),
            &STANDARD.encode(input.iv),
            &key,
            input.appid,
        );
    }
});
