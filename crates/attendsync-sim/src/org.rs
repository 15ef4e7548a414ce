//! A generated organisation (departments and employees) and the monthly
//! check-in figures of its employees. Vendor-neutral: the WeCom simulator
//! renders it as WeCom JSON, a DingTalk simulator can reuse it.

use chrono::{Datelike, NaiveDate, Weekday};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

use super::mix;

/// The id of the root department (named after the company).
pub const ROOT_DEPARTMENT: u64 = 1;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Org {
    pub corp_name: String,
    /// The seed the organisation was generated from; also seeds the monthly figures.
    pub seed: u64,
    /// Ids are `1..=len`, in this order; the root (id 1, parent 0) comes first.
    pub departments: Vec<Department>,
    pub users: Vec<User>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Department {
    pub id: u64,
    /// 0 for the root.
    pub parent_id: u64,
    pub name: String,
    /// Sort order among siblings (WeCom style: larger first).
    pub order: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// ASCII, unique: `ZhangWei0042`.
    pub userid: String,
    /// `张伟`.
    pub name: String,
    /// A pinyin alias: `Wei Zhang`.
    pub name_ex: String,
    /// Department ids; the first is the main one. About 10 % have two.
    pub departments: Vec<u64>,
    /// `A00042`.
    pub job_number: String,
    pub title: String,
}

const CORP_NAMES: &[&str] = &[
    "有家科技",
    "云帆信息",
    "星河网络",
    "青松软件",
    "恒信制造",
    "蓝海商贸",
    "启明数据",
    "远航物流",
];

/// Top-level departments and their sub-department names.
const CENTRES: &[(&str, &[&str])] = &[
    (
        "研发中心",
        &[
            "后端组",
            "前端组",
            "移动端组",
            "测试组",
            "运维组",
            "数据组",
            "架构组",
            "算法组",
        ],
    ),
    (
        "产品中心",
        &["产品一部", "产品二部", "用户体验组", "设计组"],
    ),
    (
        "销售中心",
        &[
            "华东大区",
            "华南大区",
            "华北大区",
            "西南大区",
            "华中大区",
            "大客户部",
            "渠道部",
        ],
    ),
    ("市场部", &["品牌组", "活动组", "新媒体组", "市场调研组"]),
    (
        "客服中心",
        &["售前客服组", "售后客服组", "投诉处理组", "质检组"],
    ),
    (
        "生产中心",
        &["一车间", "二车间", "三车间", "质量部", "设备部"],
    ),
    ("供应链中心", &["采购部", "仓储部", "物流部", "计划部"]),
    ("财务部", &["会计组", "出纳组", "税务组", "审计组"]),
    ("人力资源部", &["招聘组", "培训组", "薪酬组", "员工关系组"]),
    ("行政部", &["行政组", "前台", "后勤组"]),
    ("法务部", &["合同组", "合规组"]),
    (
        "运营中心",
        &["用户运营组", "内容运营组", "数据运营组", "商家运营组"],
    ),
];

const TEAMS: &[&str] = &[
    "一组", "二组", "三组", "四组", "五组", "六组", "七组", "八组", "九组", "十组",
];

/// Common surnames, roughly most common first, with their pinyin.
const SURNAMES: &[(&str, &str)] = &[
    ("王", "Wang"),
    ("李", "Li"),
    ("张", "Zhang"),
    ("刘", "Liu"),
    ("陈", "Chen"),
    ("杨", "Yang"),
    ("黄", "Huang"),
    ("赵", "Zhao"),
    ("吴", "Wu"),
    ("周", "Zhou"),
    ("徐", "Xu"),
    ("孙", "Sun"),
    ("马", "Ma"),
    ("朱", "Zhu"),
    ("胡", "Hu"),
    ("郭", "Guo"),
    ("何", "He"),
    ("高", "Gao"),
    ("林", "Lin"),
    ("罗", "Luo"),
    ("郑", "Zheng"),
    ("梁", "Liang"),
    ("谢", "Xie"),
    ("宋", "Song"),
    ("唐", "Tang"),
    ("许", "Xu"),
    ("韩", "Han"),
    ("冯", "Feng"),
    ("邓", "Deng"),
    ("曹", "Cao"),
    ("彭", "Peng"),
    ("曾", "Zeng"),
    ("肖", "Xiao"),
    ("田", "Tian"),
    ("董", "Dong"),
    ("袁", "Yuan"),
    ("潘", "Pan"),
    ("于", "Yu"),
    ("蒋", "Jiang"),
    ("蔡", "Cai"),
    ("余", "Yu"),
    ("杜", "Du"),
    ("叶", "Ye"),
    ("程", "Cheng"),
    ("苏", "Su"),
    ("魏", "Wei"),
    ("吕", "Lv"),
    ("丁", "Ding"),
    ("任", "Ren"),
    ("沈", "Shen"),
    ("姚", "Yao"),
    ("卢", "Lu"),
    ("姜", "Jiang"),
    ("崔", "Cui"),
    ("钟", "Zhong"),
    ("谭", "Tan"),
    ("陆", "Lu"),
    ("汪", "Wang"),
    ("范", "Fan"),
    ("金", "Jin"),
    ("石", "Shi"),
    ("廖", "Liao"),
    ("贾", "Jia"),
    ("夏", "Xia"),
    ("韦", "Wei"),
    ("付", "Fu"),
    ("方", "Fang"),
    ("白", "Bai"),
    ("邹", "Zou"),
    ("孟", "Meng"),
    ("熊", "Xiong"),
    ("秦", "Qin"),
    ("邱", "Qiu"),
    ("江", "Jiang"),
    ("尹", "Yin"),
    ("薛", "Xue"),
    ("闫", "Yan"),
    ("段", "Duan"),
    ("雷", "Lei"),
    ("侯", "Hou"),
    ("龙", "Long"),
    ("史", "Shi"),
    ("陶", "Tao"),
    ("黎", "Li"),
    ("贺", "He"),
    ("顾", "Gu"),
    ("毛", "Mao"),
    ("郝", "Hao"),
    ("龚", "Gong"),
    ("邵", "Shao"),
    ("万", "Wan"),
    ("钱", "Qian"),
    ("严", "Yan"),
    ("武", "Wu"),
    ("戴", "Dai"),
    ("莫", "Mo"),
    ("孔", "Kong"),
    ("向", "Xiang"),
    ("汤", "Tang"),
];

const COMPOUND_SURNAMES: &[(&str, &str)] = &[
    ("欧阳", "Ouyang"),
    ("司马", "Sima"),
    ("上官", "Shangguan"),
    ("诸葛", "Zhuge"),
];

const GIVEN: &[(&str, &str)] = &[
    ("伟", "wei"),
    ("芳", "fang"),
    ("娜", "na"),
    ("敏", "min"),
    ("静", "jing"),
    ("丽", "li"),
    ("强", "qiang"),
    ("磊", "lei"),
    ("军", "jun"),
    ("洋", "yang"),
    ("勇", "yong"),
    ("艳", "yan"),
    ("杰", "jie"),
    ("娟", "juan"),
    ("涛", "tao"),
    ("明", "ming"),
    ("超", "chao"),
    ("秀", "xiu"),
    ("霞", "xia"),
    ("平", "ping"),
    ("刚", "gang"),
    ("英", "ying"),
    ("华", "hua"),
    ("建", "jian"),
    ("文", "wen"),
    ("辉", "hui"),
    ("力", "li"),
    ("鹏", "peng"),
    ("宇", "yu"),
    ("浩", "hao"),
    ("婷", "ting"),
    ("雪", "xue"),
    ("琳", "lin"),
    ("晨", "chen"),
    ("欣", "xin"),
    ("佳", "jia"),
    ("俊", "jun"),
    ("凯", "kai"),
    ("子", "zi"),
    ("梓", "zi"),
    ("轩", "xuan"),
    ("涵", "han"),
    ("博", "bo"),
    ("然", "ran"),
    ("思", "si"),
    ("雨", "yu"),
    ("晓", "xiao"),
    ("燕", "yan"),
    ("红", "hong"),
    ("玉", "yu"),
    ("兰", "lan"),
    ("海", "hai"),
    ("波", "bo"),
    ("斌", "bin"),
    ("志", "zhi"),
    ("宁", "ning"),
    ("峰", "feng"),
    ("慧", "hui"),
    ("颖", "ying"),
    ("倩", "qian"),
    ("彤", "tong"),
    ("昊", "hao"),
    ("天", "tian"),
    ("嘉", "jia"),
    ("一", "yi"),
    ("诗", "shi"),
    ("欢", "huan"),
    ("阳", "yang"),
    ("飞", "fei"),
    ("鑫", "xin"),
    ("瑶", "yao"),
    ("琪", "qi"),
    ("悦", "yue"),
    ("泽", "ze"),
    ("睿", "rui"),
    ("航", "hang"),
    ("铭", "ming"),
    ("萱", "xuan"),
];

const TITLES: &[&str] = &[
    "工程师",
    "高级工程师",
    "专员",
    "高级专员",
    "主管",
    "经理",
    "产品经理",
    "设计师",
    "销售代表",
    "客服专员",
    "会计",
    "助理",
];

impl Org {
    /// Generates an organisation of `employees` people, deterministic in `seed`.
    /// About one department per 15 people (at least 5), nested 3–4 levels deep under a root
    /// named after the company. Linear in `employees`.
    pub fn generate(employees: usize, seed: u64) -> Org {
        let mut rng = StdRng::seed_from_u64(mix(seed, &[b"org"]));
        let corp_name = CORP_NAMES[(seed % CORP_NAMES.len() as u64) as usize].to_owned();
        let departments = generate_departments(&corp_name, employees, &mut rng);

        // Departments people are placed in: mostly the leaves, some in inner ones.
        let mut has_children = vec![false; departments.len() + 1];
        for d in &departments {
            if let Some(flag) = has_children.get_mut(d.parent_id as usize) {
                *flag = true;
            }
        }
        let non_root: Vec<u64> = departments
            .iter()
            .filter(|d| d.parent_id != 0)
            .map(|d| d.id)
            .collect();
        let leaves: Vec<u64> = non_root
            .iter()
            .copied()
            .filter(|&id| !has_children[id as usize])
            .collect();
        let pick_department = |rng: &mut StdRng| -> u64 {
            let pool = if rng.random_bool(0.85) && !leaves.is_empty() {
                &leaves
            } else {
                &non_root
            };
            if pool.is_empty() {
                ROOT_DEPARTMENT
            } else {
                pool[rng.random_range(0..pool.len())]
            }
        };

        let mut users = Vec::with_capacity(employees);
        for i in 0..employees {
            let (surname, surname_py) = if rng.random_bool(0.01) {
                COMPOUND_SURNAMES[rng.random_range(0..COMPOUND_SURNAMES.len())]
            } else {
                // Skewed towards the front of the list (the most common surnames).
                let r: f64 = rng.random();
                let index = ((r * r) * SURNAMES.len() as f64) as usize;
                SURNAMES[index.min(SURNAMES.len() - 1)]
            };
            let mut name = String::from(surname);
            let mut given_py = String::new();
            let chars = if rng.random_bool(0.65) { 2 } else { 1 };
            for _ in 0..chars {
                let (c, py) = GIVEN[rng.random_range(0..GIVEN.len())];
                name.push_str(c);
                given_py.push_str(py);
            }
            let given_cap = capitalize(&given_py);
            let number = i + 1;
            let main = pick_department(&mut rng);
            let mut user_departments = vec![main];
            if rng.random_bool(0.10) {
                let second = pick_department(&mut rng);
                if second != main {
                    user_departments.push(second);
                }
            }
            users.push(User {
                userid: format!("{surname_py}{given_cap}{number:04}"),
                name,
                name_ex: format!("{given_cap} {surname_py}"),
                departments: user_departments,
                job_number: format!("A{number:05}"),
                title: TITLES[rng.random_range(0..TITLES.len())].to_owned(),
            });
        }
        Org {
            corp_name,
            seed,
            departments,
            users,
        }
    }

    /// The department with this id.
    pub fn department(&self, id: u64) -> Option<&Department> {
        let by_position = usize::try_from(id)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| self.departments.get(i))
            .filter(|d| d.id == id);
        by_position.or_else(|| self.departments.iter().find(|d| d.id == id))
    }

    /// `有家科技/研发中心/后端组`; empty for an unknown id.
    pub fn department_path(&self, id: u64) -> String {
        let mut names = Vec::new();
        let mut current = self.department(id);
        while let Some(d) = current {
            names.push(d.name.as_str());
            if d.parent_id == 0 || names.len() > 64 {
                break;
            }
            current = self.department(d.parent_id);
        }
        names.reverse();
        names.join("/")
    }

    /// The top-level department (a child of the root) that contains `id`.
    pub fn top_level_department(&self, id: u64) -> Option<&Department> {
        let mut current = self.department(id)?;
        for _ in 0..64 {
            if current.parent_id == ROOT_DEPARTMENT {
                return Some(current);
            }
            current = self.department(current.parent_id)?;
        }
        None
    }

    pub fn user(&self, userid: &str) -> Option<&User> {
        self.users.iter().find(|u| u.userid == userid)
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

fn numbered(names: &[&str], k: usize) -> String {
    let base = names[k % names.len()];
    let round = k / names.len();
    if round == 0 {
        base.to_owned()
    } else {
        format!("{base}{}", round + 1)
    }
}

fn generate_departments(corp_name: &str, employees: usize, rng: &mut StdRng) -> Vec<Department> {
    const ORDER_TOP: u64 = 100_000_000;
    let order = |sibling: usize| ORDER_TOP.saturating_sub(sibling as u64 * 1000);
    let total = employees.div_ceil(15).max(5);
    let mut departments = vec![Department {
        id: ROOT_DEPARTMENT,
        parent_id: 0,
        name: corp_name.to_owned(),
        order: ORDER_TOP,
    }];

    let mut centres: Vec<usize> = (0..CENTRES.len()).collect();
    centres.shuffle(rng);
    let n2 = ((total as f64).cbrt().round() as usize).clamp(1, CENTRES.len().min(total - 1));
    centres.truncate(n2);
    let rest = total - 1 - n2;

    // Level 2: the centres.
    for (k, _) in centres.iter().enumerate() {
        let id = departments.len() as u64 + 1;
        departments.push(Department {
            id,
            parent_id: ROOT_DEPARTMENT,
            name: CENTRES[centres[k]].0.to_owned(),
            order: order(k),
        });
    }
    // Levels 3 and 4: the budget is shared out between the centres.
    let mut level3: Vec<Vec<u64>> = Vec::with_capacity(n2);
    let mut level4_budget = Vec::with_capacity(n2);
    for (k, &centre) in centres.iter().enumerate() {
        let budget = rest / n2 + usize::from(k < rest % n2);
        let groups = if budget == 0 {
            0
        } else {
            ((budget as f64).sqrt().ceil() as usize).clamp(1, budget)
        };
        let parent = k as u64 + 2;
        let mut ids = Vec::with_capacity(groups);
        for g in 0..groups {
            let id = departments.len() as u64 + 1;
            departments.push(Department {
                id,
                parent_id: parent,
                name: numbered(CENTRES[centre].1, g),
                order: order(g),
            });
            ids.push(id);
        }
        level3.push(ids);
        level4_budget.push(budget - groups);
    }
    for (groups, budget) in level3.iter().zip(level4_budget) {
        if groups.is_empty() {
            continue;
        }
        let mut per_group = vec![0usize; groups.len()];
        for _ in 0..budget {
            per_group[rng.random_range(0..groups.len())] += 1;
        }
        for (&parent, count) in groups.iter().zip(per_group) {
            for t in 0..count {
                let id = departments.len() as u64 + 1;
                departments.push(Department {
                    id,
                    parent_id: parent,
                    name: TEAMS
                        .get(t)
                        .map_or_else(|| format!("{}组", t + 1), |n| (*n).to_owned()),
                    order: order(t),
                });
            }
        }
    }
    departments
}

// ---------------------------------------------------------------------------
// Monthly figures
// ---------------------------------------------------------------------------

const DAY: i64 = 86_400;
const HOUR: i64 = 3_600;
const STANDARD_DAY: i64 = 8 * HOUR;

/// Public holidays the simulator knows (fixed dates only): (month, first day, last day).
const HOLIDAYS: &[(u32, u32, u32)] = &[(1, 1, 1), (5, 1, 5), (10, 1, 7)];

fn is_holiday(date: NaiveDate) -> bool {
    HOLIDAYS
        .iter()
        .any(|&(m, a, b)| date.month() == m && (a..=b).contains(&date.day()))
}

/// How a person's check-in rule and habits look; stable for the person.
struct Profile {
    record_type: u32,
    groupid: i64,
    groupname: &'static str,
    late_p: f64,
    field_p: f64,
    shift_offset: i64,
    /// 0: overtime paid, 1: as time off, 2: workdays paid and rest days as time off.
    overtime_policy: u8,
    omit_rest_days: bool,
    omit_regular_days: bool,
    omit_holidays_over: bool,
    omit_over_as: bool,
}

fn profile(org: &Org, user: &User) -> Profile {
    let h = mix(org.seed, &[b"profile", user.userid.as_bytes()]);
    let mut rng = StdRng::seed_from_u64(h);
    let centre = user
        .departments
        .first()
        .and_then(|&d| org.top_level_department(d))
        .map(|d| d.name.as_str())
        .unwrap_or("");
    let (record_type, groupid, groupname) = if rng.random_bool(0.02) {
        (7, 0, "")
    } else {
        match centre {
            "客服中心" => (3, 13, "客服排班"),
            "生产中心" => (3, 14, "车间倒班"),
            "销售中心" => (4, 15, "销售自由签到"),
            "研发中心" | "产品中心" => (1, 12, "研发弹性工时"),
            _ => (1, 11, "标准工时"),
        }
    };
    Profile {
        record_type,
        groupid,
        groupname,
        late_p: rng.random_range(0.01..0.12),
        field_p: if record_type == 4 { 0.35 } else { 0.02 },
        shift_offset: rng.random_range(0..6),
        overtime_policy: rng.random_range(0..3),
        omit_rest_days: rng.random_bool(0.2),
        omit_regular_days: rng.random_bool(0.35),
        omit_holidays_over: rng.random_bool(0.2),
        omit_over_as: rng.random_bool(0.15),
    }
}

/// Occurrences and their summed duration in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: i64,
    pub seconds: i64,
}

impl Tally {
    fn once(seconds: i64) -> Tally {
        Tally { count: 1, seconds }
    }

    fn add(&mut self, other: Tally) {
        self.count += other.count;
        self.seconds += other.seconds;
    }
}

/// One person's check-in figures over some days of one month, vendor-neutral
/// (the WeCom simulator renders them as a `datas[]` element; a DingTalk one can
/// render them as report columns). Durations are seconds; leave durations are
/// whole days of 86 400 s except personal leave and outings, which are hours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MonthFigures {
    /// WeCom rule type: 1 fixed hours, 3 shifts, 4 free check-in, 7 no rule.
    pub record_type: u32,
    pub rule_id: i64,
    pub rule_name: String,
    /// Calendar days covered.
    pub days: i64,
    /// Days that required check-in.
    pub work_days: i64,
    /// Work days with an exception (late, early leave, missing punch, absent).
    pub except_days: i64,
    pub regular_work_sec: i64,
    pub standard_work_sec: i64,
    pub late: Tally,
    pub early_leave: Tally,
    /// Missing punches (no duration).
    pub missing_punch: Tally,
    pub absent: Tally,
    pub annual_leave: Tally,
    pub personal_leave: Tally,
    pub sick_leave: Tally,
    pub punch_corrections: Tally,
    pub business_trip: Tally,
    pub outing: Tally,
    pub field_work: Tally,
    pub workday_overtime_sec: i64,
    pub restday_overtime_sec: i64,
    pub holiday_overtime_sec: i64,
}

impl MonthFigures {
    fn add(&mut self, d: &MonthFigures) {
        self.days += d.days;
        self.work_days += d.work_days;
        self.except_days += d.except_days;
        self.regular_work_sec += d.regular_work_sec;
        self.standard_work_sec += d.standard_work_sec;
        self.late.add(d.late);
        self.early_leave.add(d.early_leave);
        self.missing_punch.add(d.missing_punch);
        self.absent.add(d.absent);
        self.annual_leave.add(d.annual_leave);
        self.personal_leave.add(d.personal_leave);
        self.sick_leave.add(d.sick_leave);
        self.punch_corrections.add(d.punch_corrections);
        self.business_trip.add(d.business_trip);
        self.outing.add(d.outing);
        self.field_work.add(d.field_work);
        self.workday_overtime_sec += d.workday_overtime_sec;
        self.restday_overtime_sec += d.restday_overtime_sec;
        self.holiday_overtime_sec += d.holiday_overtime_sec;
    }
}

/// Simulates one day. Draws from `rng` whether or not the day is counted, so a
/// shorter window sees the same days as the whole month.
fn simulate_day(p: &Profile, date: NaiveDate, rng: &mut StdRng) -> MonthFigures {
    let mut d = MonthFigures {
        days: 1,
        ..MonthFigures::default()
    };
    let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
    let workday = match p.record_type {
        7 => false,
        3 => (i64::from(date.num_days_from_ce()) + p.shift_offset) % 6 < 4,
        _ => !weekend && !is_holiday(date),
    };
    let r: f64 = rng.random();
    if p.record_type == 7 {
        // No rule: nothing is recorded.
    } else if workday {
        d.work_days = 1;
        d.standard_work_sec = STANDARD_DAY;
        if r < 0.025 {
            d.annual_leave = Tally::once(DAY);
        } else if r < 0.035 {
            let hours = [2, 4, 8][rng.random_range(0..3)];
            d.personal_leave = Tally::once(hours * HOUR);
            d.regular_work_sec = STANDARD_DAY - hours * HOUR;
        } else if r < 0.043 {
            d.sick_leave = Tally::once(DAY);
        } else if r < 0.05 {
            d.business_trip = Tally::once(DAY);
            d.regular_work_sec = STANDARD_DAY;
        } else if r < 0.054 {
            d.absent = Tally::once(STANDARD_DAY);
            d.except_days = 1;
        } else {
            let noise = if p.record_type == 4 { 3600 } else { 1500 };
            let mut worked = STANDARD_DAY + rng.random_range(-noise / 3..=noise);
            if rng.random_bool(p.late_p) {
                let late = rng.random_range(1..=30) * 60;
                d.late = Tally::once(late);
                worked -= late;
            }
            if rng.random_bool(0.02) {
                let early = rng.random_range(1..=60) * 60;
                d.early_leave = Tally::once(early);
                worked -= early;
            }
            if rng.random_bool(0.02) {
                d.missing_punch = Tally::once(0);
                if rng.random_bool(0.6) {
                    d.punch_corrections = Tally::once(0);
                }
            }
            if rng.random_bool(0.02) {
                d.outing = Tally::once(rng.random_range(2..=4) * HOUR);
            }
            if rng.random_bool(p.field_p) {
                d.field_work = Tally::once(0);
            }
            if rng.random_bool(0.15) {
                d.workday_overtime_sec = rng.random_range(1..=6) * 1800;
            }
            d.regular_work_sec = worked;
            if d.late.count + d.early_leave.count + d.missing_punch.count > 0 {
                d.except_days = 1;
            }
        }
    } else if r < 0.06 {
        let over = rng.random_range(8..=18) * 1800;
        if is_holiday(date) {
            d.holiday_overtime_sec = over;
        } else {
            d.restday_overtime_sec = over;
        }
    }
    d
}

/// First and last day of a month; `None` for an invalid month.
pub fn month_bounds(year: i32, month: u32) -> Option<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)?;
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year.checked_add(1)?, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)?
    };
    Some((first, next.pred_opt()?))
}

/// The figures of `user` for the days `first..=last` (both inclusive), clamped
/// to the month that contains `first`; deterministic in (org seed, userid,
/// year, month, revision). The days are simulated one by one from the month's
/// first day, so a shorter window (the month in progress) is a prefix of the
/// whole month. A revision adds a correction (30 minutes of work time and one
/// punch correction per revision), so bumping it always changes the figures.
pub fn month_figures(
    org: &Org,
    user: &User,
    first: NaiveDate,
    last: NaiveDate,
    revision: u32,
) -> MonthFigures {
    figures(org, user, &profile(org, user), first, last, revision)
}

fn figures(
    org: &Org,
    user: &User,
    profile: &Profile,
    first: NaiveDate,
    last: NaiveDate,
    revision: u32,
) -> MonthFigures {
    let mut totals = MonthFigures {
        record_type: profile.record_type,
        rule_id: profile.groupid,
        rule_name: profile.groupname.to_owned(),
        ..MonthFigures::default()
    };
    if let Some((month_first, month_last)) = month_bounds(first.year(), first.month()) {
        let last = last.min(month_last);
        let mut rng = StdRng::seed_from_u64(mix(
            org.seed,
            &[
                b"month",
                user.userid.as_bytes(),
                &first.year().to_le_bytes(),
                &first.month().to_le_bytes(),
            ],
        ));
        for date in month_first.iter_days().take_while(|d| *d <= month_last) {
            let day = simulate_day(profile, date, &mut rng);
            if date >= first && date <= last {
                totals.add(&day);
            }
        }
    }
    let revision = i64::from(revision);
    totals.regular_work_sec += revision * 1800;
    totals.punch_corrections.count += revision;
    totals
}

/// One element of `getcheckin_monthdata`'s `datas[]` for this user and the
/// whole month, deterministic in (org seed, userid, year, month, revision).
/// See [`wecom_period_record`].
pub fn wecom_month_record(org: &Org, user: &User, year: i32, month: u32, revision: u32) -> Value {
    let profile = profile(org, user);
    let figures = match month_bounds(year, month) {
        Some((first, last)) => figures(org, user, &profile, first, last, revision),
        None => MonthFigures {
            record_type: profile.record_type,
            rule_id: profile.groupid,
            rule_name: profile.groupname.to_owned(),
            ..MonthFigures::default()
        },
    };
    render(org, user, &profile, &figures)
}

/// Like [`wecom_month_record`], for the days `first..=last` of the month that
/// contains `first` (see [`month_figures`]). This is what the WeCom simulator
/// answers for a request from `first` 00:00 to `last` 00:00.
pub fn wecom_period_record(
    org: &Org,
    user: &User,
    first: NaiveDate,
    last: NaiveDate,
    revision: u32,
) -> Value {
    let profile = profile(org, user);
    let figures = figures(org, user, &profile, first, last, revision);
    render(org, user, &profile, &figures)
}

fn render(org: &Org, user: &User, p: &Profile, t: &MonthFigures) -> Value {
    let departs_name = user
        .departments
        .iter()
        .map(|&d| org.department_path(d))
        .collect::<Vec<_>>()
        .join(";");

    let mut summary = Map::new();
    summary.insert("work_days".into(), json!(t.work_days));
    if !p.omit_regular_days {
        summary.insert("regular_days".into(), json!(t.work_days - t.except_days));
    }
    summary.insert("except_days".into(), json!(t.except_days));
    if !p.omit_rest_days {
        let rest = if t.record_type == 7 {
            0
        } else {
            t.days - t.work_days
        };
        summary.insert("rest_days".into(), json!(rest));
    }
    summary.insert("regular_work_sec".into(), json!(t.regular_work_sec));
    summary.insert("standard_work_sec".into(), json!(t.standard_work_sec));

    let exceptions: Vec<Value> = [
        (1, t.late),
        (2, t.early_leave),
        (3, t.missing_punch),
        (4, t.absent),
    ]
    .into_iter()
    .filter(|(_, tally)| tally.count > 0)
    .map(
        |(code, tally)| json!({"exception": code, "count": tally.count, "duration": tally.seconds}),
    )
    .collect();

    let sp = |ty: u32, vacation_id: u32, name: &str, tally: Tally, time_type: u32| {
        json!({
            "type": ty, "vacation_id": vacation_id, "name": name,
            "count": tally.count, "duration": tally.seconds, "time_type": time_type
        })
    };
    let sp_items = vec![
        sp(1, 2, "年假", t.annual_leave, 0),
        sp(1, 1, "事假", t.personal_leave, 1),
        sp(1, 3, "病假", t.sick_leave, 0),
        sp(2, 0, "补卡次数", t.punch_corrections, 0),
        sp(3, 0, "出差", t.business_trip, 0),
        sp(4, 0, "外出", t.outing, 1),
        sp(100, 0, "外勤次数", t.field_work, 0),
    ];

    let mut over = Map::new();
    over.insert("workday_over_sec".into(), json!(t.workday_overtime_sec));
    over.insert("restdays_over_sec".into(), json!(t.restday_overtime_sec));
    if !p.omit_holidays_over {
        over.insert("holidays_over_sec".into(), json!(t.holiday_overtime_sec));
    }
    if !p.omit_over_as {
        let split = |sec: i64, as_money: bool| if as_money { (0, sec) } else { (sec, 0) };
        let (wv, wm) = split(t.workday_overtime_sec, p.overtime_policy != 1);
        let (rv, rm) = split(t.restday_overtime_sec, p.overtime_policy == 0);
        let (hv, hm) = split(t.holiday_overtime_sec, p.overtime_policy != 1);
        over.insert("workdays_over_as_vacation".into(), json!(wv));
        over.insert("workdays_over_as_money".into(), json!(wm));
        over.insert("restdays_over_as_vacation".into(), json!(rv));
        over.insert("restdays_over_as_money".into(), json!(rm));
        over.insert("holidays_over_as_vacation".into(), json!(hv));
        over.insert("holidays_over_as_money".into(), json!(hm));
    }

    json!({
        "base_info": {
            "record_type": t.record_type,
            "name": user.name,
            "name_ex": user.name_ex,
            "departs_name": departs_name,
            "acctid": user.userid,
            "rule_info": { "groupid": t.rule_id, "groupname": t.rule_name }
        },
        "summary_info": Value::Object(summary),
        "exception_infos": exceptions,
        "sp_items": sp_items,
        "overwork_info": Value::Object(over)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generation_is_deterministic_and_seed_dependent() {
        assert_eq!(Org::generate(300, 5), Org::generate(300, 5));
        assert_ne!(Org::generate(300, 5).users, Org::generate(300, 6).users);
    }

    #[test]
    fn shape_of_a_mid_sized_org() {
        let org = Org::generate(3000, 0);
        assert_eq!(org.corp_name, "有家科技");
        assert_eq!(org.users.len(), 3000);
        let n = org.departments.len();
        assert!((150..=250).contains(&n), "{n} departments");
        for (i, d) in org.departments.iter().enumerate() {
            assert_eq!(d.id, i as u64 + 1);
            if d.id == 1 {
                assert_eq!(d.parent_id, 0);
            } else {
                assert!(d.parent_id < d.id);
            }
        }
        let ids: HashSet<_> = org.users.iter().map(|u| u.userid.as_str()).collect();
        assert_eq!(ids.len(), 3000);
        assert!(org.users.iter().all(|u| u.userid.is_ascii()));
        let two = org
            .users
            .iter()
            .filter(|u| u.departments.len() == 2)
            .count();
        assert!((150..=450).contains(&two), "{two} in two departments");
        let depth = |id| org.department_path(id).matches('/').count() + 1;
        let max_depth = org.departments.iter().map(|d| depth(d.id)).max();
        assert_eq!(max_depth, Some(4));
        let u = &org.users[41];
        assert!(u.userid.ends_with("0042"), "{}", u.userid);
        assert_eq!(u.job_number, "A00042");
        assert!(org
            .department_path(u.departments[0])
            .starts_with("有家科技/"));
    }

    #[test]
    fn tiny_orgs_still_have_three_levels() {
        for n in [0, 1, 5, 20] {
            let org = Org::generate(n, 1);
            assert_eq!(org.users.len(), n);
            assert!(org.departments.len() >= 5);
            let last = org.departments.last().unwrap();
            assert_eq!(org.department_path(last.id).matches('/').count(), 2);
        }
    }

    #[test]
    fn large_org_is_fast() {
        let started = std::time::Instant::now();
        let org = Org::generate(200_000, 3);
        let elapsed = started.elapsed();
        assert_eq!(org.users.len(), 200_000);
        let unique: HashSet<_> = org.users.iter().map(|u| u.userid.as_str()).collect();
        assert_eq!(unique.len(), 200_000);
        // Generous, since tests run unoptimised on a shared machine.
        assert!(elapsed.as_secs_f64() < 10.0, "{elapsed:?}");
    }

    #[test]
    fn month_record_shape_and_realism() {
        let org = Org::generate(400, 9);
        let mut seen_missing_rest = false;
        for user in &org.users {
            let rec = wecom_month_record(&org, user, 2026, 10, 0);
            assert_eq!(rec, wecom_month_record(&org, user, 2026, 10, 0));
            let base = &rec["base_info"];
            assert_eq!(base["acctid"], json!(user.userid));
            assert_eq!(base["name"], json!(user.name));
            let departs = base["departs_name"].as_str().unwrap();
            assert_eq!(departs.split(';').count(), user.departments.len());
            assert!(base["rule_info"]["groupid"].is_i64());
            let s = &rec["summary_info"];
            if s.get("rest_days").is_none() {
                seen_missing_rest = true;
            }
            let over = &rec["overwork_info"];
            assert!(over.get("workday_over_sec").is_some());
            assert!(over.get("restdays_over_sec").is_some());
            let names: Vec<_> = rec["sp_items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap())
                .collect();
            assert!(names.contains(&"年假") && names.contains(&"事假"));
            assert!(names.contains(&"外勤次数"));
            if base["record_type"] == json!(1) {
                // October 2026: 22 weekdays, minus the 1st–7th holidays (5 weekdays).
                assert_eq!(s["work_days"], json!(17));
                let sec = s["regular_work_sec"].as_i64().unwrap();
                assert!((12 * 8 * 3600..=19 * 9 * 3600).contains(&sec), "{sec}");
                assert_eq!(s["standard_work_sec"], json!(17 * 8 * 3600));
            }
        }
        assert!(seen_missing_rest);
    }

    #[test]
    fn revision_changes_record_and_prefix_is_consistent() {
        let org = Org::generate(50, 2);
        let user = &org.users[3];
        let r0 = wecom_month_record(&org, user, 2026, 9, 0);
        let r1 = wecom_month_record(&org, user, 2026, 9, 1);
        assert_ne!(r0, r1);
        assert_eq!(r0["base_info"], r1["base_info"]);
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        // Ending on the next month's 1st is the same as ending on the last day.
        let spill = wecom_period_record(&org, user, d(2026, 9, 1), d(2026, 10, 1), 0);
        assert_eq!(spill, r0);
        let part = wecom_period_record(&org, user, d(2026, 9, 1), d(2026, 9, 10), 0);
        let wd = |v: &Value| v["summary_info"]["work_days"].as_i64().unwrap();
        assert!(wd(&part) <= wd(&r0));
        let f = month_figures(&org, user, d(2026, 9, 1), d(2026, 9, 30), 1);
        assert_eq!(
            json!(f.regular_work_sec),
            r1["summary_info"]["regular_work_sec"]
        );
        assert_eq!(json!(f.work_days), r1["summary_info"]["work_days"]);
        // Invalid month: no panic, zero figures.
        let bad = wecom_month_record(&org, user, 2026, 13, 0);
        assert_eq!(bad["summary_info"]["work_days"], json!(0));
    }
}
