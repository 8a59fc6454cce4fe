//! Image-text retrieval on held-out pairs (CLIP_benchmark's
//! `zeroshot_retrieval`): row i of the images matches row i of the texts;
//! recall@k is the fraction of queries whose match ranks in the top k.

/// Recall at each k, both ways.
#[derive(Debug, Clone, PartialEq)]
pub struct Recall {
    /// The ks.
    pub ks: Vec<usize>,
    /// Image queries finding their text.
    pub image_to_text: Vec<f64>,
    /// Text queries finding their image.
    pub text_to_image: Vec<f64>,
    /// Pairs.
    pub n: usize,
}

/// Recall@`ks` of normalised `images` and `texts` (`n x dim`, row-major).
pub fn recall(images: &[f32], texts: &[f32], dim: usize, ks: &[usize]) -> Recall {
    let n = images.len() / dim.max(1);
    let sim = |i: usize, j: usize| -> f32 {
        let (a, b) = (
            &images[i * dim..(i + 1) * dim],
            &texts[j * dim..(j + 1) * dim],
        );
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    };
    // The rank of the match: other candidates scoring at least as high
    // (ties count against the query).
    let rank = |row: &[f32], q: usize| {
        row.iter()
            .enumerate()
            .filter(|&(j, &v)| j != q && v >= row[q])
            .count()
    };
    let mut i2t = vec![0usize; n];
    let mut t2i = vec![0usize; n];
    let mut row = vec![0f32; n];
    for q in 0..n {
        for (j, r) in row.iter_mut().enumerate() {
            *r = sim(q, j);
        }
        i2t[q] = rank(&row, q);
        for (j, r) in row.iter_mut().enumerate() {
            *r = sim(j, q);
        }
        t2i[q] = rank(&row, q);
    }
    let at = |ranks: &[usize]| -> Vec<f64> {
        ks.iter()
            .map(|&k| ranks.iter().filter(|&&r| r < k).count() as f64 / n.max(1) as f64)
            .collect()
    };
    Recall {
        ks: ks.to_vec(),
        image_to_text: at(&i2t),
        text_to_image: at(&t2i),
        n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_similarity() {
        // Images (1,0), (0.8,0.6), (0,1); texts (1,0), (0,1), (0.1,0.995).
        // Image ranks of their texts: 0; 2 (texts 0 and 2 score higher); 1.
        // Text ranks of their images: 0; 1 (image 2 scores higher); 0.
        let images = [1.0, 0.0, 0.8, 0.6, 0.0, 1.0];
        let texts = [1.0, 0.0, 0.0, 1.0, 0.1, 0.995];
        let r = recall(&images, &texts, 2, &[1, 2, 3]);
        assert_eq!(r.image_to_text, vec![1.0 / 3.0, 2.0 / 3.0, 1.0]);
        assert_eq!(r.text_to_image, vec![2.0 / 3.0, 1.0, 1.0]);
        assert_eq!(r.n, 3);
    }
}
