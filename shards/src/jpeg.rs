//! The JPEG coding processes the main decoder (zune-jpeg, through `image`)
//! lacks. ITU T.81 defines a frame's process by its SOF marker: Huffman
//! baseline (SOF0), extended (SOF1) and progressive (SOF2), which zune-jpeg
//! decodes; arithmetic-coded sequential and progressive (SOF9, SOF10),
//! legal since the standard's first edition and decoded by Pillow (through
//! libjpeg-turbo), which are decoded here with libjpeg-turbo's decoder
//! (MozJPEG's, built with `arith_dec`); and lossless and hierarchical
//! processes (SOF3, SOF5-7, SOF11, SOF13-15) and 12-bit samples, which
//! neither web browsers nor Pillow read, counted as `unsupported_format`
//! naming the process, never as damage.

use image::RgbImage;
use image::metadata::Orientation;

use crate::resize::ImageFailure;

/// A JPEG frame's coding, from its SOF marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// SOF0-SOF2 with 8-bit samples: the main decoder's.
    Huffman,
    /// SOF9 or SOF10 with 8-bit samples.
    Arithmetic,
    /// What no decoder here reads, named for the count's message.
    Unsupported(&'static str),
}

/// The coding of the JPEG in `bytes`: the first SOF marker's, found by
/// walking the marker segments from SOI up to the first SOS. `None` where
/// `bytes` is no JPEG or its segments end first (left to the main decoder,
/// which names the damage).
pub(crate) fn frame(bytes: &[u8]) -> Option<Frame> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut at = 2;
    loop {
        // Fill bytes (0xFF repeated) may precede a marker.
        while bytes.get(at) == Some(&0xFF) && bytes.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if bytes.get(at) != Some(&0xFF) {
            return None;
        }
        let marker = *bytes.get(at + 1)?;
        // Markers without a length: TEM, RSTn.
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            at += 2;
            continue;
        }
        let len = usize::from(u16::from_be_bytes([
            *bytes.get(at + 2)?,
            *bytes.get(at + 3)?,
        ]));
        match marker {
            0xC0..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                let precision = *bytes.get(at + 4)?;
                return Some(match (marker, precision) {
                    (0xC0..=0xC2, 8) => Frame::Huffman,
                    (0xC9 | 0xCA, 8) => Frame::Arithmetic,
                    (0xC0..=0xC2 | 0xC9 | 0xCA, _) => {
                        Frame::Unsupported("JPEG with 12-bit samples")
                    }
                    (0xC3, _) => Frame::Unsupported("lossless JPEG (SOF3)"),
                    (0xCB, _) => Frame::Unsupported("lossless arithmetic-coded JPEG (SOF11)"),
                    _ => Frame::Unsupported("hierarchical JPEG (SOF5-7, SOF13-15)"),
                });
            }
            0xDA | 0xD9 => return None,
            _ => at += 2 + len,
        }
    }
}

/// Decodes an arithmetic-coded JPEG to 8-bit RGB, oriented by its Exif
/// tag, refusing more than `max_pixels` before decoding.
///
/// # Errors
/// [`ImageFailure::TooManyPixels`]; [`ImageFailure::Decode`] with
/// libjpeg's message where the data is damaged or truncated (no EOI after
/// the scan, which libjpeg would only warn about and fill grey);
/// [`ImageFailure::Unsupported`] for CMYK, which libjpeg does not turn into RGB.
pub(crate) fn decode_arithmetic(bytes: &[u8], max_pixels: u64) -> Result<RgbImage, ImageFailure> {
    let sos = bytes.windows(2).position(|w| w == [0xFF, 0xDA]);
    let eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    if !matches!((sos, eoi), (Some(s), Some(e)) if e > s) {
        return Err(ImageFailure::Decode(
            "truncated: the arithmetic-coded scan has no end (EOI)".into(),
        ));
    }
    // libjpeg reports errors by unwinding (the wrapper's error manager).
    let decoded = std::panic::catch_unwind(
        || -> Result<(RgbImage, Option<Orientation>), ImageFailure> {
            let d = mozjpeg::Decompress::with_markers(&[mozjpeg::Marker::APP(1)])
                .from_mem(bytes)
                .map_err(|e| ImageFailure::Decode(e.to_string()))?;
            let (w, h) = (d.width(), d.height());
            if (w as u64).saturating_mul(h as u64) > max_pixels {
                return Err(ImageFailure::TooManyPixels {
                    width: w as u32,
                    height: h as u32,
                });
            }
            if matches!(
                d.color_space(),
                mozjpeg_sys::J_COLOR_SPACE::JCS_CMYK | mozjpeg_sys::J_COLOR_SPACE::JCS_YCCK
            ) {
                return Err(ImageFailure::Unsupported(
                    "CMYK arithmetic-coded JPEG".into(),
                ));
            }
            let orientation = d.markers().find_map(|m| {
                m.data
                    .strip_prefix(b"Exif\0\0")
                    .and_then(Orientation::from_exif_chunk)
            });
            let mut started = d.rgb().map_err(|e| ImageFailure::Decode(e.to_string()))?;
            let pixels: Vec<u8> = started
                .read_scanlines()
                .map_err(|e| ImageFailure::Decode(e.to_string()))?;
            started
                .finish()
                .map_err(|e| ImageFailure::Decode(e.to_string()))?;
            let img = RgbImage::from_raw(w as u32, h as u32, pixels)
                .ok_or_else(|| ImageFailure::Decode("fewer rows than the frame declares".into()))?;
            Ok((img, orientation))
        },
    );
    let (img, orientation) = match decoded {
        Ok(result) => result?,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg failed".into());
            return Err(ImageFailure::Decode(msg));
        }
    };
    let mut img = image::DynamicImage::ImageRgb8(img);
    img.apply_orientation(orientation.unwrap_or(Orientation::NoTransforms));
    Ok(img.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coding_process_is_read_from_the_frame_marker() {
        let sof = |marker: u8, precision: u8| {
            let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46];
            // A fill byte before the frame marker.
            b.extend([
                0xFF, 0xFF, marker, 0x00, 0x0B, precision, 0, 8, 0, 8, 1, 1, 0x11, 0,
            ]);
            b.extend([0xFF, 0xDA]);
            b
        };
        assert_eq!(frame(&sof(0xC0, 8)), Some(Frame::Huffman));
        assert_eq!(frame(&sof(0xC2, 8)), Some(Frame::Huffman));
        assert_eq!(frame(&sof(0xC9, 8)), Some(Frame::Arithmetic));
        assert_eq!(frame(&sof(0xCA, 8)), Some(Frame::Arithmetic));
        assert!(matches!(frame(&sof(0xC1, 12)), Some(Frame::Unsupported(_))));
        assert!(matches!(frame(&sof(0xC3, 8)), Some(Frame::Unsupported(_))));
        assert!(matches!(frame(&sof(0xCD, 8)), Some(Frame::Unsupported(_))));
        assert_eq!(frame(b"\x89PNG\r\n"), None);
        assert_eq!(frame(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00]), None);
        // DHT (C4), JPG (C8) and DAC (CC) are no frames.
        let mut dac = vec![0xFF, 0xD8, 0xFF, 0xCC, 0x00, 0x06, 0, 0, 0, 0];
        dac.extend(&sof(0xC9, 8)[2..]);
        assert_eq!(frame(&dac), Some(Frame::Arithmetic));
    }
}
