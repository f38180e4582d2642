//! Avatar images: `POST /v1/me/avatar` (an upload, as `wx.uploadFile` sends it) and
//! `GET /v1/avatars/{avatar_id}` (public: the URL the profile's `avatar_url` holds).

use axum::extract::multipart::{Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::AvatarId;
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::extract::Authenticated;
use crate::http::responses::UserWriteErrors;
use crate::http::state::AppState;
use crate::http::ApiError;
use crate::usecases::avatar::{self, MAX_UPLOAD_BYTES};

/// What this route reads of a body at most (`routes::LARGER_BODIES`). A file over
/// `MAX_UPLOAD_BYTES` is refused, but the rest of its body is still read (up to this) so that
/// the client, still sending, gets the 413 instead of a reset connection.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// An avatar is immutable under its id: caches may keep it for a year.
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/avatar", post(upload_avatar))
        .route("/v1/avatars/{avatar_id}", get(avatar_image))
}

/// The uploaded avatar's URL, now the profile's `avatar_url`.
#[derive(Serialize, ToSchema)]
pub struct AvatarUploaded {
    /// `{IDENTITY_PUBLIC_URL}/v1/avatars/{avatar_id}`.
    #[schema(example = "https://id.example.com/v1/avatars/0b6c3f5e-8f1e-4c57-9a51-2f4b7f1d9c11")]
    avatar_url: String,
}

/// The upload form, as `wx.uploadFile({ name: "file" })` sends it.
#[derive(ToSchema)]
#[allow(dead_code)] // Documentation only: the body is read as a stream.
pub struct AvatarUpload {
    /// The image: PNG, JPEG or WebP (told by its bytes, whatever the part's content type says),
    /// at most 2 MiB and 4096×4096 pixels. Other fields are ignored.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload an avatar
///
/// The image is decoded and encoded afresh, which drops its metadata (EXIF, GPS position
/// included), scaled to fit 640×640 (aspect ratio kept), stored sealed under the user's data
/// key, and becomes the profile's `avatar_url` (`ProfileUpdated`); the avatar it replaces is
/// deleted. PNG stays PNG; JPEG and WebP become JPEG.
#[utoipa::path(
    post,
    path = "/v1/me/avatar",
    tag = "me",
    security(("bearer" = [])),
    request_body(content = AvatarUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "Stored; the profile's avatar_url names it", body = AvatarUploaded),
        (status = 400, description = "`invalid_request`: not a multipart/form-data body, a \
            malformed one, or no `file` field"),
        (status = 413, description = "`payload_too_large`: the file is over 2 MiB"),
        (status = 415, description = "`unsupported_media_type`: the file is not a PNG, JPEG or \
            WebP image of at most 4096×4096 pixels that decodes"),
        (status = 429, description = "`rate_limited`: every image decoder of this instance is \
            busy",
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        UserWriteErrors,
    )
)]
async fn upload_avatar(
    State(state): State<AppState>,
    auth: Authenticated,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<AvatarUploaded>, ApiError> {
    let mut form = form.map_err(|_| {
        ApiError::InvalidRequest("expected a multipart/form-data body with a `file` field".into())
    })?;
    let file = file_field(&mut form).await?;
    let avatar_url =
        avatar::upload_avatar(&state, auth.user_id, &auth.appid, file, &auth.ctx).await?;
    Ok(Json(AvatarUploaded { avatar_url }))
}

/// The `file` field's bytes; fields before it are skipped.
async fn file_field(form: &mut Multipart) -> Result<Vec<u8>, ApiError> {
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        if field.name() != Some("file") {
            continue;
        }
        let mut file = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            if file.len() + chunk.len() > MAX_UPLOAD_BYTES {
                drop(field);
                drain(form).await;
                return Err(ApiError::PayloadTooLarge);
            }
            file.extend_from_slice(&chunk);
        }
        return Ok(file);
    }
    Err(ApiError::InvalidRequest(
        "no `file` field: send the image as the form field `file`".into(),
    ))
}

/// Reads what is left of the body (bounded by `MAX_BODY_BYTES`), discarding it.
async fn drain(form: &mut Multipart) {
    while let Ok(Some(mut field)) = form.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// A body cut short by `http::body_limit` fails here too; that layer answers it with 413.
fn malformed(_: MultipartError) -> ApiError {
    ApiError::InvalidRequest("the body is not well-formed multipart/form-data".into())
}

/// An avatar image
///
/// Public (the profile's `avatar_url` points here, and WeChat's content check fetches it);
/// immutable under its id. 404 once replaced, removed by the content check, or erased.
#[utoipa::path(
    get,
    path = "/v1/avatars/{avatar_id}",
    tag = "avatars",
    params(("avatar_id" = uuid::Uuid, Path, description = "The id in the avatar URL")),
    responses(
        (status = 200, description = "The image",
            content(
                (String = "image/png"),
                (String = "image/jpeg"),
            ),
            headers(
                ("Cache-Control" = String, description = "public, max-age=31536000, immutable"),
                ("ETag" = String, description = "The avatar id, quoted"),
            )),
        (status = 404, description = "`not_found`: no such avatar (or a malformed id)"),
        (status = 500, description = "`internal`: an unexpected failure (details are logged, never sent)"),
    )
)]
async fn avatar_image(
    State(state): State<AppState>,
    Path(avatar_id): Path<String>,
) -> Result<Response, ApiError> {
    // A malformed id names no avatar: the same 404 as an unknown one.
    let avatar_id = AvatarId::parse(&avatar_id).map_err(|_| ApiError::NotFound)?;
    let image = avatar::avatar_image(&state, avatar_id).await?;
    let content_type = HeaderValue::from_str(&image.content_type).map_err(ApiError::internal)?;
    let etag = HeaderValue::from_str(&image.etag).map_err(ApiError::internal)?;
    let headers = [
        (header::CONTENT_TYPE, content_type),
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_FOREVER),
        ),
        (header::ETAG, etag),
        // User content: never sniffed as anything else, never a document that runs anything.
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        ),
    ];
    Ok((headers, image.bytes).into_response())
}
