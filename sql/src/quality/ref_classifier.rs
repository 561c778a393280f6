//! LLaMA's reference classifier in fastText's manner: a linear model over
//! hashed word unigrams and bigrams (fastText's `-wordNgrams 2`, its hashing
//! trick into a fixed number of buckets), trained by SGD on the logistic
//! loss, predicting the probability that a page is "like a page Wikipedia
//! cites".
//!
//! fastText averages its feature vectors; with no hidden layer the average
//! would shrink every long page's gradient to nothing, so features are
//! scaled by `1/sqrt(n)` instead.

use super::model_file::{ModelFileError, ModelReader, ModelWriter};
use super::words::{HashedText, mix};

const MAGIC: &str = "llamaflow-ref-classifier 1";
/// Bigram keys start from this, so they never share a bucket with their first word by design.
const BIGRAM_SEED: u64 = 0x6269_6772_616d_0000;
/// Words of a page the classifier reads (fastText reads pages whole; past this
/// point a web page is mostly boilerplate and the cost is all hashing).
const MAX_WORDS: usize = 4096;

/// How to train.
#[derive(Debug, Clone, Copy)]
pub struct TrainSettings {
    /// log2 of the number of hash buckets (fastText: 2M buckets, about 2^21).
    pub bucket_bits: u32,
    /// Passes over the examples.
    pub epochs: usize,
    /// The starting learning rate, decayed linearly to 0 as fastText does.
    pub learning_rate: f32,
    /// Orders the examples are visited in.
    pub seed: u64,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            bucket_bits: 20,
            epochs: 5,
            learning_rate: 0.5,
            seed: 0,
        }
    }
}

/// A page as features: bucket indices, scaled by `1/sqrt(n)`.
#[derive(Debug, Clone, Default)]
pub struct Features {
    buckets: Vec<u32>,
}

impl Features {
    fn scale(&self) -> f32 {
        if self.buckets.is_empty() {
            0.0
        } else {
            1.0 / (self.buckets.len() as f32).sqrt()
        }
    }
}

/// The trained classifier.
#[derive(Debug, Clone)]
pub struct RefClassifier {
    bucket_bits: u32,
    bias: f32,
    weights: Vec<f32>,
}

/// Reusable buffers for [`RefClassifier::probability`].
#[derive(Debug, Default)]
pub struct Scratch {
    text: HashedText,
    features: Features,
}

/// The features of a hashed text into `out`, in `2^bucket_bits` buckets.
pub fn featurize(text: &HashedText, bucket_bits: u32, out: &mut Features) {
    out.buckets.clear();
    let mask = (1u64 << bucket_bits) - 1;
    let mut left = MAX_WORDS;
    for line in text.lines() {
        if left == 0 {
            break;
        }
        let line = &line[..line.len().min(left)];
        left -= line.len();
        out.buckets.extend(line.iter().map(|&w| (w & mask) as u32));
        // Bigrams stay within a line.
        out.buckets.extend(
            line.windows(2)
                .map(|pair| (mix(mix(BIGRAM_SEED, pair[0]), pair[1]) & mask) as u32),
        );
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

impl RefClassifier {
    /// Trains on `(features, is_positive)` examples (made with [`featurize`]
    /// and the same `bucket_bits`).
    pub fn train(examples: &[(Features, bool)], settings: &TrainSettings) -> Self {
        let bits = settings.bucket_bits.clamp(10, 28);
        let mut model = Self {
            bucket_bits: bits,
            bias: 0.0,
            weights: vec![0.0; 1 << bits],
        };
        let mut order: Vec<usize> = (0..examples.len()).collect();
        let total_steps = (examples.len() * settings.epochs).max(1) as f32;
        let mut step = 0usize;
        for epoch in 0..settings.epochs {
            // A seeded shuffle per epoch: the same examples give the same model.
            order.sort_by_key(|&i| mix(mix(settings.seed, epoch as u64), i as u64));
            for &i in &order {
                let (features, positive) = &examples[i];
                let lr = settings.learning_rate * (1.0 - step as f32 / total_steps);
                step += 1;
                let gradient = model.raw_probability(features) - if *positive { 1.0 } else { 0.0 };
                let scale = features.scale();
                for &b in &features.buckets {
                    model.weights[b as usize] -= lr * gradient * scale;
                }
                model.bias -= lr * gradient;
            }
        }
        model
    }

    fn raw_probability(&self, features: &Features) -> f32 {
        let scale = features.scale();
        let sum: f32 = features.buckets.iter().map(|&b| self.weights[b as usize]).sum();
        sigmoid(self.bias + sum * scale)
    }

    /// The number of hash buckets, as a power of two.
    pub fn bucket_bits(&self) -> u32 {
        self.bucket_bits
    }

    /// The probability that `text` is a page like those Wikipedia cites.
    pub fn probability(&self, text: &str, scratch: &mut Scratch) -> f64 {
        scratch.text.fill(text);
        self.probability_hashed(&scratch.text, &mut scratch.features)
    }

    /// [`Self::probability`] of a hashed text (`features` is a buffer).
    pub fn probability_hashed(&self, text: &HashedText, features: &mut Features) -> f64 {
        featurize(text, self.bucket_bits, features);
        f64::from(self.raw_probability(features))
    }

    /// The probability for features already made.
    pub fn probability_of(&self, features: &Features) -> f64 {
        f64::from(self.raw_probability(features))
    }

    /// The model as a file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = ModelWriter::new(MAGIC);
        out.u32(self.bucket_bits);
        out.f32(self.bias);
        for &w in &self.weights {
            out.f32(w);
        }
        out.finish()
    }

    /// Loads a model saved by [`Self::to_bytes`]; `file` names it in errors.
    pub fn from_bytes(bytes: &[u8], file: &str) -> Result<Self, ModelFileError> {
        let mut r = ModelReader::open(bytes, file, MAGIC)?;
        let bucket_bits = r.u32()?;
        if !(10..=28).contains(&bucket_bits) {
            return Err(r.invalid(format!("bucket_bits {bucket_bits} is outside 10..=28")));
        }
        let bias = r.f32()?;
        let weights = (0..1usize << bucket_bits)
            .map(|_| r.f32())
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(Self {
            bucket_bits,
            bias,
            weights,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(text: &str) -> Features {
        let (mut h, mut f) = (HashedText::default(), Features::default());
        h.fill(text);
        featurize(&h, 16, &mut f);
        f
    }

    #[test]
    fn unigrams_and_bigrams_within_lines() {
        assert_eq!(features("a b c").buckets.len(), 5);
        assert_eq!(features("a b\nc").buckets.len(), 4, "no bigram across the line break");
        assert!(features("").buckets.is_empty());
    }

    #[test]
    fn it_learns_to_tell_the_two_kinds_of_page_apart() {
        let positive = [
            "The treaty was signed in 1648 and ended the war between the states.",
            "The species is found in the river basins of South America.",
            "The election results were published by the national commission.",
            "The cathedral was built in the thirteenth century in the gothic style.",
        ];
        let negative = [
            "Buy now cheap deals click here free shipping on all orders",
            "Login sign up cart checkout my account wishlist",
            "Click here to subscribe free trial limited offer buy now",
            "Cookies help us deliver our services accept all cookies",
        ];
        let examples: Vec<(Features, bool)> = positive
            .iter()
            .map(|t| (features(t), true))
            .chain(negative.iter().map(|t| (features(t), false)))
            .collect();
        let settings = TrainSettings {
            bucket_bits: 16,
            epochs: 20,
            ..Default::default()
        };
        let model = RefClassifier::train(&examples, &settings);
        let mut s = Scratch::default();
        let good = model.probability("The war ended with a treaty signed by the states.", &mut s);
        let bad = model.probability("Free shipping: buy now, click here.", &mut s);
        assert!(good > 0.5 && bad < 0.5, "{good} {bad}");
        let bytes = model.to_bytes();
        let back = RefClassifier::from_bytes(&bytes, "ref_classifier.bin").unwrap();
        assert_eq!(
            back.probability("buy now", &mut s),
            model.probability("buy now", &mut s)
        );
        assert!(RefClassifier::from_bytes(&bytes[..100], "ref_classifier.bin").is_err());
        assert_eq!(
            RefClassifier::train(&examples, &settings).to_bytes(),
            bytes,
            "training is deterministic"
        );
    }
}
