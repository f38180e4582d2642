//! The error answers routes share, each written once as a [`utoipa::IntoResponses`] set that
//! `#[utoipa::path(responses(...))]` names beside the route's own answers: `UserErrors` for
//! routes that take an access token, `KeyErrors<Scope>` for routes that take an API key,
//! `JsonBodyErrors` for routes that read a JSON body, and a few single answers. The writes
//! name the set of their kind, which includes the 409 every write can answer:
//! `UserWriteErrors` and `UserJsonWriteErrors` (a signed-in user's, without and with a JSON
//! body), `PublicWriteErrors` (login and refresh: a JSON body, no credentials yet) and
//! `AdminActionErrors`. Every one is a problem (`application/problem+json`) whose description
//! starts with its `code`. The answers of shared mechanisms (413 over the body limit, 503 when
//! the database is unavailable, 500) are not here: `http::openapi` adds them to every
//! operation they apply to.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use utoipa::openapi::{Content, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{IntoResponses, ToSchema};

use super::api_key::RequiredScope;
use super::error::Problem;
use super::error::PROBLEM_CONTENT_TYPE;

/// A problem answer with this description.
pub fn problem(description: impl Into<String>) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_CONTENT_TYPE,
            Content::new(Some(Ref::from_schema_name(Problem::name()))),
        )
        .build()
        .into()
}

fn problems<const N: usize>(answers: [(u16, String); N]) -> BTreeMap<String, RefOr<Response>> {
    answers
        .into_iter()
        .map(|(status, description)| (status.to_string(), problem(description)))
        .collect()
}

/// A set of one problem answer: `single! { /// doc  Name: status, "description" }`.
macro_rules! single {
    ($(#[$doc:meta])* $name:ident: $status:literal, $description:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                problems([($status, $description.into())])
            }
        }
    };
}

single! {
    /// The refusal of a route that takes a user's access token (`bearer`).
    UserErrors: 401, "`unauthorized`: missing, invalid or expired access token, the session \
        has ended, or the user is blocked"
}

/// The refusals of a route that takes an API key with the scope `S` (`api_key`).
pub struct KeyErrors<S>(PhantomData<S>);

impl<S: RequiredScope> IntoResponses for KeyErrors<S> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        problems([
            (
                401,
                "`unauthorized`: missing, unknown or revoked API key".into(),
            ),
            (
                403,
                format!(
                    "`forbidden`: the API key lacks the `{}` scope, or a user access token was \
                     presented",
                    S::SCOPE
                ),
            ),
        ])
    }
}

single! {
    /// The refusal of a JSON body before it is read (a malformed one is the route's 400; an
    /// over-limit one is `http::openapi`'s 413).
    JsonBodyErrors: 415, "`unsupported_media_type`: the body is not `application/json`"
}

single! {
    /// 409 `conflict`: a write lost its races, its user was erased meanwhile, or (a login)
    /// WeChat names another unionid than the one the user holds.
    ConflictError: 409, "`conflict`: the record kept changing concurrently (retry), the \
        user's personal data was erased, or (a login) WeChat names another unionid than the \
        one the user holds"
}

/// A set made of other sets: `sets! { /// doc  Name: A, B, … }`.
macro_rules! sets {
    ($(#[$doc:meta])* $name:ident: $($set:ty),+) => {
        $(#[$doc])*
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                let mut answers = BTreeMap::new();
                $(answers.extend(<$set>::responses());)+
                answers
            }
        }
    };
}

sets! {
    /// A signed-in user's write without a body.
    UserWriteErrors: UserErrors, ConflictError
}

sets! {
    /// A signed-in user's write with a JSON body.
    UserJsonWriteErrors: UserErrors, ConflictError, JsonBodyErrors
}

sets! {
    /// A write with a JSON body from a caller without credentials yet (login, refresh).
    PublicWriteErrors: JsonBodyErrors, ConflictError
}

single! {
    /// 404 `not_found` on the admin routes that name a user.
    NoSuchUser: 404, "`not_found`: no such user"
}

single! {
    /// 400 `invalid_request` of a read whose query is all it takes (an admin list).
    BadQuery: 400, "`invalid_request`: an unknown parameter, or a bad value (the detail names it)"
}

single! {
    /// 400 `invalid_request` of an admin route whose only input is the user id in its path.
    BadUserId: 400, "`invalid_request`: the user id is not a UUID"
}

/// The refusals of an admin action on one user with a JSON body (block, unblock, revoke the
/// sessions): a bad id or body, the `admin:write` key's, the body's, and no such user. A
/// conflict's description differs by action, so it is the route's.
pub struct AdminActionErrors;

impl IntoResponses for AdminActionErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut answers = problems([(
            400,
            "`invalid_request`: the user id is not a UUID, malformed JSON, or a reason breaking \
             its rule (the detail names it)"
                .into(),
        )]);
        answers.extend(KeyErrors::<super::api_key::AdminWrite>::responses());
        answers.extend(JsonBodyErrors::responses());
        answers.extend(NoSuchUser::responses());
        answers
    }
}
