//! From downloaded bytes to the stored image: decode under limits, orient,
//! filter, resize as img2dataset does, encode.
//!
//! - **Decode** with `image` (JPEG, PNG, WebP, GIF, BMP). The header is read
//!   first and an image of more than `max_pixels` pixels is refused before
//!   any pixel buffer is allocated (a decompression bomb claiming 3,000,000 x
//!   2,000,000 pixels costs nothing); the decoder's own allocation limit is
//!   set from the same figure. Animated GIF and WebP give their first frame.
//! - **Orientation**: the EXIF orientation is applied, so width and height
//!   are those a viewer shows.
//! - **Colour**: everything becomes 8-bit RGB: 16-bit channels are scaled,
//!   palettes expanded, CMYK JPEGs converted by the decoder, grey
//!   replicated, and alpha composited over white.
//! - **Resize** (`fast_image_resize`) in img2dataset's modes at `size`
//!   (256): `no`; `border` (the longer side to `size`, then centred on a
//!   black `size` x `size` square); `keep_ratio` (the shorter side to
//!   `size`); `keep_ratio_largest` (the longer side to `size`);
//!   `center_crop` (the shorter side to `size`, then the centre square).
//!   Shrinking averages (a box filter over each output pixel's footprint, as
//!   OpenCV's area interpolation that img2dataset uses); enlarging uses
//!   Lanczos3. With `only_if_bigger`, images that would grow are kept as they are.
//! - **Encode**: JPEG (`jpeg-encoder`, quality 95 by default), PNG or WebP
//!   (lossless: the `image` crate writes no lossy WebP).

use std::io::Cursor;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// How images are resized (img2dataset's `resize_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// Kept as decoded.
    No,
    /// Longer side to `size`, centred on a black square.
    Border,
    /// Shorter side to `size`.
    KeepRatio,
    /// Longer side to `size`.
    KeepRatioLargest,
    /// Shorter side to `size`, then the centre square.
    CenterCrop,
}

impl ResizeMode {
    /// The mode's name as img2dataset and the command line spell it.
    pub fn name(self) -> &'static str {
        match self {
            ResizeMode::No => "no",
            ResizeMode::Border => "border",
            ResizeMode::KeepRatio => "keep_ratio",
            ResizeMode::KeepRatioLargest => "keep_ratio_largest",
            ResizeMode::CenterCrop => "center_crop",
        }
    }
}

/// The stored format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JPEG at this quality (1-100).
    Jpeg(u8),
    /// PNG.
    Png,
    /// Lossless WebP.
    Webp,
}

impl Encoding {
    /// The file extension, which is the WebDataset field name.
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Jpeg(_) => "jpg",
            Encoding::Png => "png",
            Encoding::Webp => "webp",
        }
    }
}

/// What [`process`] does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImageOptions {
    /// Target size in pixels.
    pub size: u32,
    /// Resize mode.
    pub mode: ResizeMode,
    /// Never enlarge.
    pub only_if_bigger: bool,
    /// Output encoding.
    pub encoding: Encoding,
    /// Larger images are refused before decoding.
    pub max_pixels: u64,
    /// Images whose shorter side is smaller are refused.
    pub min_side: u32,
    /// Images whose longer/shorter side ratio is larger are refused.
    pub max_aspect_ratio: f64,
}

impl Default for ImageOptions {
    fn default() -> Self {
        ImageOptions {
            size: 256,
            mode: ResizeMode::Border,
            only_if_bigger: false,
            encoding: Encoding::Jpeg(95),
            max_pixels: 89_478_485, // PIL's default bomb limit
            min_side: 0,
            max_aspect_ratio: f64::INFINITY,
        }
    }
}

/// Why an image was not stored. [`ImageFailure::key`] names it in counts.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageFailure {
    /// Not an image format this build decodes.
    Unsupported(String),
    /// More pixels than the limit.
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
    },
    /// The decoder failed (corrupt or truncated data).
    Decode(String),
    /// The shorter side is below the minimum.
    TooSmall {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The aspect ratio is above the maximum.
    AspectRatio(f64),
    /// Resizing or encoding failed.
    Encode(String),
}

impl ImageFailure {
    /// The counter name.
    pub fn key(&self) -> &'static str {
        match self {
            ImageFailure::Unsupported(_) => "unsupported_format",
            ImageFailure::TooManyPixels { .. } => "too_many_pixels",
            ImageFailure::Decode(_) => "decode_error",
            ImageFailure::TooSmall { .. } => "too_small",
            ImageFailure::AspectRatio(_) => "aspect_ratio",
            ImageFailure::Encode(_) => "encode_error",
        }
    }
}

impl std::fmt::Display for ImageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageFailure::Unsupported(m) => write!(f, "unsupported image format: {m}"),
            ImageFailure::TooManyPixels { width, height } => {
                write!(f, "image of {width} x {height} pixels is over the limit")
            }
            ImageFailure::Decode(m) => write!(f, "cannot decode the image: {m}"),
            ImageFailure::TooSmall { width, height } => {
                write!(f, "image of {width} x {height} is below the minimum side")
            }
            ImageFailure::AspectRatio(r) => write!(f, "aspect ratio {r:.2} is over the maximum"),
            ImageFailure::Encode(m) => write!(f, "cannot resize or encode: {m}"),
        }
    }
}

/// A stored image.
#[derive(Debug, Clone)]
pub struct Processed {
    /// The encoded bytes.
    pub bytes: Vec<u8>,
    /// Stored width.
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// Width as decoded and oriented.
    pub original_width: u32,
    /// Height as decoded and oriented.
    pub original_height: u32,
}

/// Decodes, checks, resizes and encodes `bytes`.
///
/// # Errors
/// The [`ImageFailure`]; never a panic on any input.
pub fn process(bytes: &[u8], opts: &ImageOptions) -> Result<Processed, ImageFailure> {
    let rgb = decode(bytes, opts)?;
    let (ow, oh) = (rgb.width(), rgb.height());
    let (short, long) = (ow.min(oh), ow.max(oh));
    if short < opts.min_side.max(1) {
        return Err(ImageFailure::TooSmall {
            width: ow,
            height: oh,
        });
    }
    let ratio = f64::from(long) / f64::from(short);
    if ratio > opts.max_aspect_ratio {
        return Err(ImageFailure::AspectRatio(ratio));
    }
    let (pixels, width, height) = resize(rgb, opts)?;
    let bytes = encode(&pixels, width, height, opts.encoding)?;
    Ok(Processed {
        bytes,
        width,
        height,
        original_width: ow,
        original_height: oh,
    })
}

/// Decodes to oriented 8-bit RGB under the pixel limit.
fn decode(bytes: &[u8], opts: &ImageOptions) -> Result<image::RgbImage, ImageFailure> {
    match crate::jpeg::frame(bytes) {
        Some(crate::jpeg::Frame::Arithmetic) => {
            return crate::jpeg::decode_arithmetic(bytes, opts.max_pixels);
        }
        Some(crate::jpeg::Frame::Unsupported(process)) => {
            return Err(ImageFailure::Unsupported(process.into()));
        }
        _ => {}
    }
    if crate::avif::is_avif(bytes) {
        return crate::avif::decode_rgb(bytes, opts.max_pixels);
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageFailure::Decode(e.to_string()))?;
    let Some(format) = reader.format() else {
        return Err(ImageFailure::Unsupported("not recognised".into()));
    };
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Unsupported(u) => ImageFailure::Unsupported(format!("{format:?}: {u}")),
        other => ImageFailure::Decode(other.to_string()),
    })?;
    let (w, h) = decoder.dimensions();
    if u64::from(w) * u64::from(h) > opts.max_pixels {
        return Err(ImageFailure::TooManyPixels {
            width: w,
            height: h,
        });
    }
    let mut limits = Limits::default();
    // The output buffer (at most 8 bytes a pixel: 16-bit RGBA) and as much
    // again for the decoder's own work.
    limits.max_alloc = Some(opts.max_pixels.saturating_mul(16).max(1 << 20));
    decoder
        .set_limits(limits)
        .map_err(|e| ImageFailure::Decode(e.to_string()))?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| ImageFailure::Decode(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(if img.color().has_alpha() {
        over_white(&img.to_rgba8())
    } else {
        img.to_rgb8()
    })
}

/// RGBA composited over white: `c*a + 255*(255-a)`, rounded, `/255`.
pub(crate) fn over_white(rgba: &image::RgbaImage) -> image::RgbImage {
    let mut rgb = image::RgbImage::new(rgba.width(), rgba.height());
    for (out, px) in rgb.pixels_mut().zip(rgba.pixels()) {
        let a = u16::from(px[3]);
        for c in 0..3 {
            out[c] = ((u16::from(px[c]) * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    rgb
}

/// The resized pixels (RGB8, row-major) and their size.
fn resize(rgb: image::RgbImage, opts: &ImageOptions) -> Result<(Vec<u8>, u32, u32), ImageFailure> {
    let (w, h) = (rgb.width(), rgb.height());
    let size = opts.size.max(1);
    let scale_to = |short_side: bool| -> (u32, u32) {
        let side = if short_side { w.min(h) } else { w.max(h) };
        let f = f64::from(size) / f64::from(side);
        let nw = ((f64::from(w) * f).round() as u32).max(1);
        let nh = ((f64::from(h) * f).round() as u32).max(1);
        (nw, nh)
    };
    // Target size of the resampled image, and the crop of the source.
    let (tw, th, crop) = match opts.mode {
        ResizeMode::No => return Ok((rgb.into_raw(), w, h)),
        ResizeMode::KeepRatio => {
            let (a, b) = scale_to(true);
            (a, b, None)
        }
        ResizeMode::KeepRatioLargest | ResizeMode::Border => {
            let (a, b) = scale_to(false);
            (a, b, None)
        }
        ResizeMode::CenterCrop => {
            let side = w.min(h);
            let crop = (
                f64::from(w - side) / 2.0,
                f64::from(h - side) / 2.0,
                f64::from(side),
                f64::from(side),
            );
            (size, size, Some(crop))
        }
    };
    let grows = u64::from(tw) * u64::from(th) > u64::from(w) * u64::from(h);
    if opts.only_if_bigger && grows {
        return Ok((rgb.into_raw(), w, h));
    }
    let src = fr::images::Image::from_vec_u8(w, h, rgb.into_raw(), fr::PixelType::U8x3)
        .map_err(|e| ImageFailure::Encode(e.to_string()))?;
    let mut dst = fr::images::Image::new(tw, th, fr::PixelType::U8x3);
    let filter = if grows {
        fr::FilterType::Lanczos3
    } else {
        fr::FilterType::Box
    };
    let mut options = fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(filter));
    if let Some((l, t, cw, ch)) = crop {
        options = options.crop(l, t, cw, ch);
    }
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| ImageFailure::Encode(e.to_string()))?;
    if opts.mode != ResizeMode::Border {
        return Ok((dst.into_vec(), tw, th));
    }
    // Centre on a black square.
    let mut canvas = vec![0u8; size as usize * size as usize * 3];
    let (x0, y0) = ((size - tw.min(size)) / 2, (size - th.min(size)) / 2);
    let pixels = dst.buffer();
    for y in 0..th.min(size) {
        let from = (y * tw * 3) as usize;
        let to = (((y + y0) * size + x0) * 3) as usize;
        let n = (tw.min(size) * 3) as usize;
        canvas[to..to + n].copy_from_slice(&pixels[from..from + n]);
    }
    Ok((canvas, size, size))
}

fn encode(pixels: &[u8], w: u32, h: u32, encoding: Encoding) -> Result<Vec<u8>, ImageFailure> {
    let mut out = Vec::new();
    match encoding {
        Encoding::Jpeg(quality) => {
            let (w16, h16) = match (u16::try_from(w), u16::try_from(h)) {
                (Ok(a), Ok(b)) => (a, b),
                _ => {
                    return Err(ImageFailure::Encode(format!(
                        "{w} x {h} is too large for JPEG"
                    )));
                }
            };
            jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
                .encode(pixels, w16, h16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| ImageFailure::Encode(e.to_string()))?;
        }
        Encoding::Png => image::codecs::png::PngEncoder::new(&mut out)
            .write_image(pixels, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| ImageFailure::Encode(e.to_string()))?,
        Encoding::Webp => image::codecs::webp::WebPEncoder::new_lossless(&mut out)
            .write_image(pixels, w, h, image::ExtendedColorType::Rgb8)
            .map_err(|e| ImageFailure::Encode(e.to_string()))?,
    }
    Ok(out)
}

use image::ImageEncoder as _;

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
        let img = image::RgbaImage::from_fn(w, h, |x, y| image::Rgba(f(x, y)));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgba8)
            .unwrap();
        out
    }

    fn decode_out(p: &Processed) -> image::RgbImage {
        image::load_from_memory(&p.bytes).unwrap().to_rgb8()
    }

    #[test]
    fn modes_give_img2datasets_sizes() {
        let src = png(400, 200, |x, _| [(x % 256) as u8, 100, 50, 255]);
        let run = |mode, only_if_bigger, size| {
            let p = process(
                &src,
                &ImageOptions {
                    mode,
                    only_if_bigger,
                    size,
                    encoding: Encoding::Png,
                    ..ImageOptions::default()
                },
            )
            .unwrap();
            assert_eq!((p.original_width, p.original_height), (400, 200));
            assert_eq!(decode_out(&p).dimensions(), (p.width, p.height));
            (p.width, p.height)
        };
        assert_eq!(run(ResizeMode::No, false, 100), (400, 200));
        assert_eq!(run(ResizeMode::KeepRatio, false, 100), (200, 100));
        assert_eq!(run(ResizeMode::KeepRatioLargest, false, 100), (100, 50));
        assert_eq!(run(ResizeMode::CenterCrop, false, 100), (100, 100));
        assert_eq!(run(ResizeMode::Border, false, 100), (100, 100));
        assert_eq!(run(ResizeMode::CenterCrop, false, 500), (500, 500));
        assert_eq!(run(ResizeMode::CenterCrop, true, 500), (400, 200));
    }

    #[test]
    fn border_pads_black_and_alpha_goes_over_white() {
        // A transparent wide image: the content is white, the border black.
        let src = png(200, 100, |_, _| [0, 0, 0, 0]);
        let p = process(
            &src,
            &ImageOptions {
                size: 100,
                encoding: Encoding::Png,
                ..ImageOptions::default()
            },
        )
        .unwrap();
        let out = decode_out(&p);
        assert_eq!(out.get_pixel(50, 50).0, [255, 255, 255]);
        assert_eq!(out.get_pixel(50, 5).0, [0, 0, 0]);
        assert_eq!(out.get_pixel(50, 95).0, [0, 0, 0]);
    }

    #[test]
    fn limits_and_filters_refuse_before_work() {
        let src = png(300, 20, |_, _| [9, 9, 9, 255]);
        let opts = ImageOptions {
            min_side: 32,
            ..ImageOptions::default()
        };
        assert_eq!(process(&src, &opts).unwrap_err().key(), "too_small");
        let opts = ImageOptions {
            max_aspect_ratio: 10.0,
            ..ImageOptions::default()
        };
        assert_eq!(process(&src, &opts).unwrap_err().key(), "aspect_ratio");
        let opts = ImageOptions {
            max_pixels: 1000,
            ..ImageOptions::default()
        };
        assert_eq!(process(&src, &opts).unwrap_err().key(), "too_many_pixels");
        assert_eq!(
            process(b"not an image at all", &ImageOptions::default())
                .unwrap_err()
                .key(),
            "unsupported_format"
        );
        assert_eq!(
            process(&src[..src.len() / 2], &ImageOptions::default())
                .unwrap_err()
                .key(),
            "decode_error"
        );
        // JPEG output decodes to the stored size.
        let p = process(
            &png(640, 480, |x, y| [x as u8, y as u8, 0, 255]),
            &ImageOptions::default(),
        )
        .unwrap();
        assert!(p.bytes.starts_with(&[0xff, 0xd8]));
        assert_eq!(decode_out(&p).dimensions(), (256, 256));
    }
}
