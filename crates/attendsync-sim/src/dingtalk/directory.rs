//! The directory endpoints: `topapi/v2/department/listsub` and
//! `topapi/v2/user/list`.

use serde_json::{json, Value};

use super::serve::{number_field, Fields};
use super::{Answer, Shared, SimState};
use crate::mix;
use crate::org::ROOT_DEPARTMENT;

pub(super) fn listsub(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let id = match fields.get("dept_id") {
        None => ROOT_DEPARTMENT as i64,
        Some(_) => match number_field(fields, "dept_id") {
            Some(id) => id,
            None => return state.error(400002, "无效的参数dept_id"),
        },
    };
    let Some(id) = u64::try_from(id)
        .ok()
        .filter(|id| shared.index.department_ids.contains(id))
    else {
        return state.error(60003, "部门不存在");
    };
    let list: Vec<Value> = shared
        .index
        .children
        .get(&id)
        .into_iter()
        .flatten()
        .filter_map(|&child| shared.org.department(child))
        .map(|d| {
            json!({"dept_id": d.id, "name": d.name, "parent_id": d.parent_id,
                   "create_dept_group": true, "auto_add_user": true})
        })
        .collect();
    state.ok(Value::Array(list))
}

pub(super) fn user_list(shared: &Shared, state: &mut SimState, fields: &Fields) -> Answer {
    let (Some(dept), Some(cursor), Some(size)) = (
        number_field(fields, "dept_id"),
        number_field(fields, "cursor"),
        number_field(fields, "size"),
    ) else {
        return state.error(400002, "缺少参数dept_id、cursor或size");
    };
    if size <= 0 || size > i64::from(shared.config.max_page_size) || cursor < 0 {
        return state.error(400002, "无效的参数size或cursor");
    }
    let Some(dept) = u64::try_from(dept)
        .ok()
        .filter(|d| shared.index.department_ids.contains(d))
    else {
        return state.error(60003, "部门不存在");
    };
    let page = shared
        .config
        .page_size_cap
        .map_or(size, |cap| size.min(i64::from(cap.max(1))));
    let members = shared
        .index
        .members
        .get(&dept)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let start = usize::try_from(cursor)
        .unwrap_or(usize::MAX)
        .min(members.len());
    let end = start
        .saturating_add(usize::try_from(page).unwrap_or(0))
        .min(members.len());
    let list: Vec<Value> = members[start..end]
        .iter()
        .filter_map(|&i| shared.org.users.get(i))
        .map(|u| {
            let union = mix(shared.config.seed, &[b"unionid", u.userid.as_bytes()]);
            let hired = 1_500_000_000_000 + (union % 250_000_000) * 1000;
            json!({
                "userid": u.userid,
                "unionid": format!("{union:016x}"),
                "name": u.name,
                "avatar": "",
                "job_number": u.job_number,
                "title": u.title,
                "dept_id_list": u.departments,
                "hired_date": hired,
                "active": true,
                "admin": false,
                "boss": false,
                "leader": false,
                "exclusive_account": false,
            })
        })
        .collect();
    let has_more = end < members.len();
    state.ok(json!({"has_more": has_more, "next_cursor": end, "list": list}))
}
