//! WeChat's message push (`POST /v1/wechat/push/{appid}`): the body parser, and the query's
//! signature check on the body's first line split as `token timestamp nonce signature`.
#![no_main]

use infra::wechat::push::{parse_push, push_signature, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_push(data);
    let text = String::from_utf8_lossy(data);
    let mut parts = text.lines().next().unwrap_or_default().splitn(4, ' ');
    let (token, timestamp, nonce) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let _ = verify(token, timestamp, nonce, parts.next().unwrap_or_default());
    assert!(verify(
        token,
        timestamp,
        nonce,
        &push_signature(token, timestamp, nonce)
    ));
});
