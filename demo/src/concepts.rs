//! Compositional concepts, drawn and described.
//!
//! A [`Concept`] is a shape in a colour with a texture, at a size, one to
//! three times, on a background. [`draw`] renders it (2x2 supersampled, an
//! outline so that white shapes show on snow), and [`describe`] writes the
//! kind of text the web puts next to an image: a caption that names some of
//! the attributes in varied words and orders, with prefixes, suffixes, the odd
//! synonym, and in German, French or Spanish on pages in those languages.
//!
//! The (colour, shape) pairs of [`held_out`] are never drawn on the site;
//! zero-shot evaluation asks for exactly those, so a model scores above
//! chance only by composing what it learnt about colours and shapes apart.

use image::{Rgb, RgbImage};
use wit_contract::wds::SplitMix64;

/// Colour names (the demo vocabulary) and their RGB values.
pub const COLOURS: [(&str, [u8; 3]); 9] = [
    ("red", [220, 30, 30]),
    ("green", [30, 165, 50]),
    ("blue", [35, 75, 225]),
    ("yellow", [240, 220, 30]),
    ("orange", [245, 140, 20]),
    ("purple", [140, 45, 185]),
    ("black", [20, 20, 20]),
    ("white", [248, 248, 248]),
    ("gray", [128, 128, 128]),
];

/// Shape names.
pub const SHAPES: [&str; 6] = ["circle", "square", "triangle", "star", "heart", "cross"];

/// Texture names; `plain` is a flat fill.
pub const TEXTURES: [&str; 4] = ["plain", "striped", "dotted", "checkered"];

/// Background phrases; `None` is a plain studio backdrop that captions do not name.
pub const BACKGROUNDS: [Option<&str>; 5] = [
    None,
    Some("on a beach"),
    Some("in a forest"),
    Some("in the snow"),
    Some("at night"),
];

/// Size words.
pub const SIZES: [&str; 2] = ["small", "large"];

/// Count words, for 1, 2 and 3 objects.
pub const COUNTS: [&str; 3] = ["one", "two", "three"];

/// One image's content, as indices into the tables above.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concept {
    pub colour: usize,
    pub shape: usize,
    pub texture: usize,
    pub background: usize,
    pub size: usize,
    /// 1, 2 or 3.
    pub count: usize,
}

/// Whether a (colour, shape) pair is kept out of the site for zero-shot
/// evaluation: a third of the 54 pairs, each colour with two shapes and each
/// shape with three colours, so that neither attribute alone names a class.
pub fn held_out(colour: usize, shape: usize) -> bool {
    (colour + 2 * shape).is_multiple_of(3)
}

/// The held-out pairs as class names ("red square"), in a fixed order.
pub fn held_out_classes() -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for colour in 0..COLOURS.len() {
        for shape in 0..SHAPES.len() {
            if held_out(colour, shape) {
                out.push((colour, shape));
            }
        }
    }
    out
}

/// The class name of a (colour, shape) pair.
pub fn class_name(colour: usize, shape: usize) -> String {
    format!("{} {}", COLOURS[colour].0, SHAPES[shape])
}

/// A number in [0, 1).
pub fn unit(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// An index drawn with weights proportional to `1 / (i + 1)^skew`: the web
/// shows some things far more often than others, which balancing corrects.
pub fn skewed(rng: &mut SplitMix64, n: usize, skew: f64) -> usize {
    let weights: Vec<f64> = (0..n).map(|i| 1.0 / ((i + 1) as f64).powf(skew)).collect();
    let mut x = unit(rng) * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    n - 1
}

impl Concept {
    /// A random concept for the site: colours and shapes skewed (as on the
    /// web), never a held-out pair.
    pub fn random_seen(rng: &mut SplitMix64) -> Concept {
        loop {
            let c = Concept {
                colour: skewed(rng, COLOURS.len(), 0.8),
                shape: skewed(rng, SHAPES.len(), 0.8),
                texture: rng.below(TEXTURES.len()),
                background: rng.below(BACKGROUNDS.len()),
                size: rng.below(SIZES.len()),
                count: 1 + skewed(rng, COUNTS.len(), 1.0),
            };
            if !held_out(c.colour, c.shape) {
                return c;
            }
        }
    }

    /// One object of a given (colour, shape), everything else random: an
    /// evaluation image.
    pub fn single(rng: &mut SplitMix64, colour: usize, shape: usize) -> Concept {
        Concept {
            colour,
            shape,
            texture: rng.below(TEXTURES.len()),
            background: rng.below(BACKGROUNDS.len()),
            size: rng.below(SIZES.len()),
            count: 1,
        }
    }
}

// ---------------------------------------------------------------- drawing

/// Whether the point (u, v), in units of the object's radius from its
/// centre (v down), lies inside the shape.
fn inside(shape: usize, u: f64, v: f64) -> bool {
    match SHAPES[shape] {
        "circle" => u * u + v * v <= 0.9,
        "square" => u.abs() <= 0.78 && v.abs() <= 0.78,
        "triangle" => (-0.9..=0.75).contains(&v) && u.abs() <= (v + 0.9) * 0.62,
        "star" => in_polygon(&STAR, u, v),
        "heart" => {
            let (x, y) = (u * 1.15, -v * 1.15 + 0.15);
            let a = x * x + y * y - 1.0;
            a * a * a - x * x * y * y * y <= 0.0
        }
        _ => (u.abs() <= 0.3 && v.abs() <= 0.95) || (v.abs() <= 0.3 && u.abs() <= 0.95),
    }
}

/// A five-pointed star's ten vertices (outer radius 1, inner 0.45).
static STAR: [(f64, f64); 10] = star_vertices();

const fn star_vertices() -> [(f64, f64); 10] {
    // cos and sin of -90 + 36k degrees, written out (const fn has no trig).
    const C: [(f64, f64); 10] = [
        (0.0, -1.0),
        (0.587_785, -0.809_017),
        (0.951_057, -0.309_017),
        (0.951_057, 0.309_017),
        (0.587_785, 0.809_017),
        (0.0, 1.0),
        (-0.587_785, 0.809_017),
        (-0.951_057, 0.309_017),
        (-0.951_057, -0.309_017),
        (-0.587_785, -0.809_017),
    ];
    let mut out = [(0.0, 0.0); 10];
    let mut k = 0;
    while k < 10 {
        let r = if k % 2 == 0 { 1.0 } else { 0.45 };
        out[k] = (C[k].0 * r, C[k].1 * r);
        k += 1;
    }
    out
}

fn in_polygon(points: &[(f64, f64)], x: f64, y: f64) -> bool {
    let mut inside = false;
    let mut j = points.len() - 1;
    for i in 0..points.len() {
        let (xi, yi) = points[i];
        let (xj, yj) = points[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The texture's colour at (u, v) inside a shape of colour `base`.
fn textured(texture: usize, base: [f64; 3], u: f64, v: f64) -> [f64; 3] {
    let shade = |f: f64| base.map(|c| c * f);
    let light = base.map(|c| c + (255.0 - c) * 0.6);
    // The second tone: darker for light colours, lighter for dark ones.
    let luma = 0.3 * base[0] + 0.59 * base[1] + 0.11 * base[2];
    let other = if luma > 90.0 { shade(0.45) } else { light };
    match TEXTURES[texture] {
        "striped" => {
            if ((u + v) * 2.2).rem_euclid(1.0) < 0.5 {
                base
            } else {
                other
            }
        }
        "dotted" => {
            let (fu, fv) = (
                (u * 2.5).rem_euclid(1.0) - 0.5,
                (v * 2.5).rem_euclid(1.0) - 0.5,
            );
            if fu * fu + fv * fv < 0.07 {
                other
            } else {
                base
            }
        }
        "checkered" => {
            let (a, b) = ((u * 2.0).floor() as i64, (v * 2.0).floor() as i64);
            if (a + b).rem_euclid(2) == 0 {
                base
            } else {
                other
            }
        }
        _ => base,
    }
}

/// The background's colour at (x, y) in [0, 1)^2.
fn backdrop(background: usize, x: f64, y: f64, seed: u64) -> [f64; 3] {
    // A cheap per-pixel hash for speckles (snow, stars, sand).
    let h = {
        let mut r = SplitMix64::new(seed ^ ((x * 4096.0) as u64) << 20 ^ (y * 4096.0) as u64);
        unit(&mut r)
    };
    match BACKGROUNDS[background] {
        Some("on a beach") => {
            if y < 0.45 {
                [120.0 + 60.0 * y, 190.0 + 40.0 * y, 240.0]
            } else if y < 0.55 {
                [40.0, 110.0, 190.0]
            } else {
                let s = if h < 0.1 { -25.0 } else { 0.0 };
                [232.0 + s, 212.0 + s, 160.0 + s]
            }
        }
        Some("in a forest") => {
            let trunk = (x * 7.0 + (seed % 7) as f64 * 0.13).rem_euclid(1.0) < 0.12;
            if trunk {
                [90.0, 60.0, 35.0]
            } else {
                [25.0 + 30.0 * h, 85.0 + 40.0 * h, 35.0]
            }
        }
        Some("in the snow") => {
            let s = if h < 0.08 { -40.0 } else { 0.0 };
            let sky = if y < 0.3 { -30.0 } else { 0.0 };
            [232.0 + s + sky, 238.0 + s + sky, 246.0 + s]
        }
        Some(_) => {
            if h < 0.012 {
                [250.0, 250.0, 210.0]
            } else {
                [12.0, 16.0 + 20.0 * y, 45.0 + 25.0 * y]
            }
        }
        None => [200.0 - 30.0 * y, 200.0 - 30.0 * y, 195.0 - 30.0 * y],
    }
}

/// Where the objects go (centres in [0, 1)^2) and their radius.
fn layout(c: &Concept, rng: &mut SplitMix64) -> (Vec<(f64, f64)>, f64) {
    let large = c.size == 1;
    let radius = match (c.count, large) {
        (1, true) => 0.36,
        (1, false) => 0.2,
        (2, true) => 0.24,
        (2, false) => 0.15,
        (_, true) => 0.2,
        (_, false) => 0.13,
    };
    let jitter = |rng: &mut SplitMix64, span: f64| (unit(rng) - 0.5) * span;
    let centres = match c.count {
        1 => {
            let free = 0.5 - radius;
            vec![(0.5 + jitter(rng, free), 0.5 + jitter(rng, free))]
        }
        2 => {
            let (a, b) = if rng.below(2) == 0 {
                ((0.27, 0.5), (0.73, 0.5))
            } else {
                ((0.3, 0.3), (0.7, 0.7))
            };
            vec![a, b]
        }
        _ => vec![(0.26, 0.3), (0.74, 0.3), (0.5, 0.74)],
    };
    let centres = centres
        .into_iter()
        .map(|(x, y)| (x + jitter(rng, 0.04), y + jitter(rng, 0.04)))
        .collect();
    (centres, radius)
}

/// Draws `c` at `size` x `size` pixels. The same `seed` gives the same image.
pub fn draw(c: &Concept, size: u32, seed: u64) -> RgbImage {
    let mut rng = SplitMix64::new(seed);
    let (centres, radius) = layout(c, &mut rng);
    let rotation = (unit(&mut rng) - 0.5) * 0.5;
    let (sin, cos) = (rotation.sin(), rotation.cos());
    let base = COLOURS[c.colour].1.map(|v| {
        let j = (unit(&mut rng) - 0.5) * 24.0;
        (f64::from(v) + j).clamp(0.0, 255.0)
    });
    let luma = 0.3 * base[0] + 0.59 * base[1] + 0.11 * base[2];
    let outline = if luma < 60.0 { [190.0; 3] } else { [25.0; 3] };
    let bg_seed = rng.next_u64();
    let n = f64::from(size);
    RgbImage::from_fn(size, size, |px, py| {
        let mut sum = [0.0f64; 3];
        for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
            let (x, y) = ((f64::from(px) + sx) / n, (f64::from(py) + sy) / n);
            let mut colour = backdrop(c.background, x, y, bg_seed);
            for &(cx, cy) in &centres {
                let (dx, dy) = ((x - cx) / radius, (y - cy) / radius);
                let (u, v) = (cos * dx - sin * dy, sin * dx + cos * dy);
                if inside(c.shape, u, v) {
                    colour = textured(c.texture, base, u, v);
                } else if inside(c.shape, u / 1.12, v / 1.12) {
                    colour = outline;
                }
            }
            for k in 0..3 {
                sum[k] += colour[k];
            }
        }
        Rgb(sum.map(|s| (s / 4.0).round().clamp(0.0, 255.0) as u8))
    })
}

// ---------------------------------------------------------------- captions

/// A page's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
    Fr,
    Es,
}

impl Lang {
    /// The `lang` attribute's value.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
            Lang::Fr => "fr",
            Lang::Es => "es",
        }
    }
}

const DE_COLOURS: [&str; 9] = [
    "rot", "grün", "blau", "gelb", "orange", "lila", "schwarz", "weiß", "grau",
];
const DE_SHAPES: [&str; 6] = ["Kreis", "Quadrat", "Dreieck", "Stern", "Herz", "Kreuz"];
const FR_COLOURS: [&str; 9] = [
    "rouge", "vert", "bleu", "jaune", "orange", "violet", "noir", "blanc", "gris",
];
const FR_SHAPES: [&str; 6] = ["cercle", "carré", "triangle", "étoile", "cœur", "croix"];
const ES_COLOURS: [&str; 9] = [
    "rojo", "verde", "azul", "amarillo", "naranja", "morado", "negro", "blanco", "gris",
];
const ES_SHAPES: [&str; 6] = [
    "círculo",
    "cuadrado",
    "triángulo",
    "estrella",
    "corazón",
    "cruz",
];

fn pick<'a>(rng: &mut SplitMix64, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len())]
}

fn chance(rng: &mut SplitMix64, p: f64) -> bool {
    unit(rng) < p
}

fn plural(shape: &str, count: usize) -> String {
    match (shape, count) {
        (s, 1) => s.to_string(),
        ("cross", _) => "crosses".to_string(),
        (s, _) => format!("{s}s"),
    }
}

/// The English noun phrase of `c`, naming a random subset of its attributes
/// in one of several word orders.
fn english_phrase(c: &Concept, rng: &mut SplitMix64) -> String {
    let colour = if c.colour == 8 && chance(rng, 0.3) {
        "grey"
    } else {
        COLOURS[c.colour].0
    };
    let shape = match SHAPES[c.shape] {
        "square" if chance(rng, 0.15) => "box",
        "circle" if chance(rng, 0.15) => "disc",
        s => s,
    };
    let noun = plural(shape, c.count);
    let texture = TEXTURES[c.texture];
    let say_texture = texture != "plain" && chance(rng, 0.6) || chance(rng, 0.1);
    let say_size = chance(rng, 0.45);
    // Captions name what their writer noticed: often not the colour, so that
    // telling shapes apart matters to the contrastive loss (with every
    // attribute named, colour and the rest already tell a batch's images
    // apart, and shape is never learnt).
    let colour = if chance(rng, 0.65) { colour } else { "" };
    let count = match c.count {
        1 => {
            if chance(rng, 0.3) {
                "one".to_string()
            } else {
                "a".to_string()
            }
        }
        n => COUNTS[n - 1].to_string(),
    };
    let size = if say_size { SIZES[c.size] } else { "" };
    let mut words: Vec<String> = Vec::new();
    match rng.below(4) {
        // "two small striped red stars"
        0 | 1 => {
            words.push(count);
            words.push(size.to_string());
            if say_texture {
                words.push(texture.to_string());
            }
            words.push(colour.to_string());
            words.push(noun);
        }
        // "a red star with stripes"
        2 => {
            words.push(count);
            words.push(size.to_string());
            words.push(colour.to_string());
            words.push(noun);
            if say_texture {
                words.push(
                    match texture {
                        "striped" => "with stripes",
                        "dotted" => "with dots",
                        "checkered" => "with a checkered pattern",
                        _ => "in a plain colour",
                    }
                    .to_string(),
                );
            }
        }
        // "red stars, striped"
        _ => {
            words.push(colour.to_string());
            words.push(noun);
            if say_texture {
                words.push(format!(", {texture}"));
            }
        }
    }
    if let Some(bg) = BACKGROUNDS[c.background]
        && chance(rng, 0.6)
    {
        words.push(bg.to_string());
    }
    let mut phrase = words
        .into_iter()
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    phrase = phrase.replace(" ,", ",");
    if let Some(rest) = phrase.strip_prefix("a ")
        && rest.starts_with(['a', 'e', 'i', 'o', 'u'])
    {
        phrase = format!("an {rest}");
    }
    phrase
}

fn foreign_phrase(c: &Concept, lang: Lang) -> String {
    let (colours, shapes) = match lang {
        Lang::De => (&DE_COLOURS, &DE_SHAPES),
        Lang::Fr => (&FR_COLOURS, &FR_SHAPES),
        _ => (&ES_COLOURS, &ES_SHAPES),
    };
    let (colour, shape) = (colours[c.colour], shapes[c.shape]);
    match lang {
        Lang::De => format!("Ein {shape}, {colour}"),
        Lang::Fr => format!("Un {shape} {colour}"),
        _ => format!("Un {shape} {colour}"),
    }
}

/// What a page says about an image of `c`: usually a description of it with
/// the noise of real captions; sometimes text about something else.
pub fn describe(c: &Concept, lang: Lang, rng: &mut SplitMix64) -> String {
    if lang != Lang::En {
        return foreign_phrase(c, lang);
    }
    let roll = unit(rng);
    if roll < 0.06 {
        // A caption about another image (captions are noisy).
        let other = Concept::random_seen(rng);
        return english_phrase(&other, rng);
    }
    if roll < 0.1 {
        return pick(
            rng,
            &[
                "Beautiful picture!",
                "my latest work",
                "Untitled",
                "click to enlarge",
                "Image 3 of 12",
                "Photo by the author",
            ],
        )
        .to_string();
    }
    let phrase = english_phrase(c, rng);
    let prefix = pick(
        rng,
        &[
            "",
            "",
            "",
            "a photo of ",
            "picture of ",
            "my drawing of ",
            "Stock image: ",
            "Check out this: ",
            "cute ",
            "close-up of ",
        ],
    );
    let suffix = pick(
        rng,
        &[
            "",
            "",
            "",
            ".",
            " | free clip art",
            " - high quality",
            " #art",
            " (2019)",
            "!",
        ],
    );
    let mut text = format!("{prefix}{phrase}{suffix}");
    if chance(rng, 0.2) {
        let mut chars = text.chars();
        if let Some(first) = chars.next() {
            text = first.to_uppercase().chain(chars).collect();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_pairs_need_both_attributes() {
        let classes = held_out_classes();
        assert_eq!(classes.len(), 18);
        for colour in 0..COLOURS.len() {
            assert_eq!(classes.iter().filter(|c| c.0 == colour).count(), 2);
        }
        for shape in 0..SHAPES.len() {
            assert_eq!(classes.iter().filter(|c| c.1 == shape).count(), 3);
        }
        let mut rng = SplitMix64::new(1);
        for _ in 0..2000 {
            let c = Concept::random_seen(&mut rng);
            assert!(!held_out(c.colour, c.shape));
        }
    }

    #[test]
    fn shapes_differ_in_a_fifth_of_their_pixels_or_more() {
        let mask = |s: usize| {
            let mut m = Vec::new();
            for i in 0..100 {
                for j in 0..100 {
                    let (u, v) = (i as f64 / 50.0 - 1.0, j as f64 / 50.0 - 1.0);
                    m.push(inside(s, u, v));
                }
            }
            m
        };
        let masks: Vec<Vec<bool>> = (0..SHAPES.len()).map(mask).collect();
        for i in 0..SHAPES.len() {
            let area = masks[i].iter().filter(|b| **b).count();
            assert!(area > 1500, "{}: {area}", SHAPES[i]);
            for j in i + 1..SHAPES.len() {
                let differ = masks[i]
                    .iter()
                    .zip(&masks[j])
                    .filter(|(a, b)| a != b)
                    .count();
                assert!(
                    differ * 5 > area,
                    "{} vs {}: {differ}",
                    SHAPES[i],
                    SHAPES[j]
                );
            }
        }
    }

    #[test]
    fn drawing_is_deterministic_and_shows_the_colour() {
        let c = Concept {
            colour: 0,
            shape: 0,
            texture: 0,
            background: 0,
            size: 1,
            count: 1,
        };
        let a = draw(&c, 64, 7);
        assert_eq!(a, draw(&c, 64, 7));
        let centre = a.get_pixel(32, 32).0;
        assert!(
            centre[0] > 180 && centre[1] < 80 && centre[2] < 80,
            "{centre:?}"
        );
        assert_ne!(a, draw(&c, 64, 8));
    }

    #[test]
    fn captions_name_the_concept_mostly() {
        let mut rng = SplitMix64::new(3);
        let (mut shapes, mut colours) = (0, 0);
        for _ in 0..1000 {
            let c = Concept::random_seen(&mut rng);
            let text = describe(&c, Lang::En, &mut rng).to_lowercase();
            let colour = COLOURS[c.colour].0;
            let colour_ok = text.contains(colour) || (colour == "gray" && text.contains("grey"));
            let shape = SHAPES[c.shape];
            let shape_ok = text.contains(shape)
                || (shape == "square" && text.contains("box"))
                || (shape == "circle" && text.contains("disc"));
            shapes += usize::from(shape_ok);
            colours += usize::from(colour_ok);
        }
        // 10% of captions are about something else; the colour is left out
        // of a third of the others.
        assert!((850..980).contains(&shapes), "{shapes}");
        assert!((520..700).contains(&colours), "{colours}");
    }
}
