use super::super::test_util::client;
use super::*;
use crate::limits::Outcome;
use std::collections::HashSet;

async fn sim(config: JdySimConfig) -> JdySim {
    JdySim::start(config).await.unwrap()
}

async fn call(sim: &JdySim, endpoint: &str, mut body: Value) -> (u16, Value) {
    let c = JdySimConfig::default();
    body["app_id"] = json!(c.app_id);
    body["entry_id"] = json!(c.entry_id);
    raw(sim, endpoint, &c.api_key, body).await
}

async fn raw(sim: &JdySim, endpoint: &str, key: &str, body: Value) -> (u16, Value) {
    let url = format!("{}/api/v5/app/entry/{endpoint}", sim.base_url());
    let resp = client()
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn row(userid: &str, month: &str, hours: f64) -> Value {
    json!({
        "userid": {"value": userid},
        "month": {"value": month},
        "work_hours": {"value": hours},
        "period": {"value": "2026-09-30T16:00:00.000Z"}
    })
}

#[tokio::test]
async fn auth_app_and_entry_errors() {
    let sim = sim(JdySimConfig::default()).await;
    let c = JdySimConfig::default();
    let body = json!({"app_id": c.app_id, "entry_id": c.entry_id});
    let (status, v) = raw(&sim, "widget/list", "wrong-key-123", body.clone()).await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(8301)));
    assert!(!v.to_string().contains("wrong-key-123"));
    let url = format!("{}/api/v5/app/entry/widget/list", sim.base_url());
    let resp = client().post(url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let (_, v) = raw(
        &sim,
        "widget/list",
        &c.api_key,
        json!({"app_id": "x", "entry_id": c.entry_id}),
    )
    .await;
    assert_eq!(v["code"], 2004);
    let (_, v) = raw(
        &sim,
        "widget/list",
        &c.api_key,
        json!({"app_id": c.app_id, "entry_id": "y"}),
    )
    .await;
    assert_eq!(v["code"], 3000);
    let (status, _) = call(&sim, "data/nope", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn widget_list_shape() {
    let sim = sim(JdySimConfig {
        widgets: super::super::widgets_for(&[
            ("userid", "text"),
            ("_widget_1600000000001", "number"),
        ]),
        ..JdySimConfig::default()
    })
    .await;
    let (status, v) = call(&sim, "widget/list", json!({})).await;
    assert_eq!(status, 200);
    let w = v["widgets"].as_array().unwrap();
    assert_eq!(w.len(), 2);
    assert_eq!(w[0]["name"], "userid");
    let wn = w[0]["widgetName"].as_str().unwrap();
    assert!(wn.starts_with("_widget_") && wn[8..].chars().all(|c| c.is_ascii_digit()));
    assert_eq!(w[1]["name"], "_widget_1600000000001");
    assert_eq!(w[1]["widgetName"], "_widget_1600000000001");
    assert_eq!(w[1]["type"], "number");
    assert!(v["sysWidgets"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "createTime"})));
    assert!(v["dataModifyTime"].as_str().unwrap().ends_with('Z'));
}

/// Stores 25 rows (U00..U24; even ones in 2026-10, odd ones in 2026-09) with
/// one batch_create and returns their ids.
async fn twenty_five_rows(sim: &JdySim) -> Vec<String> {
    let rows: Vec<Value> = (0..25)
        .map(|i| {
            row(
                &format!("U{i:02}"),
                if i % 2 == 0 { "2026-10" } else { "2026-09" },
                i as f64 + 0.5,
            )
        })
        .collect();
    let (status, v) = call(sim, "data/batch_create", json!({"data_list": rows})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "success");
    assert_eq!(v["success_count"], 25);
    let ids: Vec<String> = v["success_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();
    assert!(ids
        .iter()
        .all(|id| id.len() == 24 && id.chars().all(|c| c.is_ascii_hexdigit())));
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let records = sim.records();
    assert_eq!(records.len(), 25);
    assert_eq!(records[3]["userid"], "U03");
    assert_eq!(records[3]["work_hours"], 3.5);
    assert_eq!(records[3]["_id"], json!(ids[3]));
    ids
}

#[tokio::test]
async fn batch_create_then_list_with_filters_and_paging() {
    let sim = sim(JdySimConfig::default()).await;
    let ids = twenty_five_rows(&sim).await;

    let filter = json!({"rel": "and", "cond": [
        {"field": "month", "type": "text", "method": "eq", "value": ["2026-10"]},
        {"field": "userid", "type": "text", "method": "in", "value": ["U00", "U01", "U02", "U04", "U99"]}
    ]});
    let (_, v) = call(
        &sim,
        "data/list",
        json!({"limit": 100, "filter": filter, "fields": ["userid", "work_hours"]}),
    )
    .await;
    let got: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userid"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["U00", "U02", "U04"]);
    let first = &v["data"][0];
    assert_eq!(first.as_object().unwrap().len(), 3, "{first}"); // _id, userid, work_hours

    // Paging by data_id, ascending ids.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut body = json!({"limit": 10});
        if let Some(c) = &cursor {
            body["data_id"] = json!(c);
        }
        let (_, v) = call(&sim, "data/list", body).await;
        let page = v["data"].as_array().unwrap().clone();
        seen.extend(page.iter().map(|r| r["_id"].as_str().unwrap().to_owned()));
        if page.len() < 10 {
            break;
        }
        cursor = page.last().map(|r| r["_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn list_filter_methods_and_their_limits() {
    let sim = sim(JdySimConfig::default()).await;
    twenty_five_rows(&sim).await;
    let cases = [
        (
            json!({"field": "work_hours", "method": "gt", "value": [20]}),
            5,
        ),
        (
            json!({"field": "work_hours", "method": "range", "value": [1, 3.5]}),
            3,
        ),
        (
            json!({"field": "work_hours", "method": "range", "value": [null, 1]}),
            1,
        ),
        (
            json!({"field": "month", "method": "ne", "value": ["2026-10"]}),
            12,
        ),
        (
            json!({"field": "userid", "method": "nin", "value": ["U00", "U01"]}),
            23,
        ),
        (json!({"field": "name", "method": "empty"}), 25),
        (json!({"field": "month", "method": "not_empty"}), 25),
        (
            json!({"field": "period", "method": "eq", "value": ["2026-09-30T16:00:00Z"]}),
            25,
        ),
        (
            json!({"field": "work_hours", "method": "lt", "value": [2]}),
            2,
        ),
    ];
    for (cond, expected) in cases {
        let (_, v) = call(
            &sim,
            "data/list",
            json!({"limit": 100, "filter": {"cond": [cond.clone()]}}),
        )
        .await;
        assert_eq!(v["data"].as_array().map(Vec::len), Some(expected), "{cond}");
    }
    let or = json!({"rel": "or", "cond": [
        {"field": "userid", "method": "eq", "value": ["U01"]},
        {"field": "userid", "method": "eq", "value": ["U02"]}
    ]});
    let (_, v) = call(&sim, "data/list", json!({"filter": or})).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 2);

    let too_many: Vec<String> = (0..201).map(|i| format!("U{i}")).collect();
    let cond = json!({"cond": [{"field": "userid", "method": "in", "value": too_many}]});
    let (status, v) = call(&sim, "data/list", json!({"filter": cond})).await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(4815)));
    for limit in [0, 101] {
        let (status, _) = call(&sim, "data/list", json!({"limit": limit})).await;
        assert_eq!(status, 400);
    }
    let (_, v) = call(
        &sim,
        "data/list",
        json!({"filter": {"cond": [{"field": "nope", "method": "eq", "value": [1]}]}}),
    )
    .await;
    assert_eq!(v["code"], 4815);
}

#[tokio::test]
async fn batch_create_validation() {
    let sim = sim(JdySimConfig::default()).await;
    let mut unwrapped = row("U1", "2026-10", 1.0);
    unwrapped["month"] = json!("2026-10");
    let (status, v) = call(
        &sim,
        "data/batch_create",
        json!({"data_list": [row("U0", "2026-10", 1.0), unwrapped]}),
    )
    .await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(17017)));
    assert!(v["msg"].as_str().unwrap().contains("month"), "{v}");
    assert!(sim.records().is_empty(), "all or nothing");

    let mut bad_number = row("U1", "2026-10", 1.0);
    bad_number["work_hours"] = json!({"value": "168.5"});
    let (_, v) = call(
        &sim,
        "data/batch_create",
        json!({"data_list": [bad_number]}),
    )
    .await;
    assert_eq!(v["code"], 17017);
    assert!(v["msg"].as_str().unwrap().contains("work_hours"));

    let mut unknown = row("U1", "2026-10", 1.0);
    unknown["nope"] = json!({"value": 1});
    let (_, v) = call(&sim, "data/batch_create", json!({"data_list": [unknown]})).await;
    assert_eq!(v["code"], 17032);
    assert!(v["msg"].as_str().unwrap().contains("nope"));

    for bad in [
        json!(1_790_784_000),
        json!(""),
        json!("2026/10/01"),
        json!(0),
    ] {
        let mut r = row("U1", "2026-10", 1.0);
        r["period"] = json!({"value": bad});
        let (_, v) = call(&sim, "data/batch_create", json!({"data_list": [r]})).await;
        assert_eq!(v["code"], 17017, "{bad}");
    }
    let mut local = row("U1", "2026-10", 1.0);
    local["period"] = json!({"value": "2026-10-01"});
    let (status, _) = call(&sim, "data/batch_create", json!({"data_list": [local]})).await;
    assert_eq!(status, 200);
    assert_eq!(sim.records()[0]["period"], "2026-09-30T16:00:00.000Z");

    let many: Vec<Value> = (0..101)
        .map(|i| row(&format!("U{i}"), "2026-10", 1.0))
        .collect();
    let (_, v) = call(&sim, "data/batch_create", json!({"data_list": many})).await;
    assert_eq!(v["code"], 17024);
    let (_, v) = call(
        &sim,
        "data/batch_create",
        json!({"data_list": [row("U", "m", 1.0)], "transaction_id": "${x}"}),
    )
    .await;
    assert_eq!(v["code"], 17025);
}

#[tokio::test]
async fn transaction_id_honoured_or_ignored() {
    let sim = sim(JdySimConfig::default()).await;
    let batch = json!({"data_list": [row("A", "2026-10", 1.0), row("B", "2026-10", 2.0)], "transaction_id": "0f6c6f52-8a2e-5b1e-9d0e-3c1b6d2f7a11"});
    let (_, first) = call(&sim, "data/batch_create", batch.clone()).await;
    let (_, again) = call(&sim, "data/batch_create", batch.clone()).await;
    assert_eq!(first, again);
    assert_eq!(sim.records().len(), 2);
    let mut shorter = batch.clone();
    shorter["data_list"] = json!([row("A", "2026-10", 1.0)]);
    let (_, v) = call(&sim, "data/batch_create", shorter).await;
    assert_eq!(v["code"], 17026);

    sim.set_tx_mode(TxMode::Ignore);
    let (_, third) = call(&sim, "data/batch_create", batch).await;
    assert_eq!(third["success_count"], 2);
    assert_ne!(third["success_ids"], first["success_ids"]);
    assert_eq!(sim.records().len(), 4);
    assert_eq!(sim.write_calls(), 4);
    assert_eq!(sim.calls("data/batch_create"), 4);
}

#[tokio::test]
async fn transaction_id_expires() {
    let sim = sim(JdySimConfig {
        tx_ttl: Duration::from_millis(100),
        ..JdySimConfig::default()
    })
    .await;
    let batch = json!({"data_list": [row("A", "2026-10", 1.0)], "transaction_id": "t-1"});
    call(&sim, "data/batch_create", batch.clone()).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    call(&sim, "data/batch_create", batch).await;
    assert_eq!(sim.records().len(), 2);
}

#[tokio::test]
async fn store_then_502_stores_and_retry_with_same_tx_does_not_duplicate() {
    let sim = sim(JdySimConfig {
        store_then_502_ratio: 1.0,
        ..JdySimConfig::default()
    })
    .await;
    let batch = json!({"data_list": [row("A", "2026-10", 1.0), row("B", "2026-10", 2.0)], "transaction_id": "tx-502"});
    let (status, v) = call(&sim, "data/batch_create", batch.clone()).await;
    assert_eq!(status, 502);
    assert!(v.is_string(), "not JSON: {v}");
    assert_eq!(sim.records().len(), 2);
    sim.set_store_then_502_ratio(0.0);
    let (status, v) = call(&sim, "data/batch_create", batch).await;
    assert_eq!(status, 200);
    assert_eq!(v["success_count"], 2);
    assert_eq!(sim.records().len(), 2);
    let log = sim.call_log();
    assert_eq!(log[0].outcome, Outcome::Http(502));
    assert_eq!(log[1].outcome, Outcome::Ok);
}

#[tokio::test]
async fn store_then_drop_closes_without_answer() {
    let sim = sim(JdySimConfig {
        store_then_drop_ratio: 1.0,
        ..JdySimConfig::default()
    })
    .await;
    let c = JdySimConfig::default();
    let body = json!({"app_id": c.app_id, "entry_id": c.entry_id, "data_list": [row("A", "2026-10", 1.0)]});
    let url = format!("{}/api/v5/app/entry/data/batch_create", sim.base_url());
    let result = client()
        .post(url)
        .bearer_auth(&c.api_key)
        .json(&body)
        .send()
        .await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert_eq!(sim.records().len(), 1);
    assert_eq!(sim.call_log()[0].outcome, Outcome::Dropped);
}

#[tokio::test]
async fn update_delete_and_friends() {
    let sim = sim(JdySimConfig::default()).await;
    let (_, v) = call(&sim, "data/batch_create", json!({"data_list": [row("A", "2026-10", 1.0), row("B", "2026-10", 2.0), row("C", "2026-10", 3.0)]})).await;
    let ids: Vec<String> = v["success_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();

    let (status, v) = call(
        &sim,
        "data/update",
        json!({"data_id": ids[0], "data": {"work_hours": {"value": 170}}}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(v["data"]["work_hours"], 170);
    assert_eq!(v["data"]["userid"], "A");
    assert_eq!(v["data"]["_id"], json!(ids[0]));
    assert!(v["data"]["createTime"].is_string());
    let (_, v) = call(
        &sim,
        "data/update",
        json!({"data_id": "ffffffffffffffffffffffff", "data": {}}),
    )
    .await;
    assert_eq!(v["code"], 4001);
    let (_, v) = call(
        &sim,
        "data/update",
        json!({"data_id": ids[0], "data": {"work_hours": 1}}),
    )
    .await;
    assert_eq!(v["code"], 17017);

    let (_, v) = call(
        &sim,
        "data/batch_update",
        json!({"data_ids": [ids[1], ids[2], "nope"], "data": {"month": {"value": "2026-11"}}}),
    )
    .await;
    assert_eq!(v["success_count"], 2);
    let (_, v) = call(&sim, "data/get", json!({"data_id": ids[2]})).await;
    assert_eq!(v["data"]["month"], "2026-11");

    let (_, v) = call(&sim, "data/delete", json!({"data_id": ids[0]})).await;
    assert_eq!(v["status"], "success");
    let (_, v) = call(&sim, "data/delete", json!({"data_id": ids[0]})).await;
    assert_eq!(v["code"], 4001);
    let (_, v) = call(
        &sim,
        "data/batch_delete",
        json!({"data_ids": [ids[1], ids[2]]}),
    )
    .await;
    assert_eq!(v["success_count"], 2);
    assert!(sim.records().is_empty());
    let (_, v) = call(
        &sim,
        "data/create",
        json!({"data": row("D", "2026-10", 4.0)}),
    )
    .await;
    assert_eq!(v["data"]["userid"], "D");
    assert_eq!(sim.write_calls(), 9);
    let ids: HashSet<_> = sim.records().iter().map(|r| r["_id"].clone()).collect();
    assert_eq!(ids.len(), 1);
}

#[tokio::test]
async fn quotas_and_injected_throttles() {
    let sim = sim(JdySimConfig {
        limits: vec![
            ("data/list".to_owned(), 2, Duration::from_secs(60)),
            (GLOBAL_LIMIT.to_owned(), 4, Duration::from_secs(60)),
        ],
        ..JdySimConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(call(&sim, "data/list", json!({})).await.0);
    }
    assert_eq!(statuses, [200, 200, 429]);
    call(&sim, "widget/list", json!({})).await;
    call(&sim, "widget/list", json!({})).await;
    let (status, v) = call(&sim, "widget/list", json!({})).await;
    assert_eq!((status, v["code"].as_i64()), (400, Some(8303)));
    assert_eq!(sim.quota_violations(), 2);

    let sim = self::sim(JdySimConfig {
        throttle_ratio: 0.5,
        seed: 11,
        ..JdySimConfig::default()
    })
    .await;
    let mut kinds = HashSet::new();
    for _ in 0..40 {
        let (status, v) = call(&sim, "widget/list", json!({})).await;
        kinds.insert((status, v["code"].as_i64()));
    }
    assert!(
        kinds.contains(&(429, None)) && kinds.contains(&(400, Some(8304))),
        "{kinds:?}"
    );
    assert!(sim.injected_throttles() > 5);
    assert_eq!(sim.quota_violations(), 0);
    assert_eq!(sim.calls("widget/list"), 40);
}
