//! A byte budget over a `BufRead`, for XML readers that buffer a whole event
//! (a page, a row): it counts the bytes consumed (the decompressed offset) and
//! fails reads past a limit, so no event can make the reader buffer more.

use std::io::{self, BufRead};

/// A `BufRead` that counts what is consumed and refuses to read past `limit`.
pub struct Budgeted<R> {
    /// The reader under the budget.
    pub inner: R,
    /// Bytes consumed so far.
    pub consumed: u64,
    /// Offset past which reads fail; `None` for no limit.
    pub limit: Option<u64>,
    /// Set once a read hit the limit.
    pub exceeded: bool,
    /// The error message of a read past the limit.
    message: &'static str,
}

impl<R> Budgeted<R> {
    /// No limit yet; a read past a later limit fails with `message`.
    pub fn new(inner: R, message: &'static str) -> Self {
        Budgeted {
            inner,
            consumed: 0,
            limit: None,
            exceeded: false,
            message,
        }
    }
}

impl<R: BufRead> io::Read for Budgeted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Budgeted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let allowed = match self.limit {
            Some(limit) if self.consumed >= limit => {
                self.exceeded = true;
                return Err(io::Error::other(self.message));
            }
            Some(limit) => usize::try_from(limit - self.consumed).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let buf = self.inner.fill_buf()?;
        Ok(&buf[..buf.len().min(allowed)])
    }

    fn consume(&mut self, n: usize) {
        self.consumed += n as u64;
        self.inner.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn reads_stop_at_the_limit_and_offsets_are_counted() {
        let mut b = Budgeted::new(&b"abcdefgh"[..], "too long");
        let mut two = [0u8; 2];
        b.read_exact(&mut two).unwrap();
        b.limit = Some(5);
        let mut rest = Vec::new();
        let err = b.read_to_end(&mut rest).unwrap_err();
        assert_eq!(rest, b"cde");
        assert_eq!(
            (b.consumed, b.exceeded, err.to_string().as_str()),
            (5, true, "too long")
        );
    }
}
