//! The rules of the tree (docs/ARCHITECTURE.md, "Rules of the tree"), checked on
//! the sources so that they hold after every change: no file over about 800
//! lines apart from its test module, no function over about 100 lines, no
//! `too_many_arguments` allowance, no import loop between the top-level modules of
//! `src/`, and comments that cite only what is in the repository.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 800;
const MAX_FN_LINES: usize = 100;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under the given folders of the repository.
fn rust_files(folders: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for folder in folders {
        walk(&root().join(folder), &mut out);
    }
    out.sort();
    out
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines before a file's test module (`#[cfg(test)]` then `mod name {`).
fn code_lines(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = lines
        .windows(2)
        .position(|w| {
            let next = w[1].trim_start();
            w[0].starts_with("#[cfg(test)]")
                && (next.starts_with("mod ") || next.starts_with("pub(crate) mod "))
                && next.trim_end().ends_with('{')
        })
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

fn is_test_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs" || name.ends_with("_tests.rs") || shown(path).starts_with("tests/")
}

/// A line with its string and char literals emptied and its comment removed,
/// for counting braces.
fn code_of(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        match (in_str, c) {
            (true, '\\') => {
                chars.next();
            }
            (true, '"') => in_str = false,
            (true, _) => {}
            (false, '"') => in_str = true,
            (false, '/') if chars.peek() == Some(&'/') => break,
            (false, '\'') => {
                // A char literal ('x', '\n', '{'), not a lifetime ('a).
                let rest: String = chars.clone().take(3).collect();
                if rest.starts_with('\\') {
                    chars.nth(2);
                } else if rest.chars().nth(1) == Some('\'') {
                    chars.nth(1);
                } else {
                    out.push(c);
                }
            }
            (false, _) => out.push(c),
        }
    }
    out
}

/// `(line, name, length)` of every function whose body spans more than `max` lines.
fn long_functions(text: &str, max: usize) -> Vec<(usize, String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code = code_of(line);
        let Some(at) = code.find("fn ") else { continue };
        let before = code[..at].trim();
        let is_item = before
            .split_whitespace()
            .all(|w| matches!(w, "pub" | "async" | "const" | "unsafe") || w.starts_with("pub("));
        if !is_item || code.trim_end().ends_with(';') {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut started) = (0i64, false);
        for (j, l) in lines.iter().enumerate().skip(i) {
            let c = code_of(l);
            depth += c.matches('{').count() as i64 - c.matches('}').count() as i64;
            started |= c.contains('{');
            if started && depth <= 0 {
                if j - i + 1 > max {
                    out.push((i + 1, name.clone(), j - i + 1));
                }
                break;
            }
        }
    }
    out
}

#[test]
fn no_file_or_function_is_too_long() {
    let mut problems = Vec::new();
    for path in rust_files(&["src", "crates", "benches"]) {
        let text = read(&path);
        let code = code_lines(&text);
        if !is_test_file(&path) && code.len() > MAX_FILE_LINES {
            problems.push(format!(
                "{}: {} lines before its tests (at most {MAX_FILE_LINES})",
                shown(&path),
                code.len()
            ));
        }
        for (line, name, length) in long_functions(&code.join("\n"), MAX_FN_LINES) {
            problems.push(format!(
                "{}:{line}: fn {name} is {length} lines (at most {MAX_FN_LINES})",
                shown(&path)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_too_many_arguments_allowance() {
    let found: Vec<String> = rust_files(&["src", "crates", "benches", "tests"])
        .into_iter()
        .filter(|p| !p.ends_with("tree_rules.rs"))
        .filter(|p| read(p).contains(&["too_many", "_arguments"].concat()))
        .map(|p| shown(&p))
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

/// The top-level module of `src/` a file belongs to (`src/pipeline/map.rs` → `pipeline`).
fn top_module(path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root().join("src")).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    Some(first.trim_end_matches(".rs").to_string())
}

/// The top-level modules a text names through `crate::…`.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + 7..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for name in names {
            let module: String = name
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !module.is_empty() {
                out.insert(module);
            }
        }
    }
    out
}

#[test]
fn the_top_level_modules_import_each_other_without_loops() {
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for path in rust_files(&["src"]) {
        let Some(module) = top_module(&path) else {
            continue;
        };
        if is_test_file(&path) || module == "main" || module == "lib" {
            continue;
        }
        let code = code_lines(&read(&path)).join("\n");
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let entry = deps.entry(module.clone()).or_default();
        entry.extend(crate_references(&code).into_iter().filter(|m| *m != module));
    }
    // A loop exists when a module reaches itself.
    let mut loops = Vec::new();
    for start in deps.keys() {
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in deps.get(&at).into_iter().flatten() {
                if next == start {
                    loops.push(path.join(" → ") + " → " + start);
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
}

#[test]
fn comments_cite_only_what_is_in_the_repository() {
    let outside = [
        "dingtalk.md §",
        "wecom.md §",
        "jiandaoyun.md §",
        // docs/vendors/events.md is ours; the outside one is cited by section.
        "events.md §",
        "api/events.md",
        "spec §",
        "product.md",
        "design.md",
        "shared/api",
    ];
    let mut found = Vec::new();
    for path in rust_files(&["src", "crates", "benches", "tests"]) {
        if path.ends_with("tree_rules.rs") {
            continue;
        }
        for (n, line) in read(&path).lines().enumerate() {
            let Some(comment) = line.find("//").map(|at| &line[at..]) else {
                continue;
            };
            let issue = comment
                .split("ssue ")
                .skip(1)
                .any(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
            if issue || outside.iter().any(|o| comment.contains(o)) {
                found.push(format!("{}:{}: {}", shown(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
