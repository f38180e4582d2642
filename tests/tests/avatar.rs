//! Issue 13 item 1: avatar upload (`POST /v1/me/avatar`, multipart as `wx.uploadFile` sends
//! it), serving (`GET /v1/avatars/{id}`), replacement and erasure. Every image is made here.

use domain::AvatarId;
use identity_tests::{assert_problem, both_backends, content_type, World, APP_A};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageEncoder, ImageFormat, Rgba, RgbaImage};
use reqwest::{Method, Response};
use serde_json::Value;

both_backends! {
    World:
    a_png_is_stored_served_and_named_by_the_profile,
    metadata_is_stripped_from_jpeg_and_png,
    a_webp_becomes_a_jpeg,
    large_images_are_scaled_to_fit,
    bad_uploads_are_refused_with_their_codes,
    a_new_avatar_deletes_the_old_one,
    an_avatar_the_profile_stops_showing_is_deleted,
    erasure_deletes_the_image,
}

const BOUNDARY: &str = "----identityd-test-boundary-7d1f";
/// Written into the metadata of test images: it must not survive the upload.
const MARKER: &[u8] = b"WHERE-ALICE-LIVES-31.2304N-121.4737E";

/// A `multipart/form-data` body with these parts: `(name, filename, bytes)`.
fn form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match filename {
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n").as_bytes());
        // What wx.uploadFile sends whatever the file is: the service must not believe it.
        body.extend_from_slice(b"Content-Type: image/png\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_form(world: &World, access: Option<&str>, body: Vec<u8>) -> Response {
    let mut call = world
        .call(Method::POST, "/v1/me/avatar")
        .header(
            "content-type",
            &format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .with(|r| r.body(body));
    if let Some(access) = access {
        call = call.bearer(access);
    }
    call.send().await
}

/// Uploads `file` as the form field `file` (after an ignored field); returns the answer.
async fn upload(world: &World, access: &str, file: &[u8]) -> Response {
    let body = form(&[
        ("note", None, b"ignored".as_slice()),
        ("file", Some("tmp_avatar.png"), file),
    ]);
    post_form(world, Some(access), body).await
}

/// Uploads `file`, asserting success; returns the avatar URL.
async fn uploaded(world: &World, access: &str, file: &[u8]) -> String {
    let answer = upload(world, access, file).await;
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    let body: Value = answer.json().await.expect("JSON");
    body["avatar_url"].as_str().expect("avatar_url").to_owned()
}

/// The path and id of an avatar URL of this world.
fn path_and_id(world: &World, url: &str) -> (String, AvatarId) {
    let path = url
        .strip_prefix(&world.app.base)
        .unwrap_or_else(|| panic!("{url} is not under {}", world.app.base));
    let id = path.strip_prefix("/v1/avatars/").expect("an avatar path");
    (path.to_owned(), AvatarId::parse(id).expect("a UUID"))
}

fn picture(width: u32, height: u32) -> RgbaImage {
    RgbaImage::from_fn(width, height, |x, y| {
        Rgba([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 128, 255])
    })
}

fn png(image: &RgbaImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    PngEncoder::new(&mut bytes)
        .write_image(
            image,
            image.width(),
            image.height(),
            image::ExtendedColorType::Rgba8,
        )
        .expect("PNG");
    bytes
}

fn jpeg(image: &RgbaImage) -> Vec<u8> {
    let rgb = DynamicImage::ImageRgba8(image.clone()).into_rgb8();
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(&mut bytes, 90)
        .write_image(
            &rgb,
            rgb.width(),
            rgb.height(),
            image::ExtendedColorType::Rgb8,
        )
        .expect("JPEG");
    bytes
}

/// A PNG chunk: length, type, data, CRC-32 of type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&u32::try_from(data.len()).expect("small").to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind.as_slice(), data].concat()).to_be_bytes());
    out
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// EXIF as a JPEG's APP1 or a PNG's eXIf carry it: a TIFF header, then text naming a GPS
/// position.
fn exif() -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08\x00\x00GPS ".to_vec();
    tiff.extend_from_slice(MARKER);
    tiff
}

/// A PNG with text and EXIF chunks (after IHDR) holding the marker.
fn png_with_metadata(image: &RgbaImage) -> Vec<u8> {
    let plain = png(image);
    // Signature (8) and IHDR (8 + 13 + 4).
    let (head, rest) = plain.split_at(8 + 25);
    let mut text = b"Comment\0".to_vec();
    text.extend_from_slice(MARKER);
    [
        head.to_vec(),
        chunk(b"tEXt", &text),
        chunk(b"eXIf", &exif()),
        rest.to_vec(),
    ]
    .concat()
}

/// A JPEG with an APP1 Exif segment (right after SOI) holding the marker.
fn jpeg_with_exif(image: &RgbaImage) -> Vec<u8> {
    let plain = jpeg(image);
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend_from_slice(&exif());
    let length = u16::try_from(payload.len() + 2).expect("small");
    let mut segment = vec![0xff, 0xe1];
    segment.extend_from_slice(&length.to_be_bytes());
    segment.extend_from_slice(&payload);
    [plain[..2].to_vec(), segment, plain[2..].to_vec()].concat()
}

/// A PNG whose header claims `width`×`height` pixels, with (almost) nothing behind it.
fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(chunk(b"IHDR", &header));
    bytes.extend(chunk(
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bytes.extend(chunk(b"IEND", &[]));
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `GET` of an avatar path, answered 200 with the immutable cache headers; its body.
async fn served(world: &World, path: &str, content: &str) -> Vec<u8> {
    let answer = world.get(path).await;
    assert_eq!(answer.status(), 200, "{path}");
    assert_eq!(content_type(&answer), content);
    let headers = answer.headers();
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(headers.contains_key("etag"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("content-security-policy"));
    answer.bytes().await.expect("the image").to_vec()
}

async fn a_png_is_stored_served_and_named_by_the_profile(world: World) {
    let login = world.login(APP_A, "alice").await;
    let original = picture(48, 32);
    let url = uploaded(&world, &login.access, &png(&original)).await;
    let (path, id) = path_and_id(&world, &url);

    // The profile names it, absolute under the public URL (the bound address by default).
    let me = world.get_json(&login.access, "/v1/me").await;
    assert_eq!(me["profile"]["avatar_url"], url.as_str(), "{me}");

    // Served as stored, again and again: the same PNG, the same pixels as uploaded.
    let first = served(&world, &path, "image/png").await;
    assert_eq!(served(&world, &path, "image/png").await, first);
    let back = image::load_from_memory_with_format(&first, ImageFormat::Png).expect("a PNG");
    assert_eq!(back.to_rgba8(), original);
    let etag = world.get(&path).await.headers()["etag"].clone();
    assert_eq!(etag.to_str().expect("ascii"), format!("\"{id}\""));

    // Stored sealed: the row holds no PNG, and the event names the id, not the URL in clear.
    let row = world
        .store()
        .await
        .avatar(id)
        .await
        .expect("read")
        .expect("a row");
    assert_eq!(row.content_type, "image/png");
    assert!(!contains(&row.sealed_image, b"IHDR"), "the image is sealed");
    assert_ne!(row.sealed_image, first);
    let events = world.events_of_type("ProfileUpdated").await;
    let event = events.last().expect("ProfileUpdated");
    assert_eq!(event.payload["avatar_id"], id.to_string());
    assert!(!event.payload.to_string().contains("/v1/avatars/"));

    // A malformed or unknown id: 404 alike.
    for missing in [
        "/v1/avatars/not-a-uuid",
        "/v1/avatars/0b6c3f5e-8f1e-4c57-9a51-2f4b7f1d9c11",
    ] {
        assert_problem(world.get(missing).await, 404, "not_found").await;
    }
}

async fn metadata_is_stripped_from_jpeg_and_png(world: World) {
    let login = world.login(APP_A, "bob").await;
    let image = picture(40, 30);
    for (file, content) in [
        (jpeg_with_exif(&image), "image/jpeg"),
        (png_with_metadata(&image), "image/png"),
    ] {
        assert!(contains(&file, MARKER), "the test image carries the marker");
        image::load_from_memory(&file).expect("the test image decodes");
        let url = uploaded(&world, &login.access, &file).await;
        let (path, _) = path_and_id(&world, &url);
        let stored = served(&world, &path, content).await;
        for left in [MARKER, b"Exif".as_slice(), b"eXIf", b"tEXt", &[0xff, 0xe1]] {
            assert!(!contains(&stored, left), "{content} kept {left:?}");
        }
        let back = image::load_from_memory(&stored).expect("decodes");
        assert_eq!((back.width(), back.height()), (40, 30));
    }
    // Nor is it anywhere in the database in clear (the sealed image proves nothing either way:
    // the served one above shows it was stripped).
    assert!(!contains(&world.database_bytes().await, MARKER));
}

async fn a_webp_becomes_a_jpeg(world: World) {
    let login = world.login(APP_A, "carol").await;
    let mut webp = Vec::new();
    let image = picture(20, 20);
    WebPEncoder::new_lossless(&mut webp)
        .encode(&image, 20, 20, image::ExtendedColorType::Rgba8)
        .expect("WebP");
    let url = uploaded(&world, &login.access, &webp).await;
    let (path, _) = path_and_id(&world, &url);
    let stored = served(&world, &path, "image/jpeg").await;
    let format = image::guess_format(&stored).expect("a format");
    assert_eq!(format, ImageFormat::Jpeg);
}

async fn large_images_are_scaled_to_fit(world: World) {
    let login = world.login(APP_A, "dave").await;
    for ((width, height), expected) in [((1500, 900), (640, 384)), ((700, 2100), (213, 640))] {
        let url = uploaded(&world, &login.access, &jpeg(&picture(width, height))).await;
        let (path, _) = path_and_id(&world, &url);
        let stored = served(&world, &path, "image/jpeg").await;
        let back = image::load_from_memory(&stored).expect("decodes");
        assert_eq!((back.width(), back.height()), expected, "{width}×{height}");
    }
}

async fn bad_uploads_are_refused_with_their_codes(world: World) {
    let login = world.login(APP_A, "eve").await;
    let access = login.access.as_str();
    // Not an image, whatever the part says; a GIF; a bomb's header (tiny, claiming 10⁸
    // pixels); a PNG cut short.
    let mut cut = png(&picture(64, 64));
    cut.truncate(cut.len() / 2);
    for file in [
        b"#!/bin/sh\necho not an image\n".to_vec(),
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
        png_claiming(10_000, 10_000),
        png_claiming(4097, 1),
        cut,
        Vec::new(),
    ] {
        let answer = upload(&world, access, &file).await;
        assert_problem(answer, 415, "unsupported_media_type").await;
    }
    // Over 2 MiB (noise, so it cannot be anything smaller): 413, the answer arriving whole.
    let huge: Vec<u8> = (0..5 * 1024 * 1024_u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let answer = upload(&world, access, &huge).await;
    assert_problem(answer, 413, "payload_too_large").await;
    // No `file` field; not multipart at all; a broken multipart body.
    let no_file = form(&[("avatar", Some("a.png"), png(&picture(4, 4)).as_slice())]);
    assert_problem(
        post_form(&world, Some(access), no_file).await,
        400,
        "invalid_request",
    )
    .await;
    let json = world
        .post_as(access, "/v1/me/avatar", serde_json::json!({ "file": "x" }))
        .await;
    assert_problem(json, 400, "invalid_request").await;
    let broken =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nabc");
    assert_problem(
        post_form(&world, Some(access), broken.into_bytes()).await,
        400,
        "invalid_request",
    )
    .await;
    // Without a token: 401, nothing read.
    let anonymous = form(&[("file", Some("a.png"), png(&picture(4, 4)).as_slice())]);
    assert_problem(
        post_form(&world, None, anonymous).await,
        401,
        "unauthorized",
    )
    .await;
    // Nothing was stored by any of it.
    let me = world.get_json(access, "/v1/me").await;
    assert!(me["profile"].is_null(), "{me}");
}

async fn a_new_avatar_deletes_the_old_one(world: World) {
    let login = world.login(APP_A, "frank").await;
    let access = login.access.as_str();
    let first = uploaded(&world, access, &png(&picture(8, 8))).await;
    let (first_path, first_id) = path_and_id(&world, &first);
    // A nickname in between keeps the avatar (and its image).
    let renamed = world
        .put_as(
            access,
            "/v1/me/profile",
            serde_json::json!({ "nickname": "Frank" }),
        )
        .await;
    assert_eq!(renamed.status(), 204);
    served(&world, &first_path, "image/png").await;

    let second = uploaded(&world, access, &png(&picture(9, 9))).await;
    let (second_path, _) = path_and_id(&world, &second);
    assert_problem(world.get(&first_path).await, 404, "not_found").await;
    assert!(no_row(&world, first_id).await);
    served(&world, &second_path, "image/png").await;
    let me = world.get_json(access, "/v1/me").await;
    assert_eq!(me["profile"]["avatar_url"], second.as_str());
    assert_eq!(me["profile"]["nickname"], "Frank");
}

/// Whatever ends the profile's use of an uploaded image (an avatar URL from elsewhere, the
/// withdrawn profile) deletes it: a user keeps at most the image their profile shows.
async fn an_avatar_the_profile_stops_showing_is_deleted(world: World) {
    let login = world.login(APP_A, "heidi").await;
    let access = login.access.as_str();

    let url = uploaded(&world, access, &png(&picture(8, 8))).await;
    let (path, id) = path_and_id(&world, &url);
    // A client saving the whole form sends our own URL back: the avatar stays.
    let whole_form = serde_json::json!({ "nickname": "Heidi", "avatar_url": url });
    let saved = world.put_as(access, "/v1/me/profile", whole_form).await;
    assert_eq!(saved.status(), 204);
    served(&world, &path, "image/png").await;
    assert!(!no_row(&world, id).await, "our own URL sent back");
    // So does an older URL of ours (a form opened before a newer upload): the newer stays.
    let newer = uploaded(&world, access, &png(&picture(7, 7))).await;
    let (path, id) = path_and_id(&world, &newer);
    let stale_form = serde_json::json!({ "avatar_url": url });
    let saved = world.put_as(access, "/v1/me/profile", stale_form).await;
    assert_eq!(saved.status(), 204);
    served(&world, &path, "image/png").await;
    let me = world.get_json(access, "/v1/me").await;
    assert_eq!(me["profile"]["avatar_url"], newer.as_str());
    let elsewhere = serde_json::json!({ "avatar_url": "https://cdn.example.com/heidi.png" });
    let replaced = world.put_as(access, "/v1/me/profile", elsewhere).await;
    assert_eq!(replaced.status(), 204);
    assert_problem(world.get(&path).await, 404, "not_found").await;
    assert!(no_row(&world, id).await, "an avatar URL from elsewhere");

    let url = uploaded(&world, access, &png(&picture(8, 8))).await;
    let (path, id) = path_and_id(&world, &url);
    served(&world, &path, "image/png").await;
    let withdrawn = world
        .delete_as(access, "/v1/me/authorizations/profile")
        .await;
    assert_eq!(withdrawn.status(), 204);
    assert_problem(world.get(&path).await, 404, "not_found").await;
    assert!(no_row(&world, id).await, "the withdrawn profile");
}

/// The store holds no image `id`.
async fn no_row(world: &World, id: AvatarId) -> bool {
    world
        .store()
        .await
        .avatar(id)
        .await
        .expect("read")
        .is_none()
}

async fn erasure_deletes_the_image(world: World) {
    let login = world.login(APP_A, "grace").await;
    let url = uploaded(&world, &login.access, &png(&picture(8, 8))).await;
    let (path, id) = path_and_id(&world, &url);
    served(&world, &path, "image/png").await;
    let erased = world.delete_as(&login.access, "/v1/me").await;
    assert_eq!(erased.status(), 204);
    assert_problem(world.get(&path).await, 404, "not_found").await;
    assert!(no_row(&world, id).await);
}
