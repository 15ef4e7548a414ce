//! JSON pointers into a simulated record: the patches tests apply to a
//! user's monthdata (`WecomSim::patch_record`, `WecomSim::remove_field`).

use serde_json::{Map, Value};

fn pointer_tokens(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Sets `value` at `pointer`, creating missing objects on the way. Does
/// nothing when a scalar or a too-short array is in the way.
pub(super) fn pointer_set(target: &mut Value, pointer: &str, value: Value) {
    if pointer.is_empty() {
        *target = value;
        return;
    }
    let Some(tokens) = pointer_tokens(pointer) else {
        return;
    };
    let mut current = target;
    let last = tokens.len() - 1;
    for (i, token) in tokens.into_iter().enumerate() {
        current = match current {
            Value::Object(map) => {
                if i == last {
                    map.insert(token, value);
                    return;
                }
                map.entry(token)
                    .or_insert_with(|| Value::Object(Map::new()))
            }
            Value::Array(items) => {
                let position = if token == "-" {
                    items.len()
                } else {
                    match token.parse::<usize>() {
                        Ok(p) => p,
                        Err(_) => return,
                    }
                };
                if i == last {
                    if let Some(slot) = items.get_mut(position) {
                        *slot = value;
                    } else if position == items.len() {
                        items.push(value);
                    }
                    return;
                }
                match items.get_mut(position) {
                    Some(next) => next,
                    None => return,
                }
            }
            _ => return,
        };
    }
}

pub(super) fn pointer_remove(target: &mut Value, pointer: &str) {
    let Some(mut tokens) = pointer_tokens(pointer) else {
        return;
    };
    let Some(last) = tokens.pop() else {
        return;
    };
    let parent_pointer: String = tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect();
    match target.pointer_mut(&parent_pointer) {
        Some(Value::Object(map)) => {
            map.shift_remove(&last);
        }
        Some(Value::Array(items)) => {
            if let Ok(p) = last.parse::<usize>() {
                if p < items.len() {
                    items.remove(p);
                }
            }
        }
        _ => {}
    }
}
