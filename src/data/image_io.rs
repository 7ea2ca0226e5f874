//! Image decoding: every image comes out as 8-bit RGB, whatever it was on disk.

use crate::error::{Error, Result};
use image::RgbImage;
use std::path::Path;

/// Decode an image file (JPEG or PNG, by content, not extension) as RGB. Greyscale, grey+alpha,
/// RGBA, 16-bit and CMYK JPEGs are converted; EXIF orientation is not applied (VOC boxes are
/// drawn on the stored pixels). Errors name the file; `image` in the error is its stem.
pub fn open_image(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let fail = |problem: String| Error::Image { path: path.to_path_buf(), image: stem.clone(), problem };
    let reader = image::ImageReader::open(path)
        .map_err(|e| fail(if e.kind() == std::io::ErrorKind::NotFound { "file not found".into() } else { e.to_string() }))?
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format().is_none() {
        return Err(fail("not a JPEG or PNG file (unrecognised content)".into()));
    }
    let img = reader.decode().map_err(|e| fail(format!("cannot decode: {e}")))?;
    Ok(img.into_rgb8())
}
