//! What the writer needs to know of a Jiandaoyun form, from its widgets.

use std::collections::HashMap;

use crate::mapping::Mapping;
use crate::target::FormFields;
use crate::target::{FieldKind, Widget};

use super::wire::field_kind;

impl FormFields {
    /// The form's fields as a writer of `mapping` sees them: each key field's
    /// kind, and the alias under which a field named by its `_widget_…` id is
    /// read back. Errs when a key field is not a field of the form.
    pub fn from_widgets(mapping: &Mapping, widgets: &[Widget]) -> Result<FormFields, String> {
        Ok(FormFields {
            key_fields: key_kinds(mapping, widgets)?,
            fields: mapping.fields().into_iter().map(|f| f.name).collect(),
            volatile: mapping.volatile_fields(),
            read_as: read_names(mapping, widgets),
        })
    }
}

fn key_kinds(mapping: &Mapping, widgets: &[Widget]) -> Result<Vec<(String, FieldKind)>, String> {
    mapping
        .key_fields()
        .iter()
        .map(|k| {
            widgets
                .iter()
                .find(|w| &w.name == k || &w.widget_name == k)
                .map(|w| (k.clone(), field_kind(&w.kind)))
                .ok_or_else(|| {
                    let names: Vec<&str> = widgets.iter().map(|w| w.name.as_str()).collect();
                    format!(
                        "key field `{k}` is not a field of the Jiandaoyun form; the form has: {}",
                        names.join(", ")
                    )
                })
        })
        .collect()
}

/// For mapped fields named by a `_widget_…` id whose form field has an alias:
/// the alias, under which records read back carry the field.
fn read_names(mapping: &Mapping, widgets: &[Widget]) -> HashMap<String, String> {
    mapping
        .fields()
        .into_iter()
        .filter_map(|f| {
            let w = widgets.iter().find(|w| w.widget_name == f.name)?;
            (!w.name.is_empty() && w.name != f.name).then(|| (f.name, w.name.clone()))
        })
        .collect()
}
