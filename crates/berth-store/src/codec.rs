//! How record bodies are kept on disk.
//!
//! A body is JSON. Small JSON records repeat the same field names and ARN prefixes, and a
//! 1.5 KiB task record does not fit a SQLite leaf cell of a `WITHOUT ROWID` table (about
//! 1,000 bytes on 4 KiB pages), so each one used to cost an overflow page: ~4.6 KiB on disk
//! per task. Bodies are therefore compressed with zstd against a fixed dictionary of sample
//! records (`dictionary-v1.jsonl`, raw content): a task record becomes ~150 bytes.
//!
//! The first byte tells the format, so every format ever written stays readable:
//! `{` is plain JSON (what older Berths wrote), [`ZSTD_V1`] is a zstd frame against
//! dictionary v1. The dictionary must never change: a different one needs a new format byte.

use crate::StoreError;

/// Format byte: the rest is a zstd frame compressed against [`DICTIONARY_V1`].
pub(crate) const ZSTD_V1: u8 = 0x01;

/// Sample records (a cluster, task definitions, a service, a container instance, tasks
/// running and stopped) as zstd raw-content dictionary. Frozen: see the module docs.
pub(crate) const DICTIONARY_V1: &[u8] = include_bytes!("dictionary-v1.jsonl");

/// zstd level: the records are small, so higher levels buy little.
const LEVEL: i32 = 3;

/// Largest body a stored frame may claim to decompress to (a record is at most a few
/// hundred KiB; this bounds what a damaged file can make us allocate).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Compressor and decompressor with the dictionary loaded once.
pub(crate) struct Codec {
    compressor: zstd::bulk::Compressor<'static>,
    decompressor: zstd::bulk::Decompressor<'static>,
}

impl Codec {
    pub(crate) fn new() -> Result<Codec, StoreError> {
        let codec_err = |e: std::io::Error| StoreError::Codec(format!("cannot set up zstd: {e}"));
        Ok(Codec {
            compressor: zstd::bulk::Compressor::with_dictionary(LEVEL, DICTIONARY_V1)
                .map_err(codec_err)?,
            decompressor: zstd::bulk::Decompressor::with_dictionary(DICTIONARY_V1)
                .map_err(codec_err)?,
        })
    }

    /// The on-disk form of `body`.
    pub(crate) fn encode(&mut self, body: &[u8]) -> Result<Vec<u8>, StoreError> {
        let frame = self
            .compressor
            .compress(body)
            .map_err(|e| StoreError::Codec(format!("cannot compress a record: {e}")))?;
        let mut out = Vec::with_capacity(frame.len() + 1);
        out.push(ZSTD_V1);
        out.extend_from_slice(&frame);
        Ok(out)
    }

    /// The body kept on disk as `stored` (any format ever written).
    pub(crate) fn decode(&mut self, stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match stored.first() {
            Some(&ZSTD_V1) => {
                let frame = &stored[1..];
                let size = zstd::zstd_safe::get_frame_content_size(frame)
                    .ok()
                    .flatten()
                    .filter(|&n| n <= MAX_BODY)
                    .ok_or_else(|| {
                        StoreError::Codec("a stored record's zstd frame is damaged".into())
                    })?;
                let capacity = usize::try_from(size)
                    .map_err(|_| StoreError::Codec("a stored record is too large".into()))?;
                self.decompressor
                    .decompress(frame, capacity)
                    .map_err(|e| StoreError::Codec(format!("cannot decompress a record: {e}")))
            }
            // Plain JSON (older Berths), or empty.
            Some(b'{') | None => Ok(stored),
            Some(other) => Err(StoreError::Codec(format!(
                "a stored record has unknown format byte {other:#04x} (written by a newer Berth?)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_dictionary_never_changes() {
        // Records written with format ZSTD_V1 can only be read with exactly these bytes.
        assert_eq!(
            hex::encode(Sha256::digest(DICTIONARY_V1)),
            "3f23ffd2e5a357b9c50caf38096d703ba5006ac17ea2385ed8c3886c33bbfc8e"
        );
    }

    #[test]
    fn a_task_record_shrinks_to_a_fraction() {
        let mut codec = Codec::new().unwrap();
        let task = DICTIONARY_V1.split(|&b| b == b'\n').nth(6).unwrap();
        // Another task of the same shape: different ids and times.
        let other = String::from_utf8(task.to_vec())
            .unwrap()
            .replace(
                "507072497be52bbafdbfda16db9ab790",
                "1f2e3d4c5b6a79881f2e3d4c5b6a7988",
            )
            .replace("1796026011", "1796099999");
        let stored = codec.encode(other.as_bytes()).unwrap();
        assert_eq!(stored[0], ZSTD_V1);
        assert!(
            stored.len() * 5 < other.len(),
            "{} bytes stored for {}",
            stored.len(),
            other.len()
        );
        assert_eq!(codec.decode(stored).unwrap(), other.as_bytes());
    }

    #[test]
    fn plain_json_from_older_berths_reads_as_is() {
        let mut codec = Codec::new().unwrap();
        let json = br#"{"cluster":"default"}"#.to_vec();
        assert_eq!(codec.decode(json.clone()).unwrap(), json);
        assert_eq!(codec.decode(Vec::new()).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn damaged_or_unknown_bodies_are_errors_not_panics() {
        let mut codec = Codec::new().unwrap();
        assert!(matches!(
            codec.decode(vec![0x7f, 1, 2]),
            Err(StoreError::Codec(_))
        ));
        assert!(matches!(
            codec.decode(vec![ZSTD_V1]),
            Err(StoreError::Codec(_))
        ));
        let mut stored = codec.encode(br#"{"cluster":"default","x":1}"#).unwrap();
        let last = stored.len() - 1;
        stored[last] ^= 0xff;
        stored.truncate(stored.len() - 2);
        assert!(codec.decode(stored).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(body in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let mut codec = Codec::new().unwrap();
            let stored = codec.encode(&body).unwrap();
            prop_assert_eq!(codec.decode(stored).unwrap(), body);
        }

        #[test]
        fn arbitrary_stored_bytes_never_panic(stored in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut codec = Codec::new().unwrap();
            let _ = codec.decode(stored);
        }
    }
}
