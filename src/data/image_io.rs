//! Image decoding: every image comes out as 8-bit RGB, whatever it was on disk.

use crate::error::{Error, Result};
use crate::transforms::ScaledImage;
use image::{ImageFormat, RgbImage};
use std::path::Path;

/// Decode an image file (JPEG or PNG, by content, not extension) as RGB. Greyscale, grey+alpha,
/// RGBA, 16-bit and CMYK JPEGs are converted; EXIF orientation is not applied (VOC boxes are
/// drawn on the stored pixels). A JPEG without its end-of-image marker is an error: the decoder
/// would otherwise fill the missing part of a truncated file in silence. Errors name the file;
/// `image` in the error is its stem.
pub fn open_image(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let fail = |problem: String| Error::Image { path: path.to_path_buf(), image: stem.clone(), problem };
    let bytes = std::fs::read(path).map_err(|e| {
        fail(if e.kind() == std::io::ErrorKind::NotFound { "file not found".into() } else { e.to_string() })
    })?;
    let format =
        image::guess_format(&bytes).map_err(|_| fail("not a JPEG or PNG file (unrecognised content)".into()))?;
    if format == ImageFormat::Jpeg && !has_jpeg_end(&bytes) {
        return Err(fail("truncated JPEG: no end-of-image marker (FF D9)".into()));
    }
    let img = image::load_from_memory_with_format(&bytes, format).map_err(|e| fail(format!("cannot decode: {e}")))?;
    Ok(img.into_rgb8())
}

/// True when the end-of-image marker `FF D9` is among the last bytes (some writers append a
/// little padding or metadata after it).
fn has_jpeg_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// A JPEG decoded straight to a smaller size with libjpeg-turbo's DCT scaling (1/2, 1/4 or
/// 1/8: the IDCT computes the averages of 2x2, 4x4 or 8x8 blocks instead of every pixel), the
/// smallest scale that leaves both sides at least `min_w x min_h`. Returns the image and the
/// JPEG's full size. The averaging happens before the colour conversion clips, so saturated
/// colours can differ from a full decode by a few levels (as with PIL's `draft`). `None` when
/// `bytes` is not a complete JPEG, when no reduction applies or
/// when libjpeg-turbo cannot decode it (then [`open_image`] decodes it, or names the problem).
pub fn decode_jpeg_reduced(bytes: &[u8], min_w: u32, min_h: u32) -> Option<(RgbImage, (u32, u32))> {
    decode_jpeg_at(bytes, |_, _| Some((min_w, min_h)), false)
}

/// [`decode_jpeg_reduced`], or the whole JPEG decoded by libjpeg-turbo when no reduction
/// applies (measured here about 15% faster than the `image` crate's decoder on the sample).
/// `None` when `bytes` is not a complete JPEG or libjpeg-turbo declines it (CMYK, say).
pub fn decode_jpeg(bytes: &[u8], min_w: u32, min_h: u32) -> Option<(RgbImage, (u32, u32))> {
    decode_jpeg_at(bytes, |_, _| Some((min_w, min_h)), true)
}

/// The two above, the smallest size wanted given by `min_size(width, height)` of the JPEG's
/// header (`None`: do not decode). `whole` says whether to decode at full size when no
/// reduction applies (or to return `None` before decoding anything).
fn decode_jpeg_at(
    bytes: &[u8],
    min_size: impl FnOnce(u32, u32) -> Option<(u32, u32)>,
    whole: bool,
) -> Option<(RgbImage, (u32, u32))> {
    if image::guess_format(bytes).ok()? != ImageFormat::Jpeg || !has_jpeg_end(bytes) {
        return None;
    }
    let mut d = turbojpeg::Decompressor::new().ok()?;
    let header = d.read_header(bytes).ok()?;
    let (w, h) = (header.width as u32, header.height as u32);
    let (min_w, min_h) = min_size(w, h)?;
    let reduced = [8u32, 4, 2].into_iter().find(|&f| w / f >= min_w.max(1) && h / f >= min_h.max(1));
    let den = if whole { reduced.unwrap_or(1) } else { reduced? };
    let scale = turbojpeg::ScalingFactor::new(1, den as usize);
    let scaled = header.scaled(scale);
    d.set_scaling_factor(scale).ok()?;
    let mut img = turbojpeg::Image {
        pixels: vec![0u8; 3 * scaled.width * scaled.height],
        width: scaled.width,
        pitch: 3 * scaled.width,
        height: scaled.height,
        format: turbojpeg::PixelFormat::RGB,
    };
    d.decompress(bytes, img.as_deref_mut()).ok()?;
    Some((RgbImage::from_raw(scaled.width as u32, scaled.height as u32, img.pixels)?, (w, h)))
}

/// An encoded image (JPEG or PNG bytes) decoded and scaled so its short side is `sz`
/// ([`crate::transforms::scale_to`]), with the factors `(sy, sx)`: [`decode_for_warp`], then
/// resized to that size where it is larger.
pub fn decode_scaled(bytes: &[u8], sz: u32) -> Result<(RgbImage, f32, f32)> {
    let s = decode_for_warp(bytes, sz)?;
    Ok((s.to_scaled()?, s.sy, s.sx))
}

/// An encoded image ready for [`crate::transforms::Tfms::apply_warp`]: a JPEG through
/// [`decode_jpeg`] (at a reduced DCT scale when it is at least twice the size), anything else
/// decoded whole; then [`ScaledImage::new`] keeps it as it is when it is close to the scaled
/// size, or resizes it.
pub fn decode_for_warp(bytes: &[u8], sz: u32) -> Result<ScaledImage> {
    // (The size comes from libjpeg-turbo's reading of the header: read once.)
    if let Some((img, full)) = decode_jpeg_at(bytes, |w, h| crate::transforms::scaled_size(w, h, sz).ok(), true) {
        return ScaledImage::new(img, full, sz);
    }
    let img = image::load_from_memory(bytes).map_err(|e| Error::Invalid(format!("cannot decode the image: {e}")))?;
    let img = img.into_rgb8();
    let full = img.dimensions();
    ScaledImage::new(img, full, sz)
}
