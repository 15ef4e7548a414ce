//! A source record read in place: a JSON tree whose texts borrow from the
//! record's own JSON text. Reading a WeCom report this way costs one allocation
//! per object or array instead of one per key and per text, and no hashing;
//! the mapping only ever reads a few dozen fields of it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::path::{Scalar, Tree};

/// One JSON value of a record. Objects keep their members in order, repeats
/// included; a look-up takes the last, as serde_json's `Value` does.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Num(Number),
    Text(Cow<'a, str>),
    List(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Reads a JSON text; texts without escapes are borrowed from it.
    pub fn parse(text: &'a str) -> Result<Node<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }
}

impl Tree for Node<'_> {
    fn member(&self, key: &str) -> Option<&Self> {
        match self {
            Node::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|m| &m.1),
            _ => None,
        }
    }

    fn items(&self) -> Option<&[Self]> {
        match self {
            Node::List(items) => Some(items),
            _ => None,
        }
    }

    fn scalar(&self) -> Scalar<'_> {
        match self {
            Node::Text(t) => Scalar::Text(t),
            Node::Bool(b) => Scalar::Bool(*b),
            Node::Num(n) => Scalar::Num(n),
            _ => Scalar::Other,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Num(n) => Value::Number(n.clone()),
            Node::Text(t) => Value::String(t.to_string()),
            Node::List(items) => Value::Array(items.iter().map(Tree::to_value).collect()),
            Node::Object(members) => {
                let mut map = Map::with_capacity(members.len());
                for (k, v) in members {
                    map.insert(k.to_string(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Node<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        de::DeserializeSeed::deserialize(NodeSeed(&mut Scratch::default()), deserializer)
    }
}

/// Where the members of the objects and lists being read pile up until each is
/// complete, so that each is then allocated once at its final size instead of
/// growing as JSON (which does not say its lengths) is read.
#[derive(Default)]
struct Scratch<'de> {
    items: Vec<Node<'de>>,
    members: Vec<(Cow<'de, str>, Node<'de>)>,
}

struct NodeSeed<'s, 'de>(&'s mut Scratch<'de>);

impl<'de> de::DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Num(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Num(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        // As serde_json's `Value` does: a float JSON cannot hold becomes null.
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Num))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(s.to_string())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Text(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let start = self.0.items.len();
        while let Some(item) = seq.next_element_seed(NodeSeed(&mut *self.0))? {
            self.0.items.push(item);
        }
        Ok(Node::List(self.0.items.drain(start..).collect()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let start = self.0.members.len();
        while let Some(Key(k)) = map.next_key()? {
            let value = map.next_value_seed(NodeSeed(&mut *self.0))?;
            self.0.members.push((k, value));
        }
        Ok(Node::Object(self.0.members.drain(start..).collect()))
    }
}

/// An object key, borrowed when it has no escapes (`Cow<str>` alone never borrows).
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::path::Path;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn borrows_plain_texts_and_unescapes_the_rest() {
        let text = r#"{"a":"张三","b\"":"x\ny","c":[1,-2,1.5,true,null]}"#;
        let node = Node::parse(text).expect("parses");
        let Node::Object(members) = &node else {
            panic!("{node:?}")
        };
        assert!(matches!(members[0].1, Node::Text(Cow::Borrowed("张三"))));
        assert_eq!(members[1].0, "b\"");
        assert!(matches!(&members[1].1, Node::Text(Cow::Owned(t)) if t == "x\ny"));
        assert_eq!(
            node.to_value(),
            json!({"a": "张三", "b\"": "x\ny", "c": [1, -2, 1.5, true, null]})
        );
    }

    #[test]
    fn text_after_the_value_is_an_error() {
        assert!(Node::parse(r#"{"a":1} x"#).is_err());
        assert!(Node::parse(r#"[1,2"#).is_err());
        assert!(Node::parse(r#"  {"a":[1,{"b":2}]}  "#).is_ok());
    }

    #[test]
    fn a_repeated_key_reads_as_the_last_one_like_value() {
        let text = r#"{"k":1,"k":2}"#;
        let node = Node::parse(text).expect("parses");
        let value: Value = serde_json::from_str(text).expect("parses");
        assert_eq!(node.member("k").map(Tree::to_value), Some(json!(2)));
        assert_eq!(value.member("k"), Some(&json!(2)));
    }

    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-z0-9 \"\\\\\n年假]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\"年]{1,3}", inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn reads_every_document_and_path_like_value(doc in any_json(), path in "[a-z\"年]{1,3}(\\.[a-z\"年]{1,3}|\\[[0-3]\\]){0,3}") {
            // Compared with `Value` read from the same text (serde_json's float
            // parsing need not round-trip the generated float exactly).
            let text = doc.to_string();
            let value: Value = serde_json::from_str(&text).expect("valid JSON");
            let node = Node::parse(&text).expect("valid JSON");
            prop_assert_eq!(node.to_value(), value.clone());
            if let Ok(p) = Path::parse(&path) {
                prop_assert_eq!(p.get(&node).map(Tree::to_value), p.get(&value).cloned());
            }
        }
    }
}
