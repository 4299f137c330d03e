//! Personal data masked at intake (PROTOCOL.md: `applicant_phone`, `contact` "masked at rest").
//! Every capture path masks a body before it becomes a draft, so a clear phone number is never
//! written to the outbox, sent to the hub, or echoed in an error.

use serde_json::Value;

/// Body fields that hold a phone number, by event kind.
fn phone_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "case" => &["applicant_phone"],
        "complaint" => &["contact"],
        // A correction may replace a case or complaint body: mask what it could carry.
        "correction" => &["applicant_phone", "contact"],
        _ => &[],
    }
}

/// Masks the phone fields of a body of `kind` in place. A number is masked into a string (it could
/// otherwise come back in the schema's error message); other values are left for the schema to refuse.
pub fn mask_body(kind: &str, body: &mut Value) {
    let fields = phone_fields(kind);
    let target = if kind == "correction" {
        body.get_mut("replacement")
    } else {
        Some(body)
    };
    let Some(Value::Object(map)) = target else {
        return;
    };
    for field in fields {
        match map.get_mut(*field) {
            Some(Value::String(phone)) => *phone = mask_phone(phone),
            Some(value @ Value::Number(_)) => {
                *value = Value::String(mask_phone(&value.to_string()))
            }
            _ => {}
        }
    }
}

/// `13812345678` → `138****5678`: an 11-digit mobile keeps its first 3 and last 4 digits; other
/// numbers keep their last 4 (all masked when 4 or fewer); text without digits becomes `***`.
/// Separators are dropped. A `*` counts as a digit already masked, so masking twice changes nothing.
pub fn mask_phone(text: &str) -> String {
    let positions: Vec<char> = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '*')
        .collect();
    if !positions.iter().any(char::is_ascii_digit) {
        return "***".into();
    }
    let n = positions.len();
    let shown = |i: usize| {
        if n == 11 && positions[0] == '1' {
            !(3..7).contains(&i)
        } else {
            n > 4 && i >= n - 4
        }
    };
    positions
        .iter()
        .enumerate()
        .map(|(i, c)| if shown(i) { *c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn phone_numbers_keep_only_what_the_rule_allows() {
        let cases = [
            ("13812341234", "138****1234"),
            ("138-1234-1234", "138****1234"),
            (" 138 1234 1234 ", "138****1234"),
            ("0722-4321234", "*******1234"),
            ("+86 13812341234", "*********1234"),
            ("4321234", "***1234"),
            ("1234", "****"),
            ("12", "**"),
            ("无", "***"),
            ("", "***"),
            ("****", "***"),
            ("张先生 13812341234", "138****1234"),
        ];
        for (clear, masked) in cases {
            assert_eq!(mask_phone(clear), masked, "{clear:?}");
        }
    }

    #[test]
    fn masking_twice_changes_nothing() {
        // (A number masked whole, "1234" → "****", has no digit left and becomes "***".)
        for clear in ["13812341234", "0722-4321234", "+86 13812341234", "x"] {
            let once = mask_phone(clear);
            assert_eq!(mask_phone(&once), once, "{clear:?}");
        }
    }

    #[test]
    fn bodies_are_masked_by_kind() {
        let mut case =
            json!({"case_no": "C1", "applicant_phone": "13812341234", "staff_id": "13812341234"});
        mask_body("case", &mut case);
        assert_eq!(case["applicant_phone"], "138****1234");
        assert_eq!(case["staff_id"], "13812341234", "only phone fields");
        let mut complaint = json!({"contact": "13812341234"});
        mask_body("complaint", &mut complaint);
        assert_eq!(complaint["contact"], "138****1234");
        let mut correction = json!({"replacement": {"applicant_phone": "13812341234"}});
        mask_body("correction", &mut correction);
        assert_eq!(correction["replacement"]["applicant_phone"], "138****1234");
        let mut odd = json!({"applicant_phone": 13812341234u64});
        mask_body("case", &mut odd);
        assert_eq!(odd["applicant_phone"], "138****1234");
        let mut not_object = json!([1]);
        mask_body("case", &mut not_object);
    }
}
