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
//! Version 1 hashing (a different hash and encoding) is not implemented: such requests get a 400.

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
        return Err("Effective partition key ranges are not supported on containers with version 1 partition keys; create the container with partition key version 2.".into());
    }
    let mut bytes = Vec::new();
    for component in components {
        write_component(*component, &mut bytes);
    }
    Ok(hash_hex(&bytes))
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
        assert!(effective_partition_key(&[Some(&json!("a"))], "Hash", 1).is_err());
    }

    #[test]
    fn ranges_compare_as_strings_with_ff_as_the_end() {
        assert!(in_range("05C1D0", "", "FF"));
        assert!(in_range("05C1D0", "05C1D0", "05C1D1"));
        assert!(!in_range("05C1D1", "05C1D0", "05C1D1"));
        assert!(!in_range("05", "06", ""));
    }

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
