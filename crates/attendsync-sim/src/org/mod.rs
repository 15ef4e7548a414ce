//! A generated organisation (departments and employees) and the monthly
//! check-in figures of its employees. Vendor-neutral: the WeCom simulator
//! renders it as WeCom JSON, a DingTalk simulator can reuse it.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::mix;

mod figures;
mod names;
#[cfg(test)]
mod tests;

pub use figures::{
    month_bounds, month_figures, wecom_month_record, wecom_period_record, MonthFigures, Tally,
};
use names::{CENTRES, COMPOUND_SURNAMES, CORP_NAMES, GIVEN, SURNAMES, TEAMS, TITLES};

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

impl Org {
    /// Generates an organisation of `employees` people, deterministic in `seed`.
    /// About one department per 15 people (at least 5), nested 3–4 levels deep under a root
    /// named after the company. Linear in `employees`.
    pub fn generate(employees: usize, seed: u64) -> Org {
        Org::generate_in(employees, employees.div_ceil(15).max(5), seed)
    }

    /// Like [`Org::generate`], with `departments` departments in all, root included
    /// (at least 2), so benchmarks can shape the organisation like a real one (many
    /// small departments or a few large ones). `generate(n, seed)` is
    /// `generate_in(n, ⌈n/15⌉ max 5, seed)`.
    pub fn generate_in(employees: usize, departments: usize, seed: u64) -> Org {
        let mut rng = StdRng::seed_from_u64(mix(seed, &[b"org"]));
        let corp_name = CORP_NAMES[(seed % CORP_NAMES.len() as u64) as usize].to_owned();
        let departments = generate_departments(&corp_name, departments.max(2), &mut rng);

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

/// `total` departments, root included; at least 2.
fn generate_departments(corp_name: &str, total: usize, rng: &mut StdRng) -> Vec<Department> {
    const ORDER_TOP: u64 = 100_000_000;
    let order = |sibling: usize| ORDER_TOP.saturating_sub(sibling as u64 * 1000);
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
