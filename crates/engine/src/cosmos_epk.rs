//! Effective partition keys (EPKs): the hash Cosmos DB places a partition key value at, in the
//! space `""..FF` that partition key ranges and the SDKs' feed ranges cut. openmi serves one
//! range (`0`, the whole space), so EPKs matter only where a client narrows a request to part of
//! it: `x-ms-start-epk`/`x-ms-end-epk` with `x-ms-read-key-type: EffectivePartitionKeyRange`, which
//! the SDKs send for a change feed or query of one partition key (as a feed range), of a
//! hierarchical key's prefix, or of a feed range a client split.
//!
//! Matched to azure-cosmos 4.17 (`partition_key.py`, `_cosmos_murmurhash3.py`) and the .NET SDK it
//! follows: each component is written as a type marker and its value (numbers as little-endian
//! f64, strings as UTF-8 then 0xFF), hashed with MurmurHash3 x64 128 (seed 0), the 16 bytes
//! (low word, high word, little-endian) reversed, the top two bits cleared, printed as upper-case
//! hex. `Hash` version 2 hashes all components together; `MultiHash` hashes each and concatenates.
//! Version 1 (a container whose definition names no version) is MurmurHash3 x86 32 over the
//! components (strings cut to 100 characters, ended by 0x00), and the key is Cosmos's ordered
//! binary encoding of the hash followed by the components, in hex (upper-cased here, as every
//! EPK this module compares: hex digits keep their order).

use serde_json::Value;

/// A request's EPK range `[start, end)` (`x-ms-start-epk`, `x-ms-end-epk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpkRange {
    pub start: String,
    pub end: String,
}

impl EpkRange {
    /// The range a request names, `None` when it names none or the whole space.
    pub fn from_headers(start: Option<&str>, end: Option<&str>) -> Option<EpkRange> {
        let start = start.unwrap_or_default().to_ascii_uppercase();
        let end = end.unwrap_or_default().to_ascii_uppercase();
        let whole = start.is_empty() && (end.is_empty() || end == "FF");
        (!whole).then_some(EpkRange { start, end })
    }

    pub(crate) fn contains(&self, epk: &str) -> bool {
        in_range(epk, &self.start, &self.end)
    }
}

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const NUMBER: u8 = 0x05;
const STRING: u8 = 0x08;

/// One partition key component as hashed; `None` is an undefined component (a missing path).
fn write_component(value: Option<&Value>, out: &mut Vec<u8>) {
    match value {
        None => out.push(UNDEFINED),
        Some(Value::Null) => out.push(NULL),
        Some(Value::Bool(false)) => out.push(FALSE),
        Some(Value::Bool(true)) => out.push(TRUE),
        Some(Value::Number(n)) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
        }
        Some(Value::String(s)) => {
            out.push(STRING);
            out.extend_from_slice(s.as_bytes());
            out.push(0xFF);
        }
        // Objects and arrays are not partition key values; `{}` is the SDKs' legacy "undefined".
        Some(Value::Object(_)) | Some(Value::Array(_)) => out.push(UNDEFINED),
    }
}

fn hash_hex(bytes: &[u8]) -> String {
    let (h1, h2) = murmur3_x64_128(bytes, 0);
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&h1.to_le_bytes());
    out[8..].copy_from_slice(&h2.to_le_bytes());
    out.reverse();
    out[0] &= 0x3F;
    out.iter().map(|b| format!("{b:02X}")).collect()
}

/// The EPK of a partition key value (one entry per path; `None` where the item lacks the path),
/// for a container of `kind` (`Hash` or `MultiHash`) and `version` (1 or 2).
pub(crate) fn effective_partition_key(
    components: &[Option<&Value>],
    kind: &str,
    version: i64,
) -> Result<String, String> {
    if components.is_empty() {
        return Ok(String::new());
    }
    if kind.eq_ignore_ascii_case("MultiHash") {
        let mut key = String::new();
        for component in components {
            let mut bytes = Vec::new();
            write_component(*component, &mut bytes);
            key.push_str(&hash_hex(&bytes));
        }
        return Ok(key);
    }
    if version < 2 {
        return Ok(hash_v1(components));
    }
    let mut bytes = Vec::new();
    for component in components {
        write_component(*component, &mut bytes);
    }
    Ok(hash_hex(&bytes))
}

/// Version 1: the hash as a number, then the components, in the ordered binary encoding.
fn hash_v1(components: &[Option<&Value>]) -> String {
    let truncated: Vec<Option<Value>> = components
        .iter()
        .map(|component| match component {
            Some(Value::String(text)) => Some(Value::String(text.chars().take(100).collect())),
            other => other.map(|value| (*value).clone()),
        })
        .collect();
    let mut hashed = Vec::new();
    for component in &truncated {
        match component {
            None | Some(Value::Object(_)) | Some(Value::Array(_)) => hashed.push(UNDEFINED),
            Some(Value::Null) => hashed.push(NULL),
            Some(Value::Bool(false)) => hashed.push(FALSE),
            Some(Value::Bool(true)) => hashed.push(TRUE),
            Some(Value::Number(n)) => {
                // The SDKs hash an integer as its low 32 bits, unsigned, as a double.
                let value = match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) => f64::from(i as u32),
                    (None, Some(u)) => f64::from(u as u32),
                    _ => n.as_f64().unwrap_or(0.0),
                };
                hashed.push(NUMBER);
                hashed.extend_from_slice(&value.to_le_bytes());
            }
            Some(Value::String(text)) => {
                hashed.push(STRING);
                hashed.extend_from_slice(text.as_bytes());
                hashed.push(0x00);
            }
        }
    }
    let hash = murmur3_x86_32(&hashed, 0);
    let mut encoded = Vec::new();
    encode_number_v1(f64::from(hash), &mut encoded);
    for component in &truncated {
        match component {
            None | Some(Value::Object(_)) | Some(Value::Array(_)) => encoded.push(UNDEFINED),
            Some(Value::Null) => {}
            Some(Value::Bool(flag)) => encoded.push(if *flag { TRUE } else { FALSE }),
            Some(Value::Number(n)) => encode_number_v1(n.as_f64().unwrap_or(0.0), &mut encoded),
            Some(Value::String(text)) => {
                encoded.push(STRING);
                let bytes = text.as_bytes();
                let short = bytes.len() <= 100;
                let take = if short { bytes.len() } else { 101 };
                encoded.extend(bytes[..take].iter().map(|b| b.wrapping_add(1)));
                if short {
                    encoded.push(0x00);
                }
            }
        }
    }
    encoded.iter().map(|b| format!("{b:02X}")).collect()
}

/// A number in the ordered binary encoding: the double's bits made order-preserving, the first
/// byte whole, then 7 bits a byte with a continuation bit, the last byte's bit cleared.
fn encode_number_v1(value: f64, out: &mut Vec<u8>) {
    const MASK: u64 = 0x8000_0000_0000_0000;
    let bits = value.to_bits();
    let mut payload = if bits < MASK {
        bits ^ MASK
    } else {
        bits.wrapping_neg()
    };
    out.push(NUMBER);
    out.push((payload >> 56) as u8);
    payload <<= 8;
    let mut byte = 0u8;
    let mut first = true;
    while payload != 0 {
        if !first {
            out.push(byte);
        }
        first = false;
        byte = ((payload >> 56) as u8) | 0x01;
        payload <<= 7;
    }
    out.push(byte & 0xFE);
}

/// MurmurHash3 x86 32-bit, as the SDKs hash version 1 keys.
fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h1 = seed;
    let blocks = data.len() / 4;
    for i in 0..blocks {
        let mut k1 = u32::from_le_bytes(data[i * 4..i * 4 + 4].try_into().unwrap_or([0; 4]));
        k1 = k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = &data[blocks * 4..];
    if !tail.is_empty() {
        let mut k1 = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k1 ^= (*byte as u32) << (8 * i);
        }
        k1 = k1.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h1 ^= k1;
    }
    h1 ^= data.len() as u32;
    h1 ^= h1 >> 16;
    h1 = h1.wrapping_mul(0x85eb_ca6b);
    h1 ^= h1 >> 13;
    h1 = h1.wrapping_mul(0xc2b2_ae35);
    h1 ^= h1 >> 16;
    h1
}

/// Whether `epk` lies in `[start, end)`, as Cosmos compares EPK strings (`""` is the minimum,
/// `FF` the exclusive maximum).
pub(crate) fn in_range(epk: &str, start: &str, end: &str) -> bool {
    epk >= start && (end.is_empty() || epk < end)
}

/// MurmurHash3 x64 128-bit (Austin Appleby's reference algorithm), as the Cosmos SDKs hash.
fn murmur3_x64_128(data: &[u8], seed: u64) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mut h1 = seed;
    let mut h2 = seed;
    let blocks = data.len() / 16;
    for i in 0..blocks {
        let block = &data[i * 16..i * 16 + 16];
        let mut k1 = u64::from_le_bytes(block[..8].try_into().unwrap_or([0; 8]));
        let mut k2 = u64::from_le_bytes(block[8..].try_into().unwrap_or([0; 8]));
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
        h1 = h1
            .rotate_left(27)
            .wrapping_add(h2)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
        h2 = h2
            .rotate_left(31)
            .wrapping_add(h1)
            .wrapping_mul(5)
            .wrapping_add(0x3849_5ab5);
    }
    let tail = &data[blocks * 16..];
    let mut k1 = 0u64;
    let mut k2 = 0u64;
    for (i, byte) in tail.iter().enumerate() {
        if i < 8 {
            k1 ^= (*byte as u64) << (8 * i);
        } else {
            k2 ^= (*byte as u64) << (8 * (i - 8));
        }
    }
    if tail.len() > 8 {
        k2 = k2.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
        h2 ^= k2;
    }
    if !tail.is_empty() {
        k1 = k1.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
        h1 ^= k1;
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix(h1);
    h2 = fmix(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // Expected values computed with azure-cosmos 4.17.1's own hashing:
    // `PartitionKey._get_hashed_partition_key_string(pk_value=[...], kind=..., version=2)`
    // (the last: `[NonePartitionKeyValue]`, an undefined component).
    #[test]
    fn effective_partition_keys_match_the_python_sdk() {
        let cases: &[(&[Value], &str, &str)] = &[
            (&[json!("p1")], "Hash", EXPECTED[0]),
            (&[json!("")], "Hash", EXPECTED[1]),
            (&[json!(5)], "Hash", EXPECTED[2]),
            (&[json!(true)], "Hash", EXPECTED[3]),
            (&[json!(null)], "Hash", EXPECTED[4]),
            (
                &[json!(
                    "a string longer than sixteen bytes, to cross a block"
                )],
                "Hash",
                EXPECTED[5],
            ),
            (&[json!("t1"), json!("u1")], "MultiHash", EXPECTED[6]),
            (&[json!(2.5), json!("x")], "Hash", EXPECTED[7]),
        ];
        for (values, kind, expected) in cases {
            let components: Vec<Option<&Value>> = values.iter().map(Some).collect();
            assert_eq!(
                effective_partition_key(&components, kind, 2).unwrap(),
                *expected,
                "{values:?} {kind}"
            );
        }
        assert_eq!(
            effective_partition_key(&[None], "Hash", 2).unwrap(),
            EXPECTED[8]
        );
        // Version 1, against azure-cosmos 4.17.1's `..._get_hashed_partition_key_string(...,
        // kind="Hash", version=1)` (lower-case there; upper-cased here).
        let long = "a".repeat(150);
        let v1: &[(Option<Value>, &str)] = &[
            (Some(json!("p1")), "05c1cfedcf076008713200"),
            (Some(json!("")), "05c1cf33970ff80800"),
            (Some(json!(5)), "05c1d9c1c5517c05c014"),
            (Some(json!(true)), "05c1d7c5a903d803"),
            (Some(json!(false)), "05c1db857d857c02"),
            (Some(json!(null)), "05c1ed45d74756"),
            (Some(json!(2.5)), "05c1e56bf967fe05c004"),
            (Some(json!(-3)), "05c1876337d580053ff8"),
            (Some(json!(-2.5)), "05c1b14d53e5d0053ffc"),
            (Some(json!(0)), "05c1bf6da11560058000"),
            (None, "05c1d529e345dc00"),
            (Some(json!(long)), V1_LONG),
        ];
        for (value, expected) in v1 {
            assert_eq!(
                effective_partition_key(&[value.as_ref()], "Hash", 1).unwrap(),
                expected.to_uppercase(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn ranges_compare_as_strings_with_ff_as_the_end() {
        assert!(in_range("05C1D0", "", "FF"));
        assert!(in_range("05C1D0", "05C1D0", "05C1D1"));
        assert!(!in_range("05C1D1", "05C1D0", "05C1D1"));
        assert!(!in_range("05", "06", ""));
    }

    const V1_LONG: &str = "05c1eb5921f706086262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626262626200";

    const EXPECTED: [&str; 9] = [
        "062B23DEC15212F01B9A85F4E93A940C",
        "32E9366E637A71B4E710384B2F4970A0",
        "19C08621B135968252FB34B4CF66F811",
        "0E711127C5B5A8E4726AC6DD306A3E59",
        "378867E4430E67857ACE5C908374FE16",
        "10F2A8A160D0E55933914AADD2262331",
        "3D48BB14DA9D090D22112C96695028B62A947C94F6E254B945CEBC3196C9897C",
        "1E01D7D26917CC5E361FB4789651E7B6",
        "11622DAA78F835834610ABE56EFF5CB5",
    ];
}
