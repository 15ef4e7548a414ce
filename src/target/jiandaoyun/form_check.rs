//! `check --remote`: does the Jiandaoyun form have every mapped field, with a type
//! that accepts what the mapping sends? Pure comparison; the IO is in `app`.

use crate::mapping::{FieldInfo, ValueType};
use crate::target::Widget;
use crate::text::clean;

/// Form field types a value of each mapping type can be written to.
fn accepts(value_type: ValueType, widget_type: &str) -> bool {
    match value_type {
        ValueType::Text => matches!(widget_type, "text" | "textarea" | "radiogroup" | "combo"),
        ValueType::Number => widget_type == "number",
        ValueType::Datetime | ValueType::Date => widget_type == "datetime",
        // Untyped values are sent as they come; any writable field may fit.
        ValueType::Auto => true,
    }
}

/// Field types the API cannot write (docs/vendors/jiandaoyun.md "Fields and values").
fn read_only(widget_type: &str) -> bool {
    matches!(
        widget_type,
        "sn" | "linkdata"
            | "signature"
            | "aggregation"
            | "aggregationtext"
            | "separator"
            | "linkquery"
    )
}

/// The form's field a mapped field writes to (by alias or widget id).
fn widget<'w>(widgets: &'w [Widget], name: &str) -> Option<&'w Widget> {
    widgets
        .iter()
        .find(|w| w.name == name || w.widget_name == name)
}

/// What `check --remote` and `run` both say of a mapped field the form lacks.
fn not_in_form(f: &FieldInfo) -> String {
    format!(
        "mapped field `{}` (from {}) is not a field of the form; add it to the form or remove it from the mapping",
        f.name, f.from
    )
}

/// Before a run sends anything: every mapped field must be a field of the form
/// (Jiandaoyun would drop or reject the value). The error names each missing
/// field as `check --remote` does, then the form's fields.
pub fn require_fields(fields: &[FieldInfo], widgets: &[Widget]) -> Result<(), String> {
    let missing: Vec<String> = fields
        .iter()
        .filter(|f| widget(widgets, &f.name).is_none())
        .map(not_in_form)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}; the form's fields are: {}; nothing was written",
        missing.join("; "),
        describe_widgets(widgets)
    ))
}

/// Every problem of a mapping against a form's widgets, as readable lines.
pub fn problems(fields: &[FieldInfo], key_fields: &[String], widgets: &[Widget]) -> Vec<String> {
    let mut out = Vec::new();
    for f in fields {
        let Some(w) = widget(widgets, &f.name) else {
            out.push(not_in_form(f));
            continue;
        };
        if read_only(&w.kind) {
            out.push(format!(
                "mapped field `{}` is a {} field (\"{}\"), which the API cannot write",
                f.name,
                clean(&w.kind),
                clean(&w.label)
            ));
        } else if !accepts(f.value_type, &w.kind) {
            out.push(format!(
                "mapped field `{}` sends a {} value, but the form's field \"{}\" is of type {}",
                f.name,
                f.value_type.as_str(),
                clean(&w.label),
                clean(&w.kind)
            ));
        }
        if key_fields.contains(&f.name)
            && !matches!(w.kind.as_str(), "text" | "number" | "datetime")
        {
            out.push(format!(
                "key field `{}` is of type {}; key fields must be text (or number) so records can be found again",
                f.name,
                clean(&w.kind)
            ));
        }
    }
    out
}

/// The form's fields, for the report: `alias (label, type)`.
pub fn describe_widgets(widgets: &[Widget]) -> String {
    widgets
        .iter()
        .map(|w| {
            // Names, labels and types are the form's text: escaped like any vendor text.
            let id = if w.name == w.widget_name {
                clean(&w.name).into_owned()
            } else {
                format!("{} [{}]", clean(&w.name), clean(&w.widget_name))
            };
            format!("{id} (\"{}\", {})", clean(&w.label), clean(&w.kind))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget(name: &str, kind: &str) -> Widget {
        Widget {
            name: name.into(),
            widget_name: format!("_widget_{name}"),
            label: name.to_uppercase(),
            kind: kind.into(),
        }
    }

    fn field(name: &str, value_type: ValueType) -> FieldInfo {
        FieldInfo {
            name: name.into(),
            value_type,
            from: format!("src.{name}"),
        }
    }

    #[test]
    fn the_forms_text_is_escaped() {
        let mut w = widget("hours", "number");
        w.label = "工时\n2026-01-01 ERROR forged\x1b[2J".into();
        let text = describe_widgets(&[w]);
        assert!(
            text.contains(r#"("工时\n2026-01-01 ERROR forged\u{1b}[2J", number)"#),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains('\x1b'), "{text}");
    }

    #[test]
    fn reports_missing_fields_type_mismatches_and_read_only_fields() {
        let widgets = [
            widget("userid", "text"),
            widget("hours", "number"),
            widget("owner", "user"),
            widget("serial", "sn"),
        ];
        let fields = [
            field("userid", ValueType::Text),
            field("hours", ValueType::Number),
            field("owner", ValueType::Number),
            field("serial", ValueType::Text),
            field("late", ValueType::Number),
        ];
        let p = problems(&fields, &["userid".into()], &widgets);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("`owner` sends a number value") && p[0].contains("user"));
        assert!(p[1].contains("`serial` is a sn field"));
        assert!(p[2].contains("`late` (from src.late) is not a field of the form"));
    }

    #[test]
    fn a_run_refuses_fields_the_form_lacks_with_the_check_message() {
        let widgets = [widget("userid", "text"), widget("hours", "number")];
        let fields = [
            field("userid", ValueType::Text),
            field("late", ValueType::Number),
            field("_widget_hours", ValueType::Number),
        ];
        assert_eq!(require_fields(&fields[..1], &widgets), Ok(()));
        assert_eq!(require_fields(&fields[2..], &widgets), Ok(()));
        let refused = require_fields(&fields, &widgets).expect_err("late is missing");
        let checked = problems(&fields, &[], &widgets);
        assert_eq!(checked.len(), 1);
        assert!(refused.starts_with(&checked[0]), "{refused}");
        assert!(
            refused.contains("the form's fields are: userid [_widget_userid] (\"USERID\", text)")
        );
    }

    #[test]
    fn fields_may_be_named_by_widget_id() {
        let widgets = [widget("hours", "number")];
        let fields = [field("_widget_hours", ValueType::Number)];
        assert!(problems(&fields, &[], &widgets).is_empty());
    }
}
