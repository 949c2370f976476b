//! Checksummed frames, `[len u32][crc32 u32][payload]`, for the queue and
//! journal files: a torn tail (a crash mid-append) is cut on open.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Appends one frame holding `payload` to `out`.
pub fn push(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// The whole frames at the start of `bytes`, and the length they cover.
/// Reading stops at the first short or damaged frame.
pub fn read(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let crc = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let end = at + 8 + len as usize;
        if end > bytes.len() || crc32fast::hash(&bytes[at + 8..end]) != crc {
            break;
        }
        out.push(&bytes[at + 8..end]);
        at = end;
    }
    (out, at)
}

/// Replaces `path` with `bytes` atomically (temp file, sync, rename).
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// A little-endian reader over a payload; `None` when it runs short.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    /// Next `n` bytes.
    pub fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    /// Next byte.
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    /// Next u32.
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// Next u64.
    pub fn u64(&mut self) -> Option<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Some(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_damaged_tails_are_cut() {
        let mut buf = Vec::new();
        push(&mut buf, b"one");
        push(&mut buf, b"two");
        let whole = buf.len();
        push(&mut buf, b"three");
        let (frames, good) = read(&buf[..buf.len() - 1]);
        assert_eq!(frames, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(good, whole);
        let last = buf.len() - 1;
        buf[last] ^= 1;
        assert_eq!(read(&buf).0.len(), 2);
    }
}
