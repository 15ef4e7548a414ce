//! The new-style approval look-up, `GET /v1.0/workflow/processInstances`
//! (docs/vendors/events.md "DingTalk HTTP push and the failed list"): the
//! token in the `x-acs-dingtalk-access-token` header, the instance under
//! `result` (`originatorUserId`, `formComponentValues`), errors as an HTTP
//! status with `{"code", "message"}`.

use std::collections::HashMap;

use axum::http::HeaderMap;
use serde_json::{json, Value};

use super::serve::check_token;
use super::{Answer, DingtalkSim, Shared, SimState};

pub const PROCESS_INSTANCES: &str = "v1.0/workflow/processInstances";

impl DingtalkSim {
    /// A process instance the look-up answers (`originatorUserId`,
    /// `formComponentValues`, … as DingTalk shows them).
    pub fn add_process_instance(&self, id: &str, instance: Value) {
        self.state().instances.insert(id.to_owned(), instance);
    }

    /// A completed leave approval of `userid` from `first` to `last`
    /// (`yyyy-MM-dd`), with its leave field as DingTalk fills it.
    pub fn add_leave_approval(&self, id: &str, userid: &str, first: &str, last: &str) {
        let leave = json!([
            format!("{first} 上午"),
            format!("{last} 下午"),
            1,
            "halfDay",
            "年假",
            "请假类型"
        ]);
        self.add_process_instance(
            id,
            json!({
                "title": "请假", "originatorUserId": userid, "status": "COMPLETED", "result": "agree",
                "formComponentValues": [
                    {"componentType": "TextField", "name": "事由", "value": "2026-01-01 家事"},
                    {"componentType": "DDHolidayField", "name": "[\"开始时间\",\"结束时间\"]",
                     "value": leave.to_string()},
                ],
            }),
        );
    }
}

fn error(http: u16, code: &str, message: &str) -> Answer {
    Answer::Status {
        http,
        body: json!({"code": code, "message": message, "requestid": "sim"}),
    }
}

pub(super) fn process_instance(
    shared: &Shared,
    state: &mut SimState,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Answer {
    let token = headers
        .get("x-acs-dingtalk-access-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let as_query = HashMap::from([("access_token".to_owned(), token.to_owned())]);
    if check_token(shared, state, &as_query).is_err() {
        return error(401, "InvalidAuthentication", "不合法的access_token");
    }
    let id = query.get("processInstanceId").map(String::as_str);
    match id.and_then(|id| state.instances.get(id)) {
        Some(instance) => Answer::Json {
            errcode: 0,
            body: json!({"result": instance, "success": true}),
        },
        None => error(400, "InvalidParameter", "审批实例不存在"),
    }
}
