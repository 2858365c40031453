//! Outside input never panics the ARM path reader (issue 20): any path is an `ArmPath` or an
//! `InvalidPath`, and a resource id the reader accepts has a key that is its lower-cased form.

use openmi_model::arm::{resource_key, ArmPath};
use proptest::prelude::*;

fn path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("subscriptions".to_string()),
        Just("resourceGroups".to_string()),
        Just("providers".to_string()),
        Just("Microsoft.Compute".to_string()),
        Just("virtualMachines".to_string()),
        Just("Microsoft.ManagedIdentity".to_string()),
        Just("userAssignedIdentities".to_string()),
        Just("extensions".to_string()),
        Just("00000000-0000-0000-0000-000000000001".to_string()),
        Just(String::new()),
        "[a-zA-Z0-9._()-]{1,10}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(segment, 0..12).prop_map(|segments| format!("/{}", segments.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn any_path_is_read_or_refused(path in path()) {
        if ArmPath::parse(&path).is_ok() {
            prop_assert_eq!(resource_key(&path), resource_key(&path.to_lowercase()));
        }
    }

    #[test]
    fn arbitrary_text_is_read_or_refused(path in ".{0,120}") {
        let _ = ArmPath::parse(&path);
        let _ = resource_key(&path);
    }
}
