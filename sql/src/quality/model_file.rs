//! The little-endian binary layout the quality models are saved in: a magic
//! line naming the format and its version, then fixed-width fields. Tables of
//! millions of n-grams load in well under a second this way, where JSON
//! would take minutes.

/// A model file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file does not start with the expected magic line.
    #[error("{file}: not a {expected} file (it does not start with `{expected}`)")]
    WrongFormat {
        /// The file.
        file: String,
        /// The format expected.
        expected: &'static str,
    },
    /// The file ends before its last field.
    #[error("{file}: truncated at byte {offset} (the model file is incomplete)")]
    Truncated {
        /// The file.
        file: String,
        /// Where the data ran out.
        offset: usize,
    },
    /// A field holds a value the model cannot have.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

/// Appends fields to a model file.
#[derive(Debug, Default)]
pub struct ModelWriter {
    bytes: Vec<u8>,
}

impl ModelWriter {
    /// A file starting with `magic`.
    pub fn new(magic: &str) -> Self {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(magic.as_bytes());
        bytes.push(b'\n');
        Self { bytes }
    }

    /// Appends a `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends a `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// Appends an `f32`.
    pub fn f32(&mut self, v: f32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// The file's bytes.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads fields back, naming the file in errors.
#[derive(Debug)]
pub struct ModelReader<'a> {
    bytes: &'a [u8],
    offset: usize,
    file: &'a str,
}

impl<'a> ModelReader<'a> {
    /// Checks the magic line of `bytes` (from `file`, for messages).
    pub fn open(bytes: &'a [u8], file: &'a str, magic: &'static str) -> Result<Self, ModelFileError> {
        let head = magic.len() + 1;
        if bytes.len() < head || &bytes[..magic.len()] != magic.as_bytes() || bytes[magic.len()] != b'\n' {
            return Err(ModelFileError::WrongFormat {
                file: file.to_string(),
                expected: magic,
            });
        }
        Ok(Self {
            bytes,
            offset: head,
            file,
        })
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], ModelFileError> {
        let end = self.offset + N;
        let Some(slice) = self.bytes.get(self.offset..end) else {
            return Err(ModelFileError::Truncated {
                file: self.file.to_string(),
                offset: self.bytes.len(),
            });
        };
        self.offset = end;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a `u32`.
    pub fn u32(&mut self) -> Result<u32, ModelFileError> {
        Ok(u32::from_le_bytes(self.take()?))
    }

    /// Reads a `u64`.
    pub fn u64(&mut self) -> Result<u64, ModelFileError> {
        Ok(u64::from_le_bytes(self.take()?))
    }

    /// Reads an `f32`.
    pub fn f32(&mut self) -> Result<f32, ModelFileError> {
        Ok(f32::from_le_bytes(self.take()?))
    }

    /// A count of entries that must fit in what is left, `entry_bytes` each.
    pub fn count(&mut self, entry_bytes: usize) -> Result<usize, ModelFileError> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.offset) / entry_bytes.max(1);
        if n > left as u64 {
            return Err(ModelFileError::Truncated {
                file: self.file.to_string(),
                offset: self.bytes.len(),
            });
        }
        Ok(n as usize)
    }

    /// An error about this file.
    pub fn invalid(&self, message: impl Into<String>) -> ModelFileError {
        ModelFileError::Invalid {
            file: self.file.to_string(),
            message: message.into(),
        }
    }

    /// Fails unless every byte was read.
    pub fn finish(self) -> Result<(), ModelFileError> {
        if self.offset == self.bytes.len() {
            Ok(())
        } else {
            Err(self.invalid(format!(
                "{} bytes left over after the model",
                self.bytes.len() - self.offset
            )))
        }
    }
}
