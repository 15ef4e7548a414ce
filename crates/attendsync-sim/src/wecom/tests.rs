use super::super::test_util::client;
use super::*;
use chrono::TimeZone;

fn start_of(y: i32, m: u32, d: u32) -> i64 {
    chrono_tz::Asia::Shanghai
        .with_ymd_and_hms(y, m, d, 0, 0, 0)
        .unwrap()
        .timestamp()
}

async fn sim(employees: usize, config: WecomSimConfig) -> WecomSim {
    WecomSim::start(Org::generate(employees, 1), config)
        .await
        .unwrap()
}

async fn get(sim: &WecomSim, path: &str, query: &[(&str, &str)]) -> Value {
    let url = format!("{}/cgi-bin/{path}", sim.base_url());
    let resp = client().get(url).query(query).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn token(sim: &WecomSim) -> String {
    let c = WecomSimConfig::default();
    let v = get(
        sim,
        "gettoken",
        &[("corpid", &c.corp_id), ("corpsecret", &c.secret)],
    )
    .await;
    assert_eq!(v["errcode"], 0, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn monthdata(sim: &WecomSim, token: &str, body: Value) -> Value {
    let url = format!(
        "{}/cgi-bin/checkin/getcheckin_monthdata?access_token={token}",
        sim.base_url()
    );
    let resp = client().post(url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

fn october(userids: &[&str]) -> Value {
    json!({"starttime": start_of(2026, 10, 1), "endtime": start_of(2026, 10, 31), "useridlist": userids})
}

#[test]
fn october_2026_boundaries_match_the_doc() {
    assert_eq!(start_of(2026, 10, 1), 1_790_784_000);
    assert_eq!(start_of(2026, 10, 31), 1_793_376_000);
}

#[tokio::test]
async fn token_flow_and_errors_never_echo_the_secret() {
    let sim = sim(10, WecomSimConfig::default()).await;
    let c = WecomSimConfig::default();
    let bad = get(
        &sim,
        "gettoken",
        &[("corpid", &c.corp_id), ("corpsecret", "wrong-secret-XYZ")],
    )
    .await;
    assert_eq!(bad["errcode"], 40001);
    assert!(!bad.to_string().contains("wrong-secret-XYZ"));
    let bad = get(
        &sim,
        "gettoken",
        &[("corpid", "nope"), ("corpsecret", &c.secret)],
    )
    .await;
    assert_eq!(bad["errcode"], 40013);
    assert!(!bad.to_string().contains(&c.secret));

    let t1 = token(&sim).await;
    let t2 = token(&sim).await;
    assert_eq!(t1, t2);
    assert_eq!(sim.tokens_issued(), 1);
    let v = get(
        &sim,
        "gettoken",
        &[("corpid", &c.corp_id), ("corpsecret", &c.secret)],
    )
    .await;
    let expires = v["expires_in"].as_u64().unwrap();
    assert!((7199..=7200).contains(&expires), "{expires}");

    let v = get(&sim, "department/simplelist", &[]).await;
    assert_eq!(v["errcode"], 41001);
    let v = get(&sim, "department/simplelist", &[("access_token", "forged")]).await;
    assert_eq!(v["errcode"], 40014);
    assert_eq!(sim.calls("gettoken"), 5);
}

#[tokio::test]
async fn token_expires_after_n_calls_and_by_time() {
    let config = WecomSimConfig {
        token_expires_after_calls: Some(2),
        ..WecomSimConfig::default()
    };
    let sim = sim(10, config).await;
    let t = token(&sim).await;
    for _ in 0..2 {
        let v = get(&sim, "department/simplelist", &[("access_token", &t)]).await;
        assert_eq!(v["errcode"], 0);
    }
    let v = get(&sim, "department/simplelist", &[("access_token", &t)]).await;
    assert_eq!(v["errcode"], 42001);
    let t2 = token(&sim).await;
    assert_ne!(t, t2);
    assert_eq!(sim.tokens_issued(), 2);
    let v = get(&sim, "department/simplelist", &[("access_token", &t2)]).await;
    assert_eq!(v["errcode"], 0);

    let config = WecomSimConfig {
        token_ttl: Duration::from_millis(150),
        ..WecomSimConfig::default()
    };
    let sim = self::sim(10, config).await;
    let t = token(&sim).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let v = get(
        &sim,
        "user/simplelist",
        &[("access_token", &t), ("department_id", "1")],
    )
    .await;
    assert_eq!(v["errcode"], 42001);
}

#[tokio::test]
async fn department_subtree_and_direct_members_need_dedup() {
    let sim = sim(600, WecomSimConfig::default()).await;
    let org = sim.org().clone();
    let t = token(&sim).await;
    let all = get(&sim, "department/simplelist", &[("access_token", &t)]).await;
    let all = all["department_id"].as_array().unwrap().clone();
    assert_eq!(all.len(), org.departments.len());
    assert_eq!(
        all[0],
        json!({"id": 1, "parentid": 0, "order": 100_000_000})
    );

    let centre = org.departments[1].id;
    let sub = get(
        &sim,
        "department/simplelist",
        &[("access_token", &t), ("id", &centre.to_string())],
    )
    .await;
    let sub: Vec<u64> = sub["department_id"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_u64().unwrap())
        .collect();
    assert_eq!(sub[0], centre);
    for id in &sub[1..] {
        assert!(org
            .department_path(*id)
            .starts_with(&org.department_path(centre)));
    }
    let v = get(
        &sim,
        "department/simplelist",
        &[("access_token", &t), ("id", "999999")],
    )
    .await;
    assert_eq!(v["errcode"], 60003);

    // Walking every department gives every user, some twice.
    let mut listed = Vec::new();
    for d in &all {
        let id = d["id"].as_u64().unwrap().to_string();
        let v = get(
            &sim,
            "user/simplelist",
            &[("access_token", &t), ("department_id", &id)],
        )
        .await;
        for u in v["userlist"].as_array().unwrap() {
            assert!(u["department"]
                .as_array()
                .unwrap()
                .contains(&json!(id.parse::<u64>().unwrap())));
            listed.push(u["userid"].as_str().unwrap().to_owned());
        }
    }
    let unique: HashSet<_> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), 600);
    assert!(listed.len() > 600);
}

#[tokio::test]
async fn monthdata_answers_and_validation() {
    let sim = sim(150, WecomSimConfig::default()).await;
    let org = sim.org().clone();
    let t = token(&sim).await;
    let a = org.users[0].userid.as_str();
    let b = org.users[1].userid.as_str();

    let v = monthdata(&sim, &t, october(&[a, "ghost", b, a])).await;
    assert_eq!(v["errcode"], 0);
    let datas = v["datas"].as_array().unwrap();
    assert_eq!(datas.len(), 2);
    assert_eq!(datas[0]["base_info"]["acctid"], json!(a));
    assert_eq!(datas[0], wecom_month_record_of(&org, 0));

    let many: Vec<&str> = org
        .users
        .iter()
        .take(101)
        .map(|u| u.userid.as_str())
        .collect();
    let v = monthdata(&sim, &t, october(&many)).await;
    assert_eq!(v["errcode"], 301023);
    assert_eq!(v["datas"], json!([]));
    let v = monthdata(&sim, &t, october(&many[..100])).await;
    assert_eq!(v["datas"].as_array().unwrap().len(), 100);
    let v = monthdata(&sim, &t, october(&[])).await;
    assert_eq!(v["errcode"], 301023);

    let s = start_of(2026, 10, 1);
    let mid_day =
        json!({"starttime": s + 3600, "endtime": start_of(2026, 10, 31), "useridlist": [a]});
    let v = monthdata(&sim, &t, mid_day).await;
    assert_eq!(v, json!({"errcode": 0, "errmsg": "ok", "datas": []}));
    let end_of_day =
        json!({"starttime": s, "endtime": start_of(2026, 10, 31) + 86_399, "useridlist": [a]});
    assert_eq!(monthdata(&sim, &t, end_of_day).await["datas"], json!([]));

    for (start, end) in [(s, s), (s, s - 86_400), (s, s + 93 * 86_400)] {
        let body = json!({"starttime": start, "endtime": end, "useridlist": [a]});
        assert_eq!(monthdata(&sim, &t, body).await["errcode"], 301024);
    }
    // The month is the one containing starttime; a later end is clamped.
    let spill = json!({"starttime": s, "endtime": start_of(2026, 11, 1), "useridlist": [a]});
    assert_eq!(
        monthdata(&sim, &t, spill).await["datas"][0],
        wecom_month_record_of(&org, 0)
    );

    let url = format!(
        "{}/cgi-bin/checkin/getcheckin_monthdata?access_token={t}",
        sim.base_url()
    );
    let v: Value = client()
        .post(url)
        .body("{not json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["errcode"], 47001);
}

fn wecom_month_record_of(org: &Org, i: usize) -> Value {
    super::super::org::wecom_month_record(org, &org.users[i], 2026, 10, 0)
}

#[tokio::test]
async fn revision_and_patches() {
    let sim = sim(20, WecomSimConfig::default()).await;
    let org = sim.org().clone();
    let t = token(&sim).await;
    let a = org.users[2].userid.clone();
    let before = monthdata(&sim, &t, october(&[&a])).await["datas"][0].clone();
    sim.bump_revision(&a);
    let after = monthdata(&sim, &t, october(&[&a])).await["datas"][0].clone();
    assert_ne!(before, after);
    assert_eq!(
        after["summary_info"]["regular_work_sec"].as_i64().unwrap(),
        before["summary_info"]["regular_work_sec"].as_i64().unwrap() + 1800
    );
    sim.patch_record(&a, "/summary_info/regular_work_sec", json!("abc"));
    sim.patch_record(&a, "/extra/deep", json!(1));
    sim.remove_field(&a, "/base_info/name_ex");
    let patched = monthdata(&sim, &t, october(&[&a])).await["datas"][0].clone();
    assert_eq!(patched["summary_info"]["regular_work_sec"], "abc");
    assert_eq!(patched["extra"]["deep"], 1);
    assert!(patched["base_info"].get("name_ex").is_none());
    // Other users are untouched.
    let b = org.users[3].userid.clone();
    let other = monthdata(&sim, &t, october(&[&b])).await["datas"][0].clone();
    assert_eq!(other, wecom_month_record_of(&org, 3));
}

#[tokio::test]
async fn quota_answers_45009_and_injected_throttles_are_counted_apart() {
    let config = WecomSimConfig {
        limits: vec![(MONTHDATA.to_owned(), 3, Duration::from_secs(60))],
        ..WecomSimConfig::default()
    };
    let sim = sim(5, config).await;
    let t = token(&sim).await;
    let a = sim.org().users[0].userid.clone();
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(
            monthdata(&sim, &t, october(&[&a])).await["errcode"]
                .as_i64()
                .unwrap(),
        );
    }
    assert_eq!(codes, [0, 0, 0, 45009, 45009]);
    assert_eq!(sim.quota_violations(), 2);
    assert_eq!(sim.injected_throttles(), 0);
    assert_eq!(sim.calls(MONTHDATA), 5);
    let log = sim.call_log();
    assert_eq!(log.len(), 6);
    assert_eq!(log[0].endpoint, "gettoken");
    assert_eq!(
        log[5].outcome,
        Outcome::Code {
            http: 200,
            code: 45009
        }
    );
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));

    let sim2 = self::sim(
        5,
        WecomSimConfig {
            throttle_ratio: 1.0,
            ..WecomSimConfig::default()
        },
    )
    .await;
    let c = WecomSimConfig::default();
    let v = get(
        &sim2,
        "gettoken",
        &[("corpid", &c.corp_id), ("corpsecret", &c.secret)],
    )
    .await;
    assert_eq!(v["errcode"], 45009);
    assert!(v["errmsg"]
        .as_str()
        .unwrap()
        .starts_with("api freq out of limit"));
    assert_eq!(sim2.injected_throttles(), 1);
    assert_eq!(sim2.quota_violations(), 0);
    sim2.set_throttle_ratio(0.0);
    token(&sim2).await;
}

#[tokio::test]
async fn forbidden_switches_and_latency() {
    let sim = sim(5, WecomSimConfig::default()).await;
    let t = token(&sim).await;
    let a = sim.org().users[0].userid.clone();
    sim.set_api_forbidden(true);
    let v = monthdata(&sim, &t, october(&[&a])).await;
    assert_eq!(v["errcode"], 48002);
    let v = get(&sim, "department/simplelist", &[("access_token", &t)]).await;
    assert_eq!(v["errcode"], 0);
    sim.set_api_forbidden(false);
    sim.set_ip_forbidden(true);
    let v = get(&sim, "gettoken", &[]).await;
    assert_eq!(v["errcode"], 60020);
    assert!(v["errmsg"].as_str().unwrap().contains("from ip: 127.0.0.1"));
    sim.set_ip_forbidden(false);

    sim.set_latency(Duration::from_millis(120));
    let started = Instant::now();
    assert_eq!(monthdata(&sim, &t, october(&[&a])).await["errcode"], 0);
    assert!(started.elapsed() >= Duration::from_millis(120));
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods() {
    let sim = sim(5, WecomSimConfig::default()).await;
    let resp = client()
        .get(format!("{}/cgi-bin/nope", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v = get(&sim, "checkin/getcheckin_monthdata", &[]).await;
    assert_eq!(v["errcode"], 43002);
}

#[test]
fn pointer_helpers() {
    let mut v = json!({"a": {"b": [1, 2]}});
    pointer_set(&mut v, "/a/b/1", json!(9));
    pointer_set(&mut v, "/a/b/-", json!(3));
    pointer_set(&mut v, "/a/c~1d", json!("x"));
    pointer_set(&mut v, "/a/b/7/z", json!(0)); // out of range: ignored
    assert_eq!(v, json!({"a": {"b": [1, 9, 3], "c/d": "x"}}));
    pointer_remove(&mut v, "/a/b/0");
    pointer_remove(&mut v, "/a/c~1d");
    assert_eq!(v, json!({"a": {"b": [9, 3]}}));
}
