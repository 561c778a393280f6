//! Token sequences to the input and target tensors of next-token prediction.

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::ModelError;

/// One micro-batch: `inputs[b, t]` predicts `targets[b, t]` (the same sequence shifted by one).
#[derive(Debug, Clone)]
pub struct TokenBatch<B: Backend> {
    /// Token ids `[batch, seq]`.
    pub inputs: Tensor<B, 2, Int>,
    /// The next token at every position `[batch, seq]`.
    pub targets: Tensor<B, 2, Int>,
}

impl<B: Backend> TokenBatch<B> {
    /// Builds a batch from sequences of `seq + 1` tokens each (the mixture reader's unit).
    pub fn from_sequences(sequences: &[Vec<u32>], vocab_size: usize, device: &B::Device) -> Result<Self, ModelError> {
        let Some(first) = sequences.first() else {
            return Err(ModelError::InvalidBatch("a batch needs at least one sequence".into()));
        };
        if first.len() < 2 {
            return Err(ModelError::InvalidBatch(format!(
                "sequences need at least 2 tokens (input and target), got {}",
                first.len()
            )));
        }
        let seq = first.len() - 1;
        let mut inputs = Vec::with_capacity(sequences.len() * seq);
        let mut targets = Vec::with_capacity(sequences.len() * seq);
        for (i, sequence) in sequences.iter().enumerate() {
            if sequence.len() != seq + 1 {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} has {} tokens, the first has {}",
                    sequence.len(),
                    seq + 1
                )));
            }
            if let Some(&bad) = sequence.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(ModelError::InvalidBatch(format!(
                    "sequence {i} holds token id {bad}, outside the model's vocabulary of {vocab_size}"
                )));
            }
            inputs.extend(sequence[..seq].iter().map(|&t| i64::from(t)));
            targets.extend(sequence[1..].iter().map(|&t| i64::from(t)));
        }
        let shape = [sequences.len(), seq];
        Ok(TokenBatch {
            inputs: Tensor::from_data(TensorData::new(inputs, shape), device),
            targets: Tensor::from_data(TensorData::new(targets, shape), device),
        })
    }

    /// Tokens predicted by this batch.
    pub fn tokens(&self) -> usize {
        self.targets.dims().iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::TestBackend;

    #[test]
    fn targets_are_inputs_shifted_by_one() {
        let batch =
            TokenBatch::<TestBackend>::from_sequences(&[vec![1, 2, 3, 4], vec![5, 6, 7, 8]], 10, &Default::default())
                .unwrap();
        assert_eq!(batch.inputs.to_data().to_vec::<i64>().unwrap(), vec![1, 2, 3, 5, 6, 7]);
        assert_eq!(batch.targets.to_data().to_vec::<i64>().unwrap(), vec![2, 3, 4, 6, 7, 8]);
        assert_eq!(batch.tokens(), 6);
    }

    #[test]
    fn ragged_or_out_of_vocabulary_batches_are_errors() {
        let device = Default::default();
        let ragged = TokenBatch::<TestBackend>::from_sequences(&[vec![1, 2, 3], vec![1, 2]], 10, &device);
        assert!(ragged.unwrap_err().to_string().contains("sequence 1 has 2 tokens"));
        let outside = TokenBatch::<TestBackend>::from_sequences(&[vec![1, 12]], 10, &device);
        assert!(outside.unwrap_err().to_string().contains("token id 12"));
        assert!(TokenBatch::<TestBackend>::from_sequences(&[], 10, &device).is_err());
    }
}
