//! Image decoding: every image comes out as 8-bit RGB, whatever it was on disk.

use crate::error::{Error, Result};
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
    let bytes = std::fs::read(path)
        .map_err(|e| fail(if e.kind() == std::io::ErrorKind::NotFound { "file not found".into() } else { e.to_string() }))?;
    let format = image::guess_format(&bytes).map_err(|_| fail("not a JPEG or PNG file (unrecognised content)".into()))?;
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
