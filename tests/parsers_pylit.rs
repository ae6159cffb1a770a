//! Tests of the safe Python-literal parser.

use callm::openai::{FunctionDefinition, Tool};
use callm::parsers::pylit::{
    call_arguments, parse_call_at, parse_expr_at, parse_literal, to_json, PyError, PyValue,
};
use proptest::prelude::*;
use serde_json::{json, Value};

fn lit(s: &str) -> Value {
    to_json(
        &parse_literal(s).unwrap_or_else(|e| panic!("{s}: {e}")),
        None,
    )
}

#[test]
fn scalars() {
    assert_eq!(lit("1"), json!(1));
    assert_eq!(lit("-42"), json!(-42));
    assert_eq!(lit("1_000_000"), json!(1_000_000));
    assert_eq!(lit("0x1F"), json!(31));
    assert_eq!(lit("0o17"), json!(15));
    assert_eq!(lit("0b101"), json!(5));
    assert_eq!(lit("3.5"), json!(3.5));
    assert_eq!(lit("-2.5e2"), json!(-250.0));
    assert_eq!(lit(".5"), json!(0.5));
    assert_eq!(lit("True"), json!(true));
    assert_eq!(lit("False"), json!(false));
    assert_eq!(lit("None"), json!(null));
    assert_eq!(lit("true"), json!(true));
    assert_eq!(lit("null"), json!(null));
    assert_eq!(lit("18446744073709551615"), json!(18446744073709551615u64));
}

#[test]
fn strings_in_all_quote_styles() {
    assert_eq!(lit("'single'"), json!("single"));
    assert_eq!(lit("\"double\""), json!("double"));
    assert_eq!(lit("'''tri\nple'''"), json!("tri\nple"));
    assert_eq!(lit("\"\"\"a \"quoted\" b\"\"\""), json!("a \"quoted\" b"));
    assert_eq!(lit(r"r'\d+\n'"), json!("\\d+\\n"));
    assert_eq!(lit(r"R'\''"), json!("\\'"));
    assert_eq!(lit("b'bytes'"), json!("bytes"));
    assert_eq!(lit("u'uni'"), json!("uni"));
    assert_eq!(lit("rb'x\\y'"), json!("x\\y"));
    assert_eq!(lit("''"), json!(""));
}

#[test]
fn escapes_and_unicode() {
    assert_eq!(lit(r"'a\nb\tc\\d\'e'"), json!("a\nb\tc\\d'e"));
    assert_eq!(lit(r#""\u00e9\x41\101""#), json!("éAA"));
    assert_eq!(lit(r#""\U0001F600""#), json!("😀"));
    assert_eq!(lit(r#""\ud83d\ude00""#), json!("😀"));
    assert_eq!(lit("'東京 é'"), json!("東京 é"));
    assert_eq!(lit(r"'\q'"), json!("\\q"));
}

#[test]
fn containers() {
    assert_eq!(lit("[1, 'a', [2, 3], ]"), json!([1, "a", [2, 3]]));
    assert_eq!(lit("(1, 2)"), json!([1, 2]));
    assert_eq!(lit("(1,)"), json!([1]));
    assert_eq!(lit("()"), json!([]));
    assert_eq!(lit("(5)"), json!(5));
    assert_eq!(
        lit("{'a': 1, \"b\": [True, None]}"),
        json!({"a": 1, "b": [true, null]})
    );
    assert_eq!(lit("{1: 'x'}"), json!({"1": "x"}));
    assert_eq!(lit("{}"), json!({}));
    assert_eq!(lit("{1, 2}"), json!([1, 2]));
}

#[test]
fn calls_keyword_positional_and_nested() {
    let (c, end) = parse_call_at("f(1, 'x', k=[1], j=g(2, m=3)) rest", 0, true).expect("call");
    assert_eq!(end, "f(1, 'x', k=[1], j=g(2, m=3))".len());
    assert_eq!(c.name, "f");
    assert_eq!(c.args.len(), 2);
    assert_eq!(
        Value::Object(call_arguments(&c, None)),
        json!({"_0": 1, "_1": "x", "k": [1], "j": {"__call__": "g", "arguments": {"_0": 2, "m": 3}}})
    );
    let (c, _) = parse_call_at("brave_search.call(query='x')", 0, true).expect("dotted");
    assert_eq!(c.name, "brave_search.call");
}

#[test]
fn positional_arguments_follow_schema_order() {
    let tool = Tool::function(FunctionDefinition {
        name: "f".into(),
        description: None,
        parameters: Some(json!({"type": "object", "properties": {"zeta": {}, "alpha": {}}})),
        strict: None,
    });
    let (c, _) = parse_call_at("f(1, 2, 3, alpha=9)", 0, true).expect("call");
    // `alpha` given both positionally and by keyword: the keyword wins, as later keys do.
    assert_eq!(
        Value::Object(call_arguments(&c, Some(&[tool]))),
        json!({"zeta": 1, "alpha": 9, "_2": 3})
    );
}

#[test]
fn incomplete_versus_invalid() {
    assert_eq!(parse_expr_at("[1, 2", 0, false), Err(PyError::Incomplete));
    assert_eq!(parse_expr_at("'abc", 0, false), Err(PyError::Incomplete));
    assert_eq!(parse_expr_at("Tru", 0, false), Err(PyError::Incomplete));
    assert_eq!(parse_expr_at("12", 0, false), Err(PyError::Incomplete));
    assert!(matches!(
        parse_expr_at("12", 0, true),
        Ok((PyValue::Int(12), 2))
    ));
    assert!(matches!(parse_literal("[1, 2"), Err(PyError::Incomplete)));
    assert!(matches!(parse_literal("foo"), Err(PyError::Invalid { .. })));
    assert!(matches!(
        parse_literal("1 + 2"),
        Err(PyError::Invalid { .. })
    ));
    assert!(matches!(
        parse_literal("f'x{y}'"),
        Err(PyError::Invalid { .. })
    ));
    assert!(matches!(
        parse_literal("__import__('os').system('x')"),
        Err(PyError::Invalid { .. })
    ));
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = "[".repeat(100_000);
    assert!(matches!(parse_literal(&deep), Err(PyError::TooDeep { .. })));
    let ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert!(parse_literal(&ok).is_ok());
    let calls = "f(".repeat(10_000);
    assert!(matches!(
        parse_literal(&calls),
        Err(PyError::TooDeep { .. })
    ));
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn every_json_document_reads_back(v in json_value()) {
        let text = serde_json::to_string(&v).expect("serialize");
        let back = to_json(&parse_literal(&text).expect("JSON is accepted"), None);
        prop_assert_eq!(back, v);
    }

    #[test]
    fn arbitrary_text_never_panics(s in any::<String>(), at in any::<prop::sample::Index>(), eof in any::<bool>()) {
        let _ = parse_literal(&s);
        let mut i = at.index(s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        let _ = parse_expr_at(&s, i, eof);
        let _ = parse_call_at(&s, i, eof);
    }

    #[test]
    fn prefixes_of_valid_literals_are_incomplete(v in json_value(), cut in any::<prop::sample::Index>()) {
        let text = serde_json::to_string(&v).expect("serialize");
        let mut i = cut.index(text.len());
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        if i > 0 {
            prop_assert_eq!(parse_expr_at(&text[..i], 0, false).err(), Some(PyError::Incomplete));
        }
    }
}
