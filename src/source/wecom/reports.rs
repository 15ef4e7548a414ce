//! `getcheckin_monthdata` answers kept as they came, read once where a chunk
//! is mapped, into one `Node` tree per report.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::{MONTHDATA, VENDOR};
use crate::mapping::{Node, Tree};
use crate::source::{ReadRecords, SourceError, Unread};

/// `getcheckin_monthdata` answers as they came, for the employees asked: each
/// report is read once, in place, where it is mapped, instead of being split out
/// of its answer first and read again.
#[derive(Debug, Default)]
pub struct Reports {
    pub(super) asked: Vec<String>,
    pub(super) answers: Vec<Vec<u8>>,
}

#[derive(Deserialize)]
struct Datas<'a> {
    #[serde(borrow, default)]
    datas: Option<Vec<Node<'a>>>,
}

impl Unread for Reports {
    /// Finds each asked employee's report by the `acctid` of its `base_info`; a
    /// report without one is nobody's. Employees in `failed` are neither found
    /// nor absent.
    fn read(&self, failed: &[(String, String)]) -> Result<ReadRecords<'_>, SourceError> {
        let mut by_owner: HashMap<Cow<'_, str>, Node<'_>> = HashMap::new();
        for answer in &self.answers {
            // Checked as UTF-8 in one pass, so that reading it does not check
            // each text again.
            let text = std::str::from_utf8(answer).map_err(|e| {
                unreadable_answer(format!(
                    "the answer is not UTF-8 text (at byte {})",
                    e.valid_up_to()
                ))
            })?;
            let datas = serde_json::from_str::<Datas>(text).map_err(unreadable)?;
            for report in datas.datas.into_iter().flatten() {
                if let Some(Node::Text(owner)) =
                    report.member("base_info").and_then(|b| b.member("acctid"))
                {
                    by_owner.insert(owner.clone(), report);
                }
            }
        }
        let failed: HashSet<&str> = failed.iter().map(|(u, _)| u.as_str()).collect();
        let mut read = ReadRecords::default();
        for id in &self.asked {
            match by_owner.remove(id.as_str()) {
                Some(report) => read.found.push((id, report)),
                None if failed.contains(id.as_str()) => {}
                None => read.absent.push(id),
            }
        }
        Ok(read)
    }
}

/// Why a report answer could not be read, without quoting it: serde_json's
/// text would show the value it choked on, which could be anything.
fn unreadable(e: serde_json::Error) -> SourceError {
    use serde_json::error::Category;
    let what = match e.classify() {
        Category::Data => "the answer does not have the documented shape (`datas` is not a list)",
        Category::Syntax | Category::Eof | Category::Io => "the answer is not valid JSON",
    };
    unreadable_answer(format!(
        "{what} at line {}, column {}",
        e.line(),
        e.column()
    ))
}

/// A `getcheckin_monthdata` answer that could not be read, and why.
fn unreadable_answer(message: String) -> SourceError {
    SourceError::Protocol {
        vendor: VENDOR,
        endpoint: MONTHDATA.into(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reports(asked: &[&str], answers: &[&str]) -> Reports {
        Reports {
            asked: asked.iter().map(|a| a.to_string()).collect(),
            answers: answers.iter().map(|a| a.as_bytes().to_vec()).collect(),
        }
    }

    fn owners<'a>(read: &ReadRecords<'a>) -> Vec<&'a str> {
        read.found.iter().map(|(employee, _)| *employee).collect()
    }

    #[test]
    fn a_report_belongs_to_the_acctid_of_its_base_info_wherever_that_is() {
        let first =
            r#"{"base_info":{"acctid":"zhangsan","name":"张三"},"summary_info":{"work_days":21}}"#;
        let later = r#"{"summary_info":{"acctid":"u3","x":[1,{"y":null}]},"base_info":{"name":"李\"四","acctid":"li\"si"},"z":1}"#;
        let others = [
            r#"{"summary_info":{"acctid":"u4"}}"#,
            r#"{"base_info":{"acctid":7}}"#,
            r#"{"base_info":{}}"#,
            "[]",
        ]
        .join(",");
        let answer_1 = format!(r#"{{"errcode":0,"datas":[{first},{others}]}}"#);
        let answer_2 = format!(r#"{{"datas":[{later}],"errcode":0}}"#);
        let asked = ["li\"si", "u3", "zhangsan", "u4"];
        let r = reports(&asked, &[&answer_1, &answer_2]);
        let read = r.read(&[]).expect("readable");
        // In the order asked; nested look-alikes, numbers and missing ids are nobody's.
        assert_eq!(owners(&read), ["li\"si", "zhangsan"]);
        assert_eq!(read.absent.len(), 2);
        let work_days = read.found[1]
            .1
            .member("summary_info")
            .and_then(|s| s.member("work_days"));
        assert_eq!(work_days.map(Tree::to_value), Some(json!(21)));
    }

    #[test]
    fn the_last_report_of_an_owner_counts_and_rejected_employees_are_not_absent() {
        let answer = r#"{"errcode":0,"datas":[
            {"base_info":{"acctid":"u1"},"n":1},
            {"base_info":{"acctid":"u1"},"n":2}]}"#;
        let r = reports(&["u1", "u2", "u3"], &[answer]);
        let failed = [("u2".to_string(), "errcode 301025".to_string())];
        let read = r.read(&failed).expect("readable");
        assert_eq!(owners(&read), ["u1"]);
        assert_eq!(
            read.found[0].1.member("n").map(Tree::to_value),
            Some(json!(2))
        );
        assert_eq!(read.absent.len(), 1);
    }

    #[test]
    fn an_answer_that_is_not_utf8_or_not_json_is_a_protocol_error_that_says_where() {
        let mut bytes = br#"{"errcode":0,"datas":[{"base_info":{"acctid":"u"#.to_vec();
        bytes.extend_from_slice(&[0xff, 0xfe]);
        bytes.extend_from_slice(br#""}}]}"#);
        let r = Reports {
            asked: vec!["u1".into()],
            answers: vec![bytes],
        };
        let err = r.read(&[]).expect_err("not UTF-8").to_string();
        assert!(err.contains("not UTF-8 text (at byte 47)"), "{err}");
        assert!(err.contains(MONTHDATA), "{err}");
        let r = reports(&["u1"], &[r#"{"errcode":0,"datas":[{"base_info":"#]);
        let err = r.read(&[]).expect_err("cut short").to_string();
        assert!(err.contains("not valid JSON at line 1"), "{err}");
    }
}
