//! Outside input never panics the JWT reader (issue 20): client assertions and bearer tokens
//! arrive from anyone. Arbitrary text, and three dot-separated parts of base64url over arbitrary
//! bytes or JSON, are read or refused with an error.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use proptest::prelude::*;

fn part() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| URL_SAFE_NO_PAD.encode(bytes)),
        "[A-Za-z0-9_=+/-]{0,40}",
        Just(URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k","x5t":"x"}"#)),
        Just(URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)),
        Just(URL_SAFE_NO_PAD.encode(br#"{"aud":[1,{"a":null}],"exp":1e400,"nbf":"x"}"#)),
        Just(URL_SAFE_NO_PAD.encode(b"[]")),
        Just(URL_SAFE_NO_PAD.encode("[".repeat(5000).as_bytes())),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_text_is_refused_without_panicking(token in ".{0,300}") {
        let _ = openmi_token::decode_unverified(&token);
    }

    #[test]
    fn three_parts_are_read_or_refused(header in part(), claims in part(), signature in part(), extra in prop::option::of(part())) {
        let mut token = format!("{header}.{claims}.{signature}");
        if let Some(extra) = extra {
            token.push('.');
            token.push_str(&extra);
        }
        if let Ok(read) = openmi_token::decode_unverified(&token) {
            let _ = format!("{read:?}");
        }
    }
}
