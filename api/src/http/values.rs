//! The schemas of the values requests carry, for the document: each built from the constants
//! the value's parser checks (`domain::AppId::parse`, `ProfileUpdate::parse`, …), so the
//! document states what the server enforces and cannot drift from it. Request types name them
//! with `#[schema(value_type = values::AppId)]` (or `#[param(...)]`); `http::openapi` lists
//! them as components. Always named through the module (`values::AppId`): the names are the
//! domain's.

use std::borrow::Cow;

use serde_json::json;
use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::usecases::profile::{MAX_AVATAR_URL_CHARS, MAX_NICKNAME_CHARS};

/// `schema! { /// doc  Name => builder }`: a schema-only type, named `Name` in the document.
macro_rules! schema {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                let builder: ObjectBuilder = $build;
                builder.build().into()
            }
        }

        impl ToSchema for $name {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
        }
    };
}

fn text(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

/// Characters `char::is_control` refuses (Unicode `Cc`), for a regex character class.
const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";
/// The same, but for the line feed (a reason may have several lines).
const CONTROL_BUT_LF: &str = r"\x00-\x09\x0B-\x1F\x7F-\x9F";

/// Text without the characters of `forbidden`, and not only white space.
fn not_blank_without(forbidden: &str) -> String {
    format!(r"^[^{forbidden}]*[^\s{CONTROL}][^{forbidden}]*$")
}

schema! {
    /// `domain::AppId::parse`.
    AppId => text("A mini-program's appid: `wx` followed by 16 hex characters")
        .pattern(Some(format!(
            "^{}[0-9a-fA-F]{{{}}}$",
            domain::AppId::PREFIX,
            domain::AppId::HEX_DIGITS
        )))
        .examples([json!("wx0123456789abcdef")])
}

schema! {
    /// `domain::WeChatCode::parse`: opaque, so only its shape.
    WeChatCode => text("A one-time WeChat code: 1 to 256 printable ASCII characters, judged by WeChat")
        .min_length(Some(1))
        .max_length(Some(domain::WeChatCode::MAX_LEN))
        .pattern(Some("^[!-~]+$"))
}

schema! {
    /// `domain::OpenId::parse`, `domain::UnionId::parse`.
    WeChatId => text("An openid or unionid: 1 to 64 of `[A-Za-z0-9_-]`")
        .min_length(Some(1))
        .max_length(Some(domain::MAX_WECHAT_ID_LEN))
        .pattern(Some("^[A-Za-z0-9_-]+$"))
}

schema! {
    /// `ProfileUpdate::parse`: counted once trimmed, so an untrimmed one may be a little longer.
    Nickname => text("1 to 64 characters once trimmed, not only white space, no control characters")
        .min_length(Some(1))
        .max_length(Some(MAX_NICKNAME_CHARS))
        .pattern(Some(not_blank_without(CONTROL)))
}

schema! {
    /// `ProfileUpdate::parse`.
    AvatarUrl => text("An http(s) URL with a host, at most 1024 characters, no white space")
        .format(Some(SchemaFormat::Custom("uri".into())))
        .max_length(Some(MAX_AVATAR_URL_CHARS))
        .pattern(Some(format!(r"^https?://[^\s{CONTROL}]+$")))
}

schema! {
    /// `domain::User`'s rule for an administrator's reason.
    Reason => text("Why, for the audit log: 1 to 500 characters, not only white space, no \
            control characters but line feeds")
        .min_length(Some(1))
        .max_length(Some(domain::user::MAX_REASON_CHARS))
        .pattern(Some(not_blank_without(CONTROL_BUT_LF)))
}

schema! {
    /// `domain::Authorization::parse`.
    AuthorizationKind => text("What the user authorized")
        .enum_values(Some(domain::Authorization::ALL.map(domain::Authorization::as_str)))
}

schema! {
    /// `infra::signed_request::valid_nonce`.
    Nonce => text("16 to 64 of `[A-Za-z0-9_-]`, single use")
        .min_length(Some(infra::signed_request::MIN_NONCE_LEN))
        .max_length(Some(infra::signed_request::MAX_NONCE_LEN))
        .pattern(Some("^[A-Za-z0-9_-]+$"))
}

schema! {
    /// A page size of the admin and session lists (`http::query::PageParams`).
    PageLimit => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some("Page size"))
        .minimum(Some(1))
        .maximum(Some(super::query::MAX_PAGE_LIMIT))
        .default(Some(json!(super::query::DEFAULT_PAGE_LIMIT)))
}

schema! {
    /// A page size of `GET /v1/events`.
    EventPageLimit => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some("Page size"))
        .minimum(Some(1))
        .maximum(Some(super::routes::events::MAX_LIMIT))
        .default(Some(json!(super::routes::events::DEFAULT_LIMIT)))
}

schema! {
    /// A position in the event log (`http::query::position`).
    Position => ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .description(Some("An event's position; 0 is before the first"))
        .minimum(Some(0))
        .default(Some(json!(0)))
}

schema! {
    /// A value of a WeChat push's query (`wechat_push::PushQuery::parse`).
    PushQueryValue => text("Printable ASCII, at most 128 characters")
        .min_length(Some(1))
        .max_length(Some(super::routes::wechat_push::MAX_QUERY_VALUE))
        .pattern(Some("^[!-~]+$"))
}

/// Every schema of this module, for the document's components.
pub fn all() -> Vec<(String, RefOr<Schema>)> {
    fn entry<T: ToSchema>() -> (String, RefOr<Schema>) {
        (T::name().into_owned(), T::schema())
    }
    vec![
        entry::<AppId>(),
        entry::<WeChatCode>(),
        entry::<WeChatId>(),
        entry::<Nickname>(),
        entry::<AvatarUrl>(),
        entry::<Reason>(),
        entry::<AuthorizationKind>(),
        entry::<Nonce>(),
        entry::<PageLimit>(),
        entry::<EventPageLimit>(),
        entry::<Position>(),
        entry::<PushQueryValue>(),
    ]
}
