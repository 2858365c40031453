//! Outside input never panics the template language (issue 20): arbitrary template text, and
//! arbitrary expression text inside a well-formed template, give a template or an ARM-shaped
//! `InvalidTemplate` error that points into the text.

use openmi_template::Template;
use proptest::prelude::*;

/// Expression-ish text: the language's tokens in random order, so the parser goes deep.
fn expression() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("concat(".to_string()),
        Just("parameters(".to_string()),
        Just("variables(".to_string()),
        Just("resourceId(".to_string()),
        Just("reference(".to_string()),
        Just("copyIndex(".to_string()),
        Just("if(".to_string()),
        Just("frobnicate(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just(".".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("'a'".to_string()),
        Just("'".to_string()),
        Just("''".to_string()),
        Just("1".to_string()),
        Just("-2147483649".to_string()),
        Just("99999999999999999999".to_string()),
        Just("true".to_string()),
        Just(" ".to_string()),
        "[a-zA-Z0-9_]{1,6}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.concat())
}

fn template_with(expression: &str) -> String {
    serde_json::json!({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"p": {"type": "string", "defaultValue": "x"}},
        "variables": {"v": format!("[{expression}]")},
        "resources": [],
        "outputs": {"o": {"type": "string", "value": format!("[{expression}]")}}
    })
    .to_string()
}

fn check(source: &str) {
    if let Err(error) = Template::parse(source) {
        assert_eq!(error.code, "InvalidTemplate", "{error:?}");
        assert!(!error.message.is_empty());
        let lines = source.lines().count().max(1) as u32;
        assert!(
            error.line <= lines + 1,
            "line {} of {lines}: {error:?}",
            error.line
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_is_a_template_or_an_invalid_template_error(source in ".{0,200}") {
        check(&source);
    }

    #[test]
    fn arbitrary_expressions_are_parsed_or_refused(expression in expression()) {
        check(&template_with(&expression));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed(depth in 1usize..4000) {
        let expression = format!("{}1{}", "concat(".repeat(depth), ")".repeat(depth));
        check(&template_with(&expression));
        let json = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        check(&json);
    }
}

/// Found by the property above: an error inside a multi-byte character sliced the text off a
/// character boundary.
#[test]
fn an_error_inside_a_multibyte_character_names_that_character() {
    for source in [
        "\"\u{63b8e}\\\u{63b8e}",
        "{\"a\": 1 \u{1F574}}",
        "[1, \u{29FC8}]",
    ] {
        let error = Template::parse(source).expect_err(source);
        assert_eq!(error.code, "InvalidTemplate", "{error:?}");
    }
}
