//! Avatar images: an upload becomes the profile's `avatar_url`, an image we serve ourselves.
//!
//! An upload is decoded whatever it claims to be (the bytes name the format), within limits
//! a decompression bomb cannot pass, on a blocking thread and at most
//! [`MAX_CONCURRENT_DECODES`] at a time; then re-encoded, which leaves every metadata block
//! behind (EXIF with its GPS position, XMP, ICC profiles, PNG text chunks), and scaled to fit
//! [`MAX_SIDE`]. The image is sealed under the user's data key, bound to its id, and stored in
//! the `avatars` table before `ProfileUpdated` names it; the image it replaces is deleted once
//! that is recorded, so a user keeps one. Erasure destroys the key (and deletes the rows).

use std::io::Cursor;
use std::time::Duration;

use domain::{AppId, AvatarId, UserId};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use infra::store::StoredAvatar;
use serde_json::json;

use super::command::Command;
use super::content_check;
use super::context::Context;
use super::error::UseCaseError;
use super::profile::edited_profile;
use super::services::Services;
use super::streams::{load_user, user_key, LoadedUser};
use super::user_writes::{record_on_user, UserWrite};

/// The largest file an upload may carry.
pub const MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024;
/// What is stored fits in this square (aspect ratio kept).
pub const MAX_SIDE: u32 = 640;
/// Larger images are refused before their pixels are decoded: a few kilobytes of PNG can
/// claim gigapixels.
const MAX_DECODED_SIDE: u32 = 4096;
/// What one decode may allocate (a 4096×4096 RGBA image is exactly this).
const MAX_DECODE_ALLOC: u64 = 64 * 1024 * 1024;
/// Decodes running at once on one instance: each takes a core and up to `MAX_DECODE_ALLOC`.
pub const MAX_CONCURRENT_DECODES: usize = 2;
/// How long an upload waits for a decode slot before it is asked to retry.
const DECODE_SLOT_WAIT: Duration = Duration::from_secs(10);
/// The quality of the JPEGs we store.
const JPEG_QUALITY: u8 = 85;

/// An image as served.
#[derive(Debug)]
pub struct AvatarImage {
    pub bytes: Vec<u8>,
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
    /// Quoted, as the `ETag` header carries it: an id's image never changes.
    pub etag: String,
}

/// The image `file` becomes the user's avatar. Returns its URL, as the profile now holds it.
pub async fn upload_avatar(
    state: &Services,
    user_id: UserId,
    appid: &AppId,
    file: Vec<u8>,
    ctx: &Context,
) -> Result<String, UseCaseError> {
    let LoadedUser { user, key, .. } = load_user(state, user_id).await?;
    // An erased user has no key to seal under: refused before any decoding.
    let key = key.ok_or(UseCaseError::Erased)?;
    let image = reencode_limited(state, file).await?;

    let avatar_id = AvatarId::new_random();
    let stored = StoredAvatar {
        avatar_id,
        user_id,
        content_type: image.content_type.to_owned(),
        sealed_image: key.seal_bytes(&image.bytes, &row_context(avatar_id)),
        created_at: state.clock.now(),
    };
    state.store.insert_avatar(&stored).await?;

    let avatar_url = avatar_url(state, avatar_id);
    let write = UserWrite {
        appid: Some(appid),
        phone_index: None,
    };
    // The image this one replaces is deleted by `record_on_user` once this is recorded.
    let recorded = record_on_user(
        state,
        Command::new("upload_avatar"),
        user_id,
        write,
        ctx,
        // Into the profile as each attempt loads it: a concurrent change is kept.
        |user| {
            let (sealed, fields) = edited_profile(&key, user, |profile| {
                profile.insert("avatar_url".into(), json!(avatar_url));
            })?;
            Ok::<_, UseCaseError>(user.decide_set_avatar(sealed, fields, avatar_id)?)
        },
    )
    .await;
    if let Err(refused) = recorded {
        // Named by no event: nobody may keep it (an erasure that won the race, say).
        forget_image(state, avatar_id).await;
        return Err(refused);
    }
    // WeChat's asynchronous image check; its verdict may remove the avatar later. It never
    // fails the upload.
    if let Some(openid) = user.openid_for(appid) {
        content_check::submit_avatar(state, appid, openid, user_id, avatar_id, &avatar_url).await;
    }
    Ok(avatar_url)
}

/// The image of `avatar_id`, opened with its owner's data key; `NotFound` when there is no
/// such row (never stored, replaced, rejected, erased) or its owner's key is gone.
pub async fn avatar_image(
    state: &Services,
    avatar_id: AvatarId,
) -> Result<AvatarImage, UseCaseError> {
    let stored = state
        .store
        .avatar(avatar_id)
        .await?
        .ok_or(UseCaseError::NotFound)?;
    let key = user_key(state, stored.user_id)
        .await?
        .ok_or(UseCaseError::NotFound)?;
    let bytes = key
        .open_bytes(&stored.sealed_image, &row_context(avatar_id))
        .map_err(UseCaseError::internal)?;
    Ok(AvatarImage {
        bytes,
        content_type: stored.content_type,
        etag: format!("\"{avatar_id}\""),
    })
}

/// The public URL of an uploaded avatar, as the profile holds it.
pub(super) fn avatar_url(state: &Services, avatar_id: AvatarId) -> String {
    format!("{}{avatar_id}", avatars_base(state))
}

/// What every uploaded avatar's URL starts with.
pub(super) fn avatars_base(state: &Services) -> String {
    format!("{}/v1/avatars/", state.public_url)
}

/// Deletes an image no event will name (anymore). A failure leaves a row sealed under the
/// user's key, deleted at their erasure: logged, not the caller's failure.
pub(super) async fn forget_image(state: &Services, avatar_id: AvatarId) {
    if let Err(err) = state.store.delete_avatar(avatar_id).await {
        // Not the id: it opens the photo at its public URL.
        tracing::warn!(error = %err, "deleting an unused avatar image failed");
    }
}

/// What a sealed image is bound to besides its owner: its row, so it opens nowhere else.
fn row_context(avatar_id: AvatarId) -> String {
    format!("avatar:{avatar_id}")
}

/// A re-encoded image.
#[derive(Debug)]
struct Reencoded {
    bytes: Vec<u8>,
    content_type: &'static str,
}

/// [`reencode`] on a blocking thread, once a decode slot is free.
async fn reencode_limited(state: &Services, file: Vec<u8>) -> Result<Reencoded, UseCaseError> {
    let slot = tokio::time::timeout(
        DECODE_SLOT_WAIT,
        state.avatar_decodes.clone().acquire_owned(),
    )
    .await
    .map_err(|_| UseCaseError::RateLimited {
        retry_after_secs: 1,
    })?
    .map_err(UseCaseError::internal)?;
    // The slot goes with the decode, not the request: a request that times out cannot free
    // it while its (uncancellable) decode still runs.
    let reencoded = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        reencode(&file)
    })
    .await;
    reencoded.unwrap_or_else(|crashed| {
        // A decoder bug met a hostile file: the file is refused like any other that does not
        // decode, and the bug is logged.
        tracing::error!(error = %crashed, "decoding an uploaded image crashed");
        Err(UseCaseError::UnsupportedImage)
    })
}

/// Decodes a PNG, JPEG or WebP (sniffed from the bytes) within the limits, turns it upright
/// (its EXIF orientation is about to be dropped), scales it to fit [`MAX_SIDE`] and encodes it
/// afresh: PNG stays PNG (transparency kept), anything else becomes a JPEG.
fn reencode(file: &[u8]) -> Result<Reencoded, UseCaseError> {
    let mut reader = ImageReader::new(Cursor::new(file))
        .with_guessed_format()
        .map_err(refused)?;
    let as_png = match reader.format() {
        Some(ImageFormat::Png) => true,
        Some(ImageFormat::Jpeg | ImageFormat::WebP) => false,
        _ => return Err(UseCaseError::UnsupportedImage),
    };
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODED_SIDE);
    limits.max_image_height = Some(MAX_DECODED_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder().map_err(refused)?;
    // `ImageReader::decode` reserves the output buffer against the limits; so do we.
    limits.reserve(decoder.total_bytes()).map_err(refused)?;
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(refused)?;
    // Scaled before it is turned upright (the box is square, so the order does not change
    // the result): turning a full-size image would copy it whole.
    if image.width() > MAX_SIDE || image.height() > MAX_SIDE {
        image = image.resize(MAX_SIDE, MAX_SIDE, FilterType::CatmullRom);
    }
    image.apply_orientation(orientation);
    let mut bytes = Vec::new();
    if as_png {
        image
            .write_with_encoder(PngEncoder::new(&mut bytes))
            .map_err(UseCaseError::internal)?;
        return Ok(Reencoded {
            bytes,
            content_type: "image/png",
        });
    }
    let opaque = flatten_on_white(image);
    opaque
        .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY))
        .map_err(UseCaseError::internal)?;
    Ok(Reencoded {
        bytes,
        content_type: "image/jpeg",
    })
}

/// Any decoding failure: the file is not an image we read.
fn refused(_: impl std::error::Error) -> UseCaseError {
    UseCaseError::UnsupportedImage
}

/// JPEG has no transparency: a transparent WebP's see-through pixels become white rather than
/// whatever colour they happen to hold.
fn flatten_on_white(image: DynamicImage) -> DynamicImage {
    if !image.color().has_alpha() {
        return image;
    }
    let mut rgba = image.into_rgba8();
    for pixel in rgba.pixels_mut() {
        let [r, g, b, a] = pixel.0;
        let blend = |c: u8| {
            let (c, a) = (u32::from(c), u32::from(a));
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        pixel.0 = [blend(r), blend(g), blend(b), 255];
    }
    DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(rgba).into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, Rgba, RgbaImage};

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbaImage::from_fn(width, height, |x, y| {
            Rgba([(x % 256) as u8, (y % 256) as u8, 7, 200])
        });
        let mut bytes = Vec::new();
        PngEncoder::new(&mut bytes)
            .write_image(&image, width, height, image::ExtendedColorType::Rgba8)
            .expect("encode");
        bytes
    }

    #[test]
    fn a_small_png_stays_a_png_pixel_for_pixel() {
        let original = png(32, 20);
        let out = reencode(&original).expect("re-encoded");
        assert_eq!(out.content_type, "image/png");
        let back = image::load_from_memory(&out.bytes).expect("decodes");
        let before = image::load_from_memory(&original).expect("decodes");
        assert_eq!(back.to_rgba8(), before.to_rgba8());
    }

    #[test]
    fn a_large_image_is_scaled_to_fit_keeping_its_shape() {
        let out = reencode(&png(1280, 320)).expect("re-encoded");
        let back = image::load_from_memory(&out.bytes).expect("decodes");
        assert_eq!((back.width(), back.height()), (640, 160));
    }

    #[test]
    fn anything_but_an_image_that_decodes_is_refused() {
        let mut truncated = png(64, 64);
        truncated.truncate(truncated.len() / 2);
        for bad in [
            b"GIF89a not a gif".to_vec(),
            b"hello".to_vec(),
            Vec::new(),
            truncated,
        ] {
            assert!(
                matches!(reencode(&bad), Err(UseCaseError::UnsupportedImage)),
                "{:?} accepted",
                &bad[..bad.len().min(8)]
            );
        }
    }

    #[test]
    fn a_transparent_pixel_turns_white_in_a_jpeg() {
        let mut image = RgbaImage::new(1, 1);
        image.put_pixel(0, 0, Rgba([0, 0, 0, 0]));
        let flat = flatten_on_white(DynamicImage::ImageRgba8(image));
        assert_eq!(flat.to_rgb8().get_pixel(0, 0).0, [255, 255, 255]);
    }
}
