//! End-to-end tests through the public API: the documentation's examples, error positions,
//! partition filters, the type order and undefined semantics, each through one `check` helper.
//!
//! The function rows come from the examples of each function's page under
//! <https://learn.microsoft.com/azure/cosmos-db/nosql/query/> (query and result as published in
//! Azure-Samples/cosmos-db-nosql-query-samples); a property missing from an expected object is
//! one the page shows as undefined.

// The pages' results contain numbers such as 3.14 and log10(2) written out, which are kept as
// published rather than replaced by the constants clippy suggests.
#![allow(clippy::approx_constant)]

use serde_json::{json, Value};

use crate::{parse, CurrentTime, Position, QueryError};

/// 2026-01-02T03:04:05.0000000Z, the time every test query runs at.
const NOW_MILLIS: i64 = 1_767_323_045_000;

fn run(
    query: &str,
    parameters: &[(&str, Value)],
    items: &[Value],
) -> Result<Vec<Value>, QueryError> {
    let parameters: Vec<(String, Value)> = parameters
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    parse(query)?
        .bind(&parameters)?
        .execute(items, CurrentTime::from_unix_millis(NOW_MILLIS))
}

fn check_with(query: &str, parameters: &[(&str, Value)], items: &[Value], expected: Value) {
    let results = run(query, parameters, items).unwrap_or_else(|error| panic!("{query}: {error}"));
    assert_eq!(Value::Array(results), expected, "{query}");
}

fn check(query: &str, items: &[Value], expected: Value) {
    check_with(query, &[], items, expected);
}

/// For results whose order Cosmos DB does not define (groups).
fn check_unordered(query: &str, items: &[Value], expected: Value) {
    let mut results = run(query, &[], items).unwrap_or_else(|error| panic!("{query}: {error}"));
    let Value::Array(mut expected) = expected else {
        panic!("expected an array")
    };
    let key = |value: &Value| value.to_string();
    results.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(results, expected, "{query}");
}

fn check_error(query: &str, line: u32, column: u32, message: &str) {
    let error = run(query, &[], &[]).expect_err(query);
    let position = error
        .position()
        .unwrap_or_else(|| panic!("{query}: {error} has no position"));
    assert_eq!(
        (position.line, position.column),
        (line, column),
        "{query}: {error}"
    );
    assert!(error.to_string().contains(message), "{query}: {error}");
}

fn items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        _ => panic!("items must be an array"),
    }
}

#[test]
fn type_checking_functions() {
    check(
        r#"SELECT VALUE {
            isDefined: IS_DEFINED({ "quantity" : 5 }.quantity),
            isNotDefined: IS_DEFINED({ "quantity" : 5 }.name)
        }"#,
        &[],
        json!([{"isDefined": true, "isNotDefined": false}]),
    );
    check(
        r#"SELECT VALUE {
            booleanIsNull: IS_NULL(true),
            numberIsNull: IS_NULL(15),
            stringIsNull: IS_NULL("AdventureWorks"),
            nullIsNull: IS_NULL(null),
            objectIsNull: IS_NULL({price: 85.23}),
            arrayIsNull: IS_NULL(["red", "blue", "yellow"]),
            populatedObjectPropertyIsNull: IS_NULL({quantity: 25, vendor: null}.quantity),
            invalidObjectPropertyIsNull: IS_NULL({quantity: 25, vendor: null}.size),
            nullObjectPropertyIsNull: IS_NULL({quantity: 25, vendor: null}.vendor)
        }"#,
        &[],
        json!([{"booleanIsNull": false, "numberIsNull": false, "stringIsNull": false, "nullIsNull": true,
            "objectIsNull": false, "arrayIsNull": false, "populatedObjectPropertyIsNull": false,
            "invalidObjectPropertyIsNull": false, "nullObjectPropertyIsNull": true}]),
    );
    check(
        r#"SELECT VALUE {
            isBooleanANumber: IS_NUMBER(true),
            isNumberANumber: IS_NUMBER(1),
            isStringANumber: IS_NUMBER("value"),
            isNullANumber: IS_NUMBER(null),
            isObjectANumber: IS_NUMBER({ "name": "Tecozow coat" }),
            isObjectStringPropertyANumber: IS_NUMBER({ "name": "Tecozow coat" }.name),
            isObjectNumberPropertyANumber: IS_NUMBER({ "quantity": 0 }.quantity),
            isUndefinedANumber: IS_NUMBER({}.category)
        }"#,
        &[],
        json!([{"isBooleanANumber": false, "isNumberANumber": true, "isStringANumber": false,
            "isNullANumber": false, "isObjectANumber": false, "isObjectStringPropertyANumber": false,
            "isObjectNumberPropertyANumber": true, "isUndefinedANumber": false}]),
    );
    check(
        r#"SELECT VALUE {
            isBooleanAPrimitive: IS_PRIMITIVE(true),
            isNumberAPrimitive: IS_PRIMITIVE(1),
            isStringAPrimitive: IS_PRIMITIVE("value"),
            isArrayAPrimitive: IS_PRIMITIVE([ "green", "red", "yellow" ]),
            isNullAPrimitive: IS_PRIMITIVE(null),
            isObjectAPrimitive: IS_PRIMITIVE({ "name": "Tecozow coat" }),
            isObjectStringPropertyAPrimitive: IS_PRIMITIVE({ "name": "Tecozow coat" }.name),
            isObjectBooleanPropertyAPrimitive: IS_PRIMITIVE({ "onSale": false }.onSale),
            isUndefinedAPrimitive: IS_PRIMITIVE({}.category)
        }"#,
        &[],
        json!([{"isBooleanAPrimitive": true, "isNumberAPrimitive": true, "isStringAPrimitive": true,
            "isArrayAPrimitive": false, "isNullAPrimitive": true, "isObjectAPrimitive": false,
            "isObjectStringPropertyAPrimitive": true, "isObjectBooleanPropertyAPrimitive": true,
            "isUndefinedAPrimitive": false}]),
    );
    check(
        "SELECT VALUE [IS_STRING('a'), IS_STRING(1), IS_BOOL(false), IS_BOOL(0), IS_ARRAY([]), IS_ARRAY({}), \
         IS_OBJECT({}), IS_OBJECT([]), IS_INTEGER(3), IS_INTEGER(3.5)]",
        &[],
        json!([[true, false, true, false, true, false, true, false, true, false]]),
    );
    check(
        "SELECT VALUE { finiteValue: IS_FINITE_NUMBER(1234.567), infiniteValue: IS_FINITE_NUMBER(8.9 / 0.0), \
         nanValue: IS_FINITE_NUMBER(SQRT(-1.0)) }",
        &[],
        json!([{"finiteValue": true, "infiniteValue": false, "nanValue": false}]),
    );
}

#[test]
fn string_functions() {
    check(
        r#"SELECT VALUE CONCAT("adventure", "works")"#,
        &[],
        json!(["adventureworks"]),
    );
    check(
        r#"SELECT VALUE {
            containsPrefix: CONTAINS("AdventureWorks", "Adventure"),
            containsSuffix: CONTAINS("AdventureWorks", "Works"),
            containsWrongCase: CONTAINS("AdventureWorks", "adventure"),
            containsWrongCaseValidateCase: CONTAINS("AdventureWorks", "adventure", false),
            containsWrongCaseIgnoreCase: CONTAINS("AdventureWorks", "works", true),
            containsMismatch: CONTAINS("AdventureWorks", "Contoso")
        }"#,
        &[],
        json!([{"containsPrefix": true, "containsSuffix": true, "containsWrongCase": false,
            "containsWrongCaseValidateCase": false, "containsWrongCaseIgnoreCase": true, "containsMismatch": false}]),
    );
    check(
        r#"SELECT VALUE {
            endsWithWrongSuffix: ENDSWITH("AdventureWorks", "Adventure"),
            endsWithCorrectSuffix: ENDSWITH("AdventureWorks", "Works"),
            endsWithSuffixWrongCase: ENDSWITH("AdventureWorks", "works"),
            endsWithSuffixCaseInsensitive: ENDSWITH("AdventureWorks", "works", true)
        }"#,
        &[],
        json!([{"endsWithWrongSuffix": false, "endsWithCorrectSuffix": true, "endsWithSuffixWrongCase": false,
            "endsWithSuffixCaseInsensitive": true}]),
    );
    check(
        "SELECT VALUE [STARTSWITH('AdventureWorks', 'Adventure'), STARTSWITH('AdventureWorks', 'adventure'), \
         STARTSWITH('AdventureWorks', 'adventure', true), STARTSWITH(1, 'a')]",
        &[],
        json!([[true, false, true]]),
    );
    check(
        r#"SELECT VALUE {
            indexOfFirstLetter: INDEX_OF("AdventureWorks", "A"),
            indexOfLastLetter: INDEX_OF("AdventureWorks", "s"),
            indexOfPrefix: INDEX_OF("AdventureWorks", "Adventure"),
            indexOfSuffix: INDEX_OF("AdventureWorks", "Works"),
            indexOfSubstring: INDEX_OF("AdventureWorks", "tureW"),
            indexOfNonMatch: INDEX_OF("AdventureWorks", "Cosmos"),
            indexOfCustomStartMatch: INDEX_OF("AdventureWorks", "Works", 5),
            indexOfCustomStartNoMatch: INDEX_OF("AdventureWorks", "Adventure", 5),
            indexOfCaseSensitive: INDEX_OF("AdventureWorks", "aD")
        }"#,
        &[],
        json!([{"indexOfFirstLetter": 0, "indexOfLastLetter": 13, "indexOfPrefix": 0, "indexOfSuffix": 9,
            "indexOfSubstring": 5, "indexOfNonMatch": -1, "indexOfCustomStartMatch": 9,
            "indexOfCustomStartNoMatch": -1, "indexOfCaseSensitive": -1}]),
    );
    check(
        r#"SELECT VALUE {
            firstZero: LEFT("AdventureWorks", 0),
            firstOne: LEFT("AdventureWorks", 1),
            firstFive: LEFT("AdventureWorks", 5),
            fullLength: LEFT("AdventureWorks", LENGTH("AdventureWorks")),
            beyondMaxLength: LEFT("AdventureWorks", 100)
        }"#,
        &[],
        json!([{"firstZero": "", "firstOne": "A", "firstFive": "Adven", "fullLength": "AdventureWorks",
            "beyondMaxLength": "AdventureWorks"}]),
    );
    check(
        "SELECT VALUE [RIGHT('AdventureWorks', 5), RIGHT('AdventureWorks', 0), RIGHT('AdventureWorks', 100)]",
        &[],
        json!([["Works", "", "AdventureWorks"]]),
    );
    check(
        r#"SELECT VALUE {
            stringValue: LENGTH("AdventureWorks"),
            emptyString: LENGTH(""),
            nullValue: LENGTH(null),
            numberValue: LENGTH(0),
            arrayValue: LENGTH(["Adventure", "Works"])
        }"#,
        &[],
        json!([{"stringValue": 14, "emptyString": 0}]),
    );
    check(
        r#"SELECT VALUE {
            lowercase: LOWER("adventureworks"),
            uppercase: LOWER("ADVENTUREWORKS"),
            camelCase: LOWER("adventureWorks"),
            pascalCase: LOWER("AdventureWorks"),
            upperSnakeCase: LOWER("ADVENTURE_WORKS")
        }"#,
        &[],
        json!([{"lowercase": "adventureworks", "uppercase": "adventureworks", "camelCase": "adventureworks",
            "pascalCase": "adventureworks", "upperSnakeCase": "adventure_works"}]),
    );
    check(
        "SELECT VALUE UPPER('adventure_Works')",
        &[],
        json!(["ADVENTURE_WORKS"]),
    );
    check(
        r#"SELECT VALUE {
            whitespaceStart: LTRIM("  AdventureWorks"),
            whitespaceStartEnd: LTRIM("  AdventureWorks  "),
            whitespaceEnd: LTRIM("AdventureWorks  "),
            noWhitespace: LTRIM("AdventureWorks"),
            trimSuffix: LTRIM("AdventureWorks", "Works"),
            trimPrefix: LTRIM("AdventureWorks", "Adventure"),
            trimEntireTerm: LTRIM("AdventureWorks", "AdventureWorks"),
            trimEmptyString: LTRIM("AdventureWorks", "")
        }"#,
        &[],
        json!([{"whitespaceStart": "AdventureWorks", "whitespaceStartEnd": "AdventureWorks  ",
            "whitespaceEnd": "AdventureWorks  ", "noWhitespace": "AdventureWorks", "trimSuffix": "AdventureWorks",
            "trimPrefix": "Works", "trimEntireTerm": "", "trimEmptyString": "AdventureWorks"}]),
    );
    check(
        "SELECT VALUE [RTRIM('  AdventureWorks  '), TRIM('  AdventureWorks  '), RTRIM('AdventureWorks', 'Works')]",
        &[],
        json!([["  AdventureWorks", "AdventureWorks", "Adventure"]]),
    );
    check(
        r#"SELECT VALUE { replaceSubstring: REPLACE("AdventureWorksLT", "LT", "LT2") }"#,
        &[],
        json!([{"replaceSubstring": "AdventureWorksLT2"}]),
    );
    check(
        "SELECT VALUE [REPLICATE('a', 3), REPLICATE('ab', 0), REVERSE('Abc')]",
        &[],
        json!([["aaa", "", "cbA"]]),
    );
    check(
        r#"SELECT VALUE {
            substringPrefix: SUBSTRING("AdventureWorks", 0, 9),
            substringSuffix: SUBSTRING("AdventureWorks", 9, 5),
            substringTotalLength: SUBSTRING("AdventureWorks", 0, LENGTH("AdventureWorks")),
            substringEmptyString: SUBSTRING("AdventureWorks", 0, -1)
        }"#,
        &[],
        json!([{"substringPrefix": "Adventure", "substringSuffix": "Works", "substringTotalLength": "AdventureWorks",
            "substringEmptyString": ""}]),
    );
    check(
        r#"SELECT VALUE {
            parseInteger: StringToNumber("100"),
            parseDecimal: StringToNumber("3.14"),
            parseWithWhitespace: StringToNumber("   60   "),
            parseScientific: StringToNumber("-1.79769e+308"),
            parseInvalid: StringToNumber("Hello")
        }"#,
        &[],
        json!([{"parseInteger": 100, "parseDecimal": 3.14, "parseWithWhitespace": 60, "parseScientific": -1.79769e308}]),
    );
    check(
        r#"SELECT VALUE {
            integerToString: ToString(125),
            floatToString: ToString(0.1234),
            booleanToString: ToString(false),
            arrayToString: ToString([ 1, 2, 3 ]),
            objectToString: ToString({ "department": "Bicycles" }),
            stringToString: ToString("Hello World"),
            undefinedToString: ToString(undefined)
        }"#,
        &[],
        json!([{"integerToString": "125", "floatToString": "0.1234", "booleanToString": "false",
            "arrayToString": "[1,2,3]", "objectToString": "{\"department\":\"Bicycles\"}",
            "stringToString": "Hello World"}]),
    );
    check(
        "SELECT VALUE [StringEquals('abc', 'ABC'), StringEquals('abc', 'ABC', true), StringEquals('a', 'a')]",
        &[],
        json!([[false, true, true]]),
    );
    check(
        r#"SELECT VALUE [StringToArray("[1, 2]"), StringToBoolean("true"), StringToObject('{"a": 1}'),
            StringToNull("null"), StringToBoolean("1")]"#,
        &[],
        json!([[[1, 2], true, {"a": 1}, null]]),
    );
    check(
        r#"SELECT VALUE [RegexMatch("abcd", "ABC", "i"), RegexMatch("abcd", "bcd$"), RegexMatch("abcd", "^bcd"),
            RegexMatch("ab\ncd", "^cd", "m")]"#,
        &[],
        json!([[true, true, false, true]]),
    );
}

#[test]
fn regex_pattern_from_a_parameter() {
    check_with(
        "SELECT VALUE RegexMatch(c.name, @pattern) FROM c",
        &[("@pattern", json!("^H"))],
        &[
            json!({"name": "Hello"}),
            json!({"name": "World"}),
            json!({"name": 3}),
        ],
        json!([true, false]),
    );
}

#[test]
fn math_functions() {
    check(
        r#"SELECT VALUE {
            roundTwoPointFour: ROUND(2.4),
            roundTwoPointSix: ROUND(2.6),
            roundTwoPointFive: ROUND(2.5),
            roundNegativeTwoPointFour: ROUND(-2.4),
            roundNegativeTwoPointSix: ROUND(-2.6)
        }"#,
        &[],
        json!([{"roundTwoPointFour": 2, "roundTwoPointSix": 3, "roundTwoPointFive": 3,
            "roundNegativeTwoPointFour": -2, "roundNegativeTwoPointSix": -3}]),
    );
    check(
        r#"SELECT VALUE {
            floorPostiveNumber: FLOOR(62.6),
            floorNegativeNumber: FLOOR(-145.12),
            floorSmallNumber: FLOOR(0.2989),
            floorZero: FLOOR(0.0),
            floorNull: FLOOR(null)
        }"#,
        &[],
        json!([{"floorPostiveNumber": 62, "floorNegativeNumber": -146, "floorSmallNumber": 0, "floorZero": 0}]),
    );
    check(
        r#"SELECT VALUE {
            oneFirstPower: POWER(1, 1),
            twoSquared: POWER(2, 2),
            threeCubed: POWER(3, 3),
            fourFourthPower: POWER(4, 4),
            fiveFithPower: POWER(5, 5),
            zeroSquared: POWER(0, 2),
            nullCubed: POWER(null, 3),
            twoNullPower: POWER(2, null)
        }"#,
        &[],
        json!([{"oneFirstPower": 1, "twoSquared": 4, "threeCubed": 27, "fourFourthPower": 256,
            "fiveFithPower": 3125, "zeroSquared": 0}]),
    );
    check(
        "SELECT VALUE { logFive: LOG(5), logTwoBaseTen: LOG(2, 10) }",
        &[],
        json!([{"logFive": 1.6094379124341003, "logTwoBaseTen": 0.3010299956639812}]),
    );
    check(
        "SELECT VALUE { logFiveBaseTen: LOG10(5), logTwoBaseTen: LOG10(2), logHundredBaseTen: LOG10(100) }",
        &[],
        json!([{"logFiveBaseTen": 0.6989700043360189, "logTwoBaseTen": 0.3010299956639812, "logHundredBaseTen": 2}]),
    );
    check(
        r#"SELECT VALUE {
            roundToNegativeHundreds: NumberBin(37.752, -100),
            roundToTens: NumberBin(37.752, 10),
            roundToOnes: NumberBin(37.752, 1),
            roundToZeroes: NumberBin(37.752, 0),
            roundToOneTenths: NumberBin(37.752, 0.1),
            roundToOneHundreds: NumberBin(37.752, 0.01)
        }"#,
        &[],
        json!([{"roundToNegativeHundreds": 100, "roundToTens": 30, "roundToOnes": 37, "roundToOneTenths": 37.7,
            "roundToOneHundreds": 37.75}]),
    );
    check(
        "SELECT VALUE [ABS(-1), ABS(0), ABS(1), CEILING(123.45), CEILING(-123.45), SIGN(-2), SIGN(0), SIGN(3.5), \
         TRUNC(-2.7), SQRT(9), SQUARE(3), EXP(0), PI(), DEGREES(PI() / 2), RADIANS(180), SIN(0), COS(0)]",
        &[],
        json!([[1, 0, 1, 124, -123, -1, 0, 1, -2, 3, 9, 1, std::f64::consts::PI, 90, std::f64::consts::PI, 0, 1]]),
    );
    check(
        "SELECT VALUE { addNumber: IntAdd(20, 10), addZero: IntAdd(20, 0), addDecimal: IntAdd(20, 0.10) }",
        &[],
        json!([{"addNumber": 30, "addZero": 20}]),
    );
    check(
        "SELECT VALUE [IntSub(10, 3), IntMul(4, 5), IntDiv(7, 2), IntMod(7, 2), IntBitAnd(12, 10), IntBitOr(12, 10), \
         IntBitXor(12, 10), IntBitNot(0), IntBitLeftShift(1, 4), IntBitRightShift(16, 2), IntDiv(1, 0)]",
        &[],
        json!([[7, 20, 3, 1, 8, 14, 6, -1, 16, 4]]),
    );
}

#[test]
fn array_functions() {
    check(
        r#"SELECT VALUE {
            containsItem: ARRAY_CONTAINS(["coats", "jackets", "sweatshirts"], "coats"),
            missingItem: ARRAY_CONTAINS(["coats", "jackets", "sweatshirts"], "hoodies"),
            containsFullMatchObject: ARRAY_CONTAINS([{ category: "shirts", color: "blue" }], { category: "shirts", color: "blue" }),
            missingFullMatchObject: ARRAY_CONTAINS([{ category: "shirts", color: "blue" }], { category: "shirts" }),
            containsPartialMatchObject: ARRAY_CONTAINS([{ category: "shirts", color: "blue" }], { category: "shirts" }, true),
            missingPartialMatchObject: ARRAY_CONTAINS([{ category: "shirts", color: "blue" }], { category: "shorts", color: "blue" }, true)
        }"#,
        &[],
        json!([{"containsItem": true, "missingItem": false, "containsFullMatchObject": true,
            "missingFullMatchObject": false, "containsPartialMatchObject": true, "missingPartialMatchObject": false}]),
    );
    check(
        r#"SELECT VALUE {
            sliceFromStart: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], 0),
            sliceFromSecond: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], 1),
            sliceFromLast: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], -1),
            sliceFromSecondToLast: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], -2),
            sliceThreeFromStart: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], 0, 3),
            sliceTwelveFromStart: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], 0, 12),
            sliceFiveFromThird: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], 3, 5),
            sliceOneFromSecondToLast: ARRAY_SLICE([70, 86, 92, 99, 85, 90, 82], -2, 1)
        }"#,
        &[],
        json!([{"sliceFromStart": [70, 86, 92, 99, 85, 90, 82], "sliceFromSecond": [86, 92, 99, 85, 90, 82],
            "sliceFromLast": [82], "sliceFromSecondToLast": [90, 82], "sliceThreeFromStart": [70, 86, 92],
            "sliceTwelveFromStart": [70, 86, 92, 99, 85, 90, 82], "sliceFiveFromThird": [99, 85, 90, 82],
            "sliceOneFromSecondToLast": [90]}]),
    );
    check(
        r#"SELECT ARRAY_CONCAT(["apples", "strawberries"], ["bananas"]) AS arrayConcat"#,
        &[],
        json!([{"arrayConcat": ["apples", "strawberries", "bananas"]}]),
    );
    check(
        "SELECT VALUE [ARRAY_LENGTH([1, 2, 3]), ARRAY_LENGTH([]), SetIntersect([1, 2, 3], [2, 3, 4]), \
         SetUnion([1, 2, 2], [2, 3]), ARRAY_CONTAINS_ANY([1, 2], 3, 2), ARRAY_CONTAINS_ALL([1, 2], 2, 3)]",
        &[],
        json!([[3, 0, [2, 3], [1, 2, 3], true, false]]),
    );
    check("SELECT VALUE ARRAY_LENGTH('abc')", &[], json!([]));
}

#[test]
fn conditional_functions_and_operators() {
    check(
        r#"SELECT VALUE {
            evalTrue: IIF(true, 123, 456),
            evalFalse: IIF(false, 123, 456),
            evalNumberNotTrue: IIF(123, 123, 456),
            evalStringNotTrue: IIF("ABC", 123, 456),
            evalArrayNotTrue: IIF([1,2,3], 123, 456),
            evalObjectNotTrue: IIF({"name": "Alice", "age": 20}, 123, 456)
        }"#,
        &[],
        json!([{"evalTrue": 123, "evalFalse": 456, "evalNumberNotTrue": 456, "evalStringNotTrue": 456,
            "evalArrayNotTrue": 456, "evalObjectNotTrue": 456}]),
    );
    check(
        "SELECT VALUE [1 + 2 * 3, 7 / 2, 7 % 4, -(2), 'a' || 'b', 1 + 'a', true ? 'yes' : 'no', \
         {}.missing ?? 'fallback', null ?? 'kept', 5 BETWEEN 1 AND 10, 2 IN (1, 2), 3 NOT IN (1, 2)]",
        &[],
        json!([[7, 3.5, 3, -2, "ab", "yes", "fallback", null, true, true, true]]),
    );
    check(
        "SELECT VALUE [12 & 10, 12 | 10, 12 ^ 10, 1 << 3, -16 >> 2, -1 >>> 28, ~5]",
        &[],
        json!([[8, 14, 6, 8, -4, 15, -6]]),
    );
}

#[test]
fn date_functions() {
    check(
        r#"SELECT VALUE {
            addOneYear: DateTimeAdd("yyyy", 1, "2020-07-03T00:00:00.0000000"),
            addOneMonth: DateTimeAdd("mm", 1, "2020-07-03T00:00:00.0000000"),
            addOneDay: DateTimeAdd("dd", 1, "2020-07-03T00:00:00.0000000"),
            addOneHour: DateTimeAdd("hh", 1, "2020-07-03T00:00:00.0000000"),
            subtractOneYear: DateTimeAdd("yyyy", -1, "2020-07-03T00:00:00.0000000"),
            subtractOneMonth: DateTimeAdd("mm", -1, "2020-07-03T00:00:00.0000000"),
            subtractOneDay: DateTimeAdd("dd", -1, "2020-07-03T00:00:00.0000000"),
            subtractOneHour: DateTimeAdd("hh", -1, "2020-07-03T00:00:00.0000000"),
            modifySecondsExpression: DateTimeAdd("ss", 5 * -5, "2020-07-03T00:00:00.0000000")
        }"#,
        &[],
        json!([{"addOneYear": "2021-07-03T00:00:00.0000000Z", "addOneMonth": "2020-08-03T00:00:00.0000000Z",
            "addOneDay": "2020-07-04T00:00:00.0000000Z", "addOneHour": "2020-07-03T01:00:00.0000000Z",
            "subtractOneYear": "2019-07-03T00:00:00.0000000Z", "subtractOneMonth": "2020-06-03T00:00:00.0000000Z",
            "subtractOneDay": "2020-07-02T00:00:00.0000000Z", "subtractOneHour": "2020-07-02T23:00:00.0000000Z",
            "modifySecondsExpression": "2020-07-02T23:59:35.0000000Z"}]),
    );
    check(
        r#"SELECT VALUE {
            diffPastYears: DateTimeDiff("yyyy", "2019-02-04T16:00:00.0000000", "2018-03-05T05:00:00.0000000"),
            diffPastMonths: DateTimeDiff("mm", "2019-02-04T16:00:00.0000000", "2018-03-05T05:00:00.0000000"),
            diffPastDays: DateTimeDiff("diffDays", "2019-02-04T16:00:00.0000000", "2018-03-05T05:00:00.0000000"),
            diffPastHours: DateTimeDiff("hh", "2019-02-04T16:00:00.0000000", "2018-03-05T05:00:00.0000000"),
            diffPastSeconds: DateTimeDiff("ss", "2019-02-04T16:00:00.0000000", "2018-03-05T05:00:00.0000000"),
            diffFutureYears: DateTimeDiff("yyyy", "2018-03-05T05:00:00.0000000", "2019-02-04T16:00:00.0000000"),
            diffFutureMonths: DateTimeDiff("mm", "2018-03-05T05:00:00.0000000", "2019-02-04T16:00:00.0000000"),
            diffFutureDays: DateTimeDiff("diffDays", "2018-03-05T05:00:00.0000000", "2019-02-04T16:00:00.0000000"),
            diffFutureHours: DateTimeDiff("hh", "2018-03-05T05:00:00.0000000", "2019-02-04T16:00:00.0000000"),
            diffFutureSeconds: DateTimeDiff("ss", "2018-03-05T05:00:00.0000000", "2019-02-04T16:00:00.0000000")
        }"#,
        &[],
        json!([{"diffPastYears": -1, "diffPastMonths": -11, "diffPastHours": -8075, "diffPastSeconds": -29070000,
            "diffFutureYears": 1, "diffFutureMonths": 11, "diffFutureHours": 8075, "diffFutureSeconds": 29070000}]),
    );
    check(
        r#"SELECT VALUE {
            getYear: DateTimePart("yyyy", "2016-05-29T08:30:00.1301617"),
            getMonth: DateTimePart("mm", "2016-05-29T08:30:00.1301617"),
            getDay: DateTimePart("dd", "2016-05-29T08:30:00.1301617"),
            getHour: DateTimePart("hh", "2016-05-29T08:30:00.1301617"),
            getMinute: DateTimePart("mi", "2016-05-29T08:30:00.1301617"),
            getSecond: DateTimePart("ss", "2016-05-29T08:30:00.1301617"),
            getMillisecond: DateTimePart("ms", "2016-05-29T08:30:00.1301617"),
            getMicrosecond: DateTimePart("mcs", "2016-05-29T08:30:00.1301617"),
            getNanosecond: DateTimePart("ns", "2016-05-29T08:30:00.1301617")
        }"#,
        &[],
        json!([{"getYear": 2016, "getMonth": 5, "getDay": 29, "getHour": 8, "getMinute": 30, "getSecond": 0,
            "getMillisecond": 130, "getMicrosecond": 130161, "getNanosecond": 130161700}]),
    );
    check(
        r#"SELECT VALUE {
            constructMinArguments: DateTimeFromParts(2017, 4, 20),
            constructMinEquivalent: DateTimeFromParts(2017, 4, 20, 0, 0, 0, 0),
            constructAllArguments: DateTimeFromParts(2017, 4, 20, 13, 15, 20, 3456789),
            constructPartialArguments: DateTimeFromParts(2017, 4, 20, 13, 15),
            constructInvalidArguments: DateTimeFromParts(-2000, -1, -1)
        }"#,
        &[],
        json!([{"constructMinArguments": "2017-04-20T00:00:00.0000000Z",
            "constructMinEquivalent": "2017-04-20T00:00:00.0000000Z",
            "constructAllArguments": "2017-04-20T13:15:20.3456789Z",
            "constructPartialArguments": "2017-04-20T13:15:00.0000000Z"}]),
    );
    check(
        r#"SELECT VALUE { timestamp: DateTimeToTimestamp("2015-05-19T12:00:00.0000000") }"#,
        &[],
        json!([{"timestamp": 1432036800000_i64}]),
    );
    check(
        r#"SELECT VALUE { ticks: DateTimeToTicks("2015-05-19T12:00:00.0000000") }"#,
        &[],
        json!([{"ticks": 14320368000000000_i64}]),
    );
    check(
        "SELECT VALUE [TimestampToDateTime(1432036800000), TicksToDateTime(14320368000000000), \
         DateTimeAdd('mm', 1, '2020-01-31T00:00:00Z')]",
        &[],
        json!([[
            "2015-05-19T12:00:00.0000000Z",
            "2015-05-19T12:00:00.0000000Z",
            "2020-02-29T00:00:00.0000000Z"
        ]]),
    );
    // The current time is the caller's, the same for every row.
    check(
        "SELECT VALUE [GetCurrentDateTime(), GetCurrentTimestamp(), GetCurrentTicks(), GetCurrentDateTimeStatic()]",
        &[],
        json!([["2026-01-02T03:04:05.0000000Z", NOW_MILLIS, NOW_MILLIS * 10_000, "2026-01-02T03:04:05.0000000Z"]]),
    );
}

fn employees() -> Vec<Value> {
    items(json!([
        {"id": "3548979698", "name": "Jordan Mitchell", "capabilities": {"softwareDevelopment": "python", "mediaTrained": true}, "team": "Cloud software engineering"},
        {"id": "4228924547", "name": "Mikaela Lee", "capabilities": {"softwareDevelopment": "javascript", "mediaTrained": false}, "team": "Cloud software engineering"},
        {"id": "2941063066", "name": "Graham Barnes", "capabilities": {"softwareDevelopment": "c-sharp", "mediaTrained": true}, "team": "Cloud software engineering"},
        {"id": "9318573296", "name": "Hayden Cook", "capabilities": {"softwareDevelopment": "javascript", "mediaTrained": true}, "team": "Cloud software engineering"},
        {"id": "3601062997", "name": "Morgan Connors", "capabilities": {"mediaTrained": true}, "team": "Cloud software engineering"},
        {"id": "7074932233", "name": "Devon Torres", "capabilities": {"softwareDevelopment": "python", "mediaTrained": false}, "team": "Cloud software engineering"},
        {"id": "3798545532", "name": "Sam Centrell", "capabilities": {"softwareDevelopment": "javascript", "mediaTrained": true}, "team": "Cloud software engineering"}
    ]))
}

#[test]
fn group_by() {
    check(
        "SELECT e.capabilities.softwareDevelopment AS developmentLang FROM employees e \
         WHERE e.team = \"Cloud software engineering\" GROUP BY e.capabilities.softwareDevelopment",
        &employees(),
        json!([{}, {"developmentLang": "c-sharp"}, {"developmentLang": "javascript"}, {"developmentLang": "python"}]),
    );
    check(
        "SELECT COUNT(1) AS trainedEmployees, e.capabilities.softwareDevelopment AS developmentLang FROM employees e \
         WHERE e.team = \"Cloud software engineering\" GROUP BY e.capabilities.softwareDevelopment",
        &employees(),
        json!([{"trainedEmployees": 1}, {"trainedEmployees": 1, "developmentLang": "c-sharp"},
            {"trainedEmployees": 3, "developmentLang": "javascript"}, {"trainedEmployees": 2, "developmentLang": "python"}]),
    );
    check_unordered(
        "SELECT COUNT(1) AS employeesWithThisTraining, e.capabilities.softwareDevelopment AS developmentLang, \
         e.capabilities.mediaTrained AS mediaReady FROM employees e WHERE e.team = \"Cloud software engineering\" \
         GROUP BY e.capabilities.softwareDevelopment, e.capabilities.mediaTrained",
        &employees(),
        json!([
            {"employeesWithThisTraining": 1, "developmentLang": "python", "mediaReady": true},
            {"employeesWithThisTraining": 1, "developmentLang": "javascript", "mediaReady": false},
            {"employeesWithThisTraining": 1, "developmentLang": "c-sharp", "mediaReady": true},
            {"employeesWithThisTraining": 2, "developmentLang": "javascript", "mediaReady": true},
            {"employeesWithThisTraining": 1, "mediaReady": true},
            {"employeesWithThisTraining": 1, "developmentLang": "python", "mediaReady": false}
        ]),
    );
    // SELECT VALUE with GROUP BY, and a group key used inside an expression.
    check(
        "SELECT VALUE UPPER(e.capabilities.softwareDevelopment) FROM e GROUP BY e.capabilities.softwareDevelopment",
        &employees(),
        json!(["C-SHARP", "JAVASCRIPT", "PYTHON"]),
    );
}

#[test]
fn aggregates() {
    let products = items(json!([
        {"id": "8601166197", "name": "Glaark bag", "category": "small-bags", "price": 20.28},
        {"id": "4762595687", "name": "Astoney pack", "category": "small-bags", "price": 5.11},
        {"id": "8256269564", "name": "Icento pack", "category": "small-bags", "price": 62.21},
        {"id": "5509201658", "price": 87.66, "name": "Genish bracelet", "category": "fashion-bracelet"},
        {"id": "9888912168", "price": 27.60, "name": "Plative bracelet", "category": "fashion-bracelet"},
        {"id": "5922901576", "name": "Horric socks", "category": "socks"},
        {"id": "1859046259", "name": "Shinity socks", "category": "socks"},
        {"id": "3656853690", "category": "socks"}
    ]));
    check("SELECT VALUE ROUND(AVG(p.price) * 100) / 100 FROM products p WHERE p.category = \"small-bags\"", &products, json!([29.2]));
    check(
        "SELECT MIN(p.price) AS minPrice FROM products p WHERE p.category = \"fashion-bracelet\"",
        &products,
        json!([{"minPrice": 27.6}]),
    );
    check(
        "SELECT VALUE MAX(p.price) FROM products p",
        &products,
        json!([87.66]),
    );
    check(
        "SELECT VALUE COUNT(p.name) FROM products p WHERE p.category = \"socks\"",
        &products,
        json!([2]),
    );
    check(
        "SELECT VALUE { countScalar: COUNT(1), countExpression: COUNT(2 + 3) }",
        &[],
        json!([{"countScalar": 1, "countExpression": 1}]),
    );
    check("SELECT VALUE COUNT(1) FROM c", &products, json!([8]));
    check(
        "SELECT COUNT(1) FROM c WHERE c.category = 'none'",
        &products,
        json!([{"$1": 0}]),
    );
    check(
        "SELECT VALUE SUM(c.price) FROM c WHERE c.category = 'none'",
        &products,
        json!([0]),
    );
    // No value to average, or a non-number among them: undefined, so no row.
    check(
        "SELECT VALUE AVG(c.price) FROM c WHERE c.category = 'none'",
        &products,
        json!([]),
    );
    check("SELECT VALUE SUM(c.name) FROM c", &products, json!([]));
    check(
        "SELECT VALUE SUM(c.n) FROM c",
        &items(json!([{"n": 1}, {"n": 2}, {"m": 3}])),
        json!([3]),
    );
    // MIN and MAX order mixed types: null < booleans < numbers < strings.
    check(
        "SELECT VALUE MAX(c.v) FROM c",
        &items(json!([{"v": 1}, {"v": "a"}, {"v": true}, {"v": null}])),
        json!(["a"]),
    );
    check(
        "SELECT VALUE MIN(c.v) FROM c",
        &items(json!([{"v": 1}, {"v": "a"}, {"v": true}, {"v": null}])),
        json!([null]),
    );
    check(
        "SELECT c.category, SUM(c.price) AS total, COUNT(1) AS n FROM c GROUP BY c.category",
        &products,
        json!([{"category": "fashion-bracelet", "total": 115.25999999999999, "n": 2}, {"category": "small-bags", "total": 87.6, "n": 3},
            {"category": "socks", "total": 0, "n": 3}]),
    );
}

#[test]
fn from_join_and_projections() {
    let employment = items(json!([
        {"id": "6339549442", "name": "Cris Barros", "employment": {"hireDateTime": "2023-01-01T06:30:00.000Z", "weeklyHours": 40, "team": "Retail support"}},
        {"id": "5859346714", "name": "Eduarda Dias", "employment": {"hireDateTime": "2023-01-01T09:30:00.000Z", "team": "Retail support"}},
        {"id": "4968499169", "name": "Darweshi Mhina", "employment": {"hireDateTime": "2023-01-01T15:30:00.000Z", "weeklyHours": 32, "team": "Retail support"}},
        {"id": "1", "name": "No employment"}
    ]));
    check(
        "SELECT * FROM employees.employment e WHERE e.team = \"Retail support\"",
        &employment,
        json!([
            {"hireDateTime": "2023-01-01T06:30:00.000Z", "weeklyHours": 40, "team": "Retail support"},
            {"hireDateTime": "2023-01-01T09:30:00.000Z", "team": "Retail support"},
            {"hireDateTime": "2023-01-01T15:30:00.000Z", "weeklyHours": 32, "team": "Retail support"}
        ]),
    );
    let products = items(json!([
        {"id": "ffffffff-5555-6666-7777-aaaaaaaaaaaa", "categoryName": "Sleeping Bags", "sku": "maresse-sleeping-bag-65503",
         "tags": [{"slug": "bag-shape-mummy", "name": "Bag Shape: Mummy"}, {"slug": "bag-insulation-down-fill", "name": "Bag Insulation: Down Fill"}]},
        {"id": "c2c2c2c2-dddd-eeee-ffff-a3a3a3a3a3a3", "categoryName": "Sleeping Bags", "sku": "vareno-sleeping-bag-65508",
         "tags": [{"slug": "bag-insulation-synthetic-fill", "name": "Bag Insulation: Synthetic Fill"},
                  {"slug": "color-group-yellow", "name": "Color Group: Yellow"}, {"slug": "bag-shape-mummy", "name": "Bag Shape: Mummy"}]},
        {"id": "no-tags", "categoryName": "Sleeping Bags", "sku": "x"}
    ]));
    check(
        "SELECT p.sku, t.name AS tag FROM products p JOIN t IN p.tags \
         WHERE p.categoryName = \"Sleeping Bags\" AND t.slug = \"bag-shape-mummy\"",
        &products,
        json!([{"sku": "maresse-sleeping-bag-65503", "tag": "Bag Shape: Mummy"}, {"sku": "vareno-sleeping-bag-65508", "tag": "Bag Shape: Mummy"}]),
    );
    check(
        "SELECT p.sku, t.slug FROM products p JOIN t IN p.tags WHERE STARTSWITH(t.slug, 'color-group-')",
        &products,
        json!([{"sku": "vareno-sleeping-bag-65508", "slug": "color-group-yellow"}]),
    );
    check(
        "SELECT VALUE t.slug FROM t IN c.tags WHERE t.slug LIKE 'bag-shape%'",
        &products,
        json!(["bag-shape-mummy", "bag-shape-mummy"]),
    );
    // Implicit aliases, `$n` names, object and array literals, `c["name"]` and `c.arr[0]`.
    check(
        "SELECT p.sku, p[\"categoryName\"], p.tags[0].slug, UPPER(p.sku), [p.id, 1] AS pair, {s: p.sku} AS o \
         FROM products p WHERE p.id = 'no-tags'",
        &products,
        json!([{"sku": "x", "categoryName": "Sleeping Bags", "$1": "X", "pair": ["no-tags", 1], "o": {"s": "x"}}]),
    );
    check(
        "SELECT c FROM c WHERE c.id = 'no-tags'",
        &products,
        json!([{"c": products[2].clone()}]),
    );
    // SELECT * returns the item itself, system properties included.
    let stored =
        json!({"id": "a", "_rid": "x1", "_etag": "\"0\"", "_ts": 1700000000, "nested": {"n": 1.0}});
    check(
        "SELECT * FROM root r",
        std::slice::from_ref(&stored),
        json!([stored.clone()]),
    );
    // Subqueries over the row: EXISTS, ARRAY and a scalar one.
    check(
        "SELECT VALUE p.sku FROM p WHERE EXISTS(SELECT VALUE t FROM t IN p.tags WHERE t.slug = 'color-group-yellow')",
        &products,
        json!(["vareno-sleeping-bag-65508"]),
    );
    check(
        "SELECT p.sku, ARRAY(SELECT VALUE t.slug FROM t IN p.tags WHERE STARTSWITH(t.slug, 'bag-shape')) AS shapes, \
         (SELECT VALUE COUNT(1) FROM t IN p.tags) AS n FROM p WHERE IS_DEFINED(p.tags)",
        &products,
        json!([{"sku": "maresse-sleeping-bag-65503", "shapes": ["bag-shape-mummy"], "n": 2},
            {"sku": "vareno-sleeping-bag-65508", "shapes": ["bag-shape-mummy"], "n": 3}]),
    );
}

#[test]
fn order_offset_limit_top_distinct() {
    let leadership = items(json!([
        {"id": "5929071063", "name": "Sawyer Miller", "team": "Leadership team"},
        {"id": "1599541170", "name": "Jennifer Wilkins", "team": "Leadership team"},
        {"id": "9461206378", "name": "Hannah Haynes", "team": "Leadership team"},
        {"id": "3261752803", "name": "Isaac Talbot", "team": "Leadership team"},
        {"id": "5011271389", "name": "Riley Johnson", "team": "Leadership team"}
    ]));
    check(
        "SELECT VALUE { name: e.name } FROM employees e WHERE e.team = \"Leadership team\" ORDER BY e.name OFFSET 2 LIMIT 2",
        &leadership,
        json!([{"name": "Jennifer Wilkins"}, {"name": "Riley Johnson"}]),
    );
    check(
        "SELECT VALUE e.name FROM e ORDER BY e.name DESC OFFSET 0 LIMIT 2",
        &leadership,
        json!(["Sawyer Miller", "Riley Johnson"]),
    );
    check(
        "SELECT TOP 2 VALUE e.id FROM e",
        &leadership,
        json!(["5929071063", "1599541170"]),
    );
    check_with(
        "SELECT TOP @n VALUE e.id FROM e ORDER BY e.id",
        &[("@n", json!(1))],
        &leadership,
        json!(["1599541170"]),
    );
    let people = items(json!([
        {"id": "1", "last": "Jensen", "first": "Casey", "age": 30},
        {"id": "2", "last": "Lewis", "first": "Kayla", "age": 30},
        {"id": "3", "last": "Rivera", "first": "Amari", "age": 25},
        {"id": "4", "last": "Adams", "first": "Amari", "age": 41}
    ]));
    check(
        "SELECT VALUE c.id FROM c ORDER BY c.age DESC, c.last ASC",
        &people,
        json!(["4", "1", "2", "3"]),
    );
    check(
        "SELECT DISTINCT VALUE c.first FROM c",
        &people,
        json!(["Casey", "Kayla", "Amari"]),
    );
    check(
        "SELECT DISTINCT c.age FROM c ORDER BY c.age",
        &people,
        json!([{"age": 25}, {"age": 30}, {"age": 41}]),
    );
}

#[test]
fn keyword_page_examples() {
    let products = items(json!([
        {"name": "Road gloves", "price": 20.0, "category": "Accessories", "description": "save 20% now"},
        {"name": "Screwdriver", "price": 7.5, "category": "Tools", "description": "20 pieces"},
        {"name": "Winter glove", "price": 30, "category": "Accessories"},
        {"name": "Mystery", "price": "fifteenDollars"}
    ]));
    check(
        "SELECT VALUE p.price FROM products p WHERE p.price BETWEEN 17.25 AND 25.50",
        &products,
        json!([20.0]),
    );
    check(
        "SELECT (p.price BETWEEN 0 AND 10) AS booleanLessThanTen, p.price FROM products p WHERE IS_NUMBER(p.price) AND p.price < 25",
        &products,
        json!([{"booleanLessThanTen": false, "price": 20.0}, {"booleanLessThanTen": true, "price": 7.5}]),
    );
    check_unordered(
        "SELECT DISTINCT VALUE p.category FROM products p",
        &products,
        json!(["Accessories", "Tools"]),
    );
    check_unordered(
        "SELECT DISTINCT p.category FROM products p",
        &products,
        json!([{}, {"category": "Accessories"}, {"category": "Tools"}]),
    );
    check(
        "SELECT VALUE p.name FROM products p WHERE p.name LIKE \"%driver%\"",
        &products,
        json!(["Screwdriver"]),
    );
    check(
        "SELECT VALUE p.name FROM products p WHERE p.name LIKE \"%glove\"",
        &products,
        json!(["Winter glove"]),
    );
    check(
        "SELECT VALUE p.name FROM products p WHERE p.name LIKE \"Road%\"",
        &products,
        json!(["Road gloves"]),
    );
    check(
        "SELECT VALUE p.name FROM products p WHERE p.name NOT LIKE \"%Winter%\"",
        &products,
        json!(["Road gloves", "Screwdriver", "Mystery"]),
    );
    check(
        "SELECT VALUE p.name FROM products p WHERE p.description LIKE \"%20^%%\" ESCAPE \"^\"",
        &products,
        json!(["Road gloves"]),
    );
    check(
        "SELECT VALUE [\"20-30%\" LIKE \"20-30[%]\", \"_n\" LIKE \"[_]n\", \"an\" LIKE \"[_]n\", \"[\" LIKE \"[ [ ]\", \"]\" LIKE \"]\"]",
        &[],
        json!([[true, true, false, true, true]]),
    );
    check(
        "SELECT VALUE p.name FROM products p WHERE p.category IN (\"Accessories\", \"Clothing\")",
        &products,
        json!(["Road gloves", "Winter glove"]),
    );
    check(
        "SELECT TOP 1 VALUE p.name FROM products p WHERE IS_NUMBER(p.price) ORDER BY p.price ASC",
        &products,
        json!(["Screwdriver"]),
    );
}

#[test]
fn order_by_sorts_across_types() {
    // ORDER BY returns every item, undefined first, then null, booleans, numbers, strings,
    // arrays, objects (the ORDER BY page, and the .NET SDK's type order).
    let mixed = items(json!([
        {"id": "object", "v": {"a": 1}}, {"id": "string", "v": "a"}, {"id": "number", "v": 2},
        {"id": "true", "v": true}, {"id": "array", "v": [1]}, {"id": "null", "v": null},
        {"id": "false", "v": false}, {"id": "undefined"}, {"id": "smaller", "v": -1.5}
    ]));
    check(
        "SELECT VALUE c.id FROM c ORDER BY c.v",
        &mixed,
        json!([
            "undefined",
            "null",
            "false",
            "true",
            "smaller",
            "number",
            "string",
            "array",
            "object"
        ]),
    );
    check(
        "SELECT VALUE c.id FROM c ORDER BY c.v DESC",
        &mixed,
        json!([
            "object",
            "array",
            "string",
            "number",
            "smaller",
            "true",
            "false",
            "null",
            "undefined"
        ]),
    );
}

#[test]
fn undefined_semantics() {
    let rows = items(json!([
        {"id": "1", "n": 1, "s": "a"}, {"id": "2", "n": "1"}, {"id": "3"}, {"id": "4", "n": null}
    ]));
    // A comparison across types is undefined, so WHERE drops the row, and NOT does not bring it back.
    check(
        "SELECT VALUE c.id FROM c WHERE c.n = 1",
        &rows,
        json!(["1"]),
    );
    check(
        "SELECT VALUE c.id FROM c WHERE NOT (c.n = 1)",
        &rows,
        json!([]),
    );
    check("SELECT VALUE c.id FROM c WHERE c.n != 1", &rows, json!([]));
    check(
        "SELECT VALUE c.id FROM c WHERE c.n > 0",
        &rows,
        json!(["1"]),
    );
    check(
        "SELECT VALUE c.id FROM c WHERE c.n = null",
        &rows,
        json!(["4"]),
    );
    check(
        "SELECT VALUE c.id FROM c WHERE NOT IS_DEFINED(c.n)",
        &rows,
        json!(["3"]),
    );
    // false AND undefined is false; true OR undefined is true.
    check(
        "SELECT VALUE c.id FROM c WHERE NOT (c.id = '9' AND c.n = 1)",
        &rows,
        json!(["1", "2", "3", "4"]),
    );
    check(
        "SELECT VALUE c.id FROM c WHERE c.id = '3' OR c.missing = 1",
        &rows,
        json!(["3"]),
    );
    // A missing property drops out of the projection; an undefined VALUE drops the row.
    check(
        "SELECT c.id, c.s FROM c WHERE c.id IN ('1', '3')",
        &rows,
        json!([{"id": "1", "s": "a"}, {"id": "3"}]),
    );
    check("SELECT VALUE c.s FROM c", &rows, json!(["a"]));
    check(
        "SELECT c.missing FROM c WHERE c.id = '1'",
        &rows,
        json!([{}]),
    );
    // Numbers compare by value, integers and floats alike.
    check(
        "SELECT VALUE c.id FROM c WHERE c.n = 1.0",
        &rows,
        json!(["1"]),
    );
    check("SELECT VALUE 1 = 1.0", &[], json!([true]));
    check(
        "SELECT VALUE [1.0, 2.50, ToString(c.n)] FROM c",
        &items(json!([{"n": 3.0}])),
        json!([[1, 2.5, "3"]]),
    );
}

#[test]
fn parameters_and_keywords() {
    let rows = items(json!([{"id": "1", "name": "Ann"}, {"id": "2", "name": "Bob"}]));
    check_with(
        "select value C.name from C where C.id = @id",
        &[("@id", json!("2"))],
        &rows,
        json!(["Bob"]),
    );
    check_with(
        "SELECT VALUE c.name FROM c WHERE ARRAY_CONTAINS(@ids, c.id)",
        &[("@ids", json!(["1", "2"])), ("@unused", json!(0))],
        &rows,
        json!(["Ann", "Bob"]),
    );
    check(
        "SELECT VALUE c.name FROM c WHERE c.name LIKE '_o%'",
        &rows,
        json!(["Bob"]),
    );
    check(
        "SELECT VALUE c.name FROM c WHERE c.name NOT LIKE 'A%'",
        &rows,
        json!(["Bob"]),
    );
    check(
        "SELECT VALUE c.name FROM c WHERE c.id BETWEEN '1' AND '1'",
        &rows,
        json!(["Ann"]),
    );
    let missing = parse("SELECT * FROM c WHERE c.id = @id")
        .unwrap()
        .bind(&[])
        .unwrap_err();
    assert_eq!(
        missing,
        QueryError::MissingParameter {
            name: "@id".to_string(),
            position: Position {
                line: 1,
                column: 30,
                offset: 29
            }
        }
    );
    let badly_named = parse("SELECT * FROM c")
        .unwrap()
        .bind(&[("id".to_string(), json!(1))])
        .unwrap_err();
    assert!(matches!(badly_named, QueryError::InvalidParameter { .. }));
}

#[test]
fn deep_but_allowed_nesting_runs() {
    let query = format!("SELECT VALUE {}true", "NOT ".repeat(100));
    check(&query, &[], json!([true]));
    let query = format!("SELECT VALUE {}1{}", "[".repeat(100), "]".repeat(100));
    let mut expected = json!(1);
    for _ in 0..100 {
        expected = json!([expected]);
    }
    check(&query, &[], json!([expected]));
}

#[test]
fn errors_name_their_position() {
    check_error(
        "SELECT * FROM c WHERE d.id = 1",
        1,
        23,
        "Identifier 'd' could not be resolved.",
    );
    check_error(
        "SELECT * FROM c\nWHERE FOO(c.id)",
        2,
        7,
        "'FOO' is not a recognized built-in function name.",
    );
    check_error(
        "SELECT VALUE UPPER(1, 2)",
        1,
        14,
        "The function 'UPPER' requires 1 argument(s).",
    );
    check_error(
        "SELECT * FROM c WHERE COUNT(1) > 1",
        1,
        23,
        "aggregate COUNT is not allowed here",
    );
    check_error(
        "SELECT * FROM c JOIN t IN c.tags",
        1,
        8,
        "'SELECT *' is only valid with a single input set.",
    );
    check_error(
        "SELECT c.a, c.b FROM c GROUP BY c.a",
        1,
        1,
        "not contained in either an aggregate function or the GROUP BY",
    );
    check_error(
        "SELECT * FROM c ORDER BY LOWER(c.a)",
        1,
        26,
        "could not be mapped to a document path",
    );
    check_error("SELECT c.a, c.b.a FROM c", 1, 13, "Duplicate alias 'a'");
    check_error(
        "SELECT * FROM c WHERE udf.tax(c.price) > 1",
        1,
        23,
        "user-defined function udf.tax",
    );
    check_error(
        "SELECT * FROM c WHERE ST_DISTANCE(c.a, c.b) < 1",
        1,
        23,
        "the system function ST_DISTANCE",
    );
    check_error(
        "SELECT VALUE (SELECT VALUE 1 FROM d)",
        1,
        35,
        "a subquery over the whole container",
    );
    check_error(
        "SELECT VALUE COUNT(1) FROM c ORDER BY c.a",
        1,
        39,
        "ORDER BY together with GROUP BY",
    );
    check_error(
        "SELECT * FROM c\n  WHERE c.a = 'unterminated",
        2,
        15,
        "unterminated string literal",
    );
    check_error("SELECT * FROM c HAVING c.a", 1, 17, "HAVING");
    check_error(
        "SELECT VALUE x FROM c JOIN (SELECT VALUE t FROM t IN c.tags) x",
        1,
        28,
        "a subquery as a FROM or JOIN source",
    );
}

fn filter(query: &str, parameters: &[(&str, Value)], paths: &[&str]) -> Option<Vec<Vec<Value>>> {
    let parameters: Vec<(String, Value)> = parameters
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect();
    let paths: Vec<String> = paths.iter().map(|path| path.to_string()).collect();
    parse(query)
        .unwrap()
        .bind(&parameters)
        .unwrap()
        .partition_filter(&paths)
}

#[test]
fn partition_filters() {
    let pk = ["/pk"];
    assert_eq!(
        filter("SELECT * FROM c WHERE c.pk = 'a'", &[], &pk),
        Some(vec![vec![json!("a")]])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE 'a' = c.pk AND c.x > 1", &[], &pk),
        Some(vec![vec![json!("a")]])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE c.pk = @p", &[("@p", json!(7))], &pk),
        Some(vec![vec![json!(7)]])
    );
    assert_eq!(
        filter(
            "SELECT * FROM c WHERE c.pk IN ('a', 'b') AND c.x = 1",
            &[],
            &pk
        ),
        Some(vec![vec![json!("a")], vec![json!("b")]])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE c.pk = 'a' OR c.pk = 'b'", &[], &pk),
        Some(vec![vec![json!("a")], vec![json!("b")]])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE c.pk = 'a' OR c.x = 'b'", &[], &pk),
        None
    );
    assert_eq!(filter("SELECT * FROM c WHERE c.pk != 'a'", &[], &pk), None);
    assert_eq!(filter("SELECT * FROM c", &[], &pk), None);
    // A contradiction reads no partition at all.
    assert_eq!(
        filter("SELECT * FROM c WHERE c.pk = 'a' AND c.pk = 'b'", &[], &pk),
        Some(vec![])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE c[\"pk\"] = 'a'", &[], &pk),
        Some(vec![vec![json!("a")]])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE c.a.b = 1", &[], &["/a/b"]),
        Some(vec![vec![json!(1)]])
    );
    // Only the FROM alias bound to the item constrains the key, not a JOIN alias.
    assert_eq!(
        filter("SELECT * FROM c IN c.children WHERE c.pk = 'a'", &[], &pk),
        None
    );
    let hierarchical = ["/tenantId", "/userId"];
    assert_eq!(
        filter(
            "SELECT * FROM c WHERE c.tenantId = 't' AND c.userId IN ('u1', 'u2')",
            &[],
            &hierarchical
        ),
        Some(vec![
            vec![json!("t"), json!("u1")],
            vec![json!("t"), json!("u2")]
        ])
    );
    // A prefix of a hierarchical key narrows the read to that prefix's partitions.
    assert_eq!(
        filter("SELECT * FROM c WHERE c.tenantId = 't'", &[], &hierarchical),
        Some(vec![vec![json!("t")]])
    );
    assert_eq!(
        filter("SELECT * FROM c WHERE c.userId = 'u'", &[], &hierarchical),
        None
    );
    assert_eq!(
        filter(
            "SELECT * FROM c WHERE c.tenantId = 't' OR c.userId = 'u'",
            &[],
            &hierarchical
        ),
        None
    );
}

#[test]
fn streaming_and_paging_helpers() {
    let rows = items(json!([{"id": "1", "tags": [1, 2]}, {"id": "2", "tags": [3]}, {"id": "3"}]));
    let now = CurrentTime::from_unix_millis(NOW_MILLIS);
    let query = parse("SELECT VALUE t FROM c JOIN t IN c.tags WHERE t > 1 OFFSET 1 LIMIT 5")
        .unwrap()
        .bind(&[])
        .unwrap();
    assert!(query.is_streaming());
    assert_eq!(query.skip_and_take(), (1, Some(5)));
    assert_eq!(query.rows_of_item(&rows[0], now), vec![json!(2)]);
    assert!(query.matches(&rows[1], now));
    assert!(!query.matches(&rows[2], now));
    assert_eq!(query.execute(&rows, now).unwrap(), vec![json!(3)]);
    let (_, stats) = query.execute_with_stats(&rows, now).unwrap();
    assert_eq!(
        stats,
        crate::ExecutionStats {
            items_read: 3,
            rows_examined: 3,
            rows_returned: 1
        }
    );
    // TOP stops reading once it has its rows.
    let top = parse("SELECT TOP 1 * FROM c").unwrap().bind(&[]).unwrap();
    assert_eq!(top.execute_with_stats(&rows, now).unwrap().1.items_read, 1);
    for text in [
        "SELECT * FROM c ORDER BY c.id",
        "SELECT VALUE COUNT(1) FROM c",
        "SELECT DISTINCT c.id FROM c",
    ] {
        assert!(
            !parse(text).unwrap().bind(&[]).unwrap().is_streaming(),
            "{text}"
        );
    }
}

#[test]
fn query_info_fields() {
    let info = |query: &str| {
        parse(query)
            .unwrap()
            .bind(&[("@n".to_string(), json!(3))])
            .unwrap()
            .query_info()
    };
    let plain = info("SELECT * FROM c WHERE c.a = 1");
    assert_eq!(plain["distinctType"], json!("None"));
    assert_eq!(plain["orderBy"], json!([]));
    assert_eq!(plain["rewrittenQuery"], json!(""));
    assert_eq!(plain["top"], json!(null));
    let ordered =
        info("SELECT DISTINCT TOP @n c.name FROM c WHERE c.a = 1 ORDER BY c.name DESC, c.b");
    assert_eq!(ordered["distinctType"], json!("Ordered"));
    assert_eq!(ordered["top"], json!(3));
    assert_eq!(ordered["orderBy"], json!(["Descending", "Ascending"]));
    assert_eq!(ordered["orderByExpressions"], json!(["c.name", "c.b"]));
    assert_eq!(
        ordered["rewrittenQuery"],
        json!("SELECT c._rid, [{\"item\": c.name}, {\"item\": c.b}] AS orderByItems, {\"name\": c.name} AS payload FROM c WHERE c.a = 1 ORDER BY c.name DESC, c.b")
    );
    let paged = info("SELECT VALUE c.a FROM c OFFSET 5 LIMIT @n");
    assert_eq!(
        (
            paged["offset"].clone(),
            paged["limit"].clone(),
            paged["hasSelectValue"].clone()
        ),
        (json!(5), json!(3), json!(true))
    );
    let count = info("SELECT VALUE COUNT(1) FROM c");
    assert_eq!(count["aggregates"], json!(["Count"]));
    let grouped = info("SELECT c.k, AVG(c.v) AS mean FROM c GROUP BY c.k");
    assert_eq!(grouped["groupByExpressions"], json!(["c.k"]));
    assert_eq!(grouped["groupByAliases"], json!(["k", "mean"]));
    assert_eq!(
        grouped["groupByAliasToAggregateType"],
        json!({"k": null, "mean": "Average"})
    );
    assert_eq!(grouped["aggregates"], json!([]));
    // The rewritten ORDER BY query is itself a query this crate runs.
    let rewritten = ordered["rewrittenQuery"].as_str().unwrap().to_string();
    check(
        &rewritten,
        &items(json!([{"_rid": "r1", "a": 1, "name": "x", "b": 2}])),
        json!([{"_rid": "r1", "orderByItems": [{"item": "x"}, {"item": 2}], "payload": {"name": "x"}}]),
    );
    let passthrough = parse("SELECT VALUE COUNT(1) FROM c ORDER BY c.a")
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(passthrough, QueryError::Unsupported { .. }));
    let passthrough = parse("SELECT DISTINCT VALUE c.a FROM c ORDER BY c.a")
        .unwrap()
        .bind(&[])
        .unwrap()
        .passthrough_query_info();
    assert_eq!(passthrough["distinctType"], json!("None"));
    assert_eq!(passthrough["orderBy"], json!([]));
    assert_eq!(passthrough["hasSelectValue"], json!(true));
}
