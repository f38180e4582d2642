//! Signed cloud-login requests (`POST /v1/wechat/cloud-login`): the nonce rule and the
//! signature check over any headers and body; a request signed with the secret always
//! verifies, and one with another body does not.
#![no_main]

use infra::signed_request::{sign, valid_nonce, verify};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    secret: &'a str,
    /// As the `x-identity-timestamp` header carries it.
    timestamp: &'a str,
    nonce: &'a str,
    signature: &'a str,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let _ = valid_nonce(input.nonce);
    let Ok(timestamp) = input.timestamp.parse::<i64>() else {
        return;
    };
    let _ = verify(
        input.secret,
        timestamp,
        input.nonce,
        input.body,
        input.signature,
    );
    let signed = sign(input.secret, timestamp, input.nonce, input.body);
    assert!(verify(
        input.secret,
        timestamp,
        input.nonce,
        input.body,
        &signed
    ));
    let mut other = input.body.to_vec();
    other.push(b' ');
    assert!(!verify(
        input.secret,
        timestamp,
        input.nonce,
        &other,
        &signed
    ));
});
