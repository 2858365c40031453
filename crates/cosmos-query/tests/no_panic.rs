//! Outside input never panics the Cosmos DB query language (issue 20): arbitrary text and
//! token soups give a query or an error with a position inside the text.

use proptest::prelude::*;

fn query() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("SELECT ".to_string()),
        Just("VALUE ".to_string()),
        Just("TOP ".to_string()),
        Just("DISTINCT ".to_string()),
        Just("* ".to_string()),
        Just("FROM ".to_string()),
        Just("c ".to_string()),
        Just("IN ".to_string()),
        Just("JOIN ".to_string()),
        Just("WHERE ".to_string()),
        Just("ORDER BY ".to_string()),
        Just("GROUP BY ".to_string()),
        Just("OFFSET ".to_string()),
        Just("LIMIT ".to_string()),
        Just("c.a".to_string()),
        Just("c[\"b\"]".to_string()),
        Just("@p".to_string()),
        Just("COUNT(".to_string()),
        Just("ARRAY_CONTAINS(".to_string()),
        Just("STARTSWITH(".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just(" AND ".to_string()),
        Just(" OR ".to_string()),
        Just(" NOT ".to_string()),
        Just(" = ".to_string()),
        Just(" ?? ".to_string()),
        Just(" ? ".to_string()),
        Just(" : ".to_string()),
        Just("'s'".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("1".to_string()),
        Just("1e999".to_string()),
        Just("-".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(token, 0..30).prop_map(|tokens| tokens.concat())
}

fn check(text: &str) {
    if let Err(error) = openmi_cosmos_query::parse(text) {
        if let Some(position) = error.position() {
            let lines = text.lines().count().max(1) as u32;
            assert!(
                position.line >= 1 && position.line <= lines + 1,
                "{error} in {text:?}"
            );
            assert!(position.column >= 1, "{error}");
        }
        assert!(!error.to_string().is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_text_is_a_query_or_a_positioned_error(text in ".{0,200}") {
        check(&text);
    }

    #[test]
    fn token_soups_are_a_query_or_a_positioned_error(text in query()) {
        check(&text);
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed(depth in 1usize..4000) {
        check(&format!("SELECT * FROM c WHERE {}c.a{}", "(".repeat(depth), ")".repeat(depth)));
        check(&format!("SELECT VALUE {}1{}", "[".repeat(depth), "]".repeat(depth)));
        check(&format!("SELECT * FROM c WHERE {}c.a", "NOT ".repeat(depth)));
    }
}
