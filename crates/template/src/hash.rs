//! The two deterministic name generators of ARM templates, bit for bit: `uniqueString` and
//! `guid`, so that a resource named `concat('st', uniqueString(resourceGroup().id))` gets the
//! same name here as in Azure.
//!
//! Both join their arguments with `-` and hash the UTF-8 bytes. `uniqueString` is the 64-bit
//! Murmur variant of Azure.Deployments.Expression (two 32-bit lanes, constants below), whose 64
//! bits are written as 13 lowercase base32 characters, most significant first. `guid` is an
//! RFC 4122 version 5 (SHA-1, name-based) UUID in the namespace
//! `11fb06fb-712d-4ddd-98c7-e71bbd588830`. The algorithms are described by the public
//! reimplementations that match Azure's output; the tests pin values observed from ARM.

use sha1::{Digest, Sha1};

/// `uniqueString(a, b, ...)`: 13 characters of `[a-z2-7]`.
pub(crate) fn unique_string(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let hash = murmur64(joined.as_bytes());
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(13);
    for index in 0..13 {
        // 13 groups of five bits from the top; the last group has only four hash bits
        // followed by a zero bit.
        let shift = 59i32 - 5 * index;
        let group = if shift >= 0 {
            (hash >> shift) & 31
        } else {
            (hash << (-shift)) & 31
        };
        out.push(char::from(ALPHABET[group as usize]));
    }
    out
}

/// The 64-bit hash behind `uniqueString` (and the decimal `templateHash` openmi reports).
pub(crate) fn murmur64(data: &[u8]) -> u64 {
    const C1: u32 = 0x239b_961b; // 597399067
    const C2: u32 = 0xab0e_9789; // 2869860233
    const C3: u32 = 0x85eb_ca6b;
    const C4: u32 = 0xc2b2_ae35;
    let length = data.len();
    let mut h1: u32 = 0;
    let mut h2: u32 = 0;
    let word = |offset: usize, count: usize| -> u32 {
        let mut value = 0u32;
        for (shift, byte) in data[offset..offset + count].iter().enumerate() {
            value |= u32::from(*byte) << (8 * shift);
        }
        value
    };
    let mut index = 0;
    while index + 8 <= length {
        let k1 = word(index, 4)
            .wrapping_mul(C1)
            .rotate_left(15)
            .wrapping_mul(C2);
        h1 = (h1 ^ k1)
            .rotate_left(19)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x561c_cd1b);
        let k2 = word(index + 4, 4)
            .wrapping_mul(C2)
            .rotate_left(17)
            .wrapping_mul(C1);
        h2 = (h2 ^ k2)
            .rotate_left(13)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x0bca_a747);
        index += 8;
    }
    let tail = length - index;
    if tail > 0 {
        let k1 = word(index, tail.min(4))
            .wrapping_mul(C1)
            .rotate_left(15)
            .wrapping_mul(C2);
        h1 ^= k1;
        if tail > 4 {
            let k2 = word(index + 4, tail - 4)
                .wrapping_mul(C2)
                .rotate_left(17)
                .wrapping_mul(C1);
            h2 ^= k2;
        }
    }
    h1 ^= length as u32;
    h2 ^= length as u32;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    let mix = |mut value: u32| {
        value ^= value >> 16;
        value = value.wrapping_mul(C3);
        value ^= value >> 13;
        value = value.wrapping_mul(C4);
        value ^ (value >> 16)
    };
    h1 = mix(h1);
    h2 = mix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (u64::from(h2) << 32) | u64::from(h1)
}

const ARM_GUID_NAMESPACE: [u8; 16] = [
    0x11, 0xfb, 0x06, 0xfb, 0x71, 0x2d, 0x4d, 0xdd, 0x98, 0xc7, 0xe7, 0x1b, 0xbd, 0x58, 0x88, 0x30,
];

/// `guid(a, b, ...)`: a lowercase, hyphenated version 5 UUID.
pub(crate) fn guid(parts: &[&str]) -> String {
    let joined = parts.join("-");
    let mut hasher = Sha1::new();
    hasher.update(ARM_GUID_NAMESPACE);
    hasher.update(joined.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_uuid(&bytes)
}

pub(crate) fn format_uuid(bytes: &[u8; 16]) -> String {
    let mut out = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_unique(parts: &[&str], expected: &str) {
        assert_eq!(unique_string(parts), expected, "{parts:?}");
    }

    fn check_guid(parts: &[&str], expected: &str) {
        assert_eq!(guid(parts), expected, "{parts:?}");
    }

    #[test]
    fn unique_string_matches_arm() {
        // Values recorded from Bicep's uniqueString() by a public reimplementation.
        check_unique(&["test"], "rbgf3xv4ufgzg");
        check_unique(&["hello", "world"], "a7wkljktk6wne");
        check_unique(&["abc"], "cgtzqvhu4i23s");
        check_unique(
            &["/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg"],
            "bmg7c6xu4tw46",
        );
        check_unique(&["foo", "bar", "baz"], "xzi4ioaxtmth4");
        // Every tail length (0 to 7 bytes past a full block) gives 13 characters.
        for length in 0..17 {
            assert_eq!(unique_string(&[&"x".repeat(length)]).len(), 13);
        }
    }

    #[test]
    fn guid_matches_arm() {
        check_guid(&["hello"], "520f8434-fe3a-5d99-888d-450a827486a1");
        check_guid(&["hello", "world"], "a5b868f8-11fe-567a-ace0-e77cc87f104e");
        check_guid(&["world", "hello"], "b1db13b3-4ca6-5782-bf9e-8495c3532f9d");
    }
}
