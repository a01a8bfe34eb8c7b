//! Unsigned LEB128 varints (seven bits a byte, low bits first), as the agent's packed log
//! batches and the log store's chunks write their numbers.

/// Append `v`.
pub fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        // Seven bits at a time, low first; truncation to the low byte is the point.
        #[allow(clippy::cast_possible_truncation)]
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    #[allow(clippy::cast_possible_truncation)]
    out.push(v as u8);
}

/// The varint that starts at `data[*at]`, moving `at` past it; `None` when the input ends
/// inside it or it does not fit 64 bits.
pub fn get(data: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at)?;
        *at += 1;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return None;
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// `v` as an unsigned number small when `|v|` is small (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...).
pub fn zigzag(v: i64) -> u64 {
    #[allow(clippy::cast_sign_loss)]
    let z = ((v << 1) ^ (v >> 63)) as u64;
    z
}

/// The inverse of [`zigzag`].
pub fn unzigzag(z: u64) -> i64 {
    #[allow(clippy::cast_possible_wrap)]
    let v = ((z >> 1) as i64) ^ -((z & 1) as i64);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        for (v, bytes) in [
            (0u64, vec![0u8]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put(&mut out, v);
            assert_eq!(out, bytes, "{v}");
        }
        let mut at = 0;
        assert_eq!(get(&[0x80], &mut at), None, "truncated");
        let mut at = 0;
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(get(&over, &mut at), None, "more than 64 bits");
        let mut at = 0;
        assert_eq!(get(&[0xff; 11], &mut at), None, "too long");
    }

    proptest! {
        #[test]
        fn round_trip(vs in proptest::collection::vec(any::<u64>(), 0..20)) {
            let mut out = Vec::new();
            for &v in &vs {
                put(&mut out, v);
            }
            let mut at = 0;
            for &v in &vs {
                prop_assert_eq!(get(&out, &mut at), Some(v));
            }
            prop_assert_eq!(at, out.len());
        }

        #[test]
        fn zigzag_round_trips(v in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
            prop_assert!(zigzag(v) <= v.unsigned_abs().saturating_mul(2));
        }
    }
}
