//! AVIF (AV1 Image File Format, AOM 2019; a HEIF container of AV1 image
//! items): the container read by avif-parse, the primary item and its
//! alpha item decoded by rav1d (the Rust port of dav1d), and the YUV
//! samples turned into 8-bit RGB as libavif (Pillow's AVIF codec) does:
//! the matrix coefficients and range of the AV1 sequence header (ITU-T
//! H.273; unspecified taken as BT.601, as libavif takes it), chroma
//! upsampled bilinearly from its co-sited positions, alpha
//! un-premultiplied where the file says it is premultiplied.
//!
//! Left out: the `irot`/`imir` transforms and `clap` crop (avif-parse does
//! not expose them), image sequences (the first frame is taken), and the
//! colour profile (as everywhere in wit, samples are kept as they are).

use image::{RgbImage, RgbaImage};
use re_rav1d::dav1d::{self, PixelLayout, PlanarImageComponent, pixel};

use crate::resize::ImageFailure;

/// Whether `bytes` is an AVIF file: an ISO BMFF `ftyp` box whose major or
/// compatible brands include `avif` or `avis`.
pub(crate) fn is_avif(bytes: &[u8]) -> bool {
    if bytes.get(4..8) != Some(b"ftyp") {
        return false;
    }
    let size = bytes
        .get(..4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let end = size.min(bytes.len());
    let brands = bytes.get(8..end).unwrap_or_default();
    // Major brand, minor version, then compatible brands, 4 bytes each.
    brands
        .chunks_exact(4)
        .enumerate()
        .any(|(i, b)| i != 1 && (b == b"avif" || b == b"avis"))
}

/// Decodes an AVIF image to 8-bit RGBA, refusing more than `max_pixels`
/// (from the AV1 sequence header) before decoding.
///
/// # Errors
/// [`ImageFailure::Decode`] for a damaged or truncated file or bitstream;
/// [`ImageFailure::Unsupported`] for what avif-parse does not read (a
/// grid of tiles, for one); [`ImageFailure::TooManyPixels`].
pub(crate) fn decode(bytes: &[u8], max_pixels: u64) -> Result<RgbaImage, ImageFailure> {
    let data = avif_parse::read_avif(&mut &bytes[..]).map_err(|e| match e {
        avif_parse::Error::Unsupported(what) => ImageFailure::Unsupported(format!("AVIF: {what}")),
        other => ImageFailure::Decode(format!("AVIF: {other}")),
    })?;
    let meta = data
        .primary_item_metadata()
        .map_err(|e| ImageFailure::Decode(format!("AVIF: {e}")))?;
    let (w, h) = (meta.max_frame_width.get(), meta.max_frame_height.get());
    if u64::from(w) * u64::from(h) > max_pixels {
        return Err(ImageFailure::TooManyPixels {
            width: w,
            height: h,
        });
    }
    let color = picture(data.primary_item.to_vec())?;
    let mut rgba = to_rgba(&color)?;
    if let Some(alpha) = &data.alpha_item {
        let alpha = picture(alpha.to_vec())?;
        if (alpha.width(), alpha.height()) != (rgba.width(), rgba.height()) {
            return Err(ImageFailure::Decode(
                "AVIF: the alpha item's size differs from the image's".into(),
            ));
        }
        let a = Planes::of(&alpha);
        for (x, y, px) in rgba.enumerate_pixels_mut() {
            let v = a.full_range_8(PlanarImageComponent::Y, x, y, alpha.color_range());
            px[3] = v;
            if data.premultiplied_alpha && v > 0 {
                for c in 0..3 {
                    px[c] =
                        ((u32::from(px[c]) * 255 + u32::from(v) / 2) / u32::from(v)).min(255) as u8;
                }
            }
        }
    }
    Ok(rgba)
}

/// The one picture of an AV1 bitstream.
fn picture(obus: Vec<u8>) -> Result<dav1d::Picture, ImageFailure> {
    let fail = |e: dav1d::Error| ImageFailure::Decode(format!("AV1: {e:?}"));
    let mut settings = dav1d::Settings::new();
    settings.set_n_threads(1);
    settings.set_max_frame_delay(1);
    let mut decoder = dav1d::Decoder::with_settings(&settings).map_err(fail)?;
    match decoder.send_data(obus, None, None, None) {
        Ok(()) => {}
        Err(e) if e.is_again() => {}
        Err(e) => return Err(fail(e)),
    }
    // Drain: pending data, then the picture.
    for _ in 0..64 {
        match decoder.get_picture() {
            Ok(p) => return Ok(p),
            Err(e) if e.is_again() => match decoder.send_pending_data() {
                Ok(()) => {}
                Err(e) if e.is_again() => {}
                Err(e) => return Err(fail(e)),
            },
            Err(e) => return Err(fail(e)),
        }
    }
    decoder.flush();
    decoder
        .get_picture()
        .map_err(|_| ImageFailure::Decode("AV1: the bitstream holds no complete picture".into()))
}

/// Sample access to a picture's planes, 8 or 16 bits a sample.
struct Planes {
    planes: [dav1d::Plane; 3],
    strides: [usize; 3],
    wide: bool,
    bits: u32,
}

impl Planes {
    fn of(p: &dav1d::Picture) -> Planes {
        use PlanarImageComponent::{U, V, Y};
        Planes {
            planes: [p.plane(Y), p.plane(U), p.plane(V)],
            strides: [Y, U, V].map(|c| p.stride(c) as usize),
            wide: p.bit_depth() > 8,
            bits: p.bits_per_component().map_or(8, |b| b.0 as u32),
        }
    }

    fn sample(&self, c: PlanarImageComponent, x: u32, y: u32) -> u32 {
        let i = usize::from(c);
        let row = y as usize * self.strides[i];
        if self.wide {
            let at = row + 2 * x as usize;
            u32::from(u16::from_le_bytes([
                self.planes[i][at],
                self.planes[i][at + 1],
            ]))
        } else {
            u32::from(self.planes[i][row + x as usize])
        }
    }

    /// A sample as 8-bit full range (alpha).
    fn full_range_8(&self, c: PlanarImageComponent, x: u32, y: u32, range: pixel::YUVRange) -> u8 {
        let max = f64::from((1u32 << self.bits) - 1);
        let v = f64::from(self.sample(c, x, y));
        let v = match range {
            pixel::YUVRange::Full => v / max,
            pixel::YUVRange::Limited => {
                let s = f64::from(1u32 << (self.bits - 8));
                (v - 16.0 * s) / (219.0 * s)
            }
        };
        (v.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Kr and Kb of the matrix coefficients (ITU-T H.273, table 4).
fn kr_kb(m: pixel::MatrixCoefficients) -> Result<(f64, f64), ImageFailure> {
    use pixel::MatrixCoefficients as M;
    Ok(match m {
        M::BT709 => (0.2126, 0.0722),
        M::BT470M => (0.30, 0.11),
        M::BT470BG | M::ST170M | M::Unspecified => (0.299, 0.114),
        M::ST240M => (0.212, 0.087),
        M::BT2020NonConstantLuminance => (0.2627, 0.0593),
        other => {
            return Err(ImageFailure::Unsupported(format!(
                "AVIF with matrix coefficients {other:?}"
            )));
        }
    })
}

fn to_rgba(p: &dav1d::Picture) -> Result<RgbaImage, ImageFailure> {
    use PlanarImageComponent::{U, V, Y};
    let (w, h) = (p.width(), p.height());
    let planes = Planes::of(p);
    let layout = p.pixel_layout();
    let identity = matches!(p.matrix_coefficients(), pixel::MatrixCoefficients::Identity);
    let (kr, kb) = if identity || layout == PixelLayout::I400 {
        (0.299, 0.114)
    } else {
        kr_kb(p.matrix_coefficients())?
    };
    let kg = 1.0 - kr - kb;
    let bits = planes.bits;
    let max = f64::from((1u32 << bits) - 1);
    let scale = f64::from(1u32 << (bits - 8));
    let full = matches!(p.color_range(), pixel::YUVRange::Full);
    let luma = |v: f64| {
        if full {
            v / max
        } else {
            (v - 16.0 * scale) / (219.0 * scale)
        }
    };
    let chroma = |v: f64| {
        if full {
            (v - f64::from(1u32 << (bits - 1))) / max
        } else {
            (v - 128.0 * scale) / (224.0 * scale)
        }
    };
    let (sx, sy) = match layout {
        PixelLayout::I420 => (1, 1),
        PixelLayout::I422 => (1, 0),
        PixelLayout::I444 | PixelLayout::I400 => (0, 0),
    };
    let (cw, ch) = ((w + sx) >> sx, (h + sy) >> sy);
    // A chroma sample at a luma position, bilinear between the nearest
    // chroma samples (libavif's built-in upsampling: weights 3/4 and 1/4).
    let upsampled = |c: PlanarImageComponent, x: u32, y: u32| -> f64 {
        let taps = |pos: u32, shift: u32, len: u32| -> [(u32, f64); 2] {
            if shift == 0 {
                return [(pos, 1.0), (pos, 0.0)];
            }
            let near = pos >> 1;
            let far = if pos & 1 == 0 {
                near.saturating_sub(1)
            } else {
                (near + 1).min(len - 1)
            };
            [(near, 0.75), (far, 0.25)]
        };
        let mut v = 0.0;
        for (cy, wy) in taps(y, sy, ch) {
            for (cx, wx) in taps(x, sx, cw) {
                if wx * wy > 0.0 {
                    v += wx * wy * f64::from(planes.sample(c, cx, cy));
                }
            }
        }
        v
    };
    let to8 = |v: f64| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let mut out = RgbaImage::new(w, h);
    for (x, y, px) in out.enumerate_pixels_mut() {
        let yv = luma(f64::from(planes.sample(Y, x, y)));
        let rgb = if layout == PixelLayout::I400 {
            [yv; 3]
        } else if identity {
            // GBR: Y holds G, U holds B, V holds R.
            let (b, r) = (luma(upsampled(U, x, y)), luma(upsampled(V, x, y)));
            [r, yv, b]
        } else {
            let (cb, cr) = (chroma(upsampled(U, x, y)), chroma(upsampled(V, x, y)));
            let r = yv + (2.0 - 2.0 * kr) * cr;
            let b = yv + (2.0 - 2.0 * kb) * cb;
            let g = yv - (kr * (2.0 - 2.0 * kr) * cr + kb * (2.0 - 2.0 * kb) * cb) / kg;
            [r, g, b]
        };
        *px = image::Rgba([to8(rgb[0]), to8(rgb[1]), to8(rgb[2]), 255]);
    }
    Ok(out)
}

/// [`decode`] as RGB, alpha over white (as the other formats are). A panic
/// in the parser or the decoder on hostile data is taken as damage.
pub(crate) fn decode_rgb(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageFailure> {
    let rgba = std::panic::catch_unwind(|| decode(bytes, max_pixels))
        .map_err(|_| ImageFailure::Decode("AVIF: the decoder gave up on this data".into()))??;
    Ok(crate::resize::over_white(&rgba))
}
