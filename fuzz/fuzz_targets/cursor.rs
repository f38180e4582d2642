//! Page cursors (`cursor=` of every admin list): read as the list queries read them, for a
//! time-ordered list and for the user list; raw bytes are also sent base64url-encoded so the
//! JSON reading behind the base64 is reached.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use projections::parse_cursor;

fuzz_target!(|data: &[u8]| {
    let encoded = URL_SAFE_NO_PAD.encode(data);
    let text = String::from_utf8_lossy(data);
    for kind in ['l', 'a', 's', 'u'] {
        let _ = parse_cursor(kind, &text);
        let _ = parse_cursor(kind, &encoded);
    }
});
