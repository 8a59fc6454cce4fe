//! The training data loader: shards in, batches of normalised image tensors
//! and token ids out.
//!
//! - **Reading**: a [`wit_contract::wds::ShardStream`] (local or http(s)
//!   shards, per-epoch shard order, shuffle buffer) on one thread.
//! - **Preprocessing** on `workers` threads, fed through a bounded queue:
//!   decode (an image over 64 megapixels is refused from its header), then
//!   for training open_clip's RandomResizedCrop (area 90-100 % of the image,
//!   aspect ratio 3/4 to 4/3, else the centre square) and for evaluation the
//!   centre square, resized to `size` with a bicubic (Catmull-Rom) filter;
//!   OpenAI's mean and standard deviation; channels first. Captions become
//!   CLIP's 77 token ids.
//! - **Determinism**: each sample's crop comes from a generator seeded by
//!   the seed, the epoch and the sample's key, and results are put back in
//!   stream order before batching, so a seed gives the same batches whatever
//!   the number of workers.
//! - **Damage**: samples without an image or a caption, or whose image does
//!   not decode, are skipped and counted by reason with the first example
//!   ([`LoaderCounts`], [`LoaderCounts::explain`]), as are what the shard
//!   stream skipped (damaged shards, hidden members, split samples).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::sync::mpsc::{Receiver, sync_channel};

use fast_image_resize as fr;
use wit_contract::wds::{Opener, Sample, ShardStream, SplitMix64};

use crate::tokenizer::{CONTEXT, Tokenizer};

/// OpenAI's per-channel mean (RGB).
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// OpenAI's per-channel standard deviation (RGB).
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The WebDataset fields that hold a sample's image, in the order looked up.
pub const IMAGE_FIELDS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// Largest image decoded.
const MAX_PIXELS: u64 = 64 << 20;

/// Training or evaluation preprocessing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// RandomResizedCrop with these area and aspect-ratio ranges.
    Train {
        /// Fraction of the image's area kept.
        scale: (f32, f32),
        /// Width/height of the crop.
        ratio: (f32, f32),
    },
    /// The centre square.
    Eval,
}

impl Mode {
    /// open_clip's training crop: area (0.9, 1.0), ratio (3/4, 4/3).
    pub fn train() -> Mode {
        Mode::Train {
            scale: (0.9, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

/// One batch.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `n x 3 x size x size` values, normalised, channels first.
    pub images: Vec<f32>,
    /// `n x context` token ids.
    pub tokens: Vec<u32>,
    /// The samples' keys.
    pub keys: Vec<String>,
    /// Stream position after this batch's last sample (samples of the
    /// epoch's stream consumed so far, skipped ones included): where a
    /// resumed epoch starts ([`LoaderOptions::skip`]).
    pub end: u64,
}

impl Batch {
    /// Samples in the batch.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// What an epoch skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoaderCounts {
    /// Samples turned into batch rows.
    pub samples: u64,
    /// Samples without an image field.
    pub no_image: u64,
    /// Samples without a `txt` field.
    pub no_text: u64,
    /// Images that did not decode.
    pub bad_image: u64,
    /// The first unusable sample of each reason (`no_image`, `no_text`,
    /// `bad_image`): its shard, its key, and whether its key's members were
    /// apart in the shard (not grouped by key).
    pub first: BTreeMap<&'static str, (String, String, bool)>,
    /// What the shard stream met: shards, damage, skipped members, split samples.
    pub stream: wit_contract::wds::StreamCounts,
}

impl LoaderCounts {
    /// Adds `other`'s counts to these (two streams' epochs as one); the
    /// first example of a reason stays these counts' where both have one.
    pub fn add(&mut self, other: LoaderCounts) {
        self.samples += other.samples;
        self.no_image += other.no_image;
        self.no_text += other.no_text;
        self.bad_image += other.bad_image;
        for (k, v) in other.first {
            self.first.entry(k).or_insert(v);
        }
        self.stream.add(&other.stream);
    }

    /// Unusable samples in all.
    pub fn unusable(&self) -> u64 {
        self.no_image + self.no_text + self.bad_image
    }

    /// Why samples were unusable, reason by reason with the first example
    /// (shard and key), and what the shards held that was skipped; empty if
    /// nothing was.
    pub fn explain(&self) -> String {
        let mut parts = Vec::new();
        for (n, reason, what) in [
            (
                self.no_image,
                "no_image",
                "without an image member (.jpg, .jpeg, .png, .webp)",
            ),
            (self.no_text, "no_text", "without a .txt member"),
            (self.bad_image, "bad_image", "whose image does not decode"),
        ] {
            if n == 0 {
                continue;
            }
            let mut line = format!("{n} sample(s) {what}");
            if let Some((shard, key, split)) = self.first.get(reason) {
                line.push_str(&format!(" (first: key {key:?} in {shard})"));
                if *split {
                    line.push_str(", its members apart in the tar");
                }
            }
            parts.push(line);
        }
        let st = &self.stream;
        if st.split_samples > 0 {
            parts.push(format!(
                "{} sample(s) whose key's members are not adjacent in their shard: a WebDataset tar keeps each sample's members together (sort the members by key, e.g. `tar --sort=name`)",
                st.split_samples
            ));
        }
        if st.skipped_members > 0 {
            parts.push(format!(
                "{} member(s) skipped as webdataset skips them (hidden, such as macOS's ._ files, or without an extension)",
                st.skipped_members
            ));
        }
        if st.unopenable > 0 {
            parts.push(format!("{} shard(s) could not be opened", st.unopenable));
        }
        if st.corrupt > 0 {
            parts.push(format!("{} shard(s) truncated or corrupt", st.corrupt));
        }
        if st.bad_samples > 0 {
            parts.push(format!("{} sample(s) repeat a member", st.bad_samples));
        }
        parts.join("; ")
    }
}

/// Turns one image into `3 x size x size` normalised values.
///
/// # Errors
/// A message if the image does not decode or is too large.
pub fn preprocess(bytes: &[u8], size: u32, mode: Mode, seed: u64) -> Result<Vec<f32>, String> {
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let (w, h) = reader.into_dimensions().map_err(|e| e.to_string())?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(format!("{w} x {h} pixels is over the limit"));
    }
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let rgb = img.to_rgb8();
    let (w, h) = (rgb.width(), rgb.height());
    let (x, y, cw, ch) = crop(w, h, mode, seed);
    let src = fr::images::Image::from_vec_u8(w, h, rgb.into_raw(), fr::PixelType::U8x3)
        .map_err(|e| e.to_string())?;
    let mut dst = fr::images::Image::new(size, size, fr::PixelType::U8x3);
    let options = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::CatmullRom))
        .crop(x, y, cw, ch);
    fr::Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| e.to_string())?;
    let px = dst.buffer();
    let plane = (size * size) as usize;
    let mut out = vec![0f32; 3 * plane];
    for i in 0..plane {
        for c in 0..3 {
            out[c * plane + i] = (f32::from(px[i * 3 + c]) / 255.0 - MEAN[c]) / STD[c];
        }
    }
    Ok(out)
}

/// The source rectangle: RandomResizedCrop (torchvision's rule: ten tries,
/// then the whole image cut to the nearest allowed aspect ratio, centred) or
/// the centre square.
fn crop(w: u32, h: u32, mode: Mode, seed: u64) -> (f64, f64, f64, f64) {
    let (wf, hf) = (f64::from(w), f64::from(h));
    let square = {
        let s = wf.min(hf);
        ((wf - s) / 2.0, (hf - s) / 2.0, s, s)
    };
    let Mode::Train { scale, ratio } = mode else {
        return square;
    };
    let mut rng = SplitMix64::new(seed);
    let mut uniform =
        |lo: f64, hi: f64| lo + (hi - lo) * (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let area = wf * hf;
    for _ in 0..10 {
        let a = area * uniform(f64::from(scale.0), f64::from(scale.1));
        let r = uniform(f64::from(ratio.0).ln(), f64::from(ratio.1).ln()).exp();
        let cw = (a * r).sqrt().round();
        let ch = (a / r).sqrt().round();
        if cw >= 1.0 && ch >= 1.0 && cw <= wf && ch <= hf {
            let x = uniform(0.0, wf - cw).floor();
            let y = uniform(0.0, hf - ch).floor();
            return (x, y, cw, ch);
        }
    }
    let (lo, hi) = (f64::from(ratio.0), f64::from(ratio.1));
    let (cw, ch) = if wf / hf < lo {
        (wf, (wf / lo).round())
    } else if wf / hf > hi {
        ((hf * hi).round(), hf)
    } else {
        (wf, hf)
    };
    (((wf - cw) / 2.0).floor(), ((hf - ch) / 2.0).floor(), cw, ch)
}

/// What a loader does.
#[derive(Debug, Clone)]
pub struct LoaderOptions {
    /// Image side in pixels.
    pub size: u32,
    /// Samples per batch.
    pub batch_size: usize,
    /// Preprocessing.
    pub mode: Mode,
    /// Seed of the shard order, the shuffle buffer and the crops.
    pub seed: u64,
    /// Shuffle buffer (0: stream order).
    pub shuffle: usize,
    /// Preprocessing threads.
    pub workers: usize,
    /// Samples waiting between the stages, per worker.
    pub queue: usize,
    /// Stream positions of the epoch to pass over without preprocessing (a
    /// [`Batch::end`] from before an interruption).
    pub skip: u64,
    /// Token ids per text: the model's context length (CLIP: 77).
    pub context: usize,
    /// (stream, streams): read only that stream of the epoch's shards
    /// ([`wit_contract::wds::ShardStream::part`]); (0, 1) reads them all.
    pub part: (usize, usize),
    /// Draw shards with replacement, without end
    /// ([`wit_contract::wds::ShardStream::resampled`]); the caller ends the
    /// epoch. A stream that meets [`RESAMPLED_GIVE_UP`] unusable samples in
    /// a row ends it too.
    pub resampled: bool,
}

/// Unusable samples in a row after which a resampled stream gives up (its
/// shards hold nothing the model can use, and it would draw forever).
pub const RESAMPLED_GIVE_UP: u64 = 10_000;

impl Default for LoaderOptions {
    fn default() -> Self {
        LoaderOptions {
            size: 224,
            batch_size: 256,
            mode: Mode::train(),
            seed: 0,
            shuffle: 1000,
            workers: 2,
            queue: 64,
            skip: 0,
            context: CONTEXT,
            part: (0, 1),
            resampled: false,
        }
    }
}

/// Calls `each` with the batches of epoch `epoch` (the last one may be
/// short); returns what was skipped. `each` returns `false` to stop.
pub fn epoch(
    shards: &[String],
    opener: &dyn Opener,
    opts: &LoaderOptions,
    epoch: u64,
    mut each: impl FnMut(Batch) -> bool,
) -> LoaderCounts {
    let tokenizer = Tokenizer::get();
    let workers = opts.workers.max(1);
    let mut counts = LoaderCounts::default();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stop = &stop;
    std::thread::scope(|scope| {
        // Reader -> workers: (index, sample); workers -> here: (index, result).
        let (sample_tx, sample_rx) = sync_channel::<(u64, Sample)>(opts.queue * workers);
        let sample_rx = std::sync::Arc::new(std::sync::Mutex::new(sample_rx));
        let (done_tx, done_rx) = sync_channel::<(u64, Prepared)>(opts.queue * workers);
        let reader = scope.spawn(move || {
            let stream = ShardStream::new(shards.to_vec(), opener, opts.seed, opts.shuffle)
                .part(opts.part.0, opts.part.1)
                .resampled(opts.resampled);
            let mut i = 0u64;
            stream.epoch(epoch, |s| {
                let ok = i < opts.skip || sample_tx.send((i, s)).is_ok();
                i += 1;
                ok && !stop.load(std::sync::atomic::Ordering::Relaxed)
            })
        });
        for _ in 0..workers {
            let (rx, tx) = (sample_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                loop {
                    let next = rx.lock().expect("no panics").recv();
                    let Ok((i, s)) = next else { return };
                    let result = prepare(&s, opts, epoch, tokenizer);
                    if tx.send((i, result)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        gather(done_rx, opts, &mut counts, &mut each, stop);
        counts.stream = reader.join().expect("the shard reader does not panic");
    });
    counts
}

/// Calls `each` with the batches of epoch `epoch` drawn from several shard
/// streams at once: `streams` holds (stream, samples of its epoch to skip)
/// for streams of `count` ([`LoaderOptions::part`]), and every batch is
/// `opts.batch_size` samples, an equal share from each stream
/// concatenated in the order given, passed with each stream's position
/// after it (its [`Batch::end`]). How a data-parallel rank reads its
/// share of the global batch, and how one process reads what many ranks
/// would. The epoch ends when a stream cannot fill its share; what the
/// others hold then is dropped. Each stream runs its own reader and
/// `opts.workers` preprocessing threads. Returns what was skipped.
///
/// # Panics
/// `streams` empty, or a batch size it does not divide.
pub fn epoch_of_streams(
    shards: &[String],
    opener: &dyn Opener,
    opts: &LoaderOptions,
    epoch_number: u64,
    (count, streams): (usize, &[(usize, u64)]),
    mut each: impl FnMut(Batch, &[u64]) -> bool,
) -> LoaderCounts {
    assert!(
        !streams.is_empty() && opts.batch_size.is_multiple_of(streams.len()),
        "{} streams for batches of {}",
        streams.len(),
        opts.batch_size
    );
    let share = opts.batch_size / streams.len();
    let of = |(stream, skip): (usize, u64)| LoaderOptions {
        batch_size: share,
        part: (stream, count),
        skip,
        ..opts.clone()
    };
    if let [one] = streams {
        return epoch(shards, opener, &of(*one), epoch_number, |b| {
            let end = [b.end];
            each(b, &end)
        });
    }
    let mut counts = LoaderCounts::default();
    std::thread::scope(|scope| {
        let mut inputs = Vec::new();
        let mut loaders = Vec::new();
        for &part in streams {
            let (tx, rx) = sync_channel::<Batch>(1);
            let o = of(part);
            loaders
                .push(scope.spawn(move || {
                    epoch(shards, opener, &o, epoch_number, |b| tx.send(b).is_ok())
                }));
            inputs.push(rx);
        }
        'batches: loop {
            let mut batch = Batch {
                images: Vec::new(),
                tokens: Vec::new(),
                keys: Vec::new(),
                end: 0,
            };
            let mut ends = Vec::with_capacity(inputs.len());
            for rx in &inputs {
                match rx.recv() {
                    Ok(b) if b.len() == share => {
                        batch.images.extend(b.images);
                        batch.tokens.extend(b.tokens);
                        batch.keys.extend(b.keys);
                        ends.push(b.end);
                    }
                    _ => break 'batches,
                }
            }
            if !each(batch, &ends) {
                break;
            }
        }
        // The loaders still running stop at their next send.
        drop(inputs);
        for l in loaders {
            counts.add(l.join().expect("a loader does not panic"));
        }
    });
    counts
}

/// A sample the loader could not use: why, and which.
#[derive(Debug)]
struct Unusable {
    reason: &'static str,
    shard: String,
    key: String,
    split: bool,
}

type Prepared = Result<(String, Vec<f32>, Vec<u32>), Unusable>;

fn prepare(s: &Sample, opts: &LoaderOptions, epoch: u64, tokenizer: &Tokenizer) -> Prepared {
    let unusable = |reason| Unusable {
        reason,
        shard: s.shard.to_string(),
        key: s.key.clone(),
        split: s.split,
    };
    let Some(img) = IMAGE_FIELDS.iter().find_map(|k| s.fields.get(*k)) else {
        return Err(unusable("no_image"));
    };
    let Some(text) = s.fields.get("txt") else {
        return Err(unusable("no_text"));
    };
    let key_hash = wit_contract::wds::fnv1a(&s.key);
    let seed = opts.seed ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ key_hash;
    let pixels = preprocess(img, opts.size, opts.mode, seed).map_err(|_| unusable("bad_image"))?;
    let tokens = tokenizer.context_of(&String::from_utf8_lossy(text), opts.context);
    Ok((s.key.clone(), pixels, tokens))
}

/// Puts results back in stream order and hands out batches.
fn gather(
    rx: Receiver<(u64, Prepared)>,
    opts: &LoaderOptions,
    counts: &mut LoaderCounts,
    each: &mut impl FnMut(Batch) -> bool,
    stop: &std::sync::atomic::AtomicBool,
) {
    let batch_size = opts.batch_size;
    let plane = 3 * (opts.size * opts.size) as usize;
    let context = opts.context;
    let mut pending: BTreeMap<u64, Prepared> = BTreeMap::new();
    let mut next = opts.skip;
    let empty = || Batch {
        images: Vec::with_capacity(plane * batch_size),
        tokens: Vec::with_capacity(context * batch_size),
        keys: Vec::with_capacity(batch_size),
        end: 0,
    };
    let mut batch = empty();
    let mut go_on = true;
    let mut unusable_run = 0u64;
    // Whether the sample was usable.
    let take = |r: Prepared, batch: &mut Batch, counts: &mut LoaderCounts| match r {
        Ok((key, pixels, tokens)) => {
            batch.images.extend_from_slice(&pixels);
            batch.tokens.extend_from_slice(&tokens);
            batch.keys.push(key);
            counts.samples += 1;
            true
        }
        Err(u) => {
            match u.reason {
                "no_image" => counts.no_image += 1,
                "no_text" => counts.no_text += 1,
                _ => counts.bad_image += 1,
            }
            counts
                .first
                .entry(u.reason)
                .or_insert((u.shard, u.key, u.split));
            false
        }
    };
    for (i, r) in rx.iter() {
        if !go_on {
            continue; // drain, so that the workers end
        }
        pending.insert(i, r);
        while let Some(r) = pending.remove(&next) {
            next += 1;
            if take(r, &mut batch, counts) {
                unusable_run = 0;
            } else {
                unusable_run += 1;
            }
            batch.end = next;
            if opts.resampled && unusable_run >= RESAMPLED_GIVE_UP {
                tracing::warn!(
                    "{RESAMPLED_GIVE_UP} unusable samples in a row: the resampled stream ends its epoch"
                );
                go_on = false;
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                break;
            }
            if batch.len() == batch_size {
                let full = std::mem::replace(&mut batch, empty());
                if !each(full) {
                    go_on = false;
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    break;
                }
            }
        }
    }
    if go_on && !batch.is_empty() {
        each(batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn normalisation_and_crops() {
        let grey = jpeg(300, 200, [128, 128, 128]);
        let t = preprocess(&grey, 32, Mode::Eval, 0).unwrap();
        assert_eq!(t.len(), 3 * 32 * 32);
        for c in 0..3 {
            let want = (128.0 / 255.0 - MEAN[c]) / STD[c];
            assert!((t[c * 1024 + 500] - want).abs() < 1e-5);
        }
        // Eval is the centre square whatever the seed; train crops vary with it.
        assert_eq!(crop(300, 200, Mode::Eval, 1), crop(300, 200, Mode::Eval, 2));
        let (a, b) = (
            crop(300, 280, Mode::train(), 1),
            crop(300, 280, Mode::train(), 2),
        );
        assert_ne!(a, b);
        for (x, y, w, h) in [a, b] {
            let area = w * h / (300.0 * 280.0);
            assert!((0.89..=1.001).contains(&area), "{area}");
            assert!(x >= 0.0 && y >= 0.0 && x + w <= 300.0 && y + h <= 280.0);
        }
        // Too wide for any allowed crop: the whole height at ratio 4/3, centred.
        assert_eq!(crop(300, 200, Mode::train(), 1), (16.0, 0.0, 267.0, 200.0));
        assert!(preprocess(b"junk", 32, Mode::Eval, 0).is_err());
    }

    #[test]
    fn batches_are_deterministic_whatever_the_workers() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = wit_contract::wds::ShardWriter::new(Vec::new());
        for i in 0..45u32 {
            let img = jpeg(40 + i, 30 + i % 7, [i as u8 * 5, 100, 200 - i as u8]);
            let txt = format!("a photo of thing {i}");
            if i == 7 {
                w.write(
                    &format!("{i:04}"),
                    &[("jpg", b"broken"), ("txt", txt.as_bytes())],
                )
                .unwrap();
            } else if i == 8 {
                w.write(&format!("{i:04}"), &[("jpg", &img)]).unwrap();
            } else {
                w.write(
                    &format!("{i:04}"),
                    &[("jpg", &img), ("txt", txt.as_bytes())],
                )
                .unwrap();
            }
        }
        let path = dir.path().join("s.tar");
        std::fs::write(&path, w.finish().unwrap()).unwrap();
        let shards = vec![path.display().to_string()];
        let run_from = |workers: usize, seed: u64, skip: u64| {
            let opts = LoaderOptions {
                size: 16,
                batch_size: 10,
                seed,
                shuffle: 8,
                workers,
                skip,
                ..LoaderOptions::default()
            };
            let mut batches = Vec::new();
            let counts = epoch(&shards, &wit_contract::wds::LocalOpener, &opts, 0, |b| {
                batches.push(b);
                true
            });
            (batches, counts)
        };
        let run = |workers: usize, seed: u64| run_from(workers, seed, 0);
        let (a, ca) = run(1, 5);
        let (b, cb) = run(3, 5);
        assert_eq!(ca, cb);
        assert_eq!(
            (ca.samples, ca.no_image, ca.no_text, ca.bad_image),
            (43, 0, 1, 1)
        );
        assert_eq!(ca.stream.shards, 1);
        let explained = ca.explain();
        assert!(
            explained.contains("1 sample(s) without a .txt member (first: key ")
                && explained.contains("1 sample(s) whose image does not decode"),
            "{explained}"
        );
        assert_eq!(a.len(), 5);
        assert_eq!(a.last().unwrap().len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.keys, y.keys);
            assert_eq!(x.images, y.images);
            assert_eq!(x.tokens, y.tokens);
        }
        assert_eq!(a[0].images.len(), 10 * 3 * 16 * 16);
        assert_eq!(a[0].tokens.len(), 10 * CONTEXT);
        // Resuming after batch 2 gives batches 3, 4 and 5 again.
        let (resumed, _) = run_from(2, 5, a[1].end);
        assert_eq!(resumed.len(), 3);
        for (x, y) in resumed.iter().zip(&a[2..]) {
            assert_eq!((&x.keys, &x.images, x.end), (&y.keys, &y.images, y.end));
        }
        assert_eq!(a.last().unwrap().end, 45, "every sample of the stream");
        let (c, _) = run(2, 6);
        assert_ne!(a[0].keys, c[0].keys, "another seed, another order");
        // Stopping early ends the epoch cleanly.
        let opts = LoaderOptions {
            size: 16,
            batch_size: 4,
            ..LoaderOptions::default()
        };
        let mut n = 0;
        epoch(&shards, &wit_contract::wds::LocalOpener, &opts, 0, |_| {
            n += 1;
            n < 2
        });
        assert_eq!(n, 2);
    }

    #[test]
    fn streams_share_the_batch_and_resume_each_from_its_own_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut shards = Vec::new();
        for s in 0..4u32 {
            let mut w = wit_contract::wds::ShardWriter::new(Vec::new());
            for i in 0..(12 + s) {
                let img = jpeg(20 + i, 20, [s as u8 * 60, i as u8 * 9, 50]);
                let txt = format!("shard {s} thing {i}");
                w.write(
                    &format!("{s}{i:03}"),
                    &[("png", &img), ("txt", txt.as_bytes())],
                )
                .unwrap();
            }
            let path = dir.path().join(format!("s{s}.tar"));
            std::fs::write(&path, w.finish().unwrap()).unwrap();
            shards.push(path.display().to_string());
        }
        let opener = &wit_contract::wds::LocalOpener;
        let opts = LoaderOptions {
            size: 8,
            batch_size: 8,
            seed: 3,
            shuffle: 5,
            workers: 2,
            ..LoaderOptions::default()
        };
        let run = |streams: &[(usize, u64)]| {
            let mut out = Vec::new();
            epoch_of_streams(&shards, opener, &opts, 1, (2, streams), |b, ends| {
                out.push((b, ends.to_vec()));
                true
            });
            out
        };
        let both = run(&[(0, 0), (1, 0)]);
        // Each half of a batch is that stream's batch of 4, as one stream
        // alone reads it (a rank with one stream).
        let alone = |stream: usize| run_alone(&shards, &opts, stream);
        let (zero, one) = (alone(0), alone(1));
        let full = zero.len().min(one.len());
        assert!(full >= 5, "{full}");
        assert_eq!(both.len(), full, "ends with the shorter stream");
        for (k, (b, ends)) in both.iter().enumerate() {
            assert_eq!(b.keys[..4], zero[k].keys[..]);
            assert_eq!(b.keys[4..], one[k].keys[..]);
            assert_eq!(b.images[..4 * 3 * 64], zero[k].images[..]);
            assert_eq!(ends, &vec![zero[k].end, one[k].end]);
        }
        let mut keys: Vec<&String> = both.iter().flat_map(|(b, _)| &b.keys).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 8 * full, "no sample twice");
        // Resuming both streams from after batch 2.
        let resumed = run(&[(0, both[1].1[0]), (1, both[1].1[1])]);
        assert_eq!(resumed.len(), full - 2);
        for ((r, re), (b, be)) in resumed.iter().zip(&both[2..]) {
            assert_eq!((&r.keys, &r.images, re), (&b.keys, &b.images, be));
        }
        // One stream of one: the plain epoch.
        let mut plain = Vec::new();
        epoch(&shards, opener, &opts, 1, |b| {
            plain.push(b.keys);
            true
        });
        let mut single = Vec::new();
        epoch_of_streams(&shards, opener, &opts, 1, (1, &[(0, 0)]), |b, _| {
            single.push(b.keys);
            true
        });
        assert_eq!(plain, single);
    }

    /// Stream `stream` of 2's batches of 4, read by itself.
    fn run_alone(shards: &[String], opts: &LoaderOptions, stream: usize) -> Vec<Batch> {
        let o = LoaderOptions {
            batch_size: 4,
            part: (stream, 2),
            ..opts.clone()
        };
        let mut out = Vec::new();
        epoch(shards, &wit_contract::wds::LocalOpener, &o, 1, |b| {
            if b.len() == 4 {
                out.push(b);
            }
            true
        });
        out
    }
}
