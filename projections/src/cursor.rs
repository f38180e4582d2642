//! Opaque page cursors: base64url of a small JSON naming the last row of the page. Clients
//! must not build them; anything we cannot read back is `InvalidCursor`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ProjectionError;

/// A position in a list ordered by `(occurred_at, position)`, newest first. `k` names the
/// list, so a cursor of one list is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TimeCursor {
    pub k: char,
    pub t: i64,
    pub p: i64,
}

/// A position in the user list, ordered by user id (UUIDv7: newest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserCursor {
    pub u: Uuid,
}

pub(crate) fn encode<T: Serialize>(cursor: &T) -> String {
    // Serialising these plain structs cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(cursor).unwrap_or_default())
}

pub(crate) fn decode<T: DeserializeOwned>(text: &str) -> Result<T, ProjectionError> {
    if text.len() > 256 {
        return Err(ProjectionError::InvalidCursor);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ProjectionError::InvalidCursor)?;
    serde_json::from_slice(&bytes).map_err(|_| ProjectionError::InvalidCursor)
}

impl TimeCursor {
    pub fn decode_for(kind: char, text: &str) -> Result<Self, ProjectionError> {
        let cursor: Self = decode(text)?;
        if cursor.k != kind {
            return Err(ProjectionError::InvalidCursor);
        }
        Ok(cursor)
    }
}

/// Reads a client's `cursor` as the list queries do: the user list's for `kind` `'u'`, else the
/// time-ordered list `kind`'s. Public for the fuzz targets (`fuzz/`), which must call the real
/// reading.
pub fn parse_cursor(kind: char, text: &str) -> Result<(), ProjectionError> {
    match kind {
        'u' => decode::<UserCursor>(text).map(drop),
        _ => TimeCursor::decode_for(kind, text).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = TimeCursor {
            k: 'l',
            t: 1_700_000_000_000_000,
            p: 42,
        };
        assert_eq!(TimeCursor::decode_for('l', &encode(&c)).unwrap(), c);
        assert!(matches!(
            TimeCursor::decode_for('a', &encode(&c)),
            Err(ProjectionError::InvalidCursor)
        ));
        for bad in ["", "!!!", "e30", "bm9wZQ", &"A".repeat(300)] {
            assert!(
                matches!(
                    TimeCursor::decode_for('l', bad),
                    Err(ProjectionError::InvalidCursor)
                ),
                "{bad}"
            );
        }
        let u = UserCursor { u: Uuid::nil() };
        assert_eq!(decode::<UserCursor>(&encode(&u)).unwrap(), u);
        assert!(decode::<UserCursor>(&encode(&c)).is_err());
    }
}
