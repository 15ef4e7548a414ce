use super::super::test_util::client;
use super::serve::parse_form;
use super::values::{hours, tenths, units};
use super::*;
use crate::limits::Outcome;

async fn sim(employees: usize, config: DingtalkSimConfig) -> DingtalkSim {
    DingtalkSim::start(Org::generate(employees, 3), config)
        .await
        .unwrap()
}

async fn get(sim: &DingtalkSim, path: &str, query: &[(&str, &str)]) -> Value {
    let url = format!("{}/{path}", sim.base_url());
    let resp = client().get(url).query(query).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn token(sim: &DingtalkSim) -> String {
    let c = DingtalkSimConfig::default();
    let v = get(
        sim,
        GETTOKEN,
        &[("appkey", &c.app_key), ("appsecret", &c.app_secret)],
    )
    .await;
    assert_eq!(v["errcode"], 0, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn post(sim: &DingtalkSim, path: &str, token: &str, body: Value) -> Value {
    let url = format!("{}/{path}?access_token={token}", sim.base_url());
    let resp = client().post(url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn post_form(sim: &DingtalkSim, path: &str, token: &str, body: &str) -> Value {
    let url = format!("{}/{path}?access_token={token}", sim.base_url());
    let resp = client()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn october() -> Month {
    Month::new(2026, 10).unwrap()
}

fn id_of(sim: &DingtalkSim, name: &str) -> i64 {
    sim.config()
        .columns
        .iter()
        .find(|(_, n)| n == name)
        .map(|(id, _)| *id)
        .unwrap()
}

#[tokio::test]
async fn token_flow_and_errors_never_echo_the_secret() {
    let config = DingtalkSimConfig {
        token_expires_after_calls: Some(2),
        ..DingtalkSimConfig::default()
    };
    let sim = sim(10, config).await;
    let c = DingtalkSimConfig::default();
    let bad = get(
        &sim,
        GETTOKEN,
        &[("appkey", &c.app_key), ("appsecret", "wrong-secret-XYZ")],
    )
    .await;
    assert_eq!(bad["errcode"], 40001);
    assert!(!bad.to_string().contains("wrong-secret-XYZ"));
    let bad = get(
        &sim,
        GETTOKEN,
        &[("appkey", "nope"), ("appsecret", &c.app_secret)],
    )
    .await;
    assert_eq!(bad["errcode"], 40089);
    assert!(!bad.to_string().contains(&c.app_secret));

    let t = token(&sim).await;
    assert_eq!(token(&sim).await, t);
    assert_eq!(sim.tokens_issued(), 1);
    assert_eq!(post(&sim, LISTSUB, "", json!({})).await["errcode"], 41001);
    assert_eq!(
        post(&sim, LISTSUB, "forged", json!({})).await["errcode"],
        40014
    );
    for _ in 0..2 {
        assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);
    }
    assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 42001);
    let t2 = token(&sim).await;
    assert_ne!(t, t2);
    assert_eq!(sim.tokens_issued(), 2);
    let v = get(&sim, LISTSUB, &[("access_token", &t2)]).await;
    assert_eq!(v["errcode"], 43002);
}

#[tokio::test]
async fn listsub_gives_direct_children_and_user_list_pages_by_cursor() {
    let config = DingtalkSimConfig {
        page_size_cap: Some(4),
        ..DingtalkSimConfig::default().with_endpoint_rate(10_000)
    };
    let sim = sim(150, config).await;
    let org = sim.org().clone();
    let t = token(&sim).await;
    let root = post(&sim, LISTSUB, &t, json!({})).await;
    let top: Vec<u64> = root["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dept_id"].as_u64().unwrap())
        .collect();
    assert!(!top.is_empty());
    for id in &top {
        assert_eq!(org.department(*id).unwrap().parent_id, 1);
    }
    assert_eq!(
        root["result"][0]["name"],
        json!(org.department(top[0]).unwrap().name)
    );
    let v = post(&sim, LISTSUB, &t, json!({"dept_id": 999_999})).await;
    assert_eq!(v["errcode"], 60003);

    // Every department, paged: every user, some twice.
    let mut listed = Vec::new();
    for d in &org.departments {
        let mut cursor = 0;
        loop {
            let v = post(
                &sim,
                USER_LIST,
                &t,
                json!({"dept_id": d.id, "cursor": cursor, "size": 100}),
            )
            .await;
            assert_eq!(v["errcode"], 0, "{v}");
            let list = v["result"]["list"].as_array().unwrap();
            assert!(list.len() <= 4);
            for u in list {
                assert!(u["dept_id_list"].as_array().unwrap().contains(&json!(d.id)));
                listed.push(u["userid"].as_str().unwrap().to_owned());
            }
            if v["result"]["has_more"] == json!(false) {
                break;
            }
            cursor = v["result"]["next_cursor"].as_u64().unwrap();
        }
    }
    let unique: HashSet<_> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), 150);
    assert!(listed.len() > 150);

    let v = post(
        &sim,
        USER_LIST,
        &t,
        json!({"dept_id": 2, "cursor": 0, "size": 101}),
    )
    .await;
    assert_eq!(v["errcode"], 400002);
    let v = post(&sim, USER_LIST, &t, json!({"dept_id": 2})).await;
    assert_eq!(v["errcode"], 400002);
    // Form bodies and string numbers work too.
    let v = post_form(&sim, USER_LIST, &t, "dept_id=2&cursor=0&size=3").await;
    assert_eq!(v["errcode"], 0, "{v}");
    // Contacts calls are not metered.
    assert_eq!(sim.metered_calls(), 0);
}

#[tokio::test]
async fn report_columns_and_values() {
    let config = DingtalkSimConfig {
        today: NaiveDate::from_ymd_opt(2026, 10, 25),
        ..DingtalkSimConfig::default()
    };
    let sim = sim(20, config).await;
    let t = token(&sim).await;
    let cols = post(&sim, GETATTCOLUMNS, &t, json!({})).await;
    let cols = cols["result"]["columns"].as_array().unwrap().clone();
    let with_id = cols.iter().filter(|c| c["id"].is_number()).count();
    assert!(with_id >= 25, "{with_id}");
    let leave = cols.iter().find(|c| c["name"] == "年假").unwrap();
    assert!(leave.get("id").is_none());

    let user = sim.org().users[0].userid.clone();
    let names = ["出勤天数", "应出勤天数", "考勤组", "工作时长"];
    let ids: Vec<String> = names.iter().map(|n| id_of(&sim, n).to_string()).collect();
    let body = json!({"userid": user, "column_id_list": ids.join(","),
        "from_date": "2026-10-01 00:00:00", "to_date": "2026-10-31 00:00:00"});
    let v = post(&sim, GETCOLUMNVAL, &t, body.clone()).await;
    assert_eq!(v["errcode"], 0, "{v}");
    let vals = v["result"]["column_vals"].as_array().unwrap();
    assert_eq!(vals.len(), 4);
    assert_eq!(vals[0]["column_vo"]["id"], json!(id_of(&sim, "出勤天数")));
    let days = vals[0]["column_vals"].as_array().unwrap();
    assert_eq!(days.len(), 31);
    assert_eq!(days[0]["date"], "2026-10-01 00:00:00");
    let expected = sim.daily_values(&user, "出勤天数", october());
    let got: Vec<(String, String)> = days
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap().to_owned(),
                d["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    // 应出勤天数: zero for days more than 15 days before "today" (Oct 25).
    let should = vals[1]["column_vals"].as_array().unwrap();
    for d in &should[..9] {
        assert_eq!(d["value"], "0.0", "{d}");
    }
    assert!(should[9..].iter().any(|d| d["value"] == "1.0"));
    // 考勤组 has a fixed (text) value and no daily list.
    assert!(vals[2]["fixed_value"].is_string());
    assert!(vals[2].get("column_vals").is_none());
    // Same request, same answer.
    let again = post(&sim, GETCOLUMNVAL, &t, body).await;
    assert_eq!(again["result"], v["result"]);

    let expected = sim
        .expected_record(
            &user,
            october(),
            &["出勤天数".to_owned()],
            &["年假".to_owned()],
        )
        .unwrap();
    assert_eq!(expected["userid"], json!(user));
    assert!(expected["columns"]["出勤天数"].is_number());
    assert!(sim
        .expected_record(&user, october(), &["考勤组".to_owned()], &[])
        .is_none());

    // Leave values use other field names.
    let body = json!({"userid": user, "leave_names": "年假,事假,不存在假",
        "from_date": "2026-10-01 00:00:00", "to_date": "2026-10-31 00:00:00"});
    let v = post(&sim, GETLEAVETIME, &t, body).await;
    assert_eq!(v["errcode"], 0, "{v}");
    let columns = v["result"]["columns"].as_array().unwrap();
    assert_eq!(columns.len(), 2);
    assert_eq!(columns[1]["columnvo"]["name"], "事假");
    assert_eq!(columns[1]["columnvals"].as_array().unwrap().len(), 31);
    assert_eq!(sim.metered_calls(), 4);
}

#[tokio::test]
async fn report_requests_are_validated() {
    let sim = sim(5, DingtalkSimConfig::default()).await;
    let t = token(&sim).await;
    let user = sim.org().users[0].userid.clone();
    let all: Vec<String> = sim
        .config()
        .columns
        .iter()
        .take(21)
        .map(|(id, _)| id.to_string())
        .collect();
    let ask = |ids: String, from: &str, to: &str, userid: &str| json!({"userid": userid, "column_id_list": ids, "from_date": from, "to_date": to});
    let (from, to) = ("2026-10-01 00:00:00", "2026-10-31 00:00:00");
    let v = post(&sim, GETCOLUMNVAL, &t, ask(all.join(","), from, to, &user)).await;
    assert_eq!(v["errcode"], 400002);
    let v = post(
        &sim,
        GETCOLUMNVAL,
        &t,
        ask(all[..20].join(","), from, to, &user),
    )
    .await;
    assert_eq!(v["errcode"], 0);
    let one = all[0].clone();
    let v = post(
        &sim,
        GETCOLUMNVAL,
        &t,
        ask(one.clone(), from, "2026-11-01 00:00:01", &user),
    )
    .await;
    assert_eq!(v["errcode"], 850012);
    let v = post(&sim, GETCOLUMNVAL, &t, ask(one.clone(), to, from, &user)).await;
    assert_eq!(v["errcode"], 850012);
    let v = post(
        &sim,
        GETCOLUMNVAL,
        &t,
        ask(one.clone(), "2026-10-01", to, &user),
    )
    .await;
    assert_eq!(v["errcode"], 41100);
    let v = post(&sim, GETCOLUMNVAL, &t, ask("42".into(), from, to, &user)).await;
    assert_eq!(v["errcode"], 400002);
    let v = post(&sim, GETCOLUMNVAL, &t, ask(one.clone(), from, to, "ghost")).await;
    assert_eq!(v["errcode"], 33012);
    // A window of one day (the 1st of a month in progress).
    let v = post(&sim, GETCOLUMNVAL, &t, ask(one, from, from, &user)).await;
    assert_eq!(
        v["result"]["column_vals"][0]["column_vals"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let names = vec!["年假"; 21].join(",");
    let body = json!({"userid": user, "leave_names": names, "from_date": from, "to_date": to});
    assert_eq!(post(&sim, GETLEAVETIME, &t, body).await["errcode"], 400002);
}

#[tokio::test]
async fn body_styles_quota_and_injected_answers() {
    let config = DingtalkSimConfig {
        body_styles: vec![
            (GETCOLUMNVAL.to_owned(), BodyStyle::FormOnly),
            (GETLEAVETIME.to_owned(), BodyStyle::JsonOnly),
        ],
        monthly_quota: Some(3),
        ..DingtalkSimConfig::default()
    };
    let sim = sim(5, config).await;
    let t = token(&sim).await;
    let user = sim.org().users[0].userid.clone();
    let id = sim.config().columns[0].0;
    let json_body = json!({"userid": user, "column_id_list": id.to_string(),
        "from_date": "2026-10-01 00:00:00", "to_date": "2026-10-31 00:00:00"});
    assert_eq!(
        post(&sim, GETCOLUMNVAL, &t, json_body).await["errcode"],
        43004
    );
    let form = format!(
        "userid={user}&column_id_list={id}&from_date=2026-10-01+00%3A00%3A00&to_date=2026-10-31%2000:00:00"
    );
    let v = post_form(&sim, GETCOLUMNVAL, &t, &form).await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(
        v["result"]["column_vals"][0]["column_vals"]
            .as_array()
            .unwrap()
            .len(),
        31
    );
    let v = post_form(
        &sim,
        GETLEAVETIME,
        &t,
        "userid=x&leave_names=%E5%B9%B4%E5%81%87",
    )
    .await;
    assert_eq!(v["errcode"], 43005);

    // Quota: 3 metered calls served (the refused ones do not count).
    assert_eq!(sim.metered_calls(), 1);
    for _ in 0..2 {
        assert_eq!(post(&sim, GETATTCOLUMNS, &t, json!({})).await["errcode"], 0);
    }
    assert_eq!(
        post(&sim, GETATTCOLUMNS, &t, json!({})).await["errcode"],
        90020
    );
    assert_eq!(sim.quota_refusals(), 1);
    assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);

    sim.inject_answer(
        LISTSUB,
        json!({"errcode": 88, "errmsg": "ding talk error", "subCode": "x.y", "subMsg": "z"}),
        1,
    );
    let v = post(&sim, LISTSUB, &t, json!({})).await;
    assert_eq!(v["subCode"], "x.y");
    assert_eq!(sim.call_log().last().unwrap().outcome.code(), Some(88));
    assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);
}

#[tokio::test]
async fn throttling_and_ip_bans() {
    let config = DingtalkSimConfig {
        limits: vec![
            (LISTSUB.to_owned(), 2, Duration::from_secs(60)),
            (GLOBAL_LIMIT.to_owned(), 5, Duration::from_secs(60)),
        ],
        ip_ban: Duration::from_millis(200),
        ..DingtalkSimConfig::default()
    };
    let sim = sim(5, config).await;
    let t = token(&sim).await;
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(post(&sim, LISTSUB, &t, json!({})).await["errcode"].clone());
    }
    assert_eq!(codes, [json!(0), json!(0), json!(90018)]);
    assert_eq!(sim.quota_violations(), 1);
    // gettoken and two listsub calls were admitted; two more fill the IP-wide
    // window of 5, the next is banned, and so is the one after it.
    for _ in 0..2 {
        assert_eq!(post(&sim, GETATTCOLUMNS, &t, json!({})).await["errcode"], 0);
    }
    let v = post(&sim, GETATTCOLUMNS, &t, json!({})).await;
    assert_eq!(v["status"], 1111);
    assert!(v.get("errcode").is_none());
    let v = post(&sim, GETCOLUMNVAL, &t, json!({})).await;
    assert_eq!(v["status"], 1111);
    assert_eq!(sim.bans_answered(), 2);

    let sim = self::sim(5, DingtalkSimConfig::default()).await;
    let t = token(&sim).await;
    sim.set_ip_banned(true);
    sim.set_ip_ban_html(true);
    let resp = client()
        .post(format!("{}/{LISTSUB}?access_token={t}", sim.base_url()))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().starts_with("<!DOCTYPE html>"));
    assert_eq!(sim.call_log().last().unwrap().outcome, Outcome::Http(403));
    sim.set_ip_banned(false);
    assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 0);

    sim.set_throttle_ratio(1.0);
    assert_eq!(post(&sim, LISTSUB, &t, json!({})).await["errcode"], 90018);
    assert_eq!(sim.injected_throttles(), 1);
    assert_eq!(sim.quota_violations(), 0);
    let resp = client()
        .get(format!("{}/topapi/nope", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[test]
fn form_decoding_and_value_helpers() {
    let f = parse_form("a=1&b=x%2Cy&c=%E5%B9%B4+%E5%81%87&d").unwrap();
    assert_eq!(f["a"], "1");
    assert_eq!(f["b"], "x,y");
    assert_eq!(f["c"], "年 假");
    assert_eq!(f["d"], "");
    assert!(parse_form("a=%zz").is_none());
    assert_eq!(tenths(15), "1.5");
    assert_eq!(units(482), "482.0");
    assert_eq!(hours(5400), "1.5");
    assert_eq!(parse_value(""), Some(Decimal::ZERO));
    assert_eq!(parse_value("abc"), None);
    assert_eq!(decimal_json(Decimal::new(30, 1)), Some(json!(3)));
    assert_eq!(decimal_json(Decimal::new(15, 1)), Some(json!(1.5)));
}

#[tokio::test]
async fn a_correction_changes_that_user_s_report_only() {
    let sim = sim(3, DingtalkSimConfig::default()).await;
    let users: Vec<String> = sim.org().users.iter().map(|u| u.userid.clone()).collect();
    let columns = ["工作时长".to_owned()];
    let record = |u: &str| sim.expected_record(u, october(), &columns, &[]);
    let before: Vec<_> = users.iter().map(|u| record(u)).collect();
    sim.bump_revision(&users[0]);
    assert_ne!(record(&users[0]), before[0], "the corrected user's report");
    assert_eq!(record(&users[1]), before[1], "another user's report");
}
